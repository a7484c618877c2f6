// Speed of the samplers, forward and backward, in float: Normal, Gumbel, Logistic and Laplace
// rsample and Concrete (gumbel_softmax), each next to its floor (the same arithmetic written by hand in plain
// Eigen, with the same noise generator). bench/torch_dist.py is the PyTorch twin; compare.py
// puts them side by side. Every benchmark first checks that the tape's gradients equal the floor's.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <reparam/reparam.hpp>

namespace {

using reparam::Index;
using M = reparam::Matrix<float>;
using A = Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr Index kRows = 256, kCols = 256;  // 65536 samples per step

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "bench_dist: check failed: %s\n", what);
    std::exit(1);
  }
}

struct LocScale {
  reparam::Parameter<float> loc, scale;
  LocScale()
      : loc(M::Constant(kRows, kCols, 0.25f)), scale(M::Constant(kRows, kCols, 1.5f)) {}
};

// ---- Normal ----------------------------------------------------------------------------------

template <class Dist>
void tape_step(reparam::TapeF& tape, LocScale& p, reparam::Rng& rng) {
  tape.clear();
  const reparam::VarF loc = tape.variable(p.loc), scale = tape.variable(p.scale);
  const reparam::VarF z = Dist(loc, scale).rsample(rng);
  tape.backward(reparam::sum(z));
}

// floor: eps, z = loc + scale * eps, s = sum z; backward dloc += 1, dscale += eps
void normal_floor_step(LocScale& p, A& eps, reparam::Rng& rng, float& s) {
  reparam::detail::fill_normal(rng, eps.data(), static_cast<std::size_t>(eps.size()));
  s = (p.loc.value.array() + p.scale.value.array() * eps).sum();
  p.loc.grad.array() += 1.0f;
  p.scale.grad.array() += eps;
}

// Gumbel, Logistic, Laplace: uniforms through the library's noise transform, then loc + scale e
template <void (*Transform)(float*, std::size_t)>
void uniform_noise_floor_step(LocScale& p, A& e, reparam::Rng& rng, float& s) {
  reparam::detail::fill_uniform(rng, e.data(), static_cast<std::size_t>(e.size()));
  Transform(e.data(), static_cast<std::size_t>(e.size()));
  s = (p.loc.value.array() + p.scale.value.array() * e).sum();
  p.loc.grad.array() += 1.0f;
  p.scale.grad.array() += e;
}
constexpr auto gumbel_floor_step = uniform_noise_floor_step<reparam::detail::gumbel_from_uniform<float>>;
constexpr auto logistic_floor_step = uniform_noise_floor_step<reparam::detail::logistic_from_uniform<float>>;
constexpr auto laplace_floor_step = uniform_noise_floor_step<reparam::detail::laplace_from_uniform<float>>;

template <class Dist, class Floor>
void check_against_floor(Floor floor) {
  LocScale a, b;
  reparam::TapeF tape;
  reparam::Rng r1(3), r2(3);
  tape_step<Dist>(tape, a, r1);
  A buf(kRows, kCols);
  float s;
  floor(b, buf, r2, s);
  require(a.loc.grad.isApprox(b.loc.grad) && a.scale.grad.isApprox(b.scale.grad, 1e-6f), "tape gradients equal the floor's");
}

template <class Dist, class Floor>
void run_tape(benchmark::State& st, Floor floor) {
  check_against_floor<Dist>(floor);
  LocScale p;
  reparam::TapeF tape;
  reparam::Rng rng(1);
  reparam::ValidationScope off(false);  // as a training loop would, after the first steps
  for (auto _ : st) tape_step<Dist>(tape, p, rng);
  st.SetItemsProcessed(st.iterations() * kRows * kCols);
}
template <class Floor>
void run_floor(benchmark::State& st, Floor floor) {
  LocScale p;
  A noise(kRows, kCols);
  reparam::Rng rng(1);
  float s = 0;
  for (auto _ : st) {
    floor(p, noise, rng, s);
    benchmark::DoNotOptimize(s);
  }
  st.SetItemsProcessed(st.iterations() * kRows * kCols);
}

void BM_Normal_Tape(benchmark::State& st) { run_tape<reparam::Normal<float>>(st, normal_floor_step); }
void BM_Normal_Floor(benchmark::State& st) { run_floor(st, normal_floor_step); }
void BM_Gumbel_Tape(benchmark::State& st) { run_tape<reparam::Gumbel<float>>(st, gumbel_floor_step); }
void BM_Gumbel_Floor(benchmark::State& st) { run_floor(st, gumbel_floor_step); }
void BM_Logistic_Tape(benchmark::State& st) { run_tape<reparam::Logistic<float>>(st, logistic_floor_step); }
void BM_Logistic_Floor(benchmark::State& st) { run_floor(st, logistic_floor_step); }
void BM_Laplace_Tape(benchmark::State& st) { run_tape<reparam::Laplace<float>>(st, laplace_floor_step); }
void BM_Laplace_Floor(benchmark::State& st) { run_floor(st, laplace_floor_step); }

// ---- Concrete / gumbel_softmax: loss sum(w * softmax((l + g) / tau)) ---------------------------

struct ConcreteCase {
  Index rows, k;
  reparam::Parameter<float> logits;
  M w;
  ConcreteCase(Index r, Index c) : rows(r), k(c), logits(M::Random(r, c)), w(M::Random(r, c)) {}
};

void concrete_tape_step(reparam::TapeF& tape, ConcreteCase& c, reparam::Rng& rng) {
  tape.clear();
  const reparam::VarF l = tape.variable(c.logits);
  const reparam::VarF y = reparam::gumbel_softmax(l, 0.5f, rng);
  tape.backward(reparam::sum(y * tape.constant(c.w)));
}

// floor: z = l + g; y = softmax(z / tau) per row; backward dl += y (w - <w, y>) / tau
void concrete_floor_step(ConcreteCase& c, A& z, A& y, reparam::Rng& rng, float& s) {
  reparam::detail::fill_uniform(rng, z.data(), static_cast<std::size_t>(z.size()));
  reparam::detail::gumbel_from_uniform(z.data(), static_cast<std::size_t>(z.size()));
  z += c.logits.value.array();
  const float inv = 1.0f / 0.5f;
  s = 0;
  for (Index i = 0; i < c.rows; ++i) {
    const float m = z.row(i).maxCoeff();
    y.row(i) = ((z.row(i) - m) * inv).exp();
    y.row(i) /= y.row(i).sum();
    const float dot = (y.row(i) * c.w.row(i).array()).sum();
    s += dot;
    c.logits.grad.row(i).array() += y.row(i) * (c.w.row(i).array() - dot) * inv;
  }
}

void BM_Concrete_Tape(benchmark::State& st) {
  const Index rows = st.range(0), k = st.range(1);
  {
    ConcreteCase a(rows, k), b(rows, k);
    b.logits.value = a.logits.value;
    b.w = a.w;
    reparam::TapeF tape;
    reparam::Rng r1(5), r2(5);
    concrete_tape_step(tape, a, r1);
    A z(rows, k), y(rows, k);
    float s;
    concrete_floor_step(b, z, y, r2, s);
    require(a.logits.grad.isApprox(b.logits.grad, 1e-4f), "Concrete tape gradients equal the floor's");
  }
  ConcreteCase c(rows, k);
  reparam::TapeF tape;
  reparam::Rng rng(1);
  reparam::ValidationScope off(false);
  for (auto _ : st) concrete_tape_step(tape, c, rng);
  st.SetItemsProcessed(st.iterations() * rows * k);
}
void BM_Concrete_Floor(benchmark::State& st) {
  const Index rows = st.range(0), k = st.range(1);
  ConcreteCase c(rows, k);
  A z(rows, k), y(rows, k);
  reparam::Rng rng(1);
  float s = 0;
  for (auto _ : st) {
    concrete_floor_step(c, z, y, rng, s);
    benchmark::DoNotOptimize(s);
  }
  st.SetItemsProcessed(st.iterations() * rows * k);
}

// ---- the raw generators ------------------------------------------------------------------------

void BM_Rng_NormalFloat(benchmark::State& st) {
  A x(kRows, kCols);
  reparam::Rng rng(1);
  for (auto _ : st) {
    reparam::detail::fill_normal(rng, x.data(), static_cast<std::size_t>(x.size()));
    benchmark::DoNotOptimize(x.data());
  }
  st.SetItemsProcessed(st.iterations() * x.size());
}
void BM_Rng_UniformFloat(benchmark::State& st) {
  A x(kRows, kCols);
  reparam::Rng rng(1);
  for (auto _ : st) {
    reparam::detail::fill_uniform(rng, x.data(), static_cast<std::size_t>(x.size()));
    benchmark::DoNotOptimize(x.data());
  }
  st.SetItemsProcessed(st.iterations() * x.size());
}

}  // namespace

BENCHMARK(BM_Normal_Tape)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Normal_Floor)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Gumbel_Tape)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Gumbel_Floor)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Logistic_Tape)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Logistic_Floor)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Laplace_Tape)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Laplace_Floor)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Concrete_Tape)->Args({6400, 10})->Args({64, 1000})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Concrete_Floor)->Args({6400, 10})->Args({64, 1000})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Rng_NormalFloat)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Rng_UniformFloat)->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
