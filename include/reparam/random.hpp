#pragma once
/// \file random.hpp  `Rng` and the samplers built on it: uniforms on the open interval (0, 1),
/// standard normals (a ziggurat), Gumbel and logistic noise.
///
///     reparam::Rng rng(42);                   // seeded; same draws on every platform
///     reparam::Rng worker = rng.split();      // an independent stream for another thread
///     double u = reparam::uniform<double>(rng);
///
/// Every function taking a generator accepts `Rng` or any `std::uniform_random_bit_generator`
/// (e.g. `std::mt19937_64`); the draws then come from that generator's words, with the same
/// algorithms (no `std::*_distribution` anywhere, so no implementation-defined results).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <reparam/detail/ziggurat_tables.hpp>
#include <reparam/errors.hpp>
#include <reparam/matrix.hpp>

namespace reparam {

/// The default seed (any value works; this one is used when none is given).
inline constexpr std::uint64_t default_seed = 0x5eed5eed2017ull;

/// xoshiro256++ (Blackman & Vigna 2019) run as 8 interleaved lanes, so that bulk draws vectorize.
/// Lane l is seeded from SplitMix64(seed) words 4l..4l+3; the output stream is step-by-step the
/// 8 lanes in order. State: 256 bytes plus an 8-word buffer.
///
/// Models `std::uniform_random_bit_generator` (64-bit words). `fill(out, n)` gives exactly the
/// words of n calls. Streams for threads: `split()` (or `jump()`, or the `stream` argument of the
/// constructor) moves every lane 2^128 steps ahead, so streams never overlap in practice.
class Rng {
 public:
  using result_type = std::uint64_t;
  static constexpr int lanes = 8;

  static constexpr result_type min() noexcept { return 0; }
  static constexpr result_type max() noexcept { return std::numeric_limits<result_type>::max(); }

  /// Seeds the generator; `stream` k gives the sequence jumped ahead k * 2^128 steps per lane.
  explicit Rng(std::uint64_t seed = default_seed, std::uint64_t stream = 0) { reseed(seed, stream); }

  void reseed(std::uint64_t seed, std::uint64_t stream = 0) {
    std::uint64_t sm = seed;
    for (int l = 0; l < lanes; ++l)
      for (int j = 0; j < 4; ++j) s_[j][l] = splitmix64(sm);
    for (std::uint64_t k = 0; k < stream; ++k) jump();
    pos_ = lanes;
  }

  /// The next 64-bit word.
  result_type operator()() noexcept {
    if (pos_ == lanes) {
      step(buf_);
      pos_ = 0;
    }
    return buf_[pos_++];
  }

  /// Writes the next n words (the same as n calls of `operator()`).
  void fill(std::uint64_t* out, std::size_t n) noexcept {
    std::size_t i = 0;
    while (i < n && pos_ < lanes) out[i++] = buf_[pos_++];
    if (n - i >= static_cast<std::size_t>(lanes)) {
#if defined(__GNUC__) || defined(__clang__)
      // The same arithmetic on vector registers (GCC/Clang vector extensions): 8 lanes at once.
      typedef std::uint64_t v8 __attribute__((vector_size(64)));
      v8 s0, s1, s2, s3;
      std::memcpy(&s0, s_[0], 64);
      std::memcpy(&s1, s_[1], 64);
      std::memcpy(&s2, s_[2], 64);
      std::memcpy(&s3, s_[3], 64);
      for (; i + lanes <= n; i += lanes) {
        const v8 a = s0 + s3;
        const v8 r = ((a << 23) | (a >> 41)) + s0;
        std::memcpy(out + i, &r, 64);
        const v8 t = s1 << 17;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = (s3 << 45) | (s3 >> 19);
      }
      std::memcpy(s_[0], &s0, 64);
      std::memcpy(s_[1], &s1, 64);
      std::memcpy(s_[2], &s2, 64);
      std::memcpy(s_[3], &s3, 64);
#else
      for (; i + lanes <= n; i += lanes) step(out + i);
#endif
    }
    while (i < n) out[i++] = (*this)();
  }

  /// Advances every lane by 2^128 steps (the xoshiro256 jump polynomial); drops buffered words.
  void jump() noexcept {
    static constexpr std::uint64_t poly[4] = {0x180ec6d33cfd0abaull, 0xd5a61266f0c9392cull, 0xa9582618e03fc9aaull,
                                              0x39abdc4529b1661cull};
    std::uint64_t acc[4][lanes] = {};
    std::uint64_t scratch[lanes];
    for (std::uint64_t word : poly)
      for (int b = 0; b < 64; ++b) {
        if (word & (std::uint64_t{1} << b))
          for (int j = 0; j < 4; ++j)
            for (int l = 0; l < lanes; ++l) acc[j][l] ^= s_[j][l];
        step(scratch);
      }
    std::memcpy(s_, acc, sizeof s_);
    pos_ = lanes;
  }

  /// A generator for another thread: a copy of this one, after which this one jumps ahead 2^128
  /// steps. Calling it repeatedly gives non-overlapping streams.
  Rng split() noexcept {
    Rng child = *this;
    jump();
    return child;
  }

  friend bool operator==(const Rng& a, const Rng& b) noexcept {
    if (std::memcmp(a.s_, b.s_, sizeof a.s_) != 0 || a.pos_ != b.pos_) return false;
    for (unsigned i = a.pos_; i < lanes; ++i)
      if (a.buf_[i] != b.buf_[i]) return false;
    return true;
  }
  friend bool operator!=(const Rng& a, const Rng& b) noexcept { return !(a == b); }

 private:
  static std::uint64_t splitmix64(std::uint64_t& x) noexcept {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }

  // One step of all lanes; loops over lanes so that compilers vectorize them.
  static void advance(std::uint64_t* s0, std::uint64_t* s1, std::uint64_t* s2, std::uint64_t* s3,
                      std::uint64_t* out) noexcept {
    for (int l = 0; l < lanes; ++l) {
      out[l] = rotl(s0[l] + s3[l], 23) + s0[l];
      const std::uint64_t t = s1[l] << 17;
      s2[l] ^= s0[l];
      s3[l] ^= s1[l];
      s1[l] ^= s2[l];
      s0[l] ^= s3[l];
      s2[l] ^= t;
      s3[l] = rotl(s3[l], 45);
    }
  }
  void step(std::uint64_t* out) noexcept { advance(s_[0], s_[1], s_[2], s_[3], out); }

  alignas(64) std::uint64_t s_[4][lanes];
  std::uint64_t buf_[lanes] = {};
  unsigned pos_ = lanes;
};

namespace detail {

template <class G>
using urbg_result_t = typename std::remove_reference_t<G>::result_type;

/// Concept-like check for a uniform random bit generator (C++17, so no concepts).
template <class G, class = void>
struct is_urbg : std::false_type {};
template <class G>
struct is_urbg<G, std::void_t<decltype(G::min()), decltype(G::max()), decltype(std::declval<G&>()())>>
    : std::bool_constant<std::is_unsigned<urbg_result_t<G>>::value> {};

/// The next 64 random bits from any uniform random bit generator, assembled without
/// implementation-defined steps: full 64-bit generators give a word per call; narrower ones whose
/// range is a power of two are concatenated; other ranges use the largest power-of-two part of
/// the range (draws above it are rejected).
template <class G>
std::uint64_t next_word(G& g) {
  static_assert(is_urbg<G>::value, "reparam: the generator must model std::uniform_random_bit_generator");
  using R = urbg_result_t<G>;
  constexpr std::uint64_t lo = static_cast<std::uint64_t>(G::min());
  constexpr std::uint64_t range = static_cast<std::uint64_t>(G::max()) - lo;  // inclusive span - 1
  if constexpr (range == std::numeric_limits<std::uint64_t>::max()) {
    return static_cast<std::uint64_t>(static_cast<R>(g()));
  } else {
    // bits: the largest k with 2^k - 1 <= range
    constexpr int bits = [] {
      int k = 0;
      while (k < 63 && ((std::uint64_t{1} << (k + 1)) - 1) <= range) ++k;
      return k;
    }();
    static_assert(bits >= 1, "reparam: the generator's range is too small");
    constexpr std::uint64_t limit = std::uint64_t{1} << bits;
    std::uint64_t out = 0;
    int have = 0;
    while (have < 64) {
      std::uint64_t v;
      do v = static_cast<std::uint64_t>(g()) - lo;
      while (v >= limit);
      out |= v << have;  // shifts past 63 bits are not reached: have < 64
      have += bits;
    }
    return out;
  }
}

/// n words into out: `Rng::fill` for Rng, else one `next_word` at a time.
template <class G>
void fill_words(G& g, std::uint64_t* out, std::size_t n) {
  if constexpr (std::is_same<std::remove_cv_t<G>, Rng>::value) {
    g.fill(out, n);
  } else {
    for (std::size_t i = 0; i < n; ++i) out[i] = next_word(g);
  }
}

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
  return (static_cast<double>(w >> 12) + 0.5) * 0x1.0p-52;
}
inline float unit_from_half(std::uint32_t h) noexcept {
  return (static_cast<float>(h >> 9) + 0.5f) * 0x1.0p-23f;
}

inline constexpr std::size_t block = 256;  // words per block of bulk sampling

/// n uniforms in (0, 1). Doubles take a word each; floats take the low then the high half of
/// each word.
template <class T, class G>
void fill_uniform(G& g, T* out, std::size_t n) {
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
      for (std::size_t j = 0; j < nw; ++j) {
        h[2 * j] = static_cast<std::uint32_t>(w[j]);
        h[2 * j + 1] = static_cast<std::uint32_t>(w[j] >> 32);
      }
      for (std::size_t j = 0; j < nf; ++j) out[i + j] = unit_from_half(h[j]);
    }
  }
}

/// A uniform double in [0, 1) with 53 bits, for the slow paths of the ziggurat.
template <class G>
double unit53(G& g) {
  return static_cast<double>(next_word(g) >> 11) * 0x1.0p-53;
}

/// The ziggurat's rare path for a draw that failed the inner-rectangle test: the tail beyond R
/// (layer 0) or the wedge test of layer i. Returns true with x set when accepted.
template <class G>
bool ziggurat_slow(G& g, unsigned i, bool negative, double& x) {
  using std::exp;
  using std::log1p;
  if (i == 0) {  // tail: Marsaglia's exponential rejection
    for (;;) {
      const double xx = -zig::inv_R * log1p(-unit53(g));
      const double yy = -log1p(-unit53(g));
      if (yy + yy > xx * xx) {
        x = negative ? -(zig::R + xx) : zig::R + xx;
        return true;
      }
    }
  }
  return (zig::f[i - 1] - zig::f[i]) * unit53(g) + zig::f[i] < exp(-0.5 * x * x);
}

/// One standard normal by the scalar ziggurat (double: layer = low 8 bits, sign = bit 8,
/// magnitude = top 52 bits of a word).
template <class G>
double normal_one(G& g) {
  for (;;) {
    const std::uint64_t w = next_word(g);
    const unsigned i = static_cast<unsigned>(w & 0xff);
    const bool neg = (w >> 8) & 1;
    const std::uint64_t m = w >> 12;
    double x = static_cast<double>(m) * zig::w52[i];
    if (neg) x = -x;
    if (m < zig::k52[i]) return x;
    if (ziggurat_slow(g, i, neg, x)) return x;
  }
}

/// One standard normal in float (the float ziggurat on a 32-bit half: layer = low 8 bits,
/// sign = bit 8, magnitude = top 23 bits; slow paths in double).
template <class G>
float normal_one_f(G& g, std::uint32_t h) {
  for (;;) {
    const unsigned i = h & 0xff;
    const bool neg = (h >> 8) & 1;
    const std::uint32_t m = h >> 9;
    float xf = static_cast<float>(m) * zig::w23[i];
    if (neg) xf = -xf;
    if (m < zig::k23[i]) return xf;
    double x = xf;
    if (ziggurat_slow(g, i, neg, x)) return static_cast<float>(x);
    h = static_cast<std::uint32_t>(next_word(g));
  }
}

/// Index of the lowest set bit of m != 0.
inline unsigned lowest_bit(std::uint64_t m) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  return static_cast<unsigned>(__builtin_ctzll(m));
#else
  unsigned j = 0;
  for (; !(m & 1); m >>= 1) ++j;
  return j;
#endif
}

/// Fast path of the float ziggurat over n 32-bit halves: writes x = +-m * w23[layer] and sets
/// bit j of `bad` (64-bit words) where the inner-rectangle test failed. The vector forms compute
/// the same roundings as the scalar form (a conversion of m < 2^23, which is exact, then one
/// multiplication), so every instruction set gives the same numbers.
inline void ziggurat_fast_f(const std::uint32_t* h, float* o, std::size_t n, std::uint64_t* bad) {
  std::size_t j = 0;
#if defined(__AVX512F__)
  const __m512i low8 = _mm512_set1_epi32(0xff);
  for (; j + 16 <= n; j += 16) {
    const __m512i hw = _mm512_loadu_si512(static_cast<const void*>(h + j));
    const __m512i l = _mm512_and_si512(hw, low8);
    const __m512i m = _mm512_srli_epi32(hw, 9);
    const __m512 w = _mm512_i32gather_ps(l, zig::w23, 4);
    const __m512i k = _mm512_i32gather_epi32(l, reinterpret_cast<const int*>(zig::k23), 4);
    const __m512 x = _mm512_mul_ps(_mm512_cvtepi32_ps(m), w);
    const __m512i sign = _mm512_slli_epi32(_mm512_srli_epi32(hw, 8), 31);
    _mm512_storeu_ps(o + j, _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), sign)));
    const std::uint64_t mask = _mm512_cmpge_epu32_mask(m, k);
    bad[j / 64] |= mask << (j % 64);
  }
#elif defined(__AVX2__)
  const __m256i low8 = _mm256_set1_epi32(0xff);
  for (; j + 8 <= n; j += 8) {
    const __m256i hw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + j));
    const __m256i l = _mm256_and_si256(hw, low8);
    const __m256i m = _mm256_srli_epi32(hw, 9);
    const __m256 w = _mm256_i32gather_ps(zig::w23, l, 4);
    const __m256i k = _mm256_i32gather_epi32(reinterpret_cast<const int*>(zig::k23), l, 4);
    const __m256 x = _mm256_mul_ps(_mm256_cvtepi32_ps(m), w);
    const __m256i sign = _mm256_slli_epi32(_mm256_srli_epi32(hw, 8), 31);
    _mm256_storeu_ps(o + j, _mm256_castsi256_ps(_mm256_xor_si256(_mm256_castps_si256(x), sign)));
    // m, k < 2^31: signed comparison; bad where !(k > m)
    const std::uint64_t ok = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(k, m))));
    bad[j / 64] |= (~ok & 0xffu) << (j % 64);
  }
#endif
  for (; j < n; ++j) {
    const std::uint32_t hw = h[j];
    const unsigned l = hw & 0xff;
    const std::uint32_t m = hw >> 9;
    float x = static_cast<float>(static_cast<std::int32_t>(m)) * zig::w23[l];
    std::uint32_t xb;
    std::memcpy(&xb, &x, 4);
    xb ^= (hw >> 8 & 1u) << 31;
    std::memcpy(&x, &xb, 4);
    o[j] = x;
    bad[j / 64] |= std::uint64_t{m >= zig::k23[l]} << (j % 64);
  }
}

/// The same for double over n words (layer = low 8 bits, sign = bit 8, magnitude = top 52 bits).
inline void ziggurat_fast_d(const std::uint64_t* w, double* o, std::size_t n, std::uint64_t* bad) {
  std::size_t j = 0;
#if defined(__AVX512F__)
  const __m512i low8 = _mm512_set1_epi64(0xff);
  const __m512i expo = _mm512_set1_epi64(0x4330000000000000ll);
  const __m512d two52 = _mm512_set1_pd(0x1.0p52);
  for (; j + 8 <= n; j += 8) {
    const __m512i ww = _mm512_loadu_si512(static_cast<const void*>(w + j));
    const __m512i l = _mm512_and_si512(ww, low8);
    const __m512i m = _mm512_srli_epi64(ww, 12);
    const __m512d md = _mm512_sub_pd(_mm512_castsi512_pd(_mm512_or_si512(m, expo)), two52);  // exact: m < 2^52
    const __m512d x = _mm512_mul_pd(md, _mm512_i64gather_pd(l, zig::w52, 8));
    const __m512i k = _mm512_i64gather_epi64(l, reinterpret_cast<const long long*>(zig::k52), 8);
    const __m512i sign = _mm512_slli_epi64(_mm512_srli_epi64(ww, 8), 63);
    _mm512_storeu_pd(o + j, _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(x), sign)));
    const std::uint64_t mask = _mm512_cmpge_epu64_mask(m, k);
    bad[j / 64] |= mask << (j % 64);
  }
#endif
  for (; j < n; ++j) {
    const std::uint64_t word = w[j];
    const unsigned l = static_cast<unsigned>(word & 0xff);
    const std::uint64_t m = word >> 12;
    std::uint64_t bits = m | 0x4330000000000000ull;  // exact conversion of m < 2^52
    double md;
    std::memcpy(&md, &bits, 8);
    md -= 0x1.0p52;
    double x = md * zig::w52[l];
    std::uint64_t xb;
    std::memcpy(&xb, &x, 8);
    xb ^= (word >> 8 & 1) << 63;
    std::memcpy(&x, &xb, 8);
    o[j] = x;
    bad[j / 64] |= std::uint64_t{m >= zig::k52[l]} << (j % 64);
  }
}

/// n standard normals. Blocks of 256 words: a branch-free pass over the block (the inner
/// rectangles accept 99.3%), then the rejected positions in order, each redone by the scalar
/// ziggurat with further words. The result depends only on the word stream.
template <class T, class G>
void fill_normal(G& g, T* out, std::size_t n) {
  static_assert(std::is_same<T, double>::value || std::is_same<T, float>::value,
                "reparam: sampling needs T = float or double");
  std::uint64_t w[block];
  std::uint64_t bad[2 * block / 64];
  if constexpr (std::is_same<T, double>::value) {
    for (std::size_t i = 0; i < n; i += block) {
      const std::size_t nb = n - i < block ? n - i : block;
      fill_words(g, w, nb);
      double* o = out + i;
      std::memset(bad, 0, sizeof bad);
      ziggurat_fast_d(w, o, nb, bad);
      for (std::size_t b = 0; b < (nb + 63) / 64; ++b)
        for (std::uint64_t mask = bad[b]; mask; mask &= mask - 1) {
          const std::size_t j = b * 64 + lowest_bit(mask);
          const unsigned l = static_cast<unsigned>(w[j] & 0xff);
          double x = o[j];
          o[j] = ziggurat_slow(g, l, (w[j] >> 8) & 1, x) ? x : normal_one(g);
        }
    }
  } else {
    std::uint32_t h[2 * block];
    for (std::size_t i = 0; i < n; i += 2 * block) {
      const std::size_t nf = n - i < 2 * block ? n - i : 2 * block;
      const std::size_t nw = (nf + 1) / 2;
      fill_words(g, w, nw);
      for (std::size_t j = 0; j < nw; ++j) {  // low half first (a copy on little-endian machines)
        h[2 * j] = static_cast<std::uint32_t>(w[j]);
        h[2 * j + 1] = static_cast<std::uint32_t>(w[j] >> 32);
      }
      float* o = out + i;
      std::memset(bad, 0, sizeof bad);
      ziggurat_fast_f(h, o, nf, bad);
      for (std::size_t b = 0; b < (nf + 63) / 64; ++b)
        for (std::uint64_t mask = bad[b]; mask; mask &= mask - 1) {
          const std::size_t j = b * 64 + lowest_bit(mask);
          const unsigned l = h[j] & 0xff;
          double x = o[j];
          o[j] = ziggurat_slow(g, l, (h[j] >> 8) & 1, x) ? static_cast<float>(x)
                                                          : normal_one_f(g, static_cast<std::uint32_t>(next_word(g)));
        }
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
void gumbel_from_uniform(T* e, std::size_t n) {
  if constexpr (std::is_same<T, float>::value) {
    for (std::size_t i = 0; i < n; ++i) e[i] = -log_positive(-log_positive(e[i]));
  } else {
    auto a = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>(e, static_cast<Index>(n));
    a = -(-a.log()).log();
  }
}

/// Logistic noise log(u / (1 - u)) in place over uniforms u in (0, 1) (1 - u is exact for them).
template <class T>
void logistic_from_uniform(T* e, std::size_t n) {
  if constexpr (std::is_same<T, float>::value) {
    for (std::size_t i = 0; i < n; ++i) e[i] = log_positive(e[i] / (1.0f - e[i]));
  } else {
    auto a = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>(e, static_cast<Index>(n));
    a = (a / (T(1) - a)).log();
  }
}

/// The smallest and largest uniforms the generators produce, (1/2) 2^-bits and 1 - (1/2) 2^-bits:
/// uniforms passed in by users are clamped to this range before any log.
template <class T>
constexpr T unit_lo() {
  return T(0.5) / T(std::uint64_t{1} << UnitBits<T>::bits);
}
template <class T>
constexpr T unit_hi() {
  return T(1) - unit_lo<T>();
}

}  // namespace detail

/// One uniform in the open interval (0, 1): (m + 1/2) 2^-52 for double, (m + 1/2) 2^-23 for
/// float, so the extremes are 2^-53 and 1 - 2^-53 (float: 2^-24, 1 - 2^-24).
template <class T = double, class G>
T uniform(G& g) {
  T u;
  detail::fill_uniform(g, &u, 1);
  return u;
}

/// One standard normal draw.
template <class T = double, class G>
T normal(G& g) {
  T x;
  detail::fill_normal(g, &x, 1);
  return x;
}

/// A rows x cols matrix of uniforms in (0, 1).
template <class T = double, class G>
Matrix<T> uniform_matrix(G& g, Index rows, Index cols) {
  Matrix<T> m(rows, cols);
  detail::fill_uniform(g, m.data(), static_cast<std::size_t>(m.size()));
  return m;
}

/// A rows x cols matrix of standard normals.
template <class T = double, class G>
Matrix<T> normal_matrix(G& g, Index rows, Index cols) {
  Matrix<T> m(rows, cols);
  detail::fill_normal(g, m.data(), static_cast<std::size_t>(m.size()));
  return m;
}

}  // namespace reparam
