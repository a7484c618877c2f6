// The estimator zoo behind its common interface (estimators/discrete.hpp), on a categorical problem
// (two categorical rows of 3 classes sharing one cost) and a Bernoulli one (4 bits), with a
// quadratic f so that the estimators differ. References by enumeration, computed here in plain
// doubles without the library: the exact gradient sum_x p(x) f(x) d log p(x) for the unbiased
// estimators; for the biased ones the mean they are known to have (straight-through: the average
// over x of f'(x) times the Jacobian of the probabilities; DARN: f' at 1/K times that Jacobian).
// Tolerance: 5 standard errors of the mean of N estimates, per component.
#include <cmath>
#include <functional>
#include <vector>

#include "support.hpp"

using namespace reparam;
using test::Mat;

namespace {

// f(x) = (w . x - t)^2 + v . x over the g x K block of one cost.
struct Problem {
  Family family;
  Mat logits, w, v;  // g x K (Bernoulli: 1 x n)
  double t;
  double slope = 1;

  Index g() const { return logits.rows(); }
  Index K() const { return logits.cols(); }
  Mat probs() const {
    Mat p = (logits * slope).array();
    if (family == Family::bernoulli) return (1.0 / (1.0 + (-p.array()).exp())).matrix();
    for (Index r = 0; r < g(); ++r) {
      const double m = p.row(r).maxCoeff();
      p.row(r) = (p.row(r).array() - m).exp();
      p.row(r) /= p.row(r).sum();
    }
    return p;
  }
  double f(const Mat& x) const {
    const double m = (w.array() * x.array()).sum() - t;
    return m * m + (v.array() * x.array()).sum();
  }
  Mat fprime(const Mat& x) const { return 2 * ((w.array() * x.array()).sum() - t) * w + v; }
  // d/dlogits of sum_j a_j p_j (per categorical row, or per bit), times the slope
  Mat jacobian_t(const Mat& a) const {
    const Mat p = probs();
    Mat out(g(), K());
    for (Index r = 0; r < g(); ++r)
      for (Index k = 0; k < K(); ++k)
        out(r, k) = family == Family::bernoulli ? a(r, k) * p(r, k) * (1 - p(r, k))
                                                : p(r, k) * (a(r, k) - (a.row(r).array() * p.row(r).array()).sum());
    return slope * out;
  }
  // every outcome with its probability
  void enumerate(const std::function<void(const Mat&, double)>& visit) const {
    const Mat p = probs();
    const Index per = family == Family::bernoulli ? 2 : K(), slots = family == Family::bernoulli ? K() : g();
    Index total = 1;
    for (Index s = 0; s < slots; ++s) total *= per;
    for (Index c = 0; c < total; ++c) {
      Mat x = Mat::Zero(g(), K());
      double px = 1;
      Index rest = c;
      for (Index s = 0; s < slots; ++s, rest /= per) {
        const Index choice = rest % per;
        if (family == Family::bernoulli) {
          x(0, s) = double(choice);
          px *= choice ? p(0, s) : 1 - p(0, s);
        } else {
          x(s, choice) = 1;
          px *= p(s, choice);
        }
      }
      visit(x, px);
    }
  }
  Mat exact() const {
    const Mat p = probs();
    Mat out = Mat::Zero(g(), K());
    enumerate([&](const Mat& x, double px) { out += px * f(x) * (x - p); });
    return slope * out;
  }
  Mat straight_through_mean() const {
    Mat out = Mat::Zero(g(), K());
    enumerate([&](const Mat& x, double px) { out += px * jacobian_t(fprime(x)); });
    return out;
  }
  Mat darn_mean() const { return jacobian_t(fprime(Mat::Constant(g(), K(), family == Family::bernoulli ? 0.5 : 1.0 / double(K())))); }

  // f on the tape for blocks of g rows (one cost per block)
  Var cost(Tape& tape, const Var& x) const {
    const Var flat = reshape(x, x.rows() / g(), g() * K());
    const Var wv = tape.constant(Eigen::Map<const Mat>(w.data(), g() * K(), 1));
    const Var vv = tape.constant(Eigen::Map<const Mat>(v.data(), g() * K(), 1));
    return square(matmul(flat, wv) - t) + matmul(flat, vv);
  }
};

Problem categorical_problem() {
  Problem p{Family::categorical, Mat(2, 3), Mat(2, 3), Mat(2, 3), 0.7};
  p.logits << 0.4, -0.8, 1.1, 0.0, 0.9, -1.5;
  p.w << 1.0, -0.5, 0.3, 0.8, -1.2, 0.6;
  p.v << 0.2, 0.0, -0.4, 0.5, 0.1, -0.3;
  return p;
}
Problem bernoulli_problem() {
  Problem p{Family::bernoulli, Mat(1, 4), Mat(1, 4), Mat(1, 4), 1.3};
  p.logits << 0.5, -1.2, 2.0, -0.1;
  p.w << 0.9, -0.7, 1.1, 0.4;
  p.v << -0.3, 0.6, 0.0, 0.2;
  return p;
}

struct Moments {
  Mat mean, se;
};

// N estimates in batches of B blocks on one tape (cleared between batches): mean and standard error.
template <class E>
Moments estimate(E& est, const Problem& p, Index N, std::uint64_t seed, Index B = 2000) {
  Rng rng(seed);
  Tape tape;
  Mat sum = Mat::Zero(p.g(), p.K()), sum2 = sum;
  const Mat base = p.logits.replicate(B, 1);
  for (Index done = 0; done < N; done += B) {
    tape.clear();
    const Var l = tape.variable(base);
    const Estimate<double> e = est(p.family, l, [&](const Var& x) { return p.cost(tape, x); }, rng);
    REQUIRE(e.cost.rows() % B == 0);
    tape.backward(e.surrogate);
    // row b of this view is block b's g x K gradient, flattened (one pass, not B small matrices)
    const Eigen::Map<const Mat> blocks(l.grad().data(), B, p.g() * p.K());
    sum += Eigen::Map<const Mat>(blocks.colwise().sum().eval().data(), p.g(), p.K());
    sum2 += Eigen::Map<const Mat>(blocks.array().square().colwise().sum().eval().data(), p.g(), p.K());
  }
  const Mat mean = sum / double(N);
  const Mat var = sum2 / double(N) - mean.cwiseProduct(mean);
  return {mean, (var / double(N)).cwiseSqrt()};
}

void require_mean(const Moments& m, const Mat& want, const std::string& what) {
  INFO(what << "\nmean\n" << m.mean << "\nwant\n" << want << "\nse\n" << m.se);
  for (Index i = 0; i < want.size(); ++i) {
    REQUIRE(m.se.data()[i] > 0);
    REQUIRE(std::abs(m.mean.data()[i] - want.data()[i]) < 5 * m.se.data()[i] + 1e-12);
  }
}

}  // namespace

TEST_CASE("discrete estimators: every unbiased one's mean matches the exact gradient by enumeration, on both families",
          "[estimators][zoo][stats]") {
  for (const Problem& p : {categorical_problem(), bernoulli_problem()}) {
    const Mat exact = p.exact();
    const std::string fam = p.family == Family::bernoulli ? "bernoulli" : "categorical";
    ScoreFunctionEstimator plain, ema(ScoreFunctionEstimator::Baseline::moving_average),
        loo(ScoreFunctionEstimator::Baseline::leave_one_out, 4);
    MuProp muprop;
    Rebar rebar{1.0, 0.5}, rebar2{0.4, 2.0};
    require_mean(estimate(plain, p, 40000, 1), exact, fam + " score function");
    require_mean(estimate(ema, p, 40000, 2), exact, fam + " score function + EMA");
    require_mean(estimate(loo, p, 16000, 3), exact, fam + " score function + LOO");
    require_mean(estimate(muprop, p, 40000, 4), exact, fam + " MuProp");
    require_mean(estimate(rebar, p, 16000, 5), exact, fam + " REBAR");
    require_mean(estimate(rebar2, p, 16000, 6), exact, fam + " REBAR eta 0.4 tau 2");
    CHECK(ema.moving_average().initialized());
  }
}

TEST_CASE("discrete estimators: straight-through, slope-annealed straight-through and DARN have their known means",
          "[estimators][zoo][stats]") {
  for (Problem p : {categorical_problem(), bernoulli_problem()}) {
    const std::string fam = p.family == Family::bernoulli ? "bernoulli" : "categorical";
    StraightThrough st;
    Darn darn;
    require_mean(estimate(st, p, 40000, 7), p.straight_through_mean(), fam + " straight-through");
    require_mean(estimate(darn, p, 40000, 8), p.darn_mean(), fam + " DARN");
    // DARN is biased here (f is not linear): its mean differs from the exact gradient
    CHECK((p.darn_mean() - p.exact()).norm() > 0.05);
    SlopeAnnealedStraightThrough sa{2.0};
    p.slope = 2.0;
    require_mean(estimate(sa, p, 40000, 9), p.straight_through_mean(), fam + " slope-annealed straight-through");
  }
}

TEST_CASE("discrete estimators: the relaxed estimators' bias shrinks as the temperature falls", "[estimators][zoo][stats]") {
  for (const Problem& p : {categorical_problem(), bernoulli_problem()}) {
    const Mat exact = p.exact();
    double last = 1e300;
    // not monotone at every step on every problem (on the categorical one it is flat between
    // tau 1 and 0.3), but over these steps it falls
    for (double tau : {4.0, 1.0, 0.1}) {
      GumbelSoftmax gs{tau};
      const Moments m = estimate(gs, p, tau < 0.5 ? 400000 : 100000, 10);
      const double bias = (m.mean - exact).norm(), noise = m.se.norm();
      INFO("tau " << tau << " bias " << bias << " se " << noise);
      REQUIRE(bias > 3 * noise);  // a bias the sample resolves
      REQUIRE(bias < last - 3 * noise);
      last = bias;
    }
  }
}

TEST_CASE("discrete estimators: Gumbel-Rao has straight-through Gumbel-softmax's mean", "[estimators][zoo][stats]") {
  for (const Problem& p : {categorical_problem(), bernoulli_problem()}) {
    GumbelRao gr{0.5, 4};
    GumbelSoftmax st{0.5, true};
    const Moments a = estimate(gr, p, 20000, 11), b = estimate(st, p, 20000, 12);
    for (Index i = 0; i < a.mean.size(); ++i) {
      const double se = std::hypot(a.se.data()[i], b.se.data()[i]);
      REQUIRE(std::abs(a.mean.data()[i] - b.mean.data()[i]) < 5 * se);
      REQUIRE(a.se.data()[i] < b.se.data()[i]);
    }
  }
}

TEST_CASE("discrete estimators: f's own parameters receive the gradient of the sampled costs only", "[estimators][zoo]") {
  // f = s * q(x): d/ds of the surrogate must be sum(cost) / s, whatever else f was evaluated at
  const Problem p = categorical_problem();
  auto check = [&](auto est, bool exact_expected) {
    Rng rng(13);
    Tape tape;
    const Var l = tape.variable(p.logits.replicate(50, 1));
    const Var s = tape.variable(Mat::Constant(1, 1, 1.7));
    const Estimate<double> e = est(Family::categorical, l, [&](const Var& x) { return s * p.cost(tape, x); }, rng);
    tape.backward(e.surrogate);
    const double want = e.cost.value().sum() / 1.7 / double(e.cost.rows() / 50);  // the mean over S samples
    if (exact_expected)
      REQUIRE(s.grad()(0, 0) == Approx(want).epsilon(1e-12));
    else
      REQUIRE(std::abs(s.grad()(0, 0) - want) > 1e-6);
  };
  check(ScoreFunctionEstimator(), true);
  check(ScoreFunctionEstimator(ScoreFunctionEstimator::Baseline::leave_one_out, 3), true);
  check(Darn{}, true);
  check(MuProp{}, true);
  check(Rebar{1.0, 0.5}, true);
  check(Rebar{1.0, 0.5, false}, false);  // without the detached terms f's parameters see the relaxations too
  check(StraightThrough{}, true);
  check(GumbelRao{0.5, 4}, true);
}

TEST_CASE("discrete estimators: gradients of one block equal that block run alone, extremes stay finite", "[estimators][zoo]") {
  // Bernoulli with logits +-1e4 and tiny temperatures: every estimate finite
  Tape tape;
  Mat big(2, 3);
  big << 1e4, -1e4, 0.0, -1e4, 1e4, 3.0;
  auto f = [&](const Var& x) { return sum_rows(square(x - 0.3)); };
  auto finite_all = [&](auto est, Family fam) {
    Rng rng(14);
    tape.clear();
    const Var l = tape.variable(big);
    const Estimate<double> e = est(fam, l, f, rng);
    tape.backward(e.surrogate);
    REQUIRE(l.grad().allFinite());
    REQUIRE(e.cost.value().allFinite());
  };
  for (Family fam : {Family::categorical, Family::bernoulli}) {
    finite_all(ScoreFunctionEstimator(ScoreFunctionEstimator::Baseline::leave_one_out, 2), fam);
    finite_all(GumbelSoftmax{0.01}, fam);
    finite_all(GumbelSoftmax{0.01, true}, fam);
    finite_all(StraightThrough{}, fam);
    finite_all(SlopeAnnealedStraightThrough{5.0}, fam);
    finite_all(Darn{}, fam);
    finite_all(MuProp{}, fam);
    finite_all(Rebar{1.0, 0.01}, fam);
    finite_all(GumbelRao{0.01, 3}, fam);
  }
  // float: the same
  TapeF tf;
  Rng rng(15);
  const VarF lf = tf.variable(big.cast<float>());
  const Estimate<float> ef = Rebar{1.0, 0.1}(Family::bernoulli, lf, [&](const VarF& x) { return sum_rows(square(x)); }, rng);
  tf.backward(ef.surrogate);
  REQUIRE(lf.grad().allFinite());
  // zero rows: empty estimates, no error
  tape.clear();
  Rng r0(16);
  const Var l0 = tape.variable(Mat(0, 3));
  const Estimate<double> e0 = MuProp{}(Family::categorical, l0, f, r0);
  REQUIRE(e0.cost.rows() == 0);
}

TEST_CASE("discrete estimators: errors name the estimator and the bad input", "[estimators][zoo][errors]") {
  using B = ScoreFunctionEstimator::Baseline;
  REQUIRE_THROWS_WITH(ScoreFunctionEstimator(B::leave_one_out, 1),
                      "reparam: ScoreFunctionEstimator: the leave-one-out baseline needs at least 2 samples (got 1)");
  REQUIRE_THROWS_AS(ScoreFunctionEstimator(B::none, 0), DomainError);
  REQUIRE_THROWS_WITH(ScoreFunctionEstimator(B::none, 0), "reparam: ScoreFunctionEstimator: samples must be at least 1 (got 0)");
  Tape tape;
  Rng rng(17);
  const Var l = tape.variable(Mat::Zero(2, 3));
  auto f = [&](const Var& x) { return sum_rows(x); };
  REQUIRE_THROWS_WITH(GumbelSoftmax{0.0}(Family::categorical, l, f, rng),
                      "reparam: GumbelSoftmax: temperature must be positive and finite (got 0)");
  REQUIRE_THROWS_WITH(SlopeAnnealedStraightThrough{-1.0}(Family::bernoulli, l, f, rng),
                      "reparam: SlopeAnnealedStraightThrough: slope must be positive and finite (got -1)");
  REQUIRE_THROWS_AS(MuProp{}(Family::categorical, l, [&](const Var& x) { return x; }, rng), ShapeError);
  REQUIRE_THROWS_WITH(MuProp{}(Family::categorical, l, [&](const Var& x) { return x; }, rng),
                      "reparam: MuProp: f must give one cost per row or per group of rows (2 rows, got 2x3)");
  REQUIRE_THROWS_WITH(Darn{}(Family::categorical, tape.variable(Mat(2, 0)), f, rng),
                      "reparam: Darn: logits must have at least one column (got 2x0)");
  Mat bad = Mat::Zero(2, 3);
  bad(1, 2) = std::nan("");
  REQUIRE_THROWS_WITH(Rebar{}(Family::bernoulli, tape.variable(bad), f, rng), Catch::Contains("reparam: Rebar: logits must be finite"));
  REQUIRE_THROWS_WITH((Rebar{1.0, -2.0})(Family::categorical, l, f, rng), "reparam: Rebar: temperature must be positive and finite (got -2)");
  REQUIRE_THROWS_WITH((GumbelRao{0.5, 0})(Family::categorical, l, f, rng), "reparam: gumbel_rao: samples must be at least 1 (got 0)");
  int calls = 0;  // a cost whose shape changes between evaluations
  auto fickle = [&](const Var& x) { return ++calls == 1 ? sum_rows(x) : sum_rows(slice_rows(x, 0, 1)); };
  REQUIRE_THROWS_WITH(MuProp{}(Family::categorical, l, fickle, rng),
                      "reparam: MuProp: f must give the same cost shape at every input (2x1, then 1x1)");
}

TEST_CASE("Gaussian problem: the pathwise and score-function estimates of d/dtheta and d/dsigma E[x^2] have their exact "
          "variances",
          "[estimators][zoo][stats]") {
  // x = theta + sigma eps. One estimate per column of a 1 x N parameter row. Closed forms (derived
  // from the normal moments E eps^2k = (2k - 1)!!; tests/reference/gaussian_variances.py checks them by
  // numerical integration):
  //   pathwise  2x and 2x eps:  4 sigma^2,  4 theta^2 + 8 sigma^2
  //   score     x^2 eps / sigma and x^2 (eps^2 - 1) / sigma:
  //             theta^4 / sigma^2 + 14 theta^2 + 15 sigma^2,  2 theta^4 / sigma^2 + 60 theta^2 + 74 sigma^2
  const double th = 1.5, sg = 0.8, t2 = th * th, s2 = sg * sg;
  const Index N = 400000;
  const double want[2][2] = {{4 * s2, 4 * t2 + 8 * s2}, {t2 * t2 / s2 + 14 * t2 + 15 * s2, 2 * t2 * t2 / s2 + 60 * t2 + 74 * s2}};
  for (int score = 0; score < 2; ++score) {
    Rng rng(21 + score);
    Tape tape;
    const Var a = tape.variable(Mat::Constant(1, N, th)), b = tape.variable(Mat::Constant(1, N, sg));
    const Normal<double> q(a, b);
    if (score) {
      const Mat x = q.sample(rng);
      tape.backward(score_function(q.log_prob(tape.constant(x)), Mat(x.array().square())));
    } else {
      tape.backward(sum(square(q.rsample(rng))));
    }
    for (int k = 0; k < 2; ++k) {
      const Eigen::ArrayXd g = (k == 0 ? a.grad() : b.grad()).row(0).transpose().array();
      const double m = g.mean(), v = (g - m).square().mean(), m4 = (g - m).pow(4).mean();
      const double se = std::sqrt((m4 - v * v) / double(N));  // standard error of the sample variance
      INFO((score ? "score" : "pathwise") << " component " << k << ": variance " << v << " want " << want[score][k] << " se " << se);
      REQUIRE(std::abs(m - 2 * (k == 0 ? th : sg)) < 5 * std::sqrt(v / double(N)));
      REQUIRE(std::abs(v - want[score][k]) < 5 * se);
    }
  }
}
