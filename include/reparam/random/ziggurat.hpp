#pragma once
/// \file ziggurat.hpp  Standard normals by a 256-layer ziggurat (Marsaglia & Tsang), the fast path
/// branch-free over blocks of words (AVX2 / AVX-512 gathers when compiled for them, the same
/// numbers as the portable code), the rare rejections redone in order.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <reparam/detail/ziggurat_tables.hpp>
#include <reparam/random/generator.hpp>
#include <reparam/random/noise.hpp>

namespace reparam {
namespace detail {

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
  // Each layer's w and k as one 64-bit word (zig::wk23): two gathers of four words per eight
  // draws instead of two of eight floats. Gathers are the pass's cost on Zen 3, where this is
  // 25% faster (throwaway loop over 512 draws in L1: 67 -> 50 us per 65,536); the same values.
  const __m256i low8 = _mm256_set1_epi32(0xff);
  const long long* const wk = reinterpret_cast<const long long*>(zig::wk23);
  for (; j + 8 <= n; j += 8) {
    const __m256i hw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + j));
    const __m256i l = _mm256_and_si256(hw, low8);
    const __m256i m = _mm256_srli_epi32(hw, 9);
    // p0 = w0 k0 w1 k1 | w2 k2 w3 k3 and p1 the same for draws 4..7
    const __m256 p0 = _mm256_castsi256_ps(_mm256_i32gather_epi64(wk, _mm256_castsi256_si128(l), 8));
    const __m256 p1 = _mm256_castsi256_ps(_mm256_i32gather_epi64(wk, _mm256_extracti128_si256(l, 1), 8));
    // even and odd floats: w0 w1 w4 w5 | w2 w3 w6 w7 (k likewise), then the 64-bit pairs in order
    const __m256 w = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(p0, p1, 0x88)), 0xd8));
    const __m256i k = _mm256_castpd_si256(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(p0, p1, 0xdd)), 0xd8));
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
/// The vector forms convert m exactly (its bits under the exponent of 2^52, minus 2^52) and
/// multiply once, as the scalar form does.
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
#elif defined(__AVX2__)
  // Four at a time (throwaway loop over a block in L1 on Zen 3: 120 -> 90 us per 65,536).
  const __m256i low8 = _mm256_set1_epi64x(0xff);
  const __m256i expo = _mm256_set1_epi64x(0x4330000000000000ll);
  const __m256d two52 = _mm256_set1_pd(0x1.0p52);
  for (; j + 4 <= n; j += 4) {
    const __m256i ww = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j));
    const __m256i l = _mm256_and_si256(ww, low8);
    const __m256i m = _mm256_srli_epi64(ww, 12);
    const __m256d md = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(m, expo)), two52);  // exact: m < 2^52
    const __m256d x = _mm256_mul_pd(md, _mm256_i64gather_pd(zig::w52, l, 8));
    const __m256i k = _mm256_i64gather_epi64(reinterpret_cast<const long long*>(zig::k52), l, 8);
    const __m256i sign = _mm256_slli_epi64(_mm256_srli_epi64(ww, 8), 63);
    _mm256_storeu_pd(o + j, _mm256_castsi256_pd(_mm256_xor_si256(_mm256_castpd_si256(x), sign)));
    // m, k < 2^52: signed comparison; bad where !(k > m)
    const unsigned ok = static_cast<unsigned>(_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(k, m))));
    bad[j / 64] |= std::uint64_t{~ok & 0xfu} << (j % 64);
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
void fill_normal_real(G& g, T* out, std::size_t n) {
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
      split_halves(w, h, nw);  // low half first
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

/// n standard normals (see fill_normal_real), for any scalar (duals: constants).
template <class T, class G>
void fill_normal(G& g, T* out, std::size_t n) {
  on_real_values(out, n, false, [&](auto* b, std::size_t m) { fill_normal_real(g, b, m); });
}

}  // namespace detail
}  // namespace reparam
