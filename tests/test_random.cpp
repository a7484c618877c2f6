// Rng (xoshiro256++ in 8 lanes) against a scalar reference written from the paper, streams,
// the uniform and normal samplers, and the ziggurat tables.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "support.hpp"

using namespace reparam;

namespace {

// Scalar xoshiro256++ exactly as Blackman & Vigna publish it, seeded like one lane of Rng.
struct Xoshiro {
  std::uint64_t s[4];
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t next() {
    const std::uint64_t result = rotl(s[0] + s[3], 23) + s[0];
    const std::uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }
  void jump() {
    static const std::uint64_t J[] = {0x180ec6d33cfd0aba, 0xd5a61266f0c9392c, 0xa9582618e03fc9aa, 0x39abdc4529b1661c};
    std::uint64_t a[4] = {0, 0, 0, 0};
    for (std::uint64_t w : J)
      for (int b = 0; b < 64; ++b) {
        if (w & (std::uint64_t{1} << b))
          for (int j = 0; j < 4; ++j) a[j] ^= s[j];
        next();
      }
    for (int j = 0; j < 4; ++j) s[j] = a[j];
  }
};

std::vector<Xoshiro> reference_lanes(std::uint64_t seed) {
  std::uint64_t x = seed;
  auto splitmix = [&x] {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  std::vector<Xoshiro> lanes(8);
  for (auto& l : lanes)
    for (auto& w : l.s) w = splitmix();
  return lanes;
}

// A generator that replays given words (to reach the extremes of the samplers).
struct Replay {
  using result_type = std::uint64_t;
  std::vector<std::uint64_t> words;
  std::size_t i = 0;
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return ~std::uint64_t{0}; }
  result_type operator()() { return words[i++ % words.size()]; }
};


}  // namespace

TEST_CASE("Rng is xoshiro256++ in 8 lanes, seeded by SplitMix64", "[random]") {
  static_assert(detail::is_urbg<Rng>::value, "Rng must be a uniform random bit generator");
  static_assert(Rng::min() == 0 && Rng::max() == ~std::uint64_t{0}, "64-bit words");
  for (std::uint64_t seed : {0ull, 1ull, 42ull, 0xdeadbeefcafef00dull}) {
    Rng rng(seed);
    auto ref = reference_lanes(seed);
    for (int step = 0; step < 50; ++step)
      for (int l = 0; l < 8; ++l) REQUIRE(rng() == ref[std::size_t(l)].next());
  }
}

TEST_CASE("Rng::fill gives the words of repeated calls, from any position", "[random]") {
  for (std::size_t offset : {0u, 3u, 8u, 13u}) {
    for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 64u, 1001u}) {
      Rng a(7), b(7);
      for (std::size_t k = 0; k < offset; ++k) REQUIRE(a() == b());
      std::vector<std::uint64_t> w(n);
      a.fill(w.data(), n);
      for (std::size_t k = 0; k < n; ++k) REQUIRE(w[k] == b());
      REQUIRE(a() == b());  // and the stream continues in step
    }
  }
}

TEST_CASE("jump, split and stream give the reference jump of every lane", "[random]") {
  Rng a(11);
  a.jump();
  auto ref = reference_lanes(11);
  for (auto& l : ref) l.jump();
  for (int step = 0; step < 10; ++step)
    for (int l = 0; l < 8; ++l) REQUIRE(a() == ref[std::size_t(l)].next());

  Rng parent(5);
  Rng child = parent.split();
  REQUIRE(child == Rng(5));        // the child continues the parent's stream
  REQUIRE(parent == Rng(5, 1));    // the parent moved one jump ahead
  Rng second = parent.split();
  REQUIRE(second == Rng(5, 1));
  REQUIRE(second != child);
  // Streams look unrelated: no equal words among the first thousands.
  std::vector<std::uint64_t> x(4096), y(4096);
  child.fill(x.data(), x.size());
  second.fill(y.data(), y.size());
  std::sort(x.begin(), x.end());
  for (std::uint64_t v : y) REQUIRE_FALSE(std::binary_search(x.begin(), x.end(), v));
}

TEST_CASE("same seed gives the same draws, different seeds different draws", "[random]") {
  Rng a(3), b(3), c(4);
  const Matrix<double> x = normal_matrix(a, 7, 9), y = normal_matrix(b, 7, 9), z = normal_matrix(c, 7, 9);
  REQUIRE(x == y);
  REQUIRE(x != z);
  const Matrix<float> f = uniform_matrix<float>(a, 3, 5), g = uniform_matrix<float>(b, 3, 5);
  REQUIRE(f == g);
}

TEST_CASE("any uniform random bit generator works, through its words", "[random]") {
  // A 64-bit std engine gives one word per call.
  std::mt19937_64 m64(9);
  std::mt19937_64 copy(9);
  REQUIRE(detail::next_word(m64) == copy());
  // A 32-bit engine: two calls, low half first.
  std::mt19937 m32(9), c32(9);
  const std::uint64_t lo = c32(), hi = c32();
  REQUIRE(detail::next_word(m32) == (lo | (hi << 32)));
  // minstd_rand's range [1, 2^31 - 2] is not a power of two: 30-bit pieces, out-of-range rejected.
  std::minstd_rand ms(3), cm(3);
  std::uint64_t want = 0;
  int have = 0;
  while (have < 64) {
    std::uint64_t v;
    do v = cm() - 1;
    while (v >= (std::uint64_t{1} << 30));
    want |= v << have;
    have += 30;
  }
  REQUIRE(detail::next_word(ms) == want);
  // Samplers run on them and agree with Rng fed the same words.
  Replay r1{{1, 2, 3, 0xffffffffffffffffull, 0x8000000000000000ull, 12345678901234ull}};
  Replay r2 = r1;
  std::vector<double> a(6), b(6);
  detail::fill_normal(r1, a.data(), 6);
  for (double& v : b) v = normal<double>(r2);
  // (one draw at a time is the same algorithm with blocks of one)
  Replay r3{{1, 2, 3, 0xffffffffffffffffull, 0x8000000000000000ull, 12345678901234ull}};
  std::vector<double> c(6);
  for (double& v : c) detail::fill_normal(r3, &v, 1);
  REQUIRE(b == c);
  std::mt19937 mt(1);
  const Matrix<float> u = uniform_matrix<float>(mt, 100, 10);
  REQUIRE(u.minCoeff() > 0.0f);
  REQUIRE(u.maxCoeff() < 1.0f);
}

TEST_CASE("uniforms lie strictly inside (0, 1), also for the extreme words", "[random]") {
  Replay lo{{0}}, hi{{~std::uint64_t{0}}};
  REQUIRE(uniform<double>(lo) == std::ldexp(1.0, -53));
  REQUIRE(uniform<double>(hi) == 1.0 - std::ldexp(1.0, -53));
  REQUIRE(uniform<float>(lo) == std::ldexp(1.0f, -24));
  REQUIRE(uniform<float>(hi) == 1.0f - std::ldexp(1.0f, -24));
  REQUIRE(detail::unit_lo<double>() == std::ldexp(1.0, -53));
  REQUIRE(detail::unit_hi<float>() == 1.0f - std::ldexp(1.0f, -24));
  // Gumbel and logistic noise from them are finite.
  for (double u : {uniform<double>(lo), uniform<double>(hi)}) {
    REQUIRE(std::isfinite(-std::log(-std::log(u))));
    REQUIRE(std::isfinite(std::log(u / (1 - u))));
  }
  Rng rng(1);
  const Matrix<double> u = uniform_matrix(rng, 300, 300);
  REQUIRE(u.minCoeff() > 0.0);
  REQUIRE(u.maxCoeff() < 1.0);
  REQUIRE(std::abs(u.mean() - 0.5) < 5 * std::sqrt(1.0 / 12 / double(u.size())));
}

TEST_CASE("the ziggurat tables are the layers of N(0, 1)", "[random]") {
  // Recompute them with this platform's exp/log: they agree with the frozen literals.
  const double R = detail::zig::R, V = 0.0049286732339746519;
  auto f = [](double x) { return std::exp(-0.5 * x * x); };
  double x = R;
  std::vector<double> xs(256);
  xs[255] = R;
  for (int i = 254; i >= 1; --i) {
    x = std::sqrt(-2.0 * std::log(V / x + f(x)));
    xs[std::size_t(i)] = x;
  }
  for (int i = 1; i < 256; ++i) {
    INFO("layer " << i);
    REQUIRE(std::abs(detail::zig::w52[i] * 0x1.0p52 - xs[std::size_t(i)]) <= 1e-14 * xs[std::size_t(i)]);
    REQUIRE(std::abs(detail::zig::f[i] - f(xs[std::size_t(i)])) <= 1e-14);
    REQUIRE(std::abs(double(detail::zig::w23[i]) * 0x1.0p23 - xs[std::size_t(i)]) <= 1e-7 * xs[std::size_t(i)]);
    // Equal areas: each layer's rectangle x_i (f(x_{i-1}) - f(x_i)) is V (layer 1 reaches f = 1).
    const double top = i == 1 ? 1.0 : f(xs[std::size_t(i - 1)]);
    REQUIRE(std::abs(xs[std::size_t(i)] * (top - f(xs[std::size_t(i)])) - V) < 1e-12);
  }
  // The base strip: rectangle R f(R) plus the tail integral is V.
  const double tail = std::sqrt(M_PI / 2) * std::erfc(R / std::sqrt(2.0));
  REQUIRE(std::abs(R * f(R) + tail - V) < 1e-12);
  REQUIRE(detail::zig::k52[1] == 0);
  // The float layers' pairs, fetched by one 64-bit gather with AVX2: w23's bits low, k23 high.
  for (int i = 0; i < 256; ++i) {
    std::uint32_t wb;
    std::memcpy(&wb, &detail::zig::w23[i], 4);
    INFO("layer " << i);
    REQUIRE(detail::zig::wk23[i] == ((std::uint64_t(detail::zig::k23[i]) << 32) | wb));
  }
}

TEST_CASE("a double uniform is (double(w >> 12) + 1/2) 2^-52 of its word", "[random]") {
  // unit_from_word converts through the exponent of 2^52 (so that its loops vectorize): the same
  // value as the plain conversion, for the extreme words and random ones
  Rng rng(12);
  std::vector<std::uint64_t> w(4000);
  rng.fill(w.data(), w.size());
  w.insert(w.end(), {0ull, ~0ull, 0xfffull, 0x1000ull, 0x8000000000000000ull, 0x7fffffffffffffffull});
  for (std::uint64_t x : w) {
    const double expected = (static_cast<double>(x >> 12) + 0.5) * 0x1.0p-52;
    REQUIRE(detail::unit_from_word(x) == expected);
  }
  REQUIRE(detail::unit_from_word(0) == 0x1.0p-53);
  REQUIRE(detail::unit_from_word(~0ull) == 1.0 - 0x1.0p-53);
}

TEST_CASE("split_halves gives each word's low half, then its high half", "[random]") {
  const std::uint64_t w[3] = {0x0123456789abcdefull, 0xfedcba9876543210ull, 0x00000001ffffffffull};
  std::uint32_t h[6] = {};
  detail::split_halves(w, h, 3);
  const std::uint32_t expected[6] = {0x89abcdefu, 0x01234567u, 0x76543210u, 0xfedcba98u, 0xffffffffu, 0x00000001u};
  for (int j = 0; j < 6; ++j) CHECK(h[j] == expected[j]);
  std::uint32_t untouched[2] = {7u, 7u};
  detail::split_halves(w, untouched, 0);
  CHECK((untouched[0] == 7u && untouched[1] == 7u));
}

TEST_CASE("normal draws: moments and Kolmogorov-Smirnov against the normal cdf", "[random][stats]") {
  for (std::uint64_t seed : {1ull, 2ull}) {
    Rng rng(seed);
    const std::size_t n = 200000;
    std::vector<double> x(n);
    detail::fill_normal(rng, x.data(), n);
    double m = 0, v = 0, s3 = 0, s4 = 0;
    for (double e : x) m += e;
    m /= double(n);
    for (double e : x) {
      v += (e - m) * (e - m);
      s3 += std::pow(e - m, 3);
      s4 += std::pow(e - m, 4);
    }
    v /= double(n);
    s3 /= double(n);
    s4 /= double(n);
    const double se = 1 / std::sqrt(double(n));
    CHECK(std::abs(m) < 5 * se);
    CHECK(std::abs(v - 1) < 5 * std::sqrt(2.0) * se);
    CHECK(std::abs(s3) < 5 * std::sqrt(15.0) * se);
    CHECK(std::abs(s4 - 3) < 5 * std::sqrt(96.0) * se);
    CHECK(test::ks_statistic(x, [](double t) { return detail::ndtr(t); }) < test::ks_critical(n));
    // The tails beyond the ziggurat's base (|x| > R) have the right mass.
    const double beyond = double(std::count_if(x.begin(), x.end(), [](double e) { return std::abs(e) > detail::zig::R; }));
    const double p = std::erfc(detail::zig::R / std::sqrt(2.0));
    CHECK(std::abs(beyond / double(n) - p) < 5 * std::sqrt(p / double(n)));

    std::vector<float> xf(n);
    detail::fill_normal(rng, xf.data(), n);
    CHECK(test::ks_statistic(std::vector<double>(xf.begin(), xf.end()), [](double t) { return detail::ndtr(t); }) < test::ks_critical(n));
  }
}

TEST_CASE("the samplers' float log is within 1 ulp of std::log", "[random]") {
  // every float in [2^-24, 32) at a stride, plus the ends of the uniforms' range
  float worst = 0;
  auto check = [&worst](float x) {
    const double exact = std::log(double(x));
    const float got = detail::log_positive(x);
    const float ulp = std::nextafter(std::abs(float(exact)), 1e30f) - std::abs(float(exact));
    const float err = float(std::abs(double(got) - exact)) / (ulp > 0 ? ulp : 1e-45f);
    worst = std::max(worst, err);
  };
  for (float x = std::ldexp(1.0f, -24); x < 32.0f; x = std::nextafter(x, 64.0f) + x * 1e-5f) check(x);
  check(1.0f - std::ldexp(1.0f, -24));
  check(1.0f);
  check(std::ldexp(1.0f, -24));
  INFO("worst error " << worst << " ulp");
  CHECK(worst <= 1.0f);
  // Gumbel noise from it agrees with the double-precision formula.
  Rng rng(4);
  Matrix<float> u = uniform_matrix<float>(rng, 50, 50);
  Matrix<float> g = u;
  detail::gumbel_from_uniform(g.data(), std::size_t(g.size()));
  for (Index i = 0; i < u.size(); ++i)
    CHECK(std::abs(g.data()[i] + std::log(-std::log(double(u.data()[i])))) <= 4e-7 * (1 + std::abs(g.data()[i])));
  // So does Laplace noise (one log of 2 min(u, 1 - u) per element), the clamped extremes and the
  // middle included: within an ulp of the quantile computed in double.
  std::vector<float> lu(u.data(), u.data() + u.size());
  lu.insert(lu.end(), {detail::unit_lo<float>(), detail::unit_hi<float>(), 0.5f, std::nextafter(0.5f, 0.0f),
                       std::nextafter(0.5f, 1.0f), 0.25f, 0.75f});
  std::vector<float> lap = lu;
  detail::laplace_from_uniform(lap.data(), lap.size());
  for (std::size_t i = 0; i < lu.size(); ++i) {
    const double x = lu[i], exact = x < 0.5 ? std::log(2 * x) : -std::log(2 * (1 - x));
    const float ef = float(exact);
    const double ulp = double(std::nextafter(std::abs(ef), 1e30f) - std::abs(ef));
    INFO("u = " << x);
    CHECK(std::abs(double(lap[i]) - exact) <= (exact == 0 ? 0.0 : ulp));
    CHECK(std::signbit(lap[i]) == (x <= 0.5));  // -0 at the middle, as -log(2 (1 - u)) gives
  }
}

TEST_CASE("vectorized ziggurat fast paths give the scalar formula's numbers", "[random]") {
  // (This file is also built with -march=native as native.* tests, reaching the AVX2/AVX-512 code.)
  Rng rng(8);
  std::vector<std::uint64_t> w(1000);
  rng.fill(w.data(), w.size());
  std::vector<std::uint32_t> h(2000);
  for (std::size_t j = 0; j < w.size(); ++j) {
    h[2 * j] = std::uint32_t(w[j]);
    h[2 * j + 1] = std::uint32_t(w[j] >> 32);
  }
  for (std::size_t n : {2000u, 1999u, 17u, 5u}) {
    std::vector<float> o(n);
    std::vector<std::uint64_t> bad((n + 63) / 64, 0);
    detail::ziggurat_fast_f(h.data(), o.data(), n, bad.data());
    for (std::size_t j = 0; j < n; ++j) {
      const unsigned l = h[j] & 0xff;
      const std::uint32_t m = h[j] >> 9;
      const float x = float(m) * detail::zig::w23[l];
      REQUIRE(o[j] == ((h[j] >> 8) & 1 ? -x : x));
      REQUIRE(((bad[j / 64] >> (j % 64)) & 1) == (m >= detail::zig::k23[l] ? 1u : 0u));
    }
    std::vector<double> od(n / 2);
    std::vector<std::uint64_t> badd((n / 2 + 63) / 64 + 1, 0);
    detail::ziggurat_fast_d(w.data(), od.data(), n / 2, badd.data());
    for (std::size_t j = 0; j < n / 2; ++j) {
      const unsigned l = unsigned(w[j] & 0xff);
      const std::uint64_t m = w[j] >> 12;
      const double x = double(m) * detail::zig::w52[l];
      REQUIRE(od[j] == ((w[j] >> 8) & 1 ? -x : x));
      REQUIRE(((badd[j / 64] >> (j % 64)) & 1) == (m >= detail::zig::k52[l] ? 1u : 0u));
    }
  }
}
