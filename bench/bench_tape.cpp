// The tape against the floor: the same arithmetic hand-written in plain Eigen (forward and
// hand-derived backward). bench/compare.py runs this next to bench/torch_tape.py (PyTorch on one
// thread) and prints the ratios against the targets of the tape issue.
//
// Each benchmark checks once, before timing, that the tape's gradients equal the floor's; a
// mismatch aborts, so a smoke run (ctest) proves the comparison is of the same arithmetic.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <benchmark/benchmark.h>

#include <reparam/reparam.hpp>

using namespace reparam;

namespace {

template <class T>
Matrix<T> random_matrix(Index r, Index c, std::uint64_t seed, double lo = -1, double hi = 1) {
  Matrix<T> m(r, c);
  std::uint64_t s = seed;
  for (Index i = 0; i < m.size(); ++i) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    m.data()[i] = T(lo + (hi - lo) * double(s >> 11) * 0x1.0p-53);
  }
  return m;
}

template <class A, class B>
void require_close(const char* what, const A& a, const B& b, double tol) {
  const double err = (a - b).cwiseAbs().maxCoeff(), scale = 1 + b.cwiseAbs().maxCoeff();
  if (!(err <= tol * scale)) {
    std::fprintf(stderr, "bench: %s: tape and floor differ (max abs error %g)\n", what, err);
    std::abort();
  }
}

// ---- 1. Elementwise chain, 1000x1000 doubles: loss = sum(tanh(a) * b + exp(-a)) -----------------

struct Elementwise {
  Parameter<double> a{random_matrix<double>(1000, 1000, 1)}, b{random_matrix<double>(1000, 1000, 2)};
  Tape tape;
  double tape_step() {
    tape.clear();
    a.zero_grad();
    b.zero_grad();
    const Var va = tape.variable(a), vb = tape.variable(b);
    const Var loss = sum(tanh(va) * vb + exp(-va));
    tape.backward(loss);
    return loss.item();
  }
  // Floor: forward keeps tanh(a) and exp(-a) for the backward; ga = (1 - t^2) b - e, gb = t.
  Matrix<double> t{1000, 1000}, e{1000, 1000}, ga{1000, 1000}, gb{1000, 1000};
  double floor_step() {
    t.array() = a.value.array().tanh();
    e.array() = (-a.value.array()).exp();
    const double loss = (t.array() * b.value.array() + e.array()).sum();
    ga.array() = (1 - t.array().square()) * b.value.array() - e.array();
    gb = t;
    return loss;
  }
  void verify() {
    tape_step();
    floor_step();
    require_close("elementwise d/da", a.grad, ga, 1e-14);
    require_close("elementwise d/db", b.grad, gb, 1e-14);
  }
};

void BM_Elementwise_Tape(benchmark::State& state) {
  Elementwise w;
  w.verify();
  for (auto _ : state) benchmark::DoNotOptimize(w.tape_step());
  state.SetItemsProcessed(state.iterations() * 1000000);
}
void BM_Elementwise_Floor(benchmark::State& state) {
  Elementwise w;
  w.verify();
  for (auto _ : state) benchmark::DoNotOptimize(w.floor_step());
  state.SetItemsProcessed(state.iterations() * 1000000);
}
BENCHMARK(BM_Elementwise_Tape)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Elementwise_Floor)->Unit(benchmark::kMillisecond);

// ---- 2. MLP 784-256-256-10, batch 128, float: relu layers, softmax cross-entropy -----------------

struct Mlp {
  using M = Matrix<float>;
  static constexpr Index B = 128;
  Parameter<float> w1{random_matrix<float>(784, 256, 3, -0.05, 0.05)}, b1{random_matrix<float>(1, 256, 4, -0.05, 0.05)};
  Parameter<float> w2{random_matrix<float>(256, 256, 5, -0.05, 0.05)}, b2{random_matrix<float>(1, 256, 6, -0.05, 0.05)};
  Parameter<float> w3{random_matrix<float>(256, 10, 7, -0.05, 0.05)}, b3{random_matrix<float>(1, 10, 8, -0.05, 0.05)};
  M x = random_matrix<float>(B, 784, 9, 0, 1), y = M::Zero(B, 10);
  TapeF tape;
  Mlp() {
    for (Index i = 0; i < B; ++i) y(i, (i * 7) % 10) = 1;
  }
  void zero() {
    for (Parameter<float>* p : {&w1, &b1, &w2, &b2, &w3, &b3}) p->zero_grad();
  }
  float tape_step() {
    tape.clear();
    zero();
    const VarF h1 = relu(matmul(tape.constant(x), tape.variable(w1)) + tape.variable(b1));
    const VarF h2 = relu(matmul(h1, tape.variable(w2)) + tape.variable(b2));
    const VarF logits = matmul(h2, tape.variable(w3)) + tape.variable(b3);
    const VarF loss = -sum(log_softmax(logits) * tape.constant(y)) / float(B);
    tape.backward(loss);
    return loss.item();
  }
  // Floor: the same layers and their hand-derived backward, into preallocated buffers.
  M z1{B, 256}, h1{B, 256}, z2{B, 256}, h2{B, 256}, lg{B, 10}, p{B, 10}, d3{B, 10}, dh2{B, 256}, dh1{B, 256};
  M gw1{784, 256}, gb1{1, 256}, gw2{256, 256}, gb2{1, 256}, gw3{256, 10}, gb3{1, 10};
  float floor_step() {
    z1.noalias() = x * w1.value;
    z1.rowwise() += b1.value.row(0);
    h1 = z1.cwiseMax(0.f);
    z2.noalias() = h1 * w2.value;
    z2.rowwise() += b2.value.row(0);
    h2 = z2.cwiseMax(0.f);
    lg.noalias() = h2 * w3.value;
    lg.rowwise() += b3.value.row(0);
    float loss = 0;
    for (Index i = 0; i < B; ++i) {  // log-softmax per row
      const float m = lg.row(i).maxCoeff();
      p.row(i).array() = (lg.row(i).array() - m).exp();
      const float s = p.row(i).sum();
      p.row(i) /= s;
      loss -= ((lg.row(i).array() - m - std::log(s)) * y.row(i).array()).sum();
    }
    loss /= float(B);
    d3 = (p - y) / float(B);  // rows of y sum to 1
    gw3.noalias() = h2.transpose() * d3;
    gb3 = d3.colwise().sum();
    dh2.noalias() = d3 * w3.value.transpose();
    dh2.array() *= (z2.array() > 0.f).cast<float>();
    gw2.noalias() = h1.transpose() * dh2;
    gb2 = dh2.colwise().sum();
    dh1.noalias() = dh2 * w2.value.transpose();
    dh1.array() *= (z1.array() > 0.f).cast<float>();
    gw1.noalias() = x.transpose() * dh1;
    gb1 = dh1.colwise().sum();
    return loss;
  }
  void verify() {
    tape_step();
    floor_step();
    require_close("mlp d/dw1", w1.grad, gw1, 1e-4);
    require_close("mlp d/dw2", w2.grad, gw2, 1e-4);
    require_close("mlp d/dw3", w3.grad, gw3, 1e-4);
    require_close("mlp d/db1", b1.grad, gb1, 1e-4);
    require_close("mlp d/db3", b3.grad, gb3, 1e-4);
  }
};

void BM_MLP_Tape(benchmark::State& state) {
  Mlp m;
  m.verify();
  for (auto _ : state) benchmark::DoNotOptimize(m.tape_step());
}
void BM_MLP_Floor(benchmark::State& state) {
  Mlp m;
  m.verify();
  for (auto _ : state) benchmark::DoNotOptimize(m.floor_step());
}
BENCHMARK(BM_MLP_Tape)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MLP_Floor)->Unit(benchmark::kMicrosecond);

// ---- 3. Scalar chain: 10,000 operations on 1x1 nodes, cycling y*w, y+0.1, tanh(y), y*y ----------

constexpr int kChain = 10000;

struct Chain {
  Tape tape;
  double w0 = 0.9;
  double tape_step(double& grad) {
    tape.clear();
    const Var w = tape.variable(w0);
    Var y = w;
    for (int i = 0; i < kChain; i += 4) {
      y = y * w;      // binary, both operands need gradients
      y = y + 0.1;    // scalar operand
      y = tanh(y);    // unary
      y = y * y;      // same node twice
    }
    tape.backward(y);
    grad = w.grad()(0, 0);
    return y.item();
  }
  // Floor: the same recurrence with its values stored, then the reverse sweep by hand.
  std::vector<double> v = std::vector<double>(kChain + 1);
  double floor_step(double& grad) {
    const double w = w0;
    v[0] = w;
    for (int i = 0; i < kChain; i += 4) {
      v[i + 1] = v[i] * w;
      v[i + 2] = v[i + 1] + 0.1;
      v[i + 3] = std::tanh(v[i + 2]);
      v[i + 4] = v[i + 3] * v[i + 3];
    }
    double g = 1, gw = 0;
    for (int i = kChain - 4; i >= 0; i -= 4) {
      g *= 2 * v[i + 3];
      g *= 1 - v[i + 3] * v[i + 3];
      gw += g * v[i];
      g *= w;
    }
    grad = gw + g;  // the chain starts at w itself
    return v[kChain];
  }
  void verify() {
    double g1, g2;
    const double y1 = tape_step(g1), y2 = floor_step(g2);
    if (std::abs(y1 - y2) > 1e-12 || std::abs(g1 - g2) > 1e-9 * (1 + std::abs(g2))) {
      std::fprintf(stderr, "bench: chain: tape (%g, %g) and floor (%g, %g) differ\n", y1, g1, y2, g2);
      std::abort();
    }
  }
};

void BM_ScalarChain_Tape(benchmark::State& state) {
  Chain c;
  c.verify();
  double g;
  for (auto _ : state) benchmark::DoNotOptimize(c.tape_step(g));
  state.counters["ns_per_op"] = benchmark::Counter(double(kChain), benchmark::Counter::kIsIterationInvariantRate |
                                                                        benchmark::Counter::kInvert);
}
void BM_ScalarChain_Floor(benchmark::State& state) {
  Chain c;
  c.verify();
  double g;
  for (auto _ : state) benchmark::DoNotOptimize(c.floor_step(g));
  state.counters["ns_per_op"] = benchmark::Counter(double(kChain), benchmark::Counter::kIsIterationInvariantRate |
                                                                        benchmark::Counter::kInvert);
}
BENCHMARK(BM_ScalarChain_Tape)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ScalarChain_Floor)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
