// Steady state allocates nothing: rebuilding the same graph on a cleared tape, forward and
// backward, makes no heap allocation. Every malloc-family call (Eigen allocates with malloc) is
// counted through -Wl,--wrap, and every operator new through replacement.
#include <atomic>
#include <cstdlib>
#include <new>

#include <reparam/data/batcher.hpp>

#include "support.hpp"

namespace {
std::atomic<long> g_allocs{0};
volatile bool g_trace = false;  // a debugger can break on allocations while set
}

extern "C" {
void* __real_malloc(std::size_t);
void* __real_calloc(std::size_t, std::size_t);
void* __real_realloc(void*, std::size_t);
int __real_posix_memalign(void**, std::size_t, std::size_t);
void* __real_aligned_alloc(std::size_t, std::size_t);
void* __wrap_malloc(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __real_malloc(n);
}
void* __wrap_calloc(std::size_t n, std::size_t s) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __real_calloc(n, s);
}
void* __wrap_realloc(void* p, std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __real_realloc(p, n);
}
int __wrap_posix_memalign(void** p, std::size_t a, std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __real_posix_memalign(p, a, n);
}
void* __wrap_aligned_alloc(std::size_t a, std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __real_aligned_alloc(a, n);
}
}

void* operator new(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = __real_malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, std::align_val_t a) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  void* p = nullptr;
  const std::size_t al = std::max(static_cast<std::size_t>(a), sizeof(void*));
  if (__real_posix_memalign(&p, al, n ? n : 1) != 0) throw std::bad_alloc();
  return p;
}
void* operator new[](std::size_t n, std::align_val_t a) { return operator new(n, a); }
// The nothrow forms too, so that every new is malloc and every delete free (sanitizers check it).
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __real_malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  void* p = nullptr;
  const std::size_t al = std::max(static_cast<std::size_t>(a), sizeof(void*));
  return __real_posix_memalign(&p, al, n ? n : 1) == 0 ? p : nullptr;
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t& t) noexcept { return operator new(n, a, t); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

using namespace reparam;
using test::Gen;
using test::Mat;

namespace {

template <class T>
using M = Matrix<T>;

// One training step of a 3-layer MLP (GEMM-sized, so Eigen's blocked product path is exercised)
// plus every other operation; returns the loss.
template <class T>
T step(BasicTape<T>& tape, Parameter<T>& w1, Parameter<T>& b1, Parameter<T>& w2, Parameter<T>& b2, Parameter<T>& w3,
       const M<T>& x, const M<T>& y) {
  tape.clear();
  const BasicVar<T> in = tape.constant(x);
  const BasicVar<T> h1 = relu(matmul(in, tape.variable(w1)) + tape.variable(b1));
  const BasicVar<T> h2 = tanh(matmul(h1, tape.variable(w2)) + tape.variable(b2));
  const BasicVar<T> logits = matmul(h2, tape.variable(w3));
  const BasicVar<T> ce = -sum(log_softmax(logits) * tape.constant(y)) / T(x.rows());
  const BasicVar<T> misc = mean(softplus(logits) + log_sigmoid(logits) + sigmoid(logits) * exp(logits * T(0.01)) +
                                sqrt(square(logits) + T(1)) + log(abs(logits) + T(1)) + log1p(square(logits)) +
                                expm1(logits * T(0.01)) + pow(square(logits) + T(1), T(0.5)) + softmax(logits)) +
                           sum(logsumexp(logits)) * T(0.01) + sum(sum_rows(h2)) * T(0.001) +
                           sum(sum_cols(h1) / (T(1) + sum_cols(h1))) * T(0.001) +
                           sum(reshape(transpose(logits), 1, -1)) * T(0.001) + sum(stop_gradient(h2) * h2) * T(0.001) +
                           sum(bce_with_logits(logits, tape.constant(y))) * T(0.001) + mean(h2 - T(1)) + mean(T(2) - h2) +
                           mean(T(3) / (h2 + T(2))) * (tape.constant(T(1)) - T(0.5)) +
                           mean(linear_relu(h1, tape.variable(w2), tape.variable(b2)) + linear(h1, tape.variable(w2), tape.variable(b2))) *
                               T(0.001);
  const BasicVar<T> loss = ce + misc * T(0.01);
  tape.backward(loss);
  return loss.item();
}

template <class T>
void check_steady_state() {
  Gen gen(60);
  const Index batch = 128;
  Parameter<T> w1(gen.matrix(784, 256, -0.05, 0.05).cast<T>()), b1(M<T>::Zero(1, 256));
  Parameter<T> w2(gen.matrix(256, 256, -0.05, 0.05).cast<T>()), b2(M<T>::Zero(1, 256));
  Parameter<T> w3(gen.matrix(256, 10, -0.05, 0.05).cast<T>());
  const M<T> x = gen.matrix(batch, 784, 0, 1).cast<T>();
  M<T> y = M<T>::Zero(batch, 10);
  for (Index i = 0; i < batch; ++i) y(i, i % 10) = T(1);
  BasicTape<T> tape;
  optim::Adam<T> opt({&w1, &b1, &w2, &b2, &w3}, {T(1e-3)});
  // Warm-up builds size the arena (the first build's blocks are merged for the second) and the
  // GEMM workspace.
  for (int i = 0; i < 2; ++i) {
    opt.zero_grad();
    step(tape, w1, b1, w2, b2, w3, x, y);
    opt.step();
  }
  const long before = g_allocs.load();
  T last = 0;
  for (int i = 0; i < 3; ++i) {
    opt.zero_grad();
    last = step(tape, w1, b1, w2, b2, w3, x, y);
    opt.step();
  }
  const long during = g_allocs.load() - before;
  CHECK(std::isfinite(double(last)));
  CHECK(tape.size() > 80);
  INFO("heap allocations in 3 steady-state steps: " << during);
  CHECK(during == 0);
}

}  // namespace

TEST_CASE("the counter sees Eigen's and the standard library's allocations", "[alloc]") {
  const long before = g_allocs.load();
  { Mat m(100, 100); m.setZero(); }
  const long eigen = g_allocs.load() - before;
  CHECK(eigen >= 1);
  { std::vector<int> v(10); (void)v; }
  CHECK(g_allocs.load() - before >= eigen + 1);
}

TEST_CASE("rebuilding the same graph on a cleared tape allocates nothing (double)", "[alloc]") { check_steady_state<double>(); }

TEST_CASE("rebuilding the same graph on a cleared tape allocates nothing (float)", "[alloc]") { check_steady_state<float>(); }

TEST_CASE("a first build that needed several arena blocks merges them for the next", "[alloc]") {
  Tape tape;
  auto build = [&] {
    tape.clear();
    Var x = tape.variable(Mat::Ones(100, 100));
    for (int i = 0; i < 20; ++i) x = tanh(x) * 0.5 + 0.1;  // ~ 40 nodes of 80 KB; the first block holds 128 KB
    tape.backward(sum(x));
  };
  build();
  build();  // merges the blocks on clear
  const long before = g_allocs.load();
  build();
  build();
  CHECK(g_allocs.load() - before == 0);
}

namespace {

// One step through every distribution and every member, KL, gumbel_softmax, score_function,
// the baselines, conditional Gumbel noise, Gumbel-Rao and REBAR, with validation on: nothing may allocate once the tape and the outputs are sized.
template <class T>
struct DistributionStep {
  Parameter<T> loc{M<T>::Constant(8, 6, T(0.3))}, scale{M<T>::Constant(1, 6, T(1.5))};
  Parameter<T> logits{M<T>::Constant(8, 6, T(0.2))}, tau{M<T>::Constant(1, 1, T(0.7))};
  M<T> noise = M<T>::Constant(8, 6, T(0.25)), u = M<T>::Constant(8, 6, T(0.4));
  M<T> xs{8, 6}, onehot{8, 6}, bits{8, 6}, simplex{8, 6}, lsimplex{8, 6}, cost{8, 1};
  std::vector<Index> idx;
  EmaBaseline<T> ema{T(0.9)};
  ScoreFunctionEstimator sf, sf_ema{ScoreFunctionEstimator::Baseline::moving_average},
      sf_loo{ScoreFunctionEstimator::Baseline::leave_one_out, 3};
  Rng rng{11};

  T run(BasicTape<T>& t) {
    t.clear();
    const BasicVar<T> l = t.variable(loc), s = t.variable(scale), lg = t.variable(logits), tv = t.variable(tau);
    BasicVar<T> acc = t.constant(T(0));
    auto add = [&](const BasicVar<T>& v) { acc = acc + sum(v); };
    auto loc_scale = [&](const auto& d, const M<T>& base) {
      const BasicVar<T> z = d.rsample(rng);
      add(d.log_prob(z));
      add(d.cdf(z));
      add(d.icdf(t.constant(u)));
      add(d.reparameterize(base));
      add(d.entropy());
      add(d.mean());
      add(d.stddev());
      add(d.variance());
      d.sample(rng, xs);
      add(d.log_prob(xs));
    };
    loc_scale(Normal<T>(l, s), noise);
    loc_scale(Gumbel<T>(l, s), u);
    loc_scale(Logistic<T>(l, s), u);
    loc_scale(Laplace<T>(l, s), u);
    loc_scale(Normal<T>(l, T(2)), noise);
    const Concrete<T> c(lg, tv);
    const BasicVar<T> y = c.rsample(rng);
    add(c.log_prob(y));
    add(c.rsample_hard(rng));
    add(c.reparameterize(u));
    add(c.reparameterize_hard(u));
    add(c.probs());
    c.sample(rng, simplex);
    add(c.log_prob(simplex));
    const ExpConcrete<T> e(lg, T(0.5));
    add(e.log_prob(e.rsample(rng)));
    e.sample(rng, lsimplex);
    add(e.log_prob(lsimplex));
    add(gumbel_softmax(lg, T(0.5), rng, true));
    add(gumbel_softmax(lg, tv, rng));
    const RelaxedBernoulli<T> rb(lg, tv);
    const BasicVar<T> rbs = rb.rsample(rng);
    add(rb.log_prob(rbs));
    add(rb.cdf(rbs));
    add(rb.icdf(t.constant(u)));
    add(rb.rsample_hard(rng));
    add(rb.reparameterize(u));
    rb.sample(rng, xs);
    const LogitRelaxedBernoulli<T> lrb(lg, T(0.5));
    add(lrb.log_prob(lrb.rsample(rng)));
    const Categorical<T> cat(lg);
    cat.sample(rng, onehot);
    cat.sample_indices(rng, idx);
    const BasicVar<T> lp = cat.log_prob(onehot);
    add(cat.entropy());
    add(cat.stddev());
    add(cat.variance());
    add(cat.mean());
    add(cat.log_probs());
    for (Index i = 0; i < 8; ++i) cost(i, 0) = onehot.row(i).dot(M<T>::Constant(1, 6, T(1)).row(0)) + T(i);
    const BasicVar<T> costv = t.constant(cost);
    acc = acc + score_function(lp, cost, ema.value()) + score_function(lp, costv, leave_one_out_baseline(costv)) +
          score_function(lp, cost, M<T>::Constant(1, 1, T(0.5)));
    ema.update(cost);
    // conditional Gumbel noise and Gumbel-Rao, given uniforms and drawn from the generator
    add(conditional_gumbel(lg, onehot, u));
    add(conditional_gumbel(lg, onehot, rng));
    add(gumbel_rao(lg, onehot, T(0.5), u));
    add(gumbel_rao(lg, onehot, T(0.5), 3, rng));
    add(rebar(lg, [&](const BasicVar<T>& x) { return sum_rows(square(x)); }, T(0.5), T(0.7), u, noise));
    // the estimator zoo behind its common interface, on both families; costs per row and per group
    auto fz = [&](const BasicVar<T>& x) { return sum_rows(square(x)); };
    auto fg = [&](const BasicVar<T>& x) { return sum_rows(reshape(square(x), x.rows() / 2, 2 * x.cols())); };
    for (Family fam : {Family::categorical, Family::bernoulli}) {
      add(sf(fam, lg, fz, rng).surrogate);
      add(sf_ema(fam, lg, fg, rng).surrogate);
      add(sf_loo(fam, lg, fz, rng).surrogate);
      add(GumbelSoftmax{0.5}(fam, lg, fz, rng).surrogate);
      add(GumbelSoftmax{0.5, true}(fam, lg, fz, rng).surrogate);
      add(StraightThrough{}(fam, lg, fg, rng).surrogate);
      add(SlopeAnnealedStraightThrough{2.0}(fam, lg, fz, rng).surrogate);
      add(Darn{}(fam, lg, fz, rng).surrogate);
      add(MuProp{}(fam, lg, fg, rng).surrogate);
      add(Rebar{0.5, 0.7}(fam, lg, fg, rng).surrogate);
      add(GumbelRao{0.5, 3}(fam, lg, fz, rng).surrogate);
    }
    const Bernoulli<T> b(lg);
    b.sample(rng, bits);
    add(b.log_prob(bits));
    add(b.entropy());
    add(b.stddev());
    add(b.variance());
    add(kl_divergence(Normal<T>(l, s), Normal<T>(lg, s)));
    add(kl_divergence(Laplace<T>(l, s), Laplace<T>(lg, s)));
    add(kl_divergence(Categorical<T>(lg), Categorical<T>(l)));
    add(kl_divergence(Bernoulli<T>(lg), Bernoulli<T>(l)));
    add(concat_cols({l, lg}) * T(0.01));
    add(slice_rows(lg, 1, 3));
    add(slice_cols(lg, 2, 2));
    add(clamp(lg, T(-0.1), T(0.1)));
    add(soft_argmax(lg));
    t.backward(acc);
    return acc.item();
  }
};

template <class T>
void check_distribution_step() {
  set_validation(true);
  DistributionStep<T> s;
  BasicTape<T> tape;
  optim::SGD<T> opt({&s.loc, &s.logits}, {T(1e-4)});
  for (int i = 0; i < 3; ++i) {
    opt.zero_grad();
    s.run(tape);
    opt.step();
  }
  const long before = g_allocs.load();
  T last = 0;
  g_trace = true;
  for (int i = 0; i < 5; ++i) {
    opt.zero_grad();
    last = s.run(tape);
    opt.step();
  }
  g_trace = false;
  const long during = g_allocs.load() - before;
  CHECK(std::isfinite(double(last)));
  CHECK(tape.size() > 300);
  INFO("heap allocations in 5 steady-state steps through every distribution: " << during);
  CHECK(during == 0);
}

}  // namespace

TEST_CASE("a step through every distribution, KL, gumbel_softmax and score_function allocates nothing (double)", "[alloc][dist]") {
  check_distribution_step<double>();
}

TEST_CASE("a step through every distribution, KL, gumbel_softmax and score_function allocates nothing (float)", "[alloc][dist]") {
  check_distribution_step<float>();
}

namespace {

// A VAE training step as the programs run it, through every layer of the library: the batcher,
// nn::Mlp (tape.parameter), Normal.reparameterize, KL, bce_with_logits, DataParallel over
// `threads` tapes, clip_grad_norm, Adam, DataParallel.step (the sum inside Adam's pass; then with
// stream_updates: on one thread Adam streamed into the sweep, on more the gradients' factors
// summed by each thread over its rows, the batch gathered onto the tapes from bytes as the programs do), then
// an evaluation pass under NoGrad.
template <class T>
void check_vae_step(int threads) {
  Gen gen(61);
  const Index batch = 32, latent = 8;
  const M<T> images = (gen.matrix(150, 784, 0, 1).array() > 0.5).template cast<T>().matrix();
  const M<std::uint8_t> bytes = images.template cast<std::uint8_t>();  // the programs keep their images as bytes
  Rng rng(3);
  nn::Mlp<T> encoder({784, 64, 2 * latent}, nn::Activation::relu, rng);
  nn::Mlp<T> decoder({latent, 64, 784}, nn::Activation::relu, rng);
  nn::ParameterList<T> params;
  encoder.collect(params, "encoder");
  decoder.collect(params, "decoder");
  optim::Adam<T> adam(params.pointers(), {T(1e-3)});
  nn::DataParallel<T> dp(params, threads);
  dp.tune_evict_shared(1, 2);  // streamed steps 1-4 a trial, 5-6 its choice, 7-10 the next trial, ...
  data::Batcher batches(images.rows(), batch, 5);
  M<T> x(batch, 784), eps(batch, latent), zeros = M<T>::Zero(1, latent);
  std::vector<T> losses(static_cast<std::size_t>(threads));
  const std::vector<Index>* rows = nullptr;
  // the batch copied into the tape, or (gathered) straight from the images onto it
  auto neg_elbo = [&](BasicTape<T>& tape, Index f, Index c, bool gathered = false) {
    const BasicVar<T> xv = gathered ? data::gather_rows(tape, bytes, *rows, f, c) : tape.constant(x.middleRows(f, c));
    const BasicVar<T> h = encoder(xv);
    const Normal<T> q(slice_cols(h, 0, latent), exp(T(0.5) * slice_cols(h, latent, latent)));
    const BasicVar<T> z = q.reparameterize(eps.middleRows(f, c));
    const Normal<T> prior(tape.constant(zeros), T(1));
    return sum(bce_with_logits(decoder(z), xv)) + sum(kl_divergence(q, prior));
  };
  auto step = [&] {
    rows = &batches.next();
    data::gather_rows(images, *rows, x);
    fill_normal(rng, eps);
    dp.run(batch, [&](BasicTape<T>& tape, Index f, Index c, int t) {
      const BasicVar<T> l = neg_elbo(tape, f, c);
      losses[static_cast<std::size_t>(t)] = l.item();
      tape.backward(l / T(batch));
    });
    params.clip_grad_norm(T(100));
    adam.step();
    // and the fused form: the threads' sum taken inside Adam's pass
    dp.step(batch, [&](BasicTape<T>& tape, Index f, Index c, int) { tape.backward(neg_elbo(tape, f, c) / T(batch)); }, adam);
    // and Adam inside the sweep (one thread: the weights' gradients streamed block by block;
    // more: handed over as factors, each thread updating its rows, with and without evicting
    // lines first: the trials set up above time both, choose, and start again every few steps)
    dp.set_stream_updates(true);
    dp.step(batch, [&](BasicTape<T>& tape, Index f, Index c, int) { tape.backward(neg_elbo(tape, f, c, true) / T(batch)); }, adam);
    dp.set_stream_updates(false);
    T eval = 0;
    dp.evaluate(batch, [&](BasicTape<T>& tape, Index f, Index c, int t) {
      const BasicVar<T> l = neg_elbo(tape, f, c);
      if (t == 0) eval = l.item();
    });
    return losses[0] + eval;
  };
  for (int i = 0; i < 5; ++i) step();  // warm-up: arenas, workspaces, the batcher's epoch
  const long before = g_allocs.load();
  T last = 0;
  for (int i = 0; i < 6; ++i) last = step();  // crosses an epoch boundary (4 batches per epoch)
  const long during = g_allocs.load() - before;
  CHECK(std::isfinite(double(last)));
  INFO("heap allocations in 6 steady-state VAE steps on " << threads << " threads: " << during);
  CHECK(during == 0);
}

}  // namespace

TEST_CASE("a VAE step through the layers, DataParallel, Adam and a NoGrad evaluation allocates nothing (1 thread)", "[alloc][nn]") {
  check_vae_step<float>(1);
}

TEST_CASE("a VAE step through the layers, DataParallel, Adam and a NoGrad evaluation allocates nothing (3 threads)", "[alloc][nn]") {
  check_vae_step<float>(3);
  check_vae_step<double>(2);
}

namespace {
// Hessian- and Fisher-vector products with reused objects: a small network's Normal NLL (matrix
// products large enough for the blocked dual GEMM, tanh, softplus, log_prob) and the KL of its
// Normal, then conjugate gradients' products of them.
struct SecondOrderNet {
  Mat x, y;
  Matrix<Dual<double>> xd, yd;
  template <class S>
  const Matrix<S>& xs() const {
    if constexpr (std::is_same<S, double>::value) return x; else return xd;
  }
  template <class S>
  const Matrix<S>& ys() const {
    if constexpr (std::is_same<S, double>::value) return y; else return yd;
  }
  template <class Tp, class L>
  auto make(Tp& t, const L& p) const {
    using S = typename Tp::Scalar;
    const BasicVar<S> out = matmul(tanh(matmul(t.constant(xs<S>()), p[0]) + p[1]), p[2]);
    return Normal<S>(slice_cols(out, 0, 1), softplus(slice_cols(out, 1, 1)) + S(1e-3));
  }
  template <class Tp, class L>
  auto loss(Tp& t, const L& p) const {
    using S = typename Tp::Scalar;
    return -mean(make(t, p).log_prob(t.constant(ys<S>())));
  }
};
}  // namespace

TEST_CASE("Hessian- and Fisher-vector products on reused objects allocate nothing", "[alloc][second_order]") {
  Gen gen(70);
  SecondOrderNet net{gen.matrix(64, 8), gen.matrix(64, 1), {}, {}};
  net.xd = net.x.cast<Dual<double>>();
  net.yd = net.y.cast<Dual<double>>();
  const std::vector<Mat> theta = {gen.matrix(8, 32), gen.matrix(1, 32), gen.matrix(32, 2)};
  const std::vector<Mat> v = {gen.matrix(8, 32), gen.matrix(1, 32), gen.matrix(32, 2)};
  HessianVectorProduct<double> hvp;
  FisherVectorProduct<double> fvp;
  auto loss = [&](auto& t, const auto& p) { return net.loss(t, p); };
  auto make = [&](auto& t, const auto& p) { return net.make(t, p); };
  for (int i = 0; i < 3; ++i) {
    hvp(loss, theta, v);
    fvp(make, theta, v, 1e-3);
  }
  const long before = g_allocs.load();
  double check = 0;
  for (int i = 0; i < 5; ++i) {
    check += hvp(loss, theta, v)[0].sum();
    check += fvp(make, theta, v, 1e-3)[2].sum();
  }
  const long during = g_allocs.load() - before;
  CHECK(std::isfinite(check));
  CHECK(hvp.tape().size() > 10);
  INFO("heap allocations in 5 Hessian- and 5 Fisher-vector products: " << during);
  CHECK(during == 0);
}

TEST_CASE("natural-gradient steps on a reused NaturalGradient allocate nothing", "[alloc][second_order]") {
  Gen gen(71);
  SecondOrderNet net{gen.matrix(64, 8), gen.matrix(64, 1), {}, {}};
  net.xd = net.x.cast<Dual<double>>();
  net.yd = net.y.cast<Dual<double>>();
  Parameter<double> w1(gen.matrix(8, 32)), b1(gen.matrix(1, 32)), w2(gen.matrix(32, 2, -0.3, 0.3));
  const std::vector<Parameter<double>*> params = {&w1, &b1, &w2};
  auto loss = [&](auto& t, const auto& p) { return net.loss(t, p); };
  auto make = [&](auto& t, const auto& p) { return net.make(t, p); };
  NaturalGradientOptions o;
  o.cg_iterations = 5;
  NaturalGradient<double> ng(o);
  for (int i = 0; i < 3; ++i) ng.step(params, loss, make);
  const long before = g_allocs.load();
  int accepted = 0;
  for (int i = 0; i < 5; ++i) accepted += ng.step(params, loss, make).accepted;
  const long during = g_allocs.load() - before;
  CHECK(accepted > 0);
  INFO("heap allocations in 5 natural-gradient steps: " << during);
  CHECK(during == 0);
}
