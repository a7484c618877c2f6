#pragma once
/// \file math.hpp  Elementwise exp that underflows to exactly 0.
///
/// Eigen 3.4's vectorized exp clamps its argument at the smallest normal exponent (-709.44 for
/// double, -88.38 for float), so exp(-1e4) comes out as 2.2e-308 instead of 0: a softmax of
/// extreme logits would never give exact zeros and a row of -inf would have a finite logsumexp.
/// This functor keeps Eigen's packet exp and selects 0 below the clamp point (the true value there
/// is a denormal or 0, so the absolute error is below the smallest normal number).

#include <cmath>
#include <limits>
#include <type_traits>

#include <Eigen/Core>

namespace reparam {
namespace detail {

template <class T>
struct exp_floor {
  static T value() { return T(-std::numeric_limits<double>::infinity()); }
};
template <>
struct exp_floor<double> {
  static double value() { return -709.436139303102; }  // Eigen's cst_exp_lo for double
};
template <>
struct exp_floor<float> {
  static float value() { return -88.3762626647949f; }  // Eigen's cst_exp_lo for float
};

template <class T>
struct SafeExpOp {
  T operator()(const T& x) const {
    using std::exp;
    return exp(x);  // libm: underflows to 0 by itself
  }
  template <class Packet>
  Packet packetOp(const Packet& x) const {
    namespace in = Eigen::internal;
    return in::pselect(in::pcmp_lt(x, in::pset1<Packet>(exp_floor<T>::value())), in::pzero(x), in::pexp(x));
  }
};

/// e^x elementwise for an Eigen array expression, with exact zeros on underflow.
template <class X>
auto safe_exp(const X& x) {
  return x.unaryExpr(SafeExpOp<typename X::Scalar>());
}

}  // namespace detail
}  // namespace reparam

namespace Eigen {
namespace internal {
template <class T>
struct functor_traits<reparam::detail::SafeExpOp<T>> {
  enum { Cost = functor_traits<scalar_exp_op<T>>::Cost + 2, PacketAccess = packet_traits<T>::HasExp };
};
}  // namespace internal
}  // namespace Eigen
