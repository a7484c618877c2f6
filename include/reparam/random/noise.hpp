#pragma once
/// \file noise.hpp  Base noise for the samplers: uniforms on the open interval (0, 1) from any
/// generator's words, and the in-place transforms to Gumbel, logistic and Laplace noise.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <type_traits>

#include <Eigen/Core>

#include <reparam/detail/math.hpp>
#include <reparam/matrix.hpp>
#include <reparam/random/generator.hpp>

namespace reparam {
namespace detail {

/// Bits of uniform resolution: 52 for double (u = (m + 1/2) 2^-52, m < 2^52), 23 for float
/// (u = (m + 1/2) 2^-23 from a 32-bit half word). Both ends are representable, so u never rounds
/// to 0 or 1.
template <class T>
struct UnitBits;
template <>
struct UnitBits<double> {
  static constexpr int bits = 52;
};
template <>
struct UnitBits<float> {
  static constexpr int bits = 23;
};

inline double unit_from_word(std::uint64_t w) noexcept {
  // (double(w >> 12) + 0.5) 2^-52, the conversion written as the bits of w >> 12 < 2^52 under the
  // exponent of 2^52, minus 2^52 (exact, the same value): a loop of it vectorizes without
  // AVX-512's integer conversions (65,536 double uniforms on Zen 3: 65 -> 36 us with AVX2, 80 ->
  // 60 with SSE2)
  const std::uint64_t bits = (w >> 12) | 0x4330000000000000ull;
  double m;
  std::memcpy(&m, &bits, 8);
  return ((m - 0x1.0p52) + 0.5) * 0x1.0p-52;
}
inline float unit_from_half(std::uint32_t h) noexcept {
  return (static_cast<float>(h >> 9) + 0.5f) * 0x1.0p-23f;
}

inline constexpr std::size_t block = 256;  // words per block of bulk sampling

/// Each of n words as two 32-bit halves, the low one first: h[2j] = w[j] mod 2^32, h[2j + 1] =
/// w[j] >> 32. On a little-endian machine that is the words' own bytes, so a copy (a plain loop
/// was compiled to a shuffle network: 5% of a block of normals on Zen 3).
inline void split_halves(const std::uint64_t* w, std::uint32_t* h, std::size_t n) noexcept {
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  std::memcpy(h, w, n * sizeof(std::uint64_t));
#else
  for (std::size_t j = 0; j < n; ++j) {
    h[2 * j] = static_cast<std::uint32_t>(w[j]);
    h[2 * j + 1] = static_cast<std::uint32_t>(w[j] >> 32);
  }
#endif
}

/// n uniforms in (0, 1). Doubles take a word each; floats take the low then the high half of
/// each word.
template <class T, class G>
void fill_uniform_real(G& g, T* out, std::size_t n) {
  static_assert(std::is_same<T, double>::value || std::is_same<T, float>::value,
                "reparam: sampling needs T = float or double");
  std::uint64_t w[block];
  if constexpr (std::is_same<T, double>::value) {
    for (std::size_t i = 0; i < n; i += block) {
      const std::size_t nb = n - i < block ? n - i : block;
      fill_words(g, w, nb);
      for (std::size_t j = 0; j < nb; ++j) out[i + j] = unit_from_word(w[j]);
    }
  } else {
    for (std::size_t i = 0; i < n; i += 2 * block) {
      const std::size_t nf = n - i < 2 * block ? n - i : 2 * block;
      const std::size_t nw = (nf + 1) / 2;
      fill_words(g, w, nw);
      std::uint32_t h[2 * block];
      split_halves(w, h, nw);
      for (std::size_t j = 0; j < nf; ++j) out[i + j] = unit_from_half(h[j]);
    }
  }
}

/// Natural log of a positive normal float (no zero, subnormal, infinity or NaN: the samplers'
/// uniforms and their logs). Cephes' logf polynomial on a mantissa in [sqrt(1/2), sqrt(2)),
/// within 1 ulp of the true value, written so that loops over it vectorize: with Eigen 3.4 the
/// general log costs several times more, because it handles the special cases.
inline float log_positive(float x) noexcept {
  std::uint32_t b;
  std::memcpy(&b, &x, 4);
  const std::uint32_t off = b - 0x3f3504f3u;  // the bits of sqrt(1/2)
  const float e = static_cast<float>(static_cast<std::int32_t>(off) >> 23);
  const std::uint32_t mb = (off & 0x007fffffu) + 0x3f3504f3u;
  float m;
  std::memcpy(&m, &mb, 4);
  const float f = m - 1.0f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  const float z = f * f;
  float y = f * z * p;
  y += -2.12194440e-4f * e;
  y += -0.5f * z;
  return (f + y) + 0.693359375f * e;
}

/// Gumbel noise -log(-log u) in place over uniforms u in (0, 1).
template <class T>
void gumbel_from_uniform_real(T* e, std::size_t n) {
  if constexpr (std::is_same<T, float>::value) {
    for (std::size_t i = 0; i < n; ++i) e[i] = -log_positive(-log_positive(e[i]));
  } else {
    auto a = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>(e, static_cast<Index>(n));
    a = -safe_log(-safe_log(a));
  }
}

/// Logistic noise log(u / (1 - u)) in place over uniforms u in (0, 1) (1 - u is exact for them).
template <class T>
void logistic_from_uniform_real(T* e, std::size_t n) {
  if constexpr (std::is_same<T, float>::value) {
    for (std::size_t i = 0; i < n; ++i) e[i] = log_positive(e[i] / (1.0f - e[i]));
  } else {
    auto a = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>(e, static_cast<Index>(n));
    a = safe_log(a / (T(1) - a));
  }
}

/// The smallest and largest uniforms the generators produce, (1/2) 2^-bits and 1 - (1/2) 2^-bits:
/// uniforms passed in by users are clamped to this range before any log.
template <class T>
constexpr T unit_lo() {
  using R = real_t<T>;
  return T(R(0.5) / R(std::uint64_t{1} << UnitBits<R>::bits));
}
template <class T>
constexpr T unit_hi() {
  return T(1) - unit_lo<T>();
}

/// Runs `f(ptr, m)` (a generic lambda over real scalars) on the n numbers at e: directly for float
/// and double; for dual scalars on value-only chunks (read from the value parts when `read`),
/// stored back as constants (tangent 0). Chunks of 2 * block keep the block boundaries of the
/// float and double samplers, so a tape of duals draws exactly the numbers its value type draws.
template <class T, class F>
void on_real_values(T* e, std::size_t n, bool read, F&& f) {
  if constexpr (is_dual_scalar<T>::value) {
    using R = real_t<T>;
    R buf[2 * block];
    for (std::size_t i = 0; i < n; i += 2 * block) {
      const std::size_t m = n - i < 2 * block ? n - i : 2 * block;
      if (read)
        for (std::size_t j = 0; j < m; ++j) buf[j] = e[i + j].v;
      f(buf, m);
      for (std::size_t j = 0; j < m; ++j) e[i + j] = T(buf[j]);
    }
  } else {
    f(e, n);
  }
}

/// n uniforms in (0, 1) (see fill_uniform_real), for any scalar (duals: constants).
template <class T, class G>
void fill_uniform(G& g, T* out, std::size_t n) {
  on_real_values(out, n, false, [&](auto* b, std::size_t m) { fill_uniform_real(g, b, m); });
}
/// The in-place maps from uniforms to standard Gumbel, logistic and Laplace noise, for any scalar
/// (duals: on their values, giving constants).
template <class T>
void gumbel_from_uniform(T* e, std::size_t n) {
  on_real_values(e, n, true, [](auto* b, std::size_t m) { gumbel_from_uniform_real(b, m); });
}
template <class T>
void logistic_from_uniform(T* e, std::size_t n) {
  on_real_values(e, n, true, [](auto* b, std::size_t m) { logistic_from_uniform_real(b, m); });
}

/// Laplace noise, the standard Laplace quantile of u in place: log(2u) below 1/2 and
/// -log(2 (1 - u)) above (2u and 1 - u are exact, so the extremes are finite).
/// In float one log per element (the samplers' `log_positive`, within 1 ulp: 2u and 2 (1 - u) are
/// normal floats for every uniform of the generator or of `clamp_unit`) in a loop that vectorizes:
/// 65,536 of them in 44 us instead of 159 through both branches of Eigen's log (AVX2; SSE2: 119
/// instead of 428).
template <class T>
void laplace_from_uniform_real(T* e, std::size_t n) {
  if constexpr (std::is_same<T, float>::value) {
    for (std::size_t i = 0; i < n; ++i) {  // min(u, 1 - u) is u below 1/2 and the exact 1 - u above
      const float u = e[i];
      e[i] = (u < 0.5f ? 1.0f : -1.0f) * log_positive(2.0f * std::min(u, 1.0f - u));
    }
  } else {
    Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> a(e, static_cast<Eigen::Index>(n));
    a = where(Below<T>{T(0.5)}, a, safe_log(T(2) * a), -safe_log(T(2) * (T(1) - a)));  // vectorized, both branches
  }
}
template <class T>
void laplace_from_uniform(T* e, std::size_t n) {
  on_real_values(e, n, true, [](auto* b, std::size_t m) { laplace_from_uniform_real(b, m); });
}

}  // namespace detail
}  // namespace reparam
