// The tape against the floor: the same arithmetic hand-written in plain Eigen (forward and
// hand-derived backward). bench/compare.py runs this next to bench/torch_tape.py (PyTorch on one
// thread) and prints the ratios against the targets of the tape issue.
//
// Each benchmark checks once, before timing, that the tape's gradients equal the floor's; a
// mismatch aborts, so a smoke run (ctest) proves the comparison is of the same arithmetic.
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
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

// ---- 2b. All cores: the same MLP step, data-parallel over every core -----------------------------
// Each worker has its own tape, records the step on its slice of the batch (the loss scaled by
// slice / batch) reading the shared Parameter values in place, and adds into a gradient of its
// own; the gradients are then summed in worker order, so the result does not depend on timing.

// A minimal fixed pool: run(f) calls f(k) for k = 0..n-1, f(0) on the caller, and waits.
class Workers {
 public:
  explicit Workers(int n) : n_(n) {
    for (int k = 1; k < n; ++k) threads_.emplace_back([this, k] { loop(k); });
  }
  ~Workers() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int size() const { return n_; }
  void run(const std::function<void(int)>& f) {
    {
      std::lock_guard<std::mutex> l(m_);
      job_ = &f;
      pending_ = n_ - 1;
      ++generation_;
    }
    cv_.notify_all();
    f(0);
    std::unique_lock<std::mutex> l(m_);
    done_.wait(l, [this] { return pending_ == 0; });
  }

 private:
  void loop(int k) {
    unsigned seen = 0;
    for (;;) {
      const std::function<void(int)>* job;
      {
        std::unique_lock<std::mutex> l(m_);
        cv_.wait(l, [&] { return generation_ != seen; });
        seen = generation_;
        if (stop_) return;
        job = job_;
      }
      (*job)(k);
      std::lock_guard<std::mutex> l(m_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
  int n_;
  std::vector<std::thread> threads_;
  std::mutex m_;
  std::condition_variable cv_, done_;
  const std::function<void(int)>* job_ = nullptr;
  int pending_ = 0;
  unsigned generation_ = 0;
  bool stop_ = false;
};

int all_cores() { return reparam::ThreadPool::hardware_threads(); }  // the CPUs this process may use

struct MlpAllCores {
  using M = Matrix<float>;
  Mlp model;  // the parameters, batch and single-thread step (for verification)
  Workers pool{all_cores()};
  struct Slice {
    TapeF tape;
    M x, y;
    M g[6];
  };
  std::vector<Slice> slices = std::vector<Slice>(std::size_t(pool.size()));
  std::function<void(int)> job;
  MlpAllCores() {
    const Index n = pool.size();
    for (Index k = 0; k < n; ++k) {
      const Index r0 = Mlp::B * k / n, r1 = Mlp::B * (k + 1) / n;
      slices[std::size_t(k)].x = model.x.middleRows(r0, r1 - r0);
      slices[std::size_t(k)].y = model.y.middleRows(r0, r1 - r0);
    }
    job = [this](int k) { slice_step(k); };
  }
  float loss_part[64] = {};
  void slice_step(int k) {
    Slice& s = slices[std::size_t(k)];
    Parameter<float>* ps[6] = {&model.w1, &model.b1, &model.w2, &model.b2, &model.w3, &model.b3};
    for (int i = 0; i < 6; ++i) s.g[i].setZero(ps[i]->rows(), ps[i]->cols());
    TapeF& t = s.tape;
    t.clear();
    const VarF w1 = t.variable(*ps[0], s.g[0]), b1 = t.variable(*ps[1], s.g[1]), w2 = t.variable(*ps[2], s.g[2]);
    const VarF b2 = t.variable(*ps[3], s.g[3]), w3 = t.variable(*ps[4], s.g[4]), b3 = t.variable(*ps[5], s.g[5]);
    const VarF h1 = relu(linear(t.constant(s.x), w1, b1));
    const VarF h2 = relu(linear(h1, w2, b2));
    const VarF logits = linear(h2, w3, b3);
    const VarF loss = -sum(log_softmax(logits) * t.constant(s.y)) / float(Mlp::B);
    t.backward(loss);
    loss_part[k] = loss.item();
  }
  float step() {
    pool.run(job);
    Parameter<float>* ps[6] = {&model.w1, &model.b1, &model.w2, &model.b2, &model.w3, &model.b3};
    float loss = 0;
    for (int i = 0; i < 6; ++i) ps[i]->grad = slices[0].g[i];
    for (std::size_t k = 1; k < slices.size(); ++k)
      for (int i = 0; i < 6; ++i) ps[i]->grad += slices[k].g[i];
    for (std::size_t k = 0; k < slices.size(); ++k) loss += loss_part[k];
    return loss;
  }
  void verify() {
    step();
    const M g1 = model.w1.grad, g3 = model.w3.grad, gb1 = model.b1.grad;
    model.floor_step();
    require_close("mlp all cores d/dw1", g1, model.gw1, 1e-4);
    require_close("mlp all cores d/dw3", g3, model.gw3, 1e-4);
    require_close("mlp all cores d/db1", gb1, model.gb1, 1e-4);
  }
};

// An all-cores workload W (verify(), step(), pool): checked once, then timed in real time.
template <class W>
void run_all_cores(benchmark::State& state) {
  W w;
  w.verify();
  for (auto _ : state) benchmark::DoNotOptimize(w.step());
  state.counters["threads"] = double(w.pool.size());
}

void BM_MLP_Tape_AllCores(benchmark::State& state) { run_all_cores<MlpAllCores>(state); }
BENCHMARK(BM_MLP_Tape_AllCores)->Unit(benchmark::kMicrosecond)->UseRealTime();

// The elementwise chain over every core: each worker records the chain on its own block of columns.
struct ElementwiseAllCores {
  Elementwise one;
  Workers pool{all_cores()};
  struct Part {
    Tape tape;
    Parameter<double> a, b;
    double loss = 0;
  };
  std::vector<Part> parts = std::vector<Part>(std::size_t(pool.size()));
  std::function<void(int)> job;
  ElementwiseAllCores() {
    const Index n = pool.size(), C = one.a.cols();
    for (Index k = 0; k < n; ++k) {
      const Index c0 = C * k / n, c1 = C * (k + 1) / n;
      parts[std::size_t(k)].a = Parameter<double>(one.a.value.middleCols(c0, c1 - c0));
      parts[std::size_t(k)].b = Parameter<double>(one.b.value.middleCols(c0, c1 - c0));
    }
    job = [this](int k) {
      Part& p = parts[std::size_t(k)];
      p.tape.clear();
      p.a.zero_grad();
      p.b.zero_grad();
      const Var va = p.tape.variable(p.a), vb = p.tape.variable(p.b);
      const Var loss = sum(tanh(va) * vb + exp(-va));
      p.tape.backward(loss);
      p.loss = loss.item();
    };
  }
  double step() {
    pool.run(job);
    double loss = 0;
    for (const Part& p : parts) loss += p.loss;
    return loss;
  }
  void verify() {
    step();
    one.floor_step();
    const Index n = pool.size(), C = one.a.cols();
    for (Index k = 0; k < n; ++k) {
      const Index c0 = C * k / n, c1 = C * (k + 1) / n;
      require_close("elementwise all cores d/da", parts[std::size_t(k)].a.grad, one.ga.middleCols(c0, c1 - c0), 1e-14);
    }
  }
};

void BM_Elementwise_Tape_AllCores(benchmark::State& state) { run_all_cores<ElementwiseAllCores>(state); }
BENCHMARK(BM_Elementwise_Tape_AllCores)->Unit(benchmark::kMillisecond)->UseRealTime();

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
