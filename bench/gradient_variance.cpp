// gradient_variance: the bias, variance, mean squared error and cost of every gradient estimator in
// the library, on four problems whose gradient is known:
//
//   gaussian     d/dtheta and d/dsigma of E[x^2], x ~ N(theta, sigma): exact gradient and variances
//   categorical  d/dlogits of E[f . z], z ~ Categorical(softmax(logits)), K = 2, 10, 100: exact
//   bernoulli    d/dlogits of E[(w . b - t)^2], 16 independent bits: exact by enumeration (2^16)
//   vae          d/dlogits of E[-log p(x | z)] for the encoder logits of a categorical VAE on test
//                images (the vae_categorical checkpoint with --checkpoint, else a fresh model):
//                against a many-sample local-expectation reference (unbiased, low variance)
//
// Estimates are made in chunks; chunk c of an estimator has its own stream (Rng(seed of the
// estimator, c)), and the chunks' statistics are combined in chunk order, so the results do not
// depend on the number of threads. Confidence intervals (95%) come from the spread of the chunks'
// statistics (batch means). A Markdown table goes to stdout, a CSV to --csv, PNG plots to --out.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include <CLI/CLI.hpp>

#include <reparam/data/idx.hpp>
#include <reparam/nn/checkpoint.hpp>
#include <reparam/reparam.hpp>

#include "../examples/decimal_flags.hpp"

namespace {

using reparam::Family;
using reparam::Index;
using Mat = reparam::Matrix<double>;
const double nan_ = std::numeric_limits<double>::quiet_NaN();

struct Options {
  bool quick = false, check = false;
  std::string problems = "all", csv, out = "gradient_variance", data = "/usr/share/datasets/fashion-mnist", checkpoint;
  int threads = 0;
  std::uint64_t seed = 1;
  double scale = 1;  // multiplies every sample count
};

// ---------------------------------------------------------------------------------------------
// Measurement

/// What one row of the table is about.
struct Spec {
  std::string problem, estimator, kind;  // kind: pathwise, score, relaxed, relaxed-st, gumbel-rao, ...
  double temperature = nan_;
  bool unbiased = false;
  Index component = -1;             // -1: the whole gradient; k: its component k alone
  double exact_variance = nan_;     // where a closed form exists
};

/// Sums over one chunk of estimates, per component.
struct Chunk {
  Mat sum, sumsq, sqerr;  // 1 x D each: sum g, sum g^2, sum (g - exact)^2
  double seconds = 0;
  Index n = 0;
};

struct Row {
  Spec spec;
  Index n = 0, dim = 0;
  double mean0 = 0, mean0_ci = 0, exact0 = 0, bias2 = 0, bias2_ci = 0, var = 0, var_ci = 0, mse = 0, mse_ci = 0, us = 0;
  double max_z = 0;  // largest |mean - reference| / standard error over the components
};

double ci95(const std::vector<double>& v, double& mean) {
  const double J = double(v.size());
  mean = 0;
  for (double x : v) mean += x;
  mean /= J;
  double s2 = 0;
  for (double x : v) s2 += (x - mean) * (x - mean);
  return J > 1 ? 1.96 * std::sqrt(s2 / (J - 1) / J) : nan_;
}

/// The row of components [k0, k1) from the chunks: bias^2, variance and MSE of one estimate, each
/// averaged over the chunks (bias^2 corrected for the noise of the chunk's mean and of the
/// reference, ref_se: unbiased).
/// `floor`: an absolute tolerance added to the standard errors for max_z (the rounding of the
/// estimates and of the reference).
Row aggregate(const Spec& spec, const std::vector<Chunk>& chunks, const Mat& exact, const Mat& ref_se, Index k0, Index k1,
              double floor = 0) {
  Row r;
  r.spec = spec;
  r.dim = k1 - k0;
  std::vector<double> b2, var, mse, m0;
  const double ref_var = ref_se.middleCols(k0, k1 - k0).squaredNorm();
  Mat mean = Mat::Zero(1, exact.cols()), msq = mean;
  double secs = 0;
  for (const Chunk& c : chunks) {
    const double B = double(c.n);
    double v = 0, d2 = 0, e2 = 0;
    for (Index k = k0; k < k1; ++k) {
      const double m = c.sum(0, k) / B;
      v += std::max(0.0, (c.sumsq(0, k) - B * m * m) / (B - 1));  // not below 0 by rounding
      d2 += (m - exact(0, k)) * (m - exact(0, k));
      e2 += c.sqerr(0, k) / B;
      mean(0, k) += m;
      msq(0, k) += m * m;
    }
    b2.push_back(d2 - v / B - ref_var);  // the noise of the chunk's mean and of the reference
    var.push_back(v);
    mse.push_back(e2);
    m0.push_back(c.sum(0, k0) / B);
    r.n += c.n;
    secs += c.seconds;
  }
  const double J = double(chunks.size());
  r.bias2_ci = ci95(b2, r.bias2);
  r.var_ci = ci95(var, r.var);
  r.mse_ci = ci95(mse, r.mse);
  r.mean0_ci = ci95(m0, r.mean0);
  r.exact0 = exact(0, k0);
  r.us = 1e6 * secs / double(r.n);
  for (Index k = k0; k < k1; ++k) {
    const double m = mean(0, k) / J, se2 = (msq(0, k) / J - m * m) / (J - 1);
    const double se = std::sqrt(std::max(se2, 0.0) + ref_se(0, k) * ref_se(0, k)) + floor;
    if (se > 0) r.max_z = std::max(r.max_z, std::abs(m - exact(0, k)) / se);
  }
  return r;
}

/// Threads, chunk scheduling and the progress line.
class Runner {
 public:
  Runner(const Options& o) : o_(o), pool_(o.threads), tty_(isatty(2)) {}
  int threads() const { return pool_.size(); }

  /// fill(thread, rng, out): out (B x D) receives B estimates drawn from rng.
  template <class Fill>
  std::vector<Chunk> run(const std::string& label, Index chunks, Index per_chunk, Index D, const Mat& exact, std::uint64_t seed,
                         Fill&& fill) {
    std::vector<Chunk> out(static_cast<std::size_t>(chunks));
    std::atomic<Index> next{0};
    pool_.run([&](int t) {
      Mat g(per_chunk, D);
      for (Index c; (c = next.fetch_add(1)) < chunks;) {
        reparam::Rng rng(seed, std::uint64_t(c));
        const auto t0 = std::chrono::steady_clock::now();
        fill(t, rng, g);
        Chunk& ch = out[static_cast<std::size_t>(c)];
        ch.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        ch.n = per_chunk;
        ch.sum = g.colwise().sum();
        ch.sumsq = g.array().square().colwise().sum();
        ch.sqerr = (g.rowwise() - exact.row(0)).array().square().colwise().sum();
      }
    });
    ++done_;
    progress(label);
    return out;
  }
  void finish() {
    if (tty_) std::fprintf(stderr, "\n");
  }

 private:
  void progress(const std::string& label) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (tty_)
      std::fprintf(stderr, "\r\033[K[%3ld measured] %6.1f s  %s", long(done_), s, label.c_str());
    else if (done_ % 10 == 0)
      std::fprintf(stderr, "[%ld measured] %.1f s  %s\n", long(done_), s, label.c_str());
    std::fflush(stderr);
  }
  const Options& o_;
  reparam::ThreadPool pool_;
  bool tty_;
  Index done_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

std::uint64_t hash(const std::string& s, std::uint64_t seed) {
  std::uint64_t h = 1469598103934665603ULL ^ seed;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

// ---------------------------------------------------------------------------------------------
// Problem 1: Gaussian

/// Exact gradient (2 theta, 2 sigma) and the variances of one estimate (derived in README):
/// pathwise  d/dtheta 2x: 4 sigma^2;  d/dsigma 2x eps: 4 theta^2 + 8 sigma^2
/// score     d/dtheta x^2 eps / sigma: theta^4 / sigma^2 + 14 theta^2 + 15 sigma^2
///           d/dsigma x^2 (eps^2 - 1) / sigma: 2 theta^4 / sigma^2 + 60 theta^2 + 74 sigma^2
std::vector<Row> gaussian(Runner& run, const Options& o) {
  const double th = 1.0, sg = 1.0;
  Mat exact(1, 2);
  exact << 2 * th, 2 * sg;
  const Mat no_se = Mat::Zero(1, 2);
  const Index B = 16384, chunks = std::max<Index>(8, Index((o.quick ? 32 : 256) * o.scale));
  std::vector<reparam::Tape> tapes(static_cast<std::size_t>(run.threads()));
  std::vector<Row> rows;
  auto both = [&](Spec s, double v_theta, double v_sigma, const std::vector<Chunk>& ch) {
    s.component = 0;
    s.exact_variance = v_theta;
    Spec s1 = s;
    s1.component = 1;
    s1.exact_variance = v_sigma;
    s.estimator += " d/dtheta";
    s1.estimator += " d/dsigma";
    rows.push_back(aggregate(s, ch, exact, no_se, 0, 1));
    rows.push_back(aggregate(s1, ch, exact, no_se, 1, 2));
  };
  // pathwise: x = theta + sigma eps, one estimate per column
  {
    Spec s{"gaussian", "pathwise", "pathwise"};
    s.unbiased = true;
    auto ch = run.run("gaussian: pathwise", chunks, B, 2, exact, hash("gaussian pathwise", o.seed), [&](int t, reparam::Rng& rng, Mat& g) {
      reparam::Tape& tape = tapes[static_cast<std::size_t>(t)];
      tape.clear();
      const reparam::Var a = tape.variable(Mat::Constant(1, B, th)), b = tape.variable(Mat::Constant(1, B, sg));
      tape.backward(sum(square(reparam::Normal<double>(a, b).rsample(rng))));
      g.col(0) = a.grad().transpose();
      g.col(1) = b.grad().transpose();
    });
    both(s, 4 * sg * sg, 4 * th * th + 8 * sg * sg, ch);
  }
  // score function: S samples per estimate (rows), their mean; baselines none, EMA, leave-one-out
  enum class Base { none, ema, loo };
  struct Variant {
    const char* name;
    Base base;
    Index S;
  };
  for (const Variant& v : {Variant{"score function", Base::none, 1}, Variant{"score function + moving average", Base::ema, 1},
                           Variant{"score function + leave-one-out (S=2)", Base::loo, 2},
                           Variant{"score function + leave-one-out (S=4)", Base::loo, 4},
                           Variant{"score function + leave-one-out (S=8)", Base::loo, 8}}) {
    Spec s{"gaussian", v.name, "score"};
    s.unbiased = true;
    const Index sub = 16;  // the moving average is updated between sub-batches of a chunk
    auto ch = run.run(std::string("gaussian: ") + v.name, chunks, B, 2, exact, hash(std::string("gaussian ") + v.name, o.seed),
                      [&](int t, reparam::Rng& rng, Mat& g) {
                        reparam::Tape& tape = tapes[static_cast<std::size_t>(t)];
                        reparam::EmaBaseline<double> ema(0.9);
                        const Index b = B / sub;
                        for (Index k = 0; k < sub; ++k) {
                          tape.clear();
                          const reparam::Var a = tape.variable(Mat::Constant(1, b, th)), c = tape.variable(Mat::Constant(1, b, sg));
                          const reparam::Normal<double> q(broadcast_to(a, v.S, b), broadcast_to(c, v.S, b));
                          const Mat x = q.sample(rng);
                          const Mat cost = x.array().square();
                          const reparam::Var lp = q.log_prob(tape.constant(x));
                          reparam::Var surrogate;
                          if (v.base == Base::loo)
                            surrogate = reparam::score_function(lp, cost, reparam::leave_one_out_baseline(cost));
                          else
                            surrogate = reparam::score_function(lp, cost, v.base == Base::ema && ema.initialized() ? ema.value() : 0.0);
                          if (v.base == Base::ema) ema.update(cost);
                          tape.backward(v.S == 1 ? surrogate : surrogate / double(v.S));
                          g.block(k * b, 0, b, 1) = a.grad().transpose();
                          g.block(k * b, 1, b, 1) = c.grad().transpose();
                        }
                      });
    const double t2 = th * th, s2 = sg * sg;
    if (v.base == Base::none)
      both(s, t2 * t2 / s2 + 14 * t2 + 15 * s2, 2 * t2 * t2 / s2 + 60 * t2 + 74 * s2, ch);
    else
      both(s, nan_, nan_, ch);
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Problems 2-4: discrete, through the library's common estimator interface

template <class T>
using CostFn = std::function<reparam::BasicVar<T>(const reparam::BasicVar<T>&)>;
template <class T>
using EstFn = std::function<reparam::Estimate<T>(Family, const reparam::BasicVar<T>&, const CostFn<T>&, reparam::Rng&)>;

/// An estimator to measure: a fresh instance per chunk (the moving average starts over), and the
/// scale of its logits (slope-annealed straight-through runs on a = logits / m).
template <class T>
struct Candidate {
  Spec spec;
  std::function<EstFn<T>()> make;
  double slope = 1;
};

template <class T, class E>
Candidate<T> candidate(const char* kind, double tau, E proto, Family family, double slope = 1) {
  Spec s;
  s.estimator = proto.name();
  if (family == Family::bernoulli) {
    const std::string gs = "Gumbel-softmax";
    const auto at = s.estimator.find(gs);
    if (at != std::string::npos) s.estimator.replace(at, gs.size(), "RelaxedBernoulli");
  }
  s.kind = kind;
  s.temperature = tau;
  s.unbiased = E::unbiased;
  return {s, [proto]() {
            return EstFn<T>([est = proto](Family f, const reparam::BasicVar<T>& l, const CostFn<T>& c, reparam::Rng& r) mutable {
              return est(f, l, c, r);
            });
          },
          slope};
}

template <class T>
std::vector<Candidate<T>> candidates(Family family, bool all_temperatures) {
  using B = reparam::ScoreFunctionEstimator::Baseline;
  std::vector<Candidate<T>> c;
  c.push_back(candidate<T>("score", nan_, reparam::ScoreFunctionEstimator(), family));
  c.push_back(candidate<T>("score", nan_, reparam::ScoreFunctionEstimator(B::moving_average), family));
  for (Index S : {2, 4, 8}) c.push_back(candidate<T>("score", nan_, reparam::ScoreFunctionEstimator(B::leave_one_out, S), family));
  const std::vector<double> taus = all_temperatures ? std::vector<double>{0.1, 0.5, 1, 2, 5} : std::vector<double>{0.5, 1, 2};
  for (double tau : taus) c.push_back(candidate<T>("relaxed", tau, reparam::GumbelSoftmax{tau}, family));
  for (double tau : taus) c.push_back(candidate<T>("relaxed-st", tau, reparam::GumbelSoftmax{tau, true}, family));
  for (double tau : taus) c.push_back(candidate<T>("gumbel-rao", tau, reparam::GumbelRao{tau, 10}, family));
  c.push_back(candidate<T>("straight-through", nan_, reparam::StraightThrough{}, family));
  c.push_back(candidate<T>("slope-annealed", nan_, reparam::SlopeAnnealedStraightThrough{2.0}, family, 2.0));
  c.push_back(candidate<T>("darn", nan_, reparam::Darn{false}, family));
  c.push_back(candidate<T>("muprop", nan_, reparam::MuProp{false}, family));
  c.push_back(candidate<T>("rebar", 0.5, reparam::Rebar{1.0, 0.5, false}, family));
  return c;
}

/// One discrete problem: logits (g x K per estimate), the cost on the tape (given the thread), and
/// the reference gradient (1 x g K) with its standard error (zero when exact).
template <class T>
struct Discrete {
  std::string name;
  Family family;
  reparam::Matrix<T> logits;
  std::function<reparam::BasicVar<T>(int thread, const reparam::BasicVar<T>&)> cost;
  Mat exact, exact_se;
  Index per_call = 512;  // estimates per tape (the moving average is updated between calls)
};

template <class T>
std::vector<Row> measure_discrete(Runner& run, const Options& o, const Discrete<T>& p, const std::vector<Candidate<T>>& cands,
                                  Index chunks, Index per_chunk) {
  const Index g = p.logits.rows(), K = p.logits.cols(), D = g * K;
  std::vector<reparam::BasicTape<T>> tapes(static_cast<std::size_t>(run.threads()));
  std::vector<Row> rows;
  for (const Candidate<T>& cand : cands) {
    Spec s = cand.spec;
    s.problem = p.name;
    const std::string label = p.name + ": " + s.estimator;
    auto ch = run.run(label, chunks, per_chunk, D, p.exact, hash(label, o.seed), [&](int t, reparam::Rng& rng, Mat& out) {
      reparam::BasicTape<T>& tape = tapes[static_cast<std::size_t>(t)];
      EstFn<T> est = cand.make();
      const CostFn<T> f = [&](const reparam::BasicVar<T>& x) { return p.cost(t, x); };
      const Index b = std::min(p.per_call, per_chunk);
      const reparam::Matrix<T> base = (p.logits / T(cand.slope)).replicate(b, 1);
      for (Index done = 0; done < per_chunk; done += b) {
        tape.clear();
        const reparam::BasicVar<T> l = tape.variable(base);
        tape.backward(est(p.family, l, f, rng).surrogate);
        const auto gr = l.grad();
        const Eigen::Map<const reparam::Matrix<T>> flat(gr.data(), b, D);
        out.middleRows(done, b) = flat.template cast<double>() / cand.slope;
      }
    });
    // rounding: the estimates are made in T, and a probability that rounds to 1 makes a gradient
    // component exactly 0 whose true value is tiny
    const double floor = p.exact.cwiseAbs().maxCoeff() * (sizeof(T) == 4 ? 1e-5 : 1e-11);
    rows.push_back(aggregate(s, ch, p.exact, p.exact_se, 0, D, floor));
  }
  return rows;
}

Discrete<double> categorical_problem(Index K) {
  Discrete<double> p;
  p.name = "categorical K=" + std::to_string(K);
  p.family = Family::categorical;
  p.logits.resize(1, K);
  Mat f(K, 1);
  for (Index k = 0; k < K; ++k) {
    p.logits(0, k) = 1.5 * std::sin(1.7 * double(k) + 0.3);
    f(k, 0) = std::cos(0.9 * double(k));
  }
  // exact: d/dl_k sum_j p_j f_j = p_k (f_k - p . f)
  Mat pr = (p.logits.array() - p.logits.maxCoeff()).exp();
  pr /= pr.sum();
  const double pf = (pr * f)(0, 0);
  p.exact = (pr.array() * (f.transpose().array() - pf)).matrix();
  p.exact_se = Mat::Zero(1, K);
  p.cost = [f](int, const reparam::Var& x) { return matmul(x, x.tape().constant(f)); };
  return p;
}

Discrete<double> bernoulli_problem(Index n) {
  Discrete<double> p;
  p.name = "bernoulli " + std::to_string(n) + " bits";
  p.family = Family::bernoulli;
  p.logits.resize(1, n);
  Mat w(n, 1);
  for (Index j = 0; j < n; ++j) {
    p.logits(0, j) = 1.2 * std::sin(double(j) + 1.0);
    w(j, 0) = std::cos(0.7 * double(j));
  }
  const double t = 0.5 * w.sum() + 0.3;
  // exact: sum_b p(b) f(b) (b - sigma), f(b) = (w . b - t)^2, over all 2^n outcomes
  const Mat sig = (1.0 / (1.0 + (-p.logits.array()).exp())).matrix();
  p.exact = Mat::Zero(1, n);
  Mat b(1, n);
  for (std::uint64_t c = 0; c < (std::uint64_t(1) << n); ++c) {
    double pb = 1, wb = 0;
    for (Index j = 0; j < n; ++j) {
      b(0, j) = double((c >> j) & 1);
      pb *= b(0, j) > 0 ? sig(0, j) : 1 - sig(0, j);
      wb += w(j, 0) * b(0, j);
    }
    p.exact += pb * (wb - t) * (wb - t) * (b - sig);
  }
  p.exact_se = Mat::Zero(1, n);
  p.cost = [w, t](int, const reparam::Var& x) { return square(matmul(x, x.tape().constant(w)) - t); };
  return p;
}

// ---------------------------------------------------------------------------------------------
// Problem 4: the categorical VAE's encoder logits

using MatF = reparam::Matrix<float>;
using VarF = reparam::VarF;

struct VaeProblem {
  Index latents = 20, classes = 10, images = 2;
  std::vector<reparam::nn::Mlp<float>> decoders;  // one per thread (parameters are read, not shared)
  MatF x;                                         // the test images, binarized
  std::string source;
};

/// -log p(x | z) per image for z (rows * latents x classes, blocks of `images` per estimate).
VarF vae_cost(VaeProblem& v, int t, const VarF& z) {
  const Index n = z.rows() / v.latents;
  const VarF logits = v.decoders[static_cast<std::size_t>(t)](reshape(z, n, v.latents * v.classes));
  const MatF targets = v.x.replicate(n / v.images, 1);
  return sum_rows(bce_with_logits(logits, z.tape().constant(targets)));
}

Discrete<float> vae_problem(Runner& run, const Options& o, VaeProblem& v) {
  reparam::Rng init(o.seed);
  reparam::nn::Mlp<float> encoder({784, 512, 256, v.latents * v.classes}, reparam::nn::Activation::relu, init);
  reparam::nn::Mlp<float> decoder({v.latents * v.classes, 256, 512, 784}, reparam::nn::Activation::relu, init);
  if (!o.checkpoint.empty()) {
    reparam::nn::ParameterList<float> params;
    encoder.collect(params, "encoder");
    decoder.collect(params, "decoder");
    // vae_categorical's checkpoints also keep its score-function baseline (a StateList entry),
    // which is the model's state as its weights are: read, and not used here.
    MatF baseline = MatF::Zero(1, 2);
    reparam::nn::StateList<float> state;
    state.add("baseline", baseline);
    reparam::nn::load_checkpoint(o.checkpoint, params, static_cast<reparam::optim::Adam<float>*>(nullptr), &state);
    v.source = "checkpoint " + o.checkpoint;
  } else {
    v.source = "a freshly initialised model (seed " + std::to_string(o.seed) + ")";
  }
  const reparam::data::MnistSet<float> test = reparam::data::load_mnist<float>(o.data, "t10k");
  v.x = (test.images.topRows(v.images).array() > 127.f / 255.f).cast<float>();
  v.decoders.assign(static_cast<std::size_t>(run.threads()), decoder);
  reparam::TapeF tape;
  Discrete<float> p;
  p.name = "vae";
  p.family = Family::categorical;
  p.logits = reshape(encoder(tape.constant(v.x)), v.images * v.latents, v.classes).value();
  p.cost = [&v](int t, const VarF& z) { return vae_cost(v, t, z); };
  p.per_call = 16;
  // reference: local expectations. For each latent j, E_{z_-j}[sum_k f(z_-j, k) d p_jk / d logits_j]
  // with z_-j from one joint sample: every class of every latent is decoded (images x latents x
  // classes rows per sample). Unbiased, and far less noisy than any estimator measured here.
  const Index R = v.images * v.latents, K = v.classes, D = R * K;
  MatF pr = p.logits;
  for (Index r = 0; r < R; ++r) {
    pr.row(r) = (pr.row(r).array() - pr.row(r).maxCoeff()).exp();
    pr.row(r) /= pr.row(r).sum();
  }
  const Index M = std::max<Index>(8, Index((o.quick ? 16 : 128) * o.scale));
  std::vector<reparam::TapeF> tapes(static_cast<std::size_t>(run.threads()));
  auto ch = run.run("vae: reference", M, 1, D, Mat::Zero(1, D), hash("vae reference", o.seed), [&](int t, reparam::Rng& rng, Mat& g) {
    reparam::TapeF& tp = tapes[static_cast<std::size_t>(t)];
    tp.clear();
    const reparam::Categorical<float> q(tp.constant(p.logits));
    MatF z;
    q.sample(rng, z);
    // rows (image i, latent j, class k): z of image i with latent j set to class k
    MatF all = MatF::Zero(R * K, v.latents * K);
    for (Index i = 0; i < v.images; ++i)
      for (Index j = 0; j < v.latents; ++j)
        for (Index k = 0; k < K; ++k) {
          const Index row = (i * v.latents + j) * K + k;
          all.row(row) = Eigen::Map<const MatF>(z.data() + i * v.latents * K, 1, v.latents * K);
          all.block(row, j * K, 1, K).setZero();
          all(row, j * K + k) = 1;
        }
    const VarF logits = v.decoders[static_cast<std::size_t>(t)](tp.constant(all));
    MatF targets(R * K, 784);
    for (Index i = 0; i < v.images; ++i) targets.middleRows(i * v.latents * K, v.latents * K) = v.x.row(i).replicate(v.latents * K, 1);
    const MatF cost = sum_rows(bce_with_logits(logits, tp.constant(targets))).value();
    for (Index r = 0; r < R; ++r) {
      const double pf = (pr.row(r).cast<double>().array() * cost.middleRows(r * K, K).transpose().cast<double>().array()).sum();
      for (Index k = 0; k < K; ++k) g(0, r * K + k) = double(pr(r, k)) * (double(cost(r * K + k, 0)) - pf);
    }
  });
  p.exact = Mat::Zero(1, D);
  Mat sq = Mat::Zero(1, D);
  for (const Chunk& c : ch) {
    p.exact += c.sum;
    sq += c.sumsq;
  }
  p.exact /= double(M);
  p.exact_se = ((sq / double(M) - p.exact.cwiseProduct(p.exact)) / double(M - 1)).cwiseMax(0.0).cwiseSqrt();
  return p;
}

// ---------------------------------------------------------------------------------------------
// Output

std::string fmt(double v, int prec = 4) {
  if (std::isnan(v)) return "";
  char b[64];
  std::snprintf(b, sizeof b, "%.*g", prec, v);
  return b;
}
std::string pm(double v, double ci) { return std::isnan(ci) ? fmt(v) : fmt(v) + " ± " + fmt(ci, 2); }

void print_table(const std::vector<Row>& rows, const std::string& problem, const std::string& note) {
  std::printf("\n### %s\n\n%s\n\n", problem.c_str(), note.c_str());
  std::printf("| estimator | unbiased | mean[0] (exact) | bias² | variance | exact variance | MSE | µs/estimate |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const Row& r : rows) {
    if (r.spec.problem != problem) continue;
    std::printf("| %s | %s | %s (%s) | %s | %s | %s | %s | %s |\n", r.spec.estimator.c_str(), r.spec.unbiased ? "yes" : "no",
                pm(r.mean0, r.mean0_ci).c_str(), fmt(r.exact0).c_str(), pm(r.bias2, r.bias2_ci).c_str(), pm(r.var, r.var_ci).c_str(),
                fmt(r.spec.exact_variance).c_str(), pm(r.mse, r.mse_ci).c_str(), fmt(r.us, 3).c_str());
  }
  std::fflush(stdout);
}

std::string csv_field(const std::string& s) { return s.find(',') == std::string::npos ? s : "\"" + s + "\""; }

void write_csv(const std::string& path, const std::vector<Row>& rows) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("cannot write " + path);
  std::fprintf(f, "problem,estimator,kind,temperature,unbiased,component,samples,dim,mean0,mean0_ci,exact0,bias2,bias2_ci,variance,"
                  "variance_ci,exact_variance,mse,mse_ci,us_per_estimate,max_z\n");
  for (const Row& r : rows)
    std::fprintf(f, "%s,%s,%s,%s,%d,%ld,%ld,%ld,%.10g,%.4g,%.10g,%.10g,%.4g,%.10g,%.4g,%s,%.10g,%.4g,%.6g,%.3f\n",
                 csv_field(r.spec.problem).c_str(), csv_field(r.spec.estimator).c_str(), r.spec.kind.c_str(),
                 fmt(r.spec.temperature, 6).c_str(), int(r.spec.unbiased), long(r.spec.component), long(r.n), long(r.dim), r.mean0,
                 r.mean0_ci, r.exact0, r.bias2, r.bias2_ci, r.var, r.var_ci, fmt(r.spec.exact_variance, 10).c_str(), r.mse, r.mse_ci, r.us,
                 r.max_z);
  std::fclose(f);
}

/// Two PNGs per discrete problem, drawn by gnuplot: bias^2 and variance against temperature (the
/// relaxed estimators; the unbiased ones' variance as horizontal lines), and variance against cost.
void plot(const Options& o, const std::vector<Row>& rows, const std::vector<std::string>& problems) {
  if (std::system("command -v gnuplot > /dev/null 2>&1") != 0) {
    std::fprintf(stderr, "gradient_variance: gnuplot not found (Debian: gnuplot-nox): no plots\n");
    return;
  }
  for (const std::string& prob : problems) {
    std::string stem = prob;
    for (char& c : stem)
      if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    const std::string dat = o.out + "/" + stem + ".dat", gp = o.out + "/" + stem + ".gp";
    const char* relaxed = prob.compare(0, 9, "bernoulli") == 0 ? "RelaxedBernoulli" : "Gumbel-softmax";
    std::FILE* d = std::fopen(dat.c_str(), "w");
    if (!d) throw std::runtime_error("cannot write " + dat);
    // blocks: relaxed, relaxed-st, gumbel-rao (tau, bias2, variance); then every estimator (us, variance, label)
    std::string hlines;
    int lines = 0;
    for (const char* kind : {"relaxed", "relaxed-st", "gumbel-rao"}) {
      std::fprintf(d, "# %s\n", kind);
      for (const Row& r : rows)
        if (r.spec.problem == prob && r.spec.kind == kind)
          // a bias^2 the sample cannot tell from 0 (estimate <= 0) is left out of the log plot
          std::fprintf(d, "%g %s %g\n", r.spec.temperature, r.bias2 > 0 ? fmt(r.bias2, 8).c_str() : "NaN", r.var);
      std::fprintf(d, "\n\n");
    }
    std::fprintf(d, "# cost\n");
    for (const Row& r : rows)
      if (r.spec.problem == prob) {
        std::fprintf(d, "%g %g \"%s\"\n", r.us, r.var, r.spec.estimator.c_str());
        const bool line = r.spec.estimator == "score function" || r.spec.estimator == "score function + leave-one-out (S=8)" ||
                          r.spec.kind == "muprop" || r.spec.kind == "rebar";
        if (r.spec.unbiased && line && r.var > 1e-12) {  // (MuProp is exact for a linear f)
          static const char* colors[] = {"black", "gray50", "orange", "dark-red"};
          hlines += ", " + fmt(r.var, 8) + " with lines dt 4 lw 2 lc rgb '" + colors[lines++ % 4] + "' title \"" + r.spec.estimator +
                    " (variance)\"";
        }
      }
    std::fclose(d);
    std::FILE* g = std::fopen(gp.c_str(), "w");
    if (!g) throw std::runtime_error("cannot write " + gp);
    std::fprintf(g,
                 "set terminal pngcairo size 900,700 font 'sans,10'\nset output '%s/%s_temperature.png'\n"
                 "set logscale xy\nset format y '10^{%%L}'\nset xlabel 'temperature'\nset ylabel 'sum over components'\nset key below maxrows 5 font ',9'\n"
                 "set title '%s: bias^2 (solid) and variance (dashed) of the relaxed estimators'\n"
                 "plot '%s' index 0 using 1:2 with linespoints lc 1 title '%s bias^2', "
                 "'' index 0 using 1:3 with linespoints dt 2 lc 1 title '%s variance', "
                 "'' index 1 using 1:2 with linespoints lc 2 title 'ST %s bias^2', "
                 "'' index 1 using 1:3 with linespoints dt 2 lc 2 title 'ST %s variance', "
                 "'' index 2 using 1:2 with linespoints lc 3 title 'Gumbel-Rao bias^2', "
                 "'' index 2 using 1:3 with linespoints dt 2 lc 3 title 'Gumbel-Rao variance'%s\n"
                 "set output '%s/%s_cost.png'\nset format x '%%g'\nset xlabel 'microseconds per estimate'\nset ylabel 'variance'\n"
                 "set title '%s: variance against cost'\nunset key\n"
                 "plot '%s' index 3 using 1:2 with points pt 7, '' index 3 using 1:2:3 with labels offset 0.5,0.5 left font ',7'\n",
                 o.out.c_str(), stem.c_str(), prob.c_str(), dat.c_str(), relaxed, relaxed, relaxed, relaxed, hlines.c_str(),
                 o.out.c_str(), stem.c_str(), prob.c_str(), dat.c_str());
    std::fclose(g);
    if (std::system(("gnuplot '" + gp + "'").c_str()) != 0) std::fprintf(stderr, "gradient_variance: gnuplot failed on %s\n", gp.c_str());
  }
}

bool wanted(const Options& o, const std::string& p) {
  if (o.problems == "all") return true;
  std::string s = "," + o.problems + ",";
  return s.find("," + p + ",") != std::string::npos;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gradient_variance: bias, variance, MSE and cost of every gradient estimator on problems with known gradients",
               "gradient_variance"};
  Options o;
  app.add_flag("--quick", o.quick, "fewer samples (about 8x): a smoke run");
  app.add_option("--problem", o.problems, "comma-separated: gaussian, categorical, bernoulli, vae, or all")->capture_default_str();
  app.add_option("--csv", o.csv, "write every row to this CSV file");
  app.add_option("--out", o.out, "folder for the PNG plots (and their gnuplot scripts and data)")->capture_default_str();
  app.add_option("--threads", o.threads, "threads (0: one per core); the results do not depend on it")
      ->capture_default_str()
      ->transform(flags::decimal(true, std::numeric_limits<int>::max()));
  app.add_option("--seed", o.seed, "seed of every stream")->capture_default_str()->transform(flags::decimal(false));
  app.add_option("--scale", o.scale, "multiply every sample count")->capture_default_str();
  app.add_option("--data", o.data, "MNIST-format folder for the vae problem")->capture_default_str();
  app.add_option("--checkpoint", o.checkpoint, "a vae_categorical checkpoint (--save) for the vae problem");
  app.add_flag("--check", o.check, "exit 1 unless every unbiased estimator's mean matches the exact gradient (6 standard errors; "
                                   "not on the vae problem) and the Gaussian variances their closed forms (6 standard errors)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "gradient_variance: %s\n", e.what());
    return 2;
  }
  try {
    if (o.problems != "all")
      for (const std::string& p : CLI::detail::split(o.problems, ','))
        if (p != "gaussian" && p != "categorical" && p != "bernoulli" && p != "vae")
          throw std::runtime_error("--problem must list gaussian, categorical, bernoulli or vae (got " + p + ")");
    if (!(o.scale > 0) || o.threads < 0)
      throw std::runtime_error("--scale must be > 0 and --threads >= 0 (got " + (std::isnan(o.scale) ? std::string("nan") : fmt(o.scale)) +
                               " and " + std::to_string(o.threads) + ")");
    if (o.out.find('\'') != std::string::npos)  // the folder is passed to mkdir and gnuplot in single quotes
      throw std::runtime_error("--out must not contain a single quote (got " + o.out + ")");
    if (std::system(("mkdir -p '" + o.out + "'").c_str()) != 0) throw std::runtime_error("cannot create " + o.out);
    Runner run(o);
    const auto t0 = std::chrono::steady_clock::now();
    std::printf("# Gradient estimators: bias, variance and cost\n\n%d threads, seed %llu%s. bias², variance and MSE are summed "
                "over the gradient's components, for one estimate; ± is a 95%% confidence interval over %s chunks.\n",
                run.threads(), (unsigned long long)o.seed, o.quick ? ", --quick" : "", "independent");
    std::fflush(stdout);
    std::vector<Row> rows;
    std::vector<std::string> plotted;
    const Index chunks = 32;  // estimates per estimator: chunks x per
    const Index per = std::max<Index>(64, Index((o.quick ? 256 : 2048) * o.scale));
    if (wanted(o, "gaussian")) {
      for (Row& r : gaussian(run, o)) rows.push_back(r);
      print_table(rows, "gaussian", "x ~ N(1, 1), f = x²; exact gradient (2, 2). Exact variances of one estimate: pathwise 4σ² "
                                    "and 4θ² + 8σ²; score function θ⁴/σ² + 14θ² + 15σ² and 2θ⁴/σ² + 60θ² + 74σ².");
    }
    if (wanted(o, "categorical"))
      for (Index K : {2, 10, 100}) {
        const Discrete<double> p = categorical_problem(K);
        for (Row& r : measure_discrete(run, o, p, candidates<double>(Family::categorical, true), chunks, per)) rows.push_back(r);
        print_table(rows, p.name, "f(z) = f . z, logits_k = 1.5 sin(1.7k + 0.3), f_k = cos(0.9k); exact gradient p_k (f_k - p . f).");
        plotted.push_back(p.name);
      }
    if (wanted(o, "bernoulli")) {
      const Discrete<double> p = bernoulli_problem(16);
      for (Row& r : measure_discrete(run, o, p, candidates<double>(Family::bernoulli, true), chunks, per)) rows.push_back(r);
      print_table(rows, p.name, "f(b) = (w . b - t)², logits_j = 1.2 sin(j + 1), w_j = cos(0.7j), t = sum(w)/2 + 0.3; exact by "
                                "enumeration of the 65536 outcomes.");
      plotted.push_back(p.name);
    }
    if (wanted(o, "vae")) {
      VaeProblem v;
      const Discrete<float> p = vae_problem(run, o, v);
      const Index vper = std::max<Index>(16, Index((o.quick ? 32 : 128) * o.scale));
      for (Row& r : measure_discrete(run, o, p, candidates<float>(Family::categorical, false), chunks, vper)) rows.push_back(r);
      print_table(rows, "vae",
                  "d/dlogits of E[-log p(x | z)] for " + std::to_string(v.images) + " test images, " + std::to_string(v.latents) + " x " +
                      std::to_string(v.classes) + " categorical latents, " + v.source +
                      "; reference: local expectations over many joint samples (its standard error, summed over components, is " +
                      fmt(p.exact_se.squaredNorm()) + " in the units of bias²).");
      plotted.push_back("vae");
    }
    run.finish();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (const Row& r : rows)
      if (r.spec.problem == "gaussian" && r.spec.estimator == "pathwise d/dtheta")
        std::printf("\nPathwise estimates on the Gaussian problem (float64, both gradients): %.1f million per second per core.\n",
                    1.0 / r.us);
    std::printf("Total time %.1f s on %d threads.\n", secs, run.threads());
    if (!o.csv.empty()) write_csv(o.csv, rows);
    plot(o, rows, plotted);
    if (o.check) {
      int bad = 0;
      for (const Row& r : rows) {
        // not on the vae problem: there the score-function terms of rare classes are heavy-tailed
        // (a sample of N estimates misses the classes of probability below 1/N, so its mean sits
        // further from the reference than its own standard error says)
        const bool mean_bad = r.spec.unbiased && r.spec.problem != "vae" && r.max_z > 6;
        const bool var_bad = !std::isnan(r.spec.exact_variance) && std::abs(r.var - r.spec.exact_variance) > 6 * r.var_ci / 1.96;
        if (mean_bad || var_bad) {
          std::fprintf(stderr, "gradient_variance: check failed: %s, %s: %s\n", r.spec.problem.c_str(), r.spec.estimator.c_str(),
                       mean_bad ? ("mean off by " + fmt(r.max_z) + " standard errors").c_str()
                                : ("variance " + fmt(r.var) + " vs exact " + fmt(r.spec.exact_variance)).c_str());
          ++bad;
        }
      }
      if (bad) return 1;
      std::fprintf(stderr, "gradient_variance: check passed (%zu rows)\n", rows.size());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gradient_variance: %s\n", e.what());
    return 2;
  }
}
