#pragma once
/// \file loss.hpp  `bce_with_logits`.

#include <reparam/detail/math.hpp>
#include <reparam/ops/arithmetic.hpp>

namespace reparam {
namespace detail {

/// (1 - t) s(x) - t s(-x) with one exponential: e = e^-|x|, s(|x|) = 1 / (1 + e),
/// s(-|x|) = e / (1 + e). The scalar call runs the packet code on one lane (same bits at every shape).
template <class T>
struct BceGradFunctor {
  T operator()(const T& x, const T& t) const {
    if constexpr (lane_path<T>) {
      return on_one_lane(*this, x, t);
    } else {
      using std::abs;
      using std::exp;
      const T e = exp(-abs(x)), big = T(1) / (T(1) + e), small = e / (T(1) + e);
      return x < T(0) ? (T(1) - t) * small - t * big : (T(1) - t) * big - t * small;
    }
  }
  template <class Packet>
  Packet packetOp(const Packet& x, const Packet& t) const {
    namespace in = Eigen::internal;
    const Packet one = in::pset1<Packet>(T(1));
    const Packet e = SafeExpFunctor<T>().packetOp(in::pnegate(in::pabs(x)));
    const Packet d = in::padd(one, e);
    const Packet big = in::pdiv(one, d), small = in::pdiv(e, d);
    const Packet neg = in::pcmp_lt(x, in::pzero(x));
    const Packet s_pos = in::pselect(neg, small, big), s_neg = in::pselect(neg, big, small);
    return in::psub(in::pmul(in::psub(one, t), s_pos), in::pmul(t, s_neg));
  }
};

struct BceWithLogitsOp {
  static constexpr const char* name = "bce_with_logits";
  // -[t log s(x) + (1-t) log(1 - s(x))] = max(x, 0) - x t + log1p(e^-|x|): finite for any x
  template <class X, class Z> static auto forward(const X& x, const Z& t) {
    using T = typename X::Scalar;
    return x.max(T(0)) - x * t + safe_log1p(safe_exp(-x.abs()));
  }
  // s(x) - t, written (1 - t) s(x) - t s(-x): exact for t = 0 or 1 at any x (1 - s(20) would cancel)
  template <class G, class X, class Z, class Y> static auto da(const G& g, const X& x, const Z& t, const Y&) {
    using T = typename G::Scalar;
    return g * x.binaryExpr(t, BceGradFunctor<T>());
  }
  template <class G, class X, class Z, class Y> static auto db(const G& g, const X& x, const Z&, const Y&) { return -g * x; }  // -x
};

}  // namespace detail
}  // namespace reparam

namespace Eigen {
namespace internal {
template <class T>
struct functor_traits<reparam::detail::BceGradFunctor<T>> {
  enum { Cost = functor_traits<scalar_exp_op<T>>::Cost + 16, PacketAccess = packet_traits<T>::HasExp && packet_traits<T>::HasDiv };
};
}  // namespace internal
}  // namespace Eigen

namespace reparam {

/// Elementwise binary cross-entropy of `targets` under Bernoulli(sigmoid(logits)), with
/// broadcasting; exact and finite for any logit. Differentiable in both arguments.
template <class T> BasicVar<T> bce_with_logits(const BasicVar<T>& logits, const BasicVar<T>& targets) {
  return detail::binary<detail::BceWithLogitsOp>(logits, targets);
}
template <class T, class D> BasicVar<T> bce_with_logits(const BasicVar<T>& logits, const Eigen::DenseBase<D>& targets) {
  return bce_with_logits(logits, detail::as_constant(logits, targets, "bce_with_logits"));
}

}  // namespace reparam
