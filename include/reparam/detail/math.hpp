#pragma once
/// \file math.hpp  Vectorized exp, log, sqrt and tanh that agree with the scalar (libm) path to a
/// few ulps over the whole range, subnormals and infinities included.
///
/// Eigen 3.4's packet functions are fast but cut corners at the edges (measured, GCC 12):
///  - exp clamps its argument to +-709.784 (float +-88.723): exp(-1000) is 5.6e-309, not 0, and
///    results that should be subnormal are not; with AVX-512, float exp(88.72) is inf.
///  - log treats subnormal inputs as the smallest normal: log(5e-324) gives -708.4 (true -744.4).
///  - sqrt (fast-math rsqrt + Newton) flushes subnormal inputs to 0 and gives NaN for +inf.
///  - tanh has no double packet at all (every element goes through libm).
/// The functors below keep Eigen's kernels where they are exact enough and fix the edges:
/// exp(x) = exp(x/2)^2 outside the safe range, log of a subnormal = log(x 2^k) - k log 2, sqrt
/// through the exact hardware instruction, and a vectorized double tanh (Cephes' rational form).

#include <cmath>
#include <limits>
#include <type_traits>

#include <Eigen/Core>

namespace reparam {
namespace detail {

template <class T>
struct ExpRange;  // |x| below `safe`: Eigen's pexp is within an ulp or two
template <>
struct ExpRange<double> {
  static constexpr double safe = 708.0;
};
template <>
struct ExpRange<float> {
  static constexpr float safe = 87.0f;
};

template <class T>
struct SafeExpFunctor {
  T operator()(const T& x) const {
    using std::exp;
    return exp(x);  // libm: underflows to 0 and overflows to inf by itself
  }
  template <class Packet>
  Packet packetOp(const Packet& x) const {
    namespace in = Eigen::internal;
    // Outside the safe range exp(x) = exp(x/2)^2: the square underflows or overflows exactly as
    // the true value does, with an error of about two ulps.
    const Packet safe = in::pset1<Packet>(ExpRange<T>::safe);
    const Packet edge = in::pcmp_lt(safe, in::pabs(x));
    const Packet half = in::pselect(edge, in::pmul(x, in::pset1<Packet>(T(0.5))), x);
    const Packet e = in::pexp(half);
    return in::pselect(edge, in::pmul(e, e), e);
  }
};

template <class T>
struct SubnormalScale;  // log of a subnormal: scale by 2^k into the normal range first
template <>
struct SubnormalScale<double> {
  static constexpr double factor = 0x1.0p54;
  static constexpr double k_ln2_hi = 54 * 0.693359375;  // exact: 0.693359375 has 9 bits
  static constexpr double k_ln2_lo = 54 * -2.121944400546905827679e-4;
};
template <>
struct SubnormalScale<float> {
  static constexpr float factor = 0x1.0p25f;
  static constexpr float k_ln2_hi = 25 * 0.693359375f;
  static constexpr float k_ln2_lo = 25 * -2.12194440e-4f;
};

template <class T>
struct SafeLogFunctor {
  T operator()(const T& x) const {
    using std::log;
    return log(x);
  }
  template <class Packet>
  Packet packetOp(const Packet& x) const {
    namespace in = Eigen::internal;
    using S = SubnormalScale<T>;
    // Positive subnormals (and, harmlessly, zero and negatives, which plog maps to -inf and NaN
    // whatever the scale) are scaled up into the normal range; log 2^k is taken off after.
    const Packet tiny = in::pcmp_lt(x, in::pset1<Packet>((std::numeric_limits<T>::min)()));
    const Packet xs = in::pselect(tiny, in::pmul(x, in::pset1<Packet>(S::factor)), x);
    const Packet r = in::plog(xs);
    const Packet rs = in::psub(in::psub(r, in::pset1<Packet>(S::k_ln2_hi)), in::pset1<Packet>(S::k_ln2_lo));
    return in::pselect(tiny, rs, r);
  }
};

/// Correctly rounded packet sqrt: the hardware instruction where Eigen's fast-math path would
/// approximate it.
template <class Packet>
Packet packet_sqrt(const Packet& x) {
  return Eigen::internal::psqrt(x);
}
#if defined(EIGEN_VECTORIZE_SSE2)
inline Eigen::internal::Packet4f packet_sqrt(const Eigen::internal::Packet4f& x) { return _mm_sqrt_ps(x); }
inline Eigen::internal::Packet2d packet_sqrt(const Eigen::internal::Packet2d& x) { return _mm_sqrt_pd(x); }
#endif
#if defined(EIGEN_VECTORIZE_AVX)
inline Eigen::internal::Packet8f packet_sqrt(const Eigen::internal::Packet8f& x) { return _mm256_sqrt_ps(x); }
inline Eigen::internal::Packet4d packet_sqrt(const Eigen::internal::Packet4d& x) { return _mm256_sqrt_pd(x); }
#endif
#if defined(EIGEN_VECTORIZE_AVX512)
inline Eigen::internal::Packet16f packet_sqrt(const Eigen::internal::Packet16f& x) { return _mm512_sqrt_ps(x); }
inline Eigen::internal::Packet8d packet_sqrt(const Eigen::internal::Packet8d& x) { return _mm512_sqrt_pd(x); }
#endif

template <class T>
struct ExactSqrtFunctor {
  T operator()(const T& x) const {
    using std::sqrt;
    return sqrt(x);
  }
  template <class Packet>
  Packet packetOp(const Packet& x) const {
    return packet_sqrt(x);
  }
};

/// tanh with a double packet path: for |x| <= 0.625, x + x^3 P(x^2) / Q(x^2) (Cephes' rational
/// approximation, relative error below 2.5e-16); beyond, sign(x) (1 - 2 / (e^(2|x|) + 1)). Float
/// keeps Eigen's packet tanh.
template <class T>
struct TanhFunctor {
  T operator()(const T& x) const {
    using std::tanh;
    return tanh(x);
  }
  template <class Packet>
  Packet packetOp(const Packet& x) const {
    namespace in = Eigen::internal;
    if constexpr (std::is_same<T, double>::value) {
      const Packet one = in::pset1<Packet>(1.0), two = in::pset1<Packet>(2.0);
      const Packet z = in::pmul(x, x);
      Packet p = in::pset1<Packet>(-9.64399179425052238628e-1);
      p = in::pmadd(p, z, in::pset1<Packet>(-9.92877231001918586564e1));
      p = in::pmadd(p, z, in::pset1<Packet>(-1.61468768441708447952e3));
      Packet q = in::padd(z, in::pset1<Packet>(1.12811678491632931402e2));
      q = in::pmadd(q, z, in::pset1<Packet>(2.23548839060100448583e3));
      q = in::pmadd(q, z, in::pset1<Packet>(4.84406305325125486048e3));
      const Packet small = in::padd(x, in::pmul(in::pmul(x, z), in::pdiv(p, q)));
      const Packet ax = in::pabs(x);
      // e^(2|x|) overflows to inf beyond 354: 2 / inf = 0 gives exactly 1
      const Packet e = SafeExpFunctor<T>().packetOp(in::pmul(two, ax));
      const Packet big_abs = in::psub(one, in::pdiv(two, in::padd(e, one)));
      const Packet big = in::pselect(in::pcmp_lt(x, in::pzero(x)), in::pnegate(big_abs), big_abs);
      const Packet r = in::pselect(in::pcmp_lt(in::pset1<Packet>(0.625), ax), big, small);
      return in::pselect(in::pcmp_eq(x, x), r, x);  // NaN stays NaN
    } else {
      return in::ptanh(x);
    }
  }
};

/// e^x elementwise for an Eigen array expression, exact to a few ulps over the whole range.
template <class X>
auto safe_exp(const X& x) {
  return x.unaryExpr(SafeExpFunctor<typename X::Scalar>());
}
/// log x elementwise, subnormal inputs included.
template <class X>
auto safe_log(const X& x) {
  return x.unaryExpr(SafeLogFunctor<typename X::Scalar>());
}
/// sqrt x elementwise, correctly rounded (subnormals and +inf included).
template <class X>
auto exact_sqrt(const X& x) {
  return x.unaryExpr(ExactSqrtFunctor<typename X::Scalar>());
}
/// tanh x elementwise (a double packet path).
template <class X>
auto fast_tanh(const X& x) {
  return x.unaryExpr(TanhFunctor<typename X::Scalar>());
}

}  // namespace detail
}  // namespace reparam

namespace Eigen {
namespace internal {
template <class T>
struct functor_traits<reparam::detail::SafeExpFunctor<T>> {
  enum { Cost = functor_traits<scalar_exp_op<T>>::Cost + 4, PacketAccess = packet_traits<T>::HasExp };
};
template <class T>
struct functor_traits<reparam::detail::SafeLogFunctor<T>> {
  enum { Cost = functor_traits<scalar_log_op<T>>::Cost + 4, PacketAccess = packet_traits<T>::HasLog };
};
template <class T>
struct functor_traits<reparam::detail::ExactSqrtFunctor<T>> {
  enum { Cost = functor_traits<scalar_sqrt_op<T>>::Cost, PacketAccess = packet_traits<T>::HasSqrt };
};
template <class T>
struct functor_traits<reparam::detail::TanhFunctor<T>> {
  enum {
    Cost = 40,
    PacketAccess = std::is_same<T, double>::value ? int(packet_traits<T>::HasExp && packet_traits<T>::HasDiv)
                                                  : int(packet_traits<T>::HasTanh)
  };
};
}  // namespace internal
}  // namespace Eigen
