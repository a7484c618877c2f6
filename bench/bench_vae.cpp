// One training step of the VAE programs' Gaussian model (784-400-20, batch 100, float, Adam) and
// of the categorical model (784-512-256-200, Concrete), on one thread and on every core, against
// the floor: the same network's forward and backward matrix products alone, with the library's
// GEMM (what the tape runs: its in-place kernels for the forward products, the input gradients
// and the weight gradients where they are built, Eigen's kernel for the rest), with Eigen's
// kernel alone, and, when found, OpenBLAS's (cblas_sgemm). PyTorch's twin is timed by bench/vae_compare.py in the same run.
//
//   OPENBLAS_NUM_THREADS=1 build/release/bench/bench_vae
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include <benchmark/benchmark.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include <reparam/data/batcher.hpp>
#include <reparam/reparam.hpp>

#ifdef REPARAM_BENCH_CBLAS
extern "C" {
void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
                 float beta, float* c, int ldc);
void openblas_set_num_threads(int);
}
#endif

namespace {

using T = float;
using Mat = reparam::Matrix<T>;
using reparam::Index;
constexpr Index kBatch = 100;

// Binarized random images, 40% of pixels on and independent, the same draw since the benchmark was
// written (its rows compare across stops). The in-place kernels leave out depth steps at which all of a tile's
// pixels are off (stop 37): on these images a tile of 6 almost never has one, on Fashion-MNIST it
// has one at 30% (forward) to 49% (weight gradient) of the first layer's steps, which makes the
// programs' steps faster than these rows by about 0.19 ms of products (bench/results/vae_speed_log.md, stop 37).
// Adam's cost depends on the pixels a little:
// trained on noise, the Gaussian encoder's first layer all but stops learning, and after 1,500
// steps 84% of its Adam first moments (42% of the model's) are subnormal (2% of the model's on
// Fashion-MNIST), which slows their update (BM_Adam's subnormal:1). A throwaway build on
// Fashion-MNIST's 60,000 images timed the one-thread step the same within the noise (bench/results/vae_speed_log.md,
// stop 33).
const Mat& images() {
  static const Mat m = [] {
    reparam::Rng rng(1);
    Mat x = reparam::uniform_matrix<T>(rng, 2000, 784);
    return Mat((x.array() > T(0.6)).cast<T>());
  }();
  return m;
}
// The same images as bytes (0 and 1), which the steps gather from as the programs do (stop 39).
const reparam::Matrix<std::uint8_t>& image_bytes() {
  static const reparam::Matrix<std::uint8_t> m = images().cast<std::uint8_t>();
  return m;
}

// An encoder and a decoder (relu between layers) drawn from one seeded generator.
struct Net {
  reparam::Rng rng{1};
  reparam::nn::Mlp<T> enc, dec;
  Net(const std::vector<Index>& e, const std::vector<Index>& d)
      : enc(e, reparam::nn::Activation::relu, rng), dec(d, reparam::nn::Activation::relu, rng) {}
  void collect(reparam::nn::ParameterList<T>& p) {
    enc.collect(p, "encoder");
    dec.collect(p, "decoder");
  }
};

struct Gaussian : Net {
  Gaussian() : Net({784, 400, 40}, {20, 400, 784}) {}
  Index noise_cols = 20;
  Mat zeros = Mat::Zero(1, 20);
  void noise(Mat& u) { reparam::fill_normal(rng, u); }
  template <class U>
  reparam::BasicVar<T> loss(reparam::BasicTape<T>& tape, reparam::BasicVar<T> x, const Eigen::DenseBase<U>& eps, long) {
    const reparam::BasicVar<T> h = enc(x);
    const reparam::Normal<T> q(slice_cols(h, 0, 20), exp(T(0.5) * slice_cols(h, 20, 20)));
    const reparam::Normal<T> prior(tape.constant(zeros), T(1));
    return sum(bce_with_logits(dec(q.reparameterize(eps)), x)) + sum(kl_divergence(q, prior));
  }
};

struct Categorical : Net {
  Categorical() : Net({784, 512, 256, 200}, {200, 256, 512, 784}) {}
  Index noise_cols = 200;
  Mat zeros = Mat::Zero(1, 10);
  void noise(Mat& u) { reparam::fill_uniform(rng, u); }
  template <class U>
  reparam::BasicVar<T> loss(reparam::BasicTape<T>& tape, reparam::BasicVar<T> x, const Eigen::DenseBase<U>& u, long step) {
    const Index rows = x.rows();
    const reparam::BasicVar<T> lg = reshape(enc(x), rows * 20, 10);
    const reparam::Concrete<T> q(lg, std::max(T(0.5), T(std::exp(-3e-5 * double(step)))));
    const reparam::BasicVar<T> z = q.reparameterize(Eigen::Map<const Mat>(u.derived().data(), rows * 20, 10));
    const reparam::Categorical<T> cq(lg), prior(tape.constant(zeros));
    return sum(bce_with_logits(dec(reshape(z, rows, 200)), x)) + sum(kl_divergence(cq, prior));
  }
};

// One training step as the programs take it: on one thread Adam's update is fused into the
// backward sweep, on more each thread updates its share of the weights from the threads'
// gradient factors (DataParallel::set_stream_updates); `stored` keeps the gradients in memory
// and updates after the sweep instead (the path for clipping).
template <class Model>
struct Stepper {
  Model model;
  reparam::nn::ParameterList<T> params;
  std::unique_ptr<reparam::optim::Adam<T>> adam;
  std::unique_ptr<reparam::nn::DataParallel<T>> dp;
  reparam::data::Batcher batches{images().rows(), kBatch, 2};
  Mat u{kBatch, model.noise_cols};
  long step = 0;
  bool stored;
  Stepper(int threads, bool store) : stored(store) {
    model.collect(params);
    adam = std::make_unique<reparam::optim::Adam<T>>(params.pointers(), reparam::optim::AdamOptions<T>{T(1e-3)});
    reparam::set_blas_threads(1);  // with the BLAS backend: our threads, not OpenBLAS's
    dp = std::make_unique<reparam::nn::DataParallel<T>>(params, threads);
    dp->set_stream_updates(!stored);
    dp->tune_evict_shared();  // as the programs start (train.hpp): eviction on or off, timed in the first steps
    while (dp->evict_tuning() && dp->threads() > 1 && !stored) once();  // the trial, untimed
  }
  void once() {
    const std::vector<Index>& rows = batches.next();
    model.noise(u);
    const Mat& cu = u;
    ++step;
    dp->step(kBatch, [&](reparam::BasicTape<T>& tape, Index f, Index c, int) {
      const reparam::BasicVar<T> x = reparam::data::gather_rows(tape, image_bytes(), rows, f, c);  // each thread its rows, from bytes, as the programs
      tape.backward(model.loss(tape, x, cu.middleRows(f, c), step) / T(kBatch));
    }, *adam);
  }
};

template <class Model, bool stored = false>
void BM_Step(benchmark::State& state) {
  Stepper<Model> s(int(state.range(0)), stored);
  for (auto _ : state) {
    s.once();
    benchmark::DoNotOptimize(s.params[0].value.data());
  }
  state.counters["threads"] = double(s.dp->threads());
  if (s.dp->threads() > 1 && !stored) state.counters["evict"] = s.dp->evict_shared() ? 1.0 : 0.0;
  state.counters["steps/s"] = benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
}

// The products of one step of a network with layer sizes `s` on a batch of 100: forward
// h_{i+1} = h_i W_i, backward dW_i = h_i^T g_{i+1}, g_i = g_{i+1} W_i^T (for the input only when
// `input_grad`: the decoder's input is the latent sample, whose gradient the encoder needs).
struct Products {
  std::vector<Index> s;
  bool input_grad;
  std::vector<Mat> w, h, g, dw;
  Products(std::vector<Index> sizes, bool in_grad, Index batch = kBatch) : s(std::move(sizes)), input_grad(in_grad) {
    reparam::Rng rng(3);
    for (std::size_t i = 0; i + 1 < s.size(); ++i) {
      w.push_back(reparam::uniform_matrix<T>(rng, s[i], s[i + 1]));
      dw.push_back(Mat::Zero(s[i], s[i + 1]));
    }
    for (Index n : s) {
      h.push_back(reparam::uniform_matrix<T>(rng, batch, n));
      g.push_back(reparam::uniform_matrix<T>(rng, batch, n));
    }
  }
  template <class Gemm>
  void run(Gemm&& gemm) {  // gemm(C, A, trans_a, B, trans_b): C = op(A) op(B)
    for (std::size_t i = 0; i + 1 < s.size(); ++i) gemm(h[i + 1], h[i], false, w[i], false);
    for (std::size_t i = s.size() - 1; i-- > 0;) {
      gemm(dw[i], h[i], true, g[i + 1], false);
      if (i > 0 || input_grad) gemm(g[i], g[i + 1], false, w[i], true);
    }
  }
};

// The products of the networks `nets` (the Gaussian model: encoder 784-400-40, decoder
// 20-400-784). With `adam`, each step also runs the Adam update of the same weights and biases
// from those gradients, whose state (weights, gradients and two moments: 16 bytes per parameter)
// streams through memory once per step: a lower bound for any step that stores its gradients
// before the update. The one-thread step updates inside the sweep instead (Adam.stream_from).
struct Floor {
  std::vector<Products> ps;
  std::vector<reparam::Parameter<T>> params;
  std::unique_ptr<reparam::optim::Adam<T>> opt;
  bool adam;
  Floor(const std::vector<std::vector<Index>>& nets, bool with_adam) : adam(with_adam) {
    for (std::size_t k = 0; k < nets.size(); ++k) ps.emplace_back(nets[k], k > 0);  // nets[0] is the encoder
    for (const auto& p : ps)
      for (std::size_t i = 0; i < p.w.size(); ++i) {
        params.emplace_back(p.w[i]);
        params.emplace_back(Mat::Zero(1, p.w[i].cols()));
      }
    std::vector<reparam::Parameter<T>*> ptrs;
    for (auto& p : params) ptrs.push_back(&p);
    opt = std::make_unique<reparam::optim::Adam<T>>(ptrs, reparam::optim::AdamOptions<T>{T(1e-3)});
  }
  template <class Gemm>
  void once(Gemm&& gemm) {
    std::size_t k = 0;
    for (auto& p : ps) {
      p.run(gemm);
      if (!adam) continue;
      for (std::size_t i = 0; i < p.dw.size(); ++i, k += 2) {
        params[k].grad.swap(p.dw[i]);  // the gradient buffers: the products wrote them
        params[k + 1].grad = p.g[i + 1].colwise().sum();
      }
    }
    if (adam) {  // Adam updates the weights the products read: swapped in and out (no copies)
      k = 0;
      for (auto& p : ps)
        for (std::size_t i = 0; i < p.w.size(); ++i, k += 2) params[k].value.swap(p.w[i]);
      opt->step();
      k = 0;
      for (auto& p : ps)
        for (std::size_t i = 0; i < p.w.size(); ++i, k += 2) {
          params[k].value.swap(p.w[i]);
          params[k].grad.swap(p.dw[i]);
        }
    }
    benchmark::DoNotOptimize(ps[0].dw[0].data());
  }
};

template <class Gemm>
void floor_loop(benchmark::State& state, const std::vector<std::vector<Index>>& nets, Gemm&& gemm, bool adam = false) {
  Floor f(nets, adam);
  for (auto _ : state) f.once(gemm);
}

const std::vector<std::vector<Index>> kGaussianNets = {{784, 400, 40}, {20, 400, 784}};
const std::vector<std::vector<Index>> kCategoricalNets = {{784, 512, 256, 200}, {200, 256, 512, 784}};

void eigen_gemm(Mat& c, const Mat& a, bool ta, const Mat& b, bool tb) {
  thread_local reparam::detail::Workspace<T> ws;
  // Weight gradients (A^T B) as the tape computes them: block by block (the in-place kernel where
  // it is built, else Eigen's with each block of C zeroed just before it adds into it).
  if (ta && !tb &&
      reparam::detail::gemm_tn_rows<T>(Eigen::Map<const Mat>(a.data(), a.rows(), a.cols()), Eigen::Map<const Mat>(b.data(), b.rows(), b.cols()),
                                       T(1), ws, [](Index, Index, T*) {}, c.data()))
    return;
  // The others as the tape computes them: C = A B and A B^T through the in-place kernels where
  // they are built and apply (reparam::inplace_gemm(): AVX-512), else Eigen's kernel.
  Eigen::Map<Mat> cm(c.data(), c.rows(), c.cols());
  reparam::detail::gemm_acc(cm, Eigen::Map<const Mat>(a.data(), a.rows(), a.cols()), ta,
                            Eigen::Map<const Mat>(b.data(), b.rows(), b.cols()), tb, T(1), ws, true);
}

void BM_Floor_Eigen(benchmark::State& state) {
  floor_loop(state, state.range(0) == 0 ? kGaussianNets : kCategoricalNets, eigen_gemm);
}
// The same with the in-place kernel switched off: every product through Eigen's packed GEMM (the
// floor before the kernel; equal to BM_Floor_Eigen where the kernel is not built).
void BM_Floor_EigenPacked(benchmark::State& state) {
  const bool was = reparam::inplace_gemm();
  reparam::set_inplace_gemm(false);
  floor_loop(state, state.range(0) == 0 ? kGaussianNets : kCategoricalNets, eigen_gemm);
  reparam::set_inplace_gemm(was);
}

#ifdef REPARAM_BENCH_CBLAS
void blas_gemm(Mat& c, const Mat& a, bool ta, const Mat& b, bool tb) {
  const int m = int(c.rows()), n = int(c.cols()), k = int(ta ? a.rows() : a.cols());
  cblas_sgemm(101 /*row major*/, ta ? 112 : 111, tb ? 112 : 111, m, n, k, 1.0f, a.data(), int(a.cols()), b.data(), int(b.cols()),
              0.0f, c.data(), int(c.cols()));
}
void BM_Floor_OpenBLAS(benchmark::State& state) {
  openblas_set_num_threads(1);
  floor_loop(state, state.range(0) == 0 ? kGaussianNets : kCategoricalNets, blas_gemm);
}
BENCHMARK(BM_Floor_OpenBLAS)->ArgName("categorical")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
// The products and then the Adam update alone: the bound of a step that stores its gradients.
void BM_FloorAdam_OpenBLAS(benchmark::State& state) {
  openblas_set_num_threads(1);
  floor_loop(state, state.range(0) == 0 ? kGaussianNets : kCategoricalNets, blas_gemm, true);
}
BENCHMARK(BM_FloorAdam_OpenBLAS)->ArgName("categorical")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

BENCHMARK(BM_Floor_Eigen)->ArgName("categorical")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Floor_EigenPacked)->ArgName("categorical")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
// The floor split as nn::DataParallel splits a step: on every core, each thread the products of
// its rows of the batch, with private copies of everything (no update, no sum, nothing shared):
// what no data-parallel step can beat here. Its speed-up over BM_Floor_Eigen bounds the step's.
struct FloorSplit {
  reparam::ThreadPool pool{0};
  std::vector<std::vector<Products>> ps;
  explicit FloorSplit(const std::vector<std::vector<Index>>& nets) : ps(static_cast<std::size_t>(pool.size())) {
    const int n = pool.size();
    for (int t = 0; t < n; ++t)
      for (std::size_t k = 0; k < nets.size(); ++k)
        ps[static_cast<std::size_t>(t)].emplace_back(nets[k], k > 0, reparam::ThreadPool::shard(kBatch, t, n).second);
  }
  void once() {
    pool.run([&](int t) {
      for (auto& p : ps[static_cast<std::size_t>(t)]) p.run(eigen_gemm);
    });
    benchmark::DoNotOptimize(ps[0][0].dw[0].data());
  }
};
void BM_FloorSplit_Eigen(benchmark::State& state) {
  FloorSplit f(state.range(0) == 0 ? kGaussianNets : kCategoricalNets);
  for (auto _ : state) f.once();
  state.counters["threads"] = double(f.pool.size());
}
BENCHMARK(BM_FloorSplit_Eigen)->ArgName("categorical")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
// The same bound with Eigen's kernel (the faster one on some CPUs: cmake/ProbeGemm.cmake).
void BM_FloorAdam_Eigen(benchmark::State& state) {
  floor_loop(state, state.range(0) == 0 ? kGaussianNets : kCategoricalNets, eigen_gemm, true);
}
BENCHMARK(BM_FloorAdam_Eigen)->ArgName("categorical")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
// Adam's update alone on a model's parameters, with its state left in the cache (evicted:0) or
// pushed out of it before every update by a pass over 64 MB (evicted:1, as a step's products do;
// the pass is not timed). Gradients random (subnormal:0), or zero with every first moment
// subnormal (subnormal:1: the state of a unit that stopped learning, whose first moments decay
// by beta1 each step through the subnormals; the moments are reset before each update, untimed).
template <class Model>
void BM_Adam(benchmark::State& state) {
  Model model;
  reparam::nn::ParameterList<T> params;
  model.collect(params);
  reparam::Rng rng(4);
  const bool subnormal = state.range(1) != 0;
  for (std::size_t i = 0; i < params.size(); ++i)
    params[i].grad = subnormal ? Mat::Zero(params[i].rows(), params[i].cols()) : reparam::uniform_matrix<T>(rng, params[i].rows(), params[i].cols());
  reparam::optim::Adam<T> adam(params.pointers(), {T(1e-3)});
  for (std::size_t i = 0; i < params.size(); ++i) adam.exp_avg_sq(i).setConstant(T(1e-6));
  std::vector<T> junk(std::size_t(16) << 20, T(1));
  for (auto _ : state) {
    if (state.range(0) || subnormal) {
      state.PauseTiming();
      if (subnormal)
        for (std::size_t i = 0; i < params.size(); ++i) adam.exp_avg(i).setConstant(T(1e-39));
      if (state.range(0)) {
        for (std::size_t i = 0; i < junk.size(); i += 16) junk[i] += T(1);
        benchmark::DoNotOptimize(junk.data());
      }
      state.ResumeTiming();
    }
    adam.step();
    benchmark::DoNotOptimize(params[0].value.data());
  }
  state.counters["parameters"] = double(params.count());
}

#if defined(__AVX2__) && defined(__FMA__)
// Can Adam's update hide behind a product, as the streamed update would like (each block of a
// weight updated beside the kernel computing the next)? A 6 x 16 broadcast tile like the in-place
// kernel's AVX2 tile (12 accumulators; two loads of B and six broadcasts per depth step) over
// 4096 depth steps alone (part:0); Adam's update (optim::detail::adam_update, as the optimizer
// runs it) of 512 packets alone (part:1); and both in one loop, a packet every 8 depth steps
// (part:2). A core that overlapped them would take about the longer of parts 0 and 1 for part 2;
// bench/results/vae_speed_log.md's stop 33 has what a Zen 3 does, stop 35 a Zen 5 (whose in-place
// kernel uses 16-float tiles, not this 8-float one).
void BM_AdamInTile(benchmark::State& state) {
  constexpr Index depth = 4096, packets = depth / 8;
  // one of Adam's packets per call: 8 floats with AVX2, 16 with AVX-512 (a call of fewer
  // elements than a packet would run the update's scalar tail)
  constexpr Index L = Eigen::internal::packet_traits<T>::size;
  const int part = int(state.range(0));
  std::vector<T> a(128 * 8), b(128 * 16), p(packets * L), g(p.size()), m(p.size()), v(p.size());
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = T(1e-3) * T(i % 5);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = T(1e-3) * T(i % 3);
  for (std::size_t i = 0; i < p.size(); ++i) {
    p[i] = T(0.1);
    g[i] = T(1e-3) * T(1 + i % 7);  // no zero gradient: the moments stay normal
    m[i] = T(1e-4);
    v[i] = T(1e-6);
  }
  const reparam::optim::AdamOptions<T> o;
  const auto none = [](int) { return static_cast<const T*>(nullptr); };
  const auto adam = [&](Index i) {
    reparam::optim::detail::adam_update(p.data() + i, g.data() + i, m.data() + i, v.data() + i, L, o, T(1e-3), T(1.1), 0, none, false);
  };
  for (auto _ : state) {
    __m256 acc[6][2];
    for (auto& r : acc) r[0] = r[1] = _mm256_setzero_ps();
    if (part == 1) {
      for (Index u = 0; u < packets; ++u) adam(u * L);
    } else {
      for (Index s = 0; s < depth; ++s) {
        const T* bs = b.data() + (s & 127) * 16;
        const T* as = a.data() + (s & 127) * 8;
        const __m256 b0 = _mm256_loadu_ps(bs), b1 = _mm256_loadu_ps(bs + 8);
        for (int i = 0; i < 6; ++i) {
          const __m256 x = _mm256_broadcast_ss(as + i);
          acc[i][0] = _mm256_fmadd_ps(x, b0, acc[i][0]);
          acc[i][1] = _mm256_fmadd_ps(x, b1, acc[i][1]);
        }
        if (part == 2 && s % 8 == 0) adam(s / 8 * L);
      }
    }
    __m256 sum = _mm256_setzero_ps();
    for (auto& r : acc) sum = _mm256_add_ps(sum, _mm256_add_ps(r[0], r[1]));
    float out[8];
    _mm256_storeu_ps(out, sum);
    benchmark::DoNotOptimize(out[0]);
    benchmark::DoNotOptimize(p.data());
  }
  state.counters["packets"] = part == 0 ? 0.0 : double(packets);
}
BENCHMARK(BM_AdamInTile)->ArgName("part")->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);
#endif

// Paired rows. This host's speed drifts by 30-50% over seconds to minutes (the other work on its
// machine), so two rows timed a minute apart can differ by that much more than their code does.
// Here two things alternate in rounds: a run of kRun steps of one (the first untimed: it brings
// its data back into the caches, as a run of its own would have it), then of the other, and the
// figure is the median over rounds of each round's ratio of the two runs' medians: both sides of
// every ratio see the same host within about 50 ms.
constexpr int kRun = 8;
double quantile(std::vector<double> v, double q) {  // linear between order statistics
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double x = q * double(v.size() - 1);
  const std::size_t i = std::size_t(x);
  return i + 1 < v.size() ? v[i] + (x - double(i)) * (v[i + 1] - v[i]) : v[i];
}
double median(const std::vector<double>& v) { return quantile(v, 0.5); }
template <class A, class B>
void paired(benchmark::State& state, A&& a, B&& b, const char* a_name, const char* b_name, const char* ratio_name) {
  std::vector<double> ta(kRun), tb(kRun), ma, mb, r;
  const auto run = [](auto& f, std::vector<double>& t) {
    f();
    for (double& x : t) {
      const auto t0 = std::chrono::steady_clock::now();
      f();
      x = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
    return median(t);
  };
  for (auto _ : state) {
    const double x = run(a, ta), y = run(b, tb);
    ma.push_back(x);
    mb.push_back(y);
    r.push_back(x / y);
  }
  state.counters[a_name] = median(ma);
  state.counters[b_name] = median(mb);
  state.counters[ratio_name] = median(r);
  state.counters["q1"] = quantile(r, 0.25);  // the middle half of the rounds' ratios
  state.counters["q3"] = quantile(r, 0.75);
}
// The one-thread step over its floor (the products alone with the library's GEMM, BM_Floor_Eigen).
template <class Model>
void BM_PairStepFloor(benchmark::State& state) {
  Floor floor(std::is_same<Model, Gaussian>::value ? kGaussianNets : kCategoricalNets, false);
  Stepper<Model> step(1, false);
  auto f = [&] { floor.once(eigen_gemm); };
  auto s = [&] { step.once(); };
  paired(state, s, f, "step_ms", "floor_ms", "step/floor");
}
// The one-thread step over the step on every core: the speed-up.
template <class Model>
void BM_PairSpeedup(benchmark::State& state) {
  Stepper<Model> one(1, false), all(0, false);
  auto o = [&] { one.once(); };
  auto a = [&] { all.once(); };
  paired(state, o, a, "one_ms", "all_ms", "speedup");
  state.counters["threads"] = double(all.dp->threads());
}
// The floor on one thread over the floor split over every core (BM_FloorSplit_Eigen): the
// speed-up no data-parallel step can pass here, paired like the step's.
void BM_PairFloorSplit(benchmark::State& state) {
  const auto& nets = state.range(0) == 0 ? kGaussianNets : kCategoricalNets;
  Floor one(nets, false);
  FloorSplit all(nets);
  auto o = [&] { one.once(eigen_gemm); };
  auto a = [&] { all.once(); };
  paired(state, o, a, "one_ms", "all_ms", "speedup");
  state.counters["threads"] = double(all.pool.size());
}
BENCHMARK(BM_PairFloorSplit)->ArgName("categorical")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
// An iteration is a round (2 x 9 steps); --benchmark_min_time sets how many (bench/vae_compare.py: 2 s).
BENCHMARK_TEMPLATE(BM_PairStepFloor, Gaussian)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_PairStepFloor, Categorical)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_PairSpeedup, Gaussian)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_PairSpeedup, Categorical)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_TEMPLATE(BM_Step, Gaussian)->ArgName("threads")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Step, Categorical)->ArgName("threads")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
template <class Model>
void BM_StepStored(benchmark::State& state) {
  BM_Step<Model, true>(state);
}
BENCHMARK_TEMPLATE(BM_StepStored, Gaussian)->ArgName("threads")->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_StepStored, Categorical)->ArgName("threads")->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Adam, Gaussian)->ArgNames({"evicted", "subnormal"})->ArgsProduct({{0, 1}, {0, 1}})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Adam, Categorical)->ArgNames({"evicted", "subnormal"})->Args({0, 0})->Args({1, 0})->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
