// Second order against first order: one Hessian-vector product (forward over reverse, a tape of
// Dual<double>) against one gradient (a tape of double) of the same function, on
//  - the heteroscedastic-regression example's network (1-16-16-2, tanh, Normal NLL, 1000 points);
//  - the Gaussian VAE's encoder (784-400-2x20, relu, batch 100: KL to N(0, I) plus a function of
//    an rsample, so that the loss is not quadratic in the samples);
// and one Fisher-vector product and one natural-gradient step (20 conjugate-gradient products) on
// the regression network. The target: a Hessian-vector product costs at most 4 gradients.
// bench/second_order.py runs this and prints the ratios.
//
// Each benchmark checks once, before timing, that the gradient the Hessian-vector product returns
// equals the double tape's; a mismatch aborts.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <benchmark/benchmark.h>

#include <reparam/reparam.hpp>

using namespace reparam;
using Mat = Matrix<double>;

namespace {

Mat random_matrix(Index r, Index c, std::uint64_t seed, double lo = -1, double hi = 1) {
  Mat m(r, c);
  std::uint64_t s = seed;
  for (Index i = 0; i < m.size(); ++i) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    m.data()[i] = lo + (hi - lo) * double(s >> 11) * 0x1.0p-53;
  }
  return m;
}

template <class S>
const Matrix<S>& pick(const Mat& d, const Matrix<Dual<double>>& dd) {
  if constexpr (std::is_same<S, double>::value) return d; else return dd;
}

// ---- the regression network ----
struct Regression {
  Rng rng{1};
  nn::Mlp<double> net{{1, 16, 16, 2}, nn::Activation::tanh, rng};
  Mat x = random_matrix(1000, 1, 3, -4, 4), y = random_matrix(1000, 1, 4, -2, 2);
  Matrix<Dual<double>> xd = x.cast<Dual<double>>(), yd = y.cast<Dual<double>>();
  std::vector<Parameter<double>*> params;
  std::vector<Mat> theta, dir;
  Regression() {
    nn::ParameterList<double> list;
    net.collect(list);
    params = list.pointers();
    for (std::size_t i = 0; i < params.size(); ++i) {
      theta.push_back(params[i]->value);
      dir.push_back(random_matrix(params[i]->rows(), params[i]->cols(), 10 + i));
    }
  }
  template <class Tp, class L>
  auto make(Tp& t, const L& leaves) const {
    using S = typename Tp::Scalar;
    const BasicVar<S> out = net.apply(t.constant(pick<S>(x, xd)), leaves);
    return Normal<S>(slice_cols(out, 0, 1), softplus(slice_cols(out, 1, 1)) + S(1e-3));
  }
  template <class Tp, class L>
  auto loss(Tp& t, const L& leaves) const {
    using S = typename Tp::Scalar;
    return -mean(make(t, leaves).log_prob(t.constant(pick<S>(y, yd))));
  }
};

// ---- the Gaussian VAE's encoder ----
struct Encoder {
  Rng rng{2};
  nn::Mlp<double> net{{784, 400, 40}, nn::Activation::relu, rng};
  Mat x = random_matrix(100, 784, 5, 0, 1).unaryExpr([](double v) { return v > 0.5 ? 1.0 : 0.0; });
  Matrix<Dual<double>> xd = x.cast<Dual<double>>();
  std::vector<Mat> theta, dir;
  Encoder() {
    nn::ParameterList<double> list;
    net.collect(list);
    for (std::size_t i = 0; i < list.size(); ++i) {
      theta.push_back(list[i].value);
      dir.push_back(random_matrix(list[i].rows(), list[i].cols(), 20 + i));
    }
  }
  template <class Tp, class L>
  auto loss(Tp& t, const L& leaves) const {
    using S = typename Tp::Scalar;
    const BasicVar<S> h = net.apply(t.constant(pick<S>(x, xd)), leaves);
    const Normal<S> q(slice_cols(h, 0, 20), exp(slice_cols(h, 20, 20) * S(0.5)));
    const Normal<S> prior(t.constant(Matrix<S>::Zero(1, 20)), S(1));
    Rng noise(9);
    const BasicVar<S> z = q.rsample(noise);
    return (sum(kl_divergence(q, prior)) + sum(log1p(square(z)))) / S(100);
  }
};

template <class M>
std::vector<Mat> gradient(const M& m, BasicTape<double>& tape, std::vector<Var>& leaves, double* value = nullptr) {
  tape.clear();
  leaves.clear();
  for (const Mat& t : m.theta) leaves.push_back(tape.variable(t));
  const Var l = m.loss(tape, leaves);
  tape.backward(l);
  if (value) *value = l.item();
  std::vector<Mat> g;
  for (const Var& v : leaves) g.push_back(v.grad());
  return g;
}

template <class M>
void check_once(const M& m, const char* what) {
  BasicTape<double> tape;
  std::vector<Var> leaves;
  const std::vector<Mat> g = gradient(m, tape, leaves);
  std::vector<Mat> gh;
  hessian_vector_product([&](auto& t, const auto& l) { return m.loss(t, l); }, m.theta, m.dir, &gh);
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double err = (g[i] - gh[i]).cwiseAbs().maxCoeff();
    if (!(err <= 1e-12 * (1 + g[i].cwiseAbs().maxCoeff()))) {
      std::fprintf(stderr, "bench_second_order: %s: the Hessian-vector product's gradient differs (%g)\n", what, err);
      std::abort();
    }
  }
}

template <class M>
void run_gradient(benchmark::State& state, const M& m) {
  BasicTape<double> tape;
  std::vector<Var> leaves;
  double v = 0;
  for (auto _ : state) {
    gradient(m, tape, leaves, &v);
    benchmark::DoNotOptimize(v);
  }
}
template <class M>
void run_hvp(benchmark::State& state, const M& m, const char* what) {
  check_once(m, what);
  HessianVectorProduct<double> hvp;  // its tape reused, as the gradient's is
  for (auto _ : state) {
    const auto& hv = hvp([&](auto& t, const auto& l) { return m.loss(t, l); }, m.theta, m.dir);
    benchmark::DoNotOptimize(hv.data());
  }
}

void BM_RegressionGradient(benchmark::State& state) { run_gradient(state, Regression()); }
void BM_RegressionHvp(benchmark::State& state) { run_hvp(state, Regression(), "regression"); }
void BM_EncoderGradient(benchmark::State& state) { run_gradient(state, Encoder()); }
void BM_EncoderHvp(benchmark::State& state) { run_hvp(state, Encoder(), "encoder"); }

void BM_RegressionFisherVectorProduct(benchmark::State& state) {
  const Regression m;
  FisherVectorProduct<double> fvp;
  for (auto _ : state) {
    const auto& fv = fvp([&](auto& t, const auto& l) { return m.make(t, l); }, m.theta, m.dir, 1e-3);
    benchmark::DoNotOptimize(fv.data());
  }
}

void BM_RegressionNaturalGradientStep(benchmark::State& state) {
  Regression m;
  NaturalGradientOptions o;
  o.cg_iterations = 20;
  auto loss = [&](auto& t, const auto& l) { return m.loss(t, l); };
  auto make = [&](auto& t, const auto& l) { return m.make(t, l); };
  long accepted = 0;
  NaturalGradient<double> ng(o);
  for (auto _ : state) {
    const NaturalGradientResult r = ng.step(m.params, loss, make);
    accepted += r.accepted;
    state.counters["backtracks"] = r.backtracks;
  }
  state.counters["accepted"] = benchmark::Counter(double(accepted), benchmark::Counter::kAvgIterations);
}

}  // namespace

BENCHMARK(BM_RegressionGradient)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RegressionHvp)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_EncoderGradient)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_EncoderHvp)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RegressionFisherVectorProduct)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RegressionNaturalGradientStep)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
