#pragma once
/// \file generator.hpp  `Rng`, the library's generator, and how any other uniform random bit
/// generator is read (`detail::next_word`).
///
///     reparam::Rng rng(42);                   // seeded; same draws on every platform
///     reparam::Rng worker = rng.split();      // an independent stream for another thread
///     reparam::Rng stream7(42, 7);            // stream 7 of seed 42 (7 jumps of 2^128 steps)

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include <reparam/random/detail/jump_table.hpp>

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

  /// Seeds the generator; `stream` k gives the sequence jumped ahead k * 2^128 steps per lane
  /// (at most 64 jumps for any k).
  explicit Rng(std::uint64_t seed = default_seed, std::uint64_t stream = 0) { reseed(seed, stream); }

  void reseed(std::uint64_t seed, std::uint64_t stream = 0) {
    std::uint64_t sm = seed;
    for (int l = 0; l < lanes; ++l)
      for (int j = 0; j < 4; ++j) s_[j][l] = splitmix64(sm);
    // stream k = k jumps of 2^128 steps, taken as popcount(k) jumps by 2^(128+i) (a table of
    // precomputed jump polynomials), so any stream costs at most 64 jumps.
    for (int i = 0; i < 64; ++i)
      if ((stream >> i) & 1) jump_by(detail::jump_table[i]);
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
      // Vectors as wide as the registers: a 64-byte vector type on 32-byte registers went
      // through the stack every step (6 cycles per float uniform on a Zen 3 with AVX2).
#if defined(__AVX512F__)
      i = fill_vectors<8>(out, n, i);
#elif defined(__AVX2__)
      i = fill_vectors<4>(out, n, i);
#else
      i = fill_vectors<2>(out, n, i);
#endif
#else
      for (; i + lanes <= n; i += lanes) step(out + i);
#endif
    }
    while (i < n) out[i++] = (*this)();
  }

  /// Advances every lane by 2^128 steps (the xoshiro256 jump polynomial); drops buffered words.
  void jump() noexcept { jump_by(detail::jump_table[0]); }

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

  // Applies the jump polynomial J (bit b of J = coefficient of x^b) to every lane: the state
  // becomes J(M) s, M the one-step transition.
  void jump_by(const std::uint64_t (&poly)[4]) noexcept {
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

#if defined(__GNUC__) || defined(__clang__)
  /// Words [i, n) of `fill`, whole steps only (returns where it stopped): the arithmetic of
  /// `advance` on vector registers (GCC/Clang vector extensions), the 8 lanes as 8 / W vectors of
  /// W lanes, so the same words in the same order.
  template <int W>
  std::size_t fill_vectors(std::uint64_t* out, std::size_t n, std::size_t i) noexcept {
    typedef std::uint64_t V __attribute__((vector_size(8 * W)));
    constexpr int parts = lanes / W;
    V s0[parts], s1[parts], s2[parts], s3[parts];
    for (int h = 0; h < parts; ++h) {
      std::memcpy(&s0[h], s_[0] + h * W, 8 * W);
      std::memcpy(&s1[h], s_[1] + h * W, 8 * W);
      std::memcpy(&s2[h], s_[2] + h * W, 8 * W);
      std::memcpy(&s3[h], s_[3] + h * W, 8 * W);
    }
    for (std::size_t steps = (n - i) / lanes; steps > 0; --steps, i += lanes)
      for (int h = 0; h < parts; ++h) {
        const V a = s0[h] + s3[h];
        const V r = ((a << 23) | (a >> 41)) + s0[h];
        std::memcpy(out + i + h * W, &r, 8 * W);
        const V t = s1[h] << 17;
        s2[h] ^= s0[h];
        s3[h] ^= s1[h];
        s1[h] ^= s2[h];
        s0[h] ^= s3[h];
        s2[h] ^= t;
        s3[h] = (s3[h] << 45) | (s3[h] >> 19);
      }
    for (int h = 0; h < parts; ++h) {
      std::memcpy(s_[0] + h * W, &s0[h], 8 * W);
      std::memcpy(s_[1] + h * W, &s1[h], 8 * W);
      std::memcpy(s_[2] + h * W, &s2[h], 8 * W);
      std::memcpy(s_[3] + h * W, &s3[h], 8 * W);
    }
    return i;
  }
#endif

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

}  // namespace detail
}  // namespace reparam
