#pragma once
/// \file math.hpp  Vectorized exp, log, sqrt and tanh that agree with the scalar (libm) path to a
/// few ulps over the whole range, subnormals and infinities included.
///
/// Eigen 3.4's packet functions are fast but cut corners at the edges (measured, GCC 12):
///  - exp clamps its argument to +-709.784 (float +-88.723): exp(-1000) is 5.6e-309, not 0, and
///    results that should be subnormal are not; with AVX-512, float exp(88.72) is inf (the
///    16-wide float exp is another algorithm than the 4- and 8-wide one: we use the latter).
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

#include <reparam/matrix.hpp>

namespace reparam {
namespace detail {

// ---- one code path for every shape ----------------------------------------------------------
// Eigen evaluates whole packets with the packet function and the leftover elements (and every
// 1x1 matrix) with the scalar one, which for exp and log is libm: the two differ in the last bit,
// and a 1-ulp difference in a logit becomes 100 ulps after a division by a temperature of 0.01.
// So the scalar path of the functors below runs the packet code on one lane of the smallest
// packet: a value gets the same bits whether it sits in a 1x1 node or inside a vectorized loop.

// Packet types (GCC vector types) as template arguments drop their alignment attributes, which is
// harmless here and which GCC reports (-Wignored-attributes); Eigen silences the same warning.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif
template <class P, class H = typename Eigen::internal::unpacket_traits<P>::half>
struct SmallestPacket {
  using type = typename SmallestPacket<H>::type;
};
template <class P>
struct SmallestPacket<P, P> {
  using type = P;
};

template <class T>
constexpr bool lane_path = std::is_floating_point<T>::value && bool(Eigen::internal::packet_traits<T>::Vectorizable);

/// f's packet code applied to the single value x (lane 0 of the smallest packet).
template <class T, class F>
T on_one_lane(const F& f, const T& x) {
  using P = typename SmallestPacket<typename Eigen::internal::packet_traits<T>::type>::type;
  return Eigen::internal::pfirst(f.packetOp(Eigen::internal::pset1<P>(x)));
}
/// The same for a binary packet functor.
template <class T, class F>
T on_one_lane(const F& f, const T& x, const T& y) {
  using P = typename SmallestPacket<typename Eigen::internal::packet_traits<T>::type>::type;
  return Eigen::internal::pfirst(f.packetOp(Eigen::internal::pset1<P>(x), Eigen::internal::pset1<P>(y)));
}
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

/// The scalar call of a packet functor D: D's packet code on one lane (so a 1x1 node and a
/// vectorized one give the same bits), or D::libm(x) for types without packets.
template <class D, class T>
struct LaneScalar {
  T operator()(const T& x) const {
    if constexpr (lane_path<T>) {
      return on_one_lane(static_cast<const D&>(*this), x);
    } else {
      return D::libm(x);
    }
  }
};

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
struct SafeExpFunctor : LaneScalar<SafeExpFunctor<T>, T> {
  static T libm(const T& x) {
    using std::exp;
    return exp(x);
  }
  template <class Packet>
  Packet packetOp(const Packet& x) const {
    namespace in = Eigen::internal;
    // Outside the safe range exp(x) = exp(x/2)^2: the square underflows or overflows exactly as
    // the true value does, with an error of about two ulps.
    const Packet safe = in::pset1<Packet>(ExpRange<T>::safe);
    const Packet edge = in::pcmp_lt(safe, in::pabs(x));
    const Packet half = in::pselect(edge, in::pmul(x, in::pset1<Packet>(T(0.5))), x);
    // float: Eigen's generic kernel on every packet width. Its AVX-512 Packet16f exp is another
    // (Cephes) algorithm, so a -march=native build would give other bits for values inside
    // 16-wide packets than for the same value alone (a 1x1 node runs the 4-wide code).
    Packet e;
    if constexpr (std::is_same<T, float>::value)
      e = in::pexp_float(half);
    else
      e = in::pexp(half);
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
struct SafeLogFunctor : LaneScalar<SafeLogFunctor<T>, T> {
  static T libm(const T& x) {
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
  // double: libm on the scalar path (the 1x1 tape nodes of a scalar chain are 20% faster with
  // it); it and the packet code agree to an ulp (tanh is well conditioned: nothing amplifies
  // that). float: the packet code on one lane (libm and Eigen's float tanh differ by 2 ulps).
  T operator()(const T& x) const {
    if constexpr (!std::is_same<T, double>::value && lane_path<T>) {
      return on_one_lane(*this, x);
    } else {
      using std::tanh;
      return tanh(x);
    }
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

/// log(1 + x): log(u) x / (u - 1) with u = 1 + x rounded (the classic correction of the rounding
/// of u, exact to a few ulps), x itself where u rounds to 1 (|x| below half an ulp of 1), and
/// through the subnormal-safe log.
template <class T>
struct Log1pFunctor : LaneScalar<Log1pFunctor<T>, T> {
  static T libm(const T& x) {
    using std::log1p;
    return log1p(x);
  }
  template <class Packet>
  Packet packetOp(const Packet& x) const {
    namespace in = Eigen::internal;
    const Packet one = in::pset1<Packet>(T(1));
    const Packet u = in::padd(x, one);
    const Packet small = in::pcmp_eq(u, one);
    const Packet log_u = SafeLogFunctor<T>().packetOp(u);
    // u = inf: log u = inf, inf * x / inf is NaN: take log u itself
    const Packet big = in::pcmp_eq(u, in::pset1<Packet>(std::numeric_limits<T>::infinity()));
    const Packet r = in::pmul(log_u, in::pdiv(x, in::psub(u, one)));
    return in::pselect(small, x, in::pselect(big, log_u, r));
  }
};

/// e^x - 1: (u - 1) x / log(u) with u = e^x (Kahan's correction), x where u rounds to 1, -1 where
/// u - 1 rounds to -1, inf where u overflows; the exp and log are the exact-at-the-edges ones.
template <class T>
struct Expm1Functor : LaneScalar<Expm1Functor<T>, T> {
  static T libm(const T& x) {
    using std::expm1;
    return expm1(x);
  }
  template <class Packet>
  Packet packetOp(const Packet& x) const {
    namespace in = Eigen::internal;
    const Packet one = in::pset1<Packet>(T(1));
    const Packet u = SafeExpFunctor<T>().packetOp(x);
    const Packet um1 = in::psub(u, one);
    const Packet small = in::pcmp_eq(u, one);
    const Packet minus_one = in::pcmp_eq(um1, in::pset1<Packet>(T(-1)));
    const Packet big = in::pcmp_eq(u, in::pset1<Packet>(std::numeric_limits<T>::infinity()));
    const Packet r = in::pmul(um1, in::pdiv(x, SafeLogFunctor<T>().packetOp(u)));
    return in::pselect(small, x, in::pselect(minus_one, um1, in::pselect(big, u, r)));
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
template <class V>
constexpr bool is_eigen_expr = std::is_base_of<Eigen::EigenBase<V>, V>::value;

/// x^p elementwise through std::pow on every path (Eigen's vectorized pow and libm's differ in
/// the last bits; pow is rare enough that one path is worth more than the packets).
template <class X, class P>
auto scalar_pow(const X& x, const P& p) {
  using T = typename X::Scalar;
  if constexpr (!is_eigen_expr<P>) {
    return x.unaryExpr([p](const T& v) {
      using std::pow;
      return T(pow(v, T(p)));
    });
  } else {
    return x.binaryExpr(p, [](const T& v, const T& q) {
      using std::pow;
      return T(pow(v, q));
    });
  }
}
/// log(1 + x) elementwise, the same bits on every path.
template <class X>
auto safe_log1p(const X& x) {
  return x.unaryExpr(Log1pFunctor<typename X::Scalar>());
}
/// e^x - 1 elementwise, the same bits on every path.
template <class X>
auto safe_expm1(const X& x) {
  return x.unaryExpr(Expm1Functor<typename X::Scalar>());
}
/// tanh x elementwise (a double packet path).
template <class X>
auto fast_tanh(const X& x) {
  return x.unaryExpr(TanhFunctor<typename X::Scalar>());
}

// ---- rows of a softmax where one entry dominates ----------------------------------------------
// With w shifted so that its largest entry is 0, log(sum e^w) = log(1 + s), s the sum over the
// other entries. Rounding 1 + s first loses s when it is below an ulp of 1, and the dominant
// log-probability -log(1 + s) comes out as 0 instead of -s: log1p(s) keeps it to the last bit.
// Likewise g_j - <g, y> for the dominant softmax entry y_j is sum_{k != j} y_k (g_j - g_k) (as
// 1 - y_j is the sum of the others), where the plain difference cancels.

// Rows are often short (K = 10): their sums are plain loops, in an order that does not depend on
// where the row sits in memory (a row gives the same bits alone and inside a batch). Rows of 32 or
// more reduce with Eigen's vectorized sums, whose order follows the alignment: there a row may
// differ by an ulp between positions in a batch.
template <class T>
T row_sum(const T* a, std::ptrdiff_t K) {
  if (K >= 32) return Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>(a, K).sum();
  T s = T(0);
  for (std::ptrdiff_t k = 0; k < K; ++k) s += a[k];
  return s;
}
template <class T>
T row_max(const T* a, std::ptrdiff_t K) {
  if (K >= 32) return Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>(a, K).maxCoeff();
  T m = a[0];
  for (std::ptrdiff_t k = 1; k < K; ++k) m = a[k] > m ? a[k] : m;
  return m;
}

template <class T>
T row_dot(const T* a, const T* b, std::ptrdiff_t K) {
  using V = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;
  if (K >= 32) return (V(a, K) * V(b, K)).sum();
  T s = T(0);
  for (std::ptrdiff_t k = 0; k < K; ++k) s += a[k] * b[k];
  return s;
}

/// sum_k e^(x_k - m) over a row (the short-row rule above).
template <class T>
T sum_exp(const T* x, std::ptrdiff_t K, T m) {
  if (K >= 32) return safe_exp(Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>(x, K) - m).sum();
  T s = T(0);
  for (std::ptrdiff_t k = 0; k < K; ++k) s += SafeExpFunctor<T>()(x[k] - m);
  return s;
}

/// Index of the first largest entry of a row of K > 0 (NaN entries are never chosen over others).
template <class T>
std::ptrdiff_t row_argmax(const T* w, std::ptrdiff_t K) {
  // long rows: a vectorized max, then the first entry equal to it (NaN rows fall through to the loop)
  if (K >= 32) {
    const T m = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>(w, K).maxCoeff();
    for (std::ptrdiff_t k = 0; k < K; ++k)
      if (w[k] == m) return k;
  }
  // short rows branch-free (conditional moves): random rows would mispredict a branch every few entries
  std::ptrdiff_t j = 0;
  T best = w[0];
  for (std::ptrdiff_t k = 1; k < K; ++k) {
    const bool gt = w[k] > best;
    best = gt ? w[k] : best;
    j = gt ? k : j;
  }
  return j;
}

/// log(sum_k e^{x_k - m}) of a row of K > 0 whose (first) largest entry x_j is m (shifted by its
/// max), as log1p of the others; rows shifted by 0 because they hold an infinity take the plain sum.
template <class T>
T log_sum_exp_at(const T* x, std::ptrdiff_t K, std::ptrdiff_t j, T m = T(0)) {
  if (!(x[j] - m == T(0))) {
    using std::log;
    return log(sum_exp(x, K, m));
  }
  return Log1pFunctor<T>()(sum_exp(x, j, m) + sum_exp(x + j + 1, K - j - 1, m));
}
/// The same, finding the largest entry.
template <class T>
T log_sum_exp_shifted(const T* x, std::ptrdiff_t K, T m = T(0)) {
  return log_sum_exp_at(x, K, row_argmax(x, K), m);
}

/// g_j - e^{y_j} sum(g) for the largest entry j of a log-softmax row y, as
/// -expm1(y_j) g_j - e^{y_j} sum_{k != j} g_k (exact when e^{y_j} ~ 1).
template <class T>
T log_softmax_dominant(const T* g, const T* y, std::ptrdiff_t K, std::ptrdiff_t j) {
  T others = T(0);
  for (std::ptrdiff_t k = 0; k < K; ++k)
    if (k != j) others += g[k];
  const T e = safe_exp(Eigen::Array<T, 1, 1>(y[j]))(0);
  return -Expm1Functor<T>()(y[j]) * g[j] - e * others;
}

/// g_j - <g, y> for the largest entry j of a softmax row y (valid for any j; exact when y_j ~ 1).
template <class T>
EIGEN_STRONG_INLINE T dominant_centered(const T* g, const T* y, std::ptrdiff_t K, std::ptrdiff_t j) {
  // the k = j term is exactly 0, so the sum may run over every k (no branch; vectorized when long)
  const T gj = g[j];
  if (K >= 32) {
    using V = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;
    return (V(y, K) * (gj - V(g, K))).sum();
  }
  T c = T(0);
  for (std::ptrdiff_t k = 0; k < K; ++k) c += y[k] * (gj - g[k]);
  return c;
}

// ---- where(cond, x, a, b): cond(x) ? a : b, elementwise and vectorized ------------------------
// Eigen 3.4's DenseBase::select has no packet path, so every rule with a branch (relu, abs, clamp,
// the tails of tanh and sigmoid) ran one element at a time. `where` is a ternary expression whose
// packet path compares and blends whole packets; both branches are evaluated (they must be safe
// to compute everywhere), the condition looks at x only.

/// x > 0
struct IsPositive {
  template <class T> bool operator()(const T& x) const { return x > T(0); }
  template <class P> P packet(const P& x) const { return Eigen::internal::pcmp_lt(Eigen::internal::pzero(x), x); }
};
/// x < 0
struct IsNegative {
  template <class T> bool operator()(const T& x) const { return x < T(0); }
  template <class P> P packet(const P& x) const { return Eigen::internal::pcmp_lt(x, Eigen::internal::pzero(x)); }
};
/// x == 0
struct IsZero {
  template <class T> bool operator()(const T& x) const { return x == T(0); }
  template <class P> P packet(const P& x) const { return Eigen::internal::pcmp_eq(x, Eigen::internal::pzero(x)); }
};
/// x <= c
template <class T>
struct AtMost {
  T c;
  bool operator()(const T& x) const { return x <= c; }
  template <class P> P packet(const P& x) const { return Eigen::internal::pcmp_le(x, Eigen::internal::pset1<P>(c)); }
};
/// x < c
template <class T>
struct Below {
  T c;
  bool operator()(const T& x) const { return x < c; }
  template <class P> P packet(const P& x) const { return Eigen::internal::pcmp_lt(x, Eigen::internal::pset1<P>(c)); }
};
/// |x| < c
template <class T>
struct AbsBelow {
  T c;
  bool operator()(const T& x) const { return (x < T(0) ? -x : x) < c; }
  template <class P> P packet(const P& x) const {
    return Eigen::internal::pcmp_lt(Eigen::internal::pabs(x), Eigen::internal::pset1<P>(c));
  }
};
/// lo <= x <= hi (false for NaN)
template <class T>
struct InRange {
  T lo, hi;
  bool operator()(const T& x) const { return x >= lo && x <= hi; }
  template <class P> P packet(const P& x) const {
    namespace in = Eigen::internal;
    return in::pand(in::pcmp_le(in::pset1<P>(lo), x), in::pcmp_le(x, in::pset1<P>(hi)));
  }
};
/// a normal, finite number (neither 0, subnormal, inf nor NaN)
template <class T>
struct IsNormal {
  bool operator()(const T& x) const {
    using R = real_t<T>;
    const R v = real_part(x), a = v < R(0) ? -v : v;
    return a >= std::numeric_limits<R>::min() && a <= std::numeric_limits<R>::max();
  }
  template <class P> P packet(const P& x) const {
    namespace in = Eigen::internal;
    const P a = in::pabs(x);
    return in::pand(in::pcmp_le(in::pset1<P>(std::numeric_limits<T>::min()), a),
                    in::pcmp_le(a, in::pset1<P>(std::numeric_limits<T>::max())));
  }
};

template <class Cond, class T>
struct SelectFunctor {
  Cond cond;
  T operator()(const T& x, const T& a, const T& b) const { return cond(x) ? a : b; }
  template <class P>
  P packetOp(const P& x, const P& a, const P& b) const {
    return Eigen::internal::pselect(cond.packet(x), a, b);
  }
};

template <class E>
using ArrayOf = Eigen::Array<typename E::Scalar, Eigen::Dynamic, Eigen::Dynamic>;

// A number becomes a constant expression of x's shape; an expression is passed through by
// reference (the ternary expression then holds expressions by value and plain arrays by reference,
// as every Eigen expression does).
template <class X, class V, std::enable_if_t<!is_eigen_expr<V>, int> = 0>
auto as_operand(const X& x, const V& v) {
  return ArrayOf<X>::Constant(x.rows(), x.cols(), typename X::Scalar(v));
}
template <class X, class V, std::enable_if_t<is_eigen_expr<V>, int> = 0>
const V& as_operand(const X&, const V& v) {
  return v;
}

template <class T, class V>
T value_of(const V& v) {
  if constexpr (is_eigen_expr<V>)
    return v.value();
  else
    return T(v);
}

/// cond(x) ? a : b elementwise, vectorized; a and b are array expressions of x's shape or numbers.
/// On a fixed 1x1 operand (the tape's scalar path) only the chosen branch is evaluated.
template <class Cond, class X, class A, class B>
auto where(const Cond& cond, const X& x, const A& a, const B& b) {
  using T = typename X::Scalar;
  if constexpr (X::SizeAtCompileTime == 1) {
    // a constant expression (held by value in the caller's expression; a plain 1x1 array would be
    // held by reference and dangle)
    return Eigen::Array<T, 1, 1>::Constant(cond(x.value()) ? value_of<T>(a) : value_of<T>(b));
  } else {
    using AV = std::decay_t<decltype(as_operand(x, a))>;
    using BV = std::decay_t<decltype(as_operand(x, b))>;
    return Eigen::CwiseTernaryOp<SelectFunctor<Cond, T>, const X, const AV, const BV>(x, as_operand(x, a), as_operand(x, b),
                                                                                   SelectFunctor<Cond, T>{cond});
  }
}

}  // namespace detail
}  // namespace reparam

namespace Eigen {
namespace internal {
template <class Cond, class T>
struct functor_traits<reparam::detail::SelectFunctor<Cond, T>> {
  enum { Cost = 3, PacketAccess = packet_traits<T>::Vectorizable };
};
template <class T>
struct functor_traits<reparam::detail::SafeExpFunctor<T>> {
  enum { Cost = functor_traits<scalar_exp_op<T>>::Cost + 4, PacketAccess = packet_traits<T>::HasExp };
};
template <class T>
struct functor_traits<reparam::detail::SafeLogFunctor<T>> {
  enum { Cost = functor_traits<scalar_log_op<T>>::Cost + 4, PacketAccess = packet_traits<T>::HasLog };
};
template <class T>
struct functor_traits<reparam::detail::Log1pFunctor<T>> {
  enum { Cost = functor_traits<scalar_log_op<T>>::Cost + 8, PacketAccess = packet_traits<T>::HasLog && packet_traits<T>::HasDiv };
};
template <class T>
struct functor_traits<reparam::detail::Expm1Functor<T>> {
  enum {
    Cost = functor_traits<scalar_exp_op<T>>::Cost + functor_traits<scalar_log_op<T>>::Cost + 8,
    PacketAccess = packet_traits<T>::HasExp && packet_traits<T>::HasLog && packet_traits<T>::HasDiv
  };
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
