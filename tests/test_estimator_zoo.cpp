// Conditional Gumbel sampling and the Gumbel-Rao estimator: the conditional law against its closed
// form (Kolmogorov-Smirnov), the marginal of "argmax first, then the noise given it" against
// unconditional Gumbel noise, gradients by central differences, the Gumbel-Rao gradient against the
// average of straight-through Gumbel-softmax gradients, its variance against theirs, and every
// error. Tolerances: the KS critical value at level 1e-4, or 5 standard errors.
#include <cmath>
#include <limits>
#include <vector>

#include "support.hpp"

using namespace reparam;
using test::Mat;

namespace {

double gumbel_cdf(double t, double loc) { return std::exp(-std::exp(-(t - loc))); }

// n rows of the same logits, each with its argmax drawn from Categorical(softmax(logits)).
Mat categorical_rows(Rng& rng, const Mat& logits, Index n) {
  Mat hard = Mat::Zero(n, logits.cols());
  Mat g(n, logits.cols());
  fill_uniform(rng, g);
  for (Index i = 0; i < n; ++i) {
    Index best = 0;
    double top = -std::numeric_limits<double>::infinity();
    for (Index k = 0; k < logits.cols(); ++k) {
      const double z = logits(0, k) - std::log(-std::log(g(i, k)));
      if (z > top) {
        top = z;
        best = k;
      }
    }
    hard(i, best) = 1;
  }
  return hard;
}

}  // namespace

TEST_CASE("conditional Gumbel: the argmax is the given one, the top is Gumbel(logsumexp), the others truncated Gumbels",
          "[estimators][zoo][stats]") {
  const Index K = 5, n = 20000;
  Mat logits(1, K);
  logits << 1.5, -0.3, 0.0, 2.2, -4.0;
  Rng rng(11);
  const Mat hard = categorical_rows(rng, logits, n);
  Tape tape;
  const Var l = tape.constant(Mat(logits.replicate(n, 1)));
  const Mat z = conditional_gumbel(l, hard, rng).value();
  const double lse = std::log(logits.array().exp().sum());
  std::vector<double> top, rest_u;
  for (Index i = 0; i < n; ++i) {
    Index b = 0;
    hard.row(i).maxCoeff(&b);
    Index arg = 0;
    z.row(i).maxCoeff(&arg);
    REQUIRE(arg == b);
    top.push_back(z(i, b));
    // given the top t, z_k has cdf F_k(x) / F_k(t) on x < t (F_k: Gumbel(logits_k)): uniform after it
    for (Index k = 0; k < K; ++k)
      if (k != b) rest_u.push_back(gumbel_cdf(z(i, k), logits(0, k)) / gumbel_cdf(z(i, b), logits(0, k)));
  }
  CHECK(test::ks_statistic(top, [&](double t) { return gumbel_cdf(t, lse); }) < test::ks_critical(top.size()));
  CHECK(test::ks_statistic(rest_u, [](double p) { return p; }) < test::ks_critical(rest_u.size()));
}

TEST_CASE("conditional Gumbel: argmax first, then the noise given it, has the law of logits + Gumbel noise",
          "[estimators][zoo][stats]") {
  for (const bool use_float : {false, true}) {
    const Index K = 4, n = 20000;
    Mat logits(1, K);
    logits << -1.0, 0.5, 3.0, 0.2;
    Rng rng(12);
    const Mat hard = categorical_rows(rng, logits, n);
    Mat z;
    if (use_float) {
      BasicTape<float> tape;
      z = conditional_gumbel(tape.constant(Matrix<float>(logits.cast<float>().replicate(n, 1))), hard.cast<float>(), rng)
              .value()
              .cast<double>();
    } else {
      Tape tape;
      z = conditional_gumbel(tape.constant(Mat(logits.replicate(n, 1))), hard, rng).value();
    }
    for (Index k = 0; k < K; ++k) {
      std::vector<double> col(z.col(k).data(), z.col(k).data() + 0);
      col.clear();
      for (Index i = 0; i < n; ++i) col.push_back(z(i, k));
      INFO("float " << use_float << " column " << k);
      CHECK(test::ks_statistic(col, [&](double t) { return gumbel_cdf(t, logits(0, k)); }) < test::ks_critical(col.size()));
    }
  }
}

TEST_CASE("conditional Gumbel: gradients in the logits by central differences, extreme logits stay finite",
          "[estimators][zoo][grad]") {
  Rng rng(13);
  const Index R = 3, K = 4;
  Mat u(R, K);
  fill_uniform(rng, u);
  Mat hard = Mat::Zero(R, K);
  hard(0, 1) = hard(1, 0) = hard(2, 3) = 1;
  test::Gen gen(14);
  test::check_gradients([&](Tape& t, const std::vector<Var>& v) { return test::weighted_sum(t, conditional_gumbel(v[0], hard, u)); },
                        {gen.matrix(R, K, -2, 2)});
  // logits of +-1e4 and uniforms of exactly 0 and 1: finite, and the argmax still the given one
  Tape tape;
  Mat big(R, K);
  big << 1e4, -1e4, 0, 1e4, -1e4, -1e4, -1e4, -1e4, 0, 5, -1e4, 1e4;
  Mat edge = u;
  edge(0, 0) = 0;
  edge(1, 2) = 1;
  edge(2, 3) = 0;
  const Var l = tape.variable(big);
  const Var z = conditional_gumbel(l, hard, edge);
  CHECK(z.value().allFinite());
  for (Index i = 0; i < R; ++i) {
    Index b = 0, arg = 0;
    hard.row(i).maxCoeff(&b);
    CHECK(z.value()(i, b) == z.value().row(i).maxCoeff());
    (void)arg;
  }
  tape.backward(sum(z));
  CHECK(l.grad().allFinite());
}

TEST_CASE("Gumbel-Rao: value the one-hot sample, gradient the mean of straight-through Gumbel-softmax gradients over the "
          "same conditional noise",
          "[estimators][zoo]") {
  Rng rng(15);
  const Index R = 3, K = 5, S = 4;
  test::Gen gen(16);
  const Mat l0 = gen.matrix(R, K, -2, 2), w = gen.matrix(R, K, -1, 1);
  const Mat hard = categorical_rows(rng, l0.topRows(1), R);
  Mat u(S * R, K);
  fill_uniform(rng, u);
  const double tau = 0.7;
  Tape tape;
  const Var l = tape.variable(l0);
  const Var y = gumbel_rao(l, hard, tau, u);
  CHECK(Mat(y.value()) == hard);
  tape.backward(sum(y * w));
  Mat want = Mat::Zero(R, K);
  for (Index s = 0; s < S; ++s) {
    Tape t;
    const Var ls = t.variable(l0);
    // the conditional noise z - l, held fixed: straight-through Gumbel-softmax's gradient at it
    const Mat z = conditional_gumbel(t.constant(l0), hard, Mat(u.middleRows(s * R, R))).value();
    const Var soft = softmax((ls + t.constant(Mat(z - l0))) / tau);
    t.backward(sum(straight_through(soft, t.constant(hard)) * w));
    want += ls.grad();
  }
  want /= double(S);
  CHECK(Mat(l.grad()).isApprox(want, 1e-12));
}

TEST_CASE("Gumbel-Rao has no more variance than straight-through Gumbel-softmax, and the same mean", "[estimators][zoo][stats]") {
  // d/dlogits of E[<f, b>] through the one-hot sample: both estimators are biased the same way
  // (Gumbel-Rao is straight-through Gumbel-softmax with its noise averaged given b).
  const Index K = 4, n = 4000, S = 8;
  Mat logits(1, K);
  logits << 0.3, -0.8, 1.1, 0.0;
  Mat f(1, K);
  f << 1.0, -2.0, 0.5, 3.0;
  const double tau = 0.5;
  Rng rng(17);
  Mat st(n, K), gr(n, K);
  for (Index i = 0; i < n; ++i) {
    Tape tape;
    const Var l = tape.variable(logits);
    Mat u(S, K);
    fill_uniform(rng, u);
    // the sample of the straight-through estimator, argmax(logits + G(u_0)); Gumbel-Rao's noise
    // given it comes from the other rows
    Mat hard = Mat::Zero(1, K);
    Index b;
    (logits.row(0).array() - (-u.row(0).array().log()).log()).maxCoeff(&b);
    hard(0, b) = 1;
    // straight-through Gumbel-softmax on its own noise (the first row of u)
    const Var y = Concrete<double>(l, tau).reparameterize_hard(Mat(u.topRows(1)));
    tape.backward(sum(y * f));
    st.row(i) = l.grad();
    tape.zero_grad();
    tape.backward(sum(gumbel_rao(l, hard, tau, Mat(u.bottomRows(S - 1))) * f));
    gr.row(i) = l.grad();
  }
  for (Index k = 0; k < K; ++k) {
    const double m1 = st.col(k).mean(), m2 = gr.col(k).mean();
    const double v1 = (st.col(k).array() - m1).square().sum() / (n - 1), v2 = (gr.col(k).array() - m2).square().sum() / (n - 1);
    INFO("logit " << k << ": means " << m1 << " " << m2 << ", variances " << v1 << " " << v2);
    CHECK(std::abs(m1 - m2) < 5 * std::sqrt(v1 / n));
    CHECK(v2 < v1);
  }
}

TEST_CASE("conditional Gumbel and Gumbel-Rao errors name the operation and the bad input", "[estimators][zoo][errors]") {
  Tape tape;
  const Var l = tape.variable(Mat::Zero(2, 3));
  Mat hard = Mat::Zero(2, 3);
  hard(0, 0) = hard(1, 2) = 1;
  const Mat u = Mat::Constant(2, 3, 0.5);
  Rng rng(1);
  CHECK_THROWS_MATCHES(conditional_gumbel(l, Mat(Mat::Zero(2, 3)), u), DomainError,
                       Catch::Message("reparam: conditional_gumbel: hard must hold one-hot rows (row 0 has 0 ones)"));
  Mat half = hard;
  half(1, 1) = 0.5;
  CHECK_THROWS_MATCHES(conditional_gumbel(l, half, u), DomainError,
                       Catch::Message("reparam: conditional_gumbel: hard must hold one-hot rows of 0 and 1 (got 0.5 at row 1, column 1)"));
  CHECK_THROWS_MATCHES(conditional_gumbel(l, Mat(Mat::Zero(3, 3)), u), ShapeError,
                       Catch::Message("reparam: conditional_gumbel: hard does not fit the logits (3x3 and 2x3)"));
  CHECK_THROWS_MATCHES(conditional_gumbel(l, hard, Mat(Mat::Constant(2, 2, 0.5))), ShapeError,
                       Catch::Message("reparam: conditional_gumbel: uniforms do not fit the logits (2x2 and 2x3)"));
  CHECK_THROWS_AS(conditional_gumbel(l, hard, Mat(Mat::Constant(2, 3, 1.5))), DomainError);
  const Var bad = tape.variable(Mat::Constant(2, 3, std::numeric_limits<double>::infinity()));
  CHECK_THROWS_AS(conditional_gumbel(bad, hard, u), DomainError);
  CHECK_THROWS_MATCHES(gumbel_rao(l, hard, 0.0, u), DomainError,
                       Catch::Message("reparam: gumbel_rao: temperature must be positive and finite (got 0)"));
  CHECK_THROWS_MATCHES(gumbel_rao(l, hard, 0.5, Mat(Mat::Constant(3, 3, 0.5))), ShapeError,
                       Catch::Message("reparam: gumbel_rao: uniforms do not fit the logits (3x3 and 2x3, or a stack of such blocks)"));
  CHECK_THROWS_MATCHES(gumbel_rao(l, hard, 0.5, 0, rng), DomainError,
                       Catch::Message("reparam: gumbel_rao: samples must be at least 1 (got 0)"));
  CHECK_THROWS_MATCHES(conditional_gumbel(tape.variable(Mat::Zero(2, 0)), Mat(Mat::Zero(2, 0)), Mat(Mat::Zero(2, 0))), ShapeError,
                       Catch::Message("reparam: conditional_gumbel: logits must have at least one column (got 2x0)"));
}

namespace {
// f(x) = (<x, c> - t)^2 per row: on one-hot rows f_b = (c_b - t)^2; smooth on relaxed rows.
struct QuadraticCost {
  Mat c;
  double t;
  Var operator()(const Var& x) const {
    Tape& tape = x.tape();
    return square(matmul(x, tape.constant(Mat(c.transpose()))) - t);
  }
};
}  // namespace

TEST_CASE("REBAR is unbiased (its mean matches the exact gradient by enumeration) and with eta = 0 is REINFORCE",
          "[estimators][zoo][stats]") {
  const Index K = 4, n = 20000;
  Mat logits(1, K);
  logits << 0.5, -1.0, 0.2, 1.3;
  const QuadraticCost f{(Mat(1, K) << 1.0, -2.0, 0.5, 3.0).finished(), 0.4};
  // exact: d/dl sum_k p_k f_k = p (f - <p, f>)
  const Mat p = (logits.array() - std::log(logits.array().exp().sum())).exp().matrix();
  Mat fk(1, K);
  for (Index k = 0; k < K; ++k) fk(0, k) = (f.c(0, k) - f.t) * (f.c(0, k) - f.t);
  const Mat exact = (p.array() * (fk.array() - (p.array() * fk.array()).sum())).matrix();
  Rng rng(21);
  Mat u(n, K), v(n, K);
  fill_uniform(rng, u);
  fill_uniform(rng, v);
  for (const double eta : {0.0, 1.0}) {
    Tape tape;
    const Var l = tape.variable(Mat(logits.replicate(n, 1)));
    Mat b;
    tape.backward(rebar(l, f, eta, 0.5, u, v, &b));
    const Mat g = l.grad();  // row i: the estimate of sample i
    for (Index k = 0; k < K; ++k) {
      const double mean = g.col(k).mean();
      const double se = std::sqrt((g.col(k).array() - mean).square().sum() / (n - 1) / n);
      INFO("eta " << eta << " logit " << k << ": mean " << mean << " exact " << exact(0, k) << " se " << se);
      CHECK(std::abs(mean - exact(0, k)) < 5 * se);
    }
    if (eta == 0) {  // the score-function estimate of the same samples, exactly
      Tape t2;
      const Var l2 = t2.variable(Mat(logits.replicate(n, 1)));
      Mat cost(n, 1);
      for (Index i = 0; i < n; ++i) cost(i, 0) = (b.row(i).dot(f.c.row(0)) - f.t) * (b.row(i).dot(f.c.row(0)) - f.t);
      t2.backward(score_function(Categorical<double>(l2).log_prob(b), cost));
      CHECK(Mat(l2.grad()).isApprox(g, 1e-13));
    }
  }
}

TEST_CASE("REBAR's control variate lowers the variance of REINFORCE at a suitable eta and temperature", "[estimators][zoo][stats]") {
  // eta and tau matter: at tau = 0.1 and eta = 1 the relaxed terms (gradients of order 1 / tau)
  // give this problem seven times REINFORCE's variance; at tau = 1 and eta = 0.5 it is 13% lower
  // (by about eight standard errors of the variance estimates).
  const Index K = 4, n = 8000;
  Mat logits(1, K);
  logits << 0.5, -1.0, 0.2, 1.3;
  const QuadraticCost f{(Mat(1, K) << 1.0, -2.0, 0.5, 3.0).finished(), 0.4};
  Rng rng(22);
  Mat u(n, K), v(n, K);
  fill_uniform(rng, u);
  fill_uniform(rng, v);
  double var[2] = {0, 0};
  for (int e = 0; e < 2; ++e) {
    Tape tape;
    const Var l = tape.variable(Mat(logits.replicate(n, 1)));
    tape.backward(rebar(l, f, e == 0 ? 0.0 : 0.5, 1.0, u, v));
    const Mat g = l.grad();
    for (Index k = 0; k < K; ++k) var[e] += (g.col(k).array() - g.col(k).mean()).square().sum() / (n - 1);
  }
  INFO("total variance: REINFORCE " << var[0] << ", REBAR " << var[1]);
  CHECK(var[1] < 0.95 * var[0]);
}

TEST_CASE("REBAR errors", "[estimators][zoo][errors]") {
  Tape tape;
  const Var l = tape.variable(Mat::Zero(2, 3));
  const Mat u = Mat::Constant(2, 3, 0.5);
  const QuadraticCost f{Mat::Ones(1, 3), 0.0};
  CHECK_THROWS_MATCHES(rebar(l, f, 1.0, 0.5, Mat(Mat::Constant(2, 2, 0.5)), u), ShapeError,
                       Catch::Message("reparam: rebar: uniforms u do not fit the logits (2x2 and 2x3)"));
  CHECK_THROWS_MATCHES(rebar(l, f, 1.0, 0.5, u, Mat(Mat::Constant(1, 3, 0.5))), ShapeError,
                       Catch::Message("reparam: rebar: uniforms v do not fit the logits (1x3 and 2x3)"));
  CHECK_THROWS_MATCHES(rebar(l, f, 1.0, -1.0, u, u), DomainError,
                       Catch::Message("reparam: rebar: temperature must be positive and finite (got -1)"));
  CHECK_THROWS_MATCHES(rebar(l, f, std::numeric_limits<double>::quiet_NaN(), 0.5, u, u), DomainError,
                       Catch::Message("reparam: rebar: eta must be finite (got nan)"));
  auto wide = [](const Var& x) { return x; };  // R x K, not R x 1
  CHECK_THROWS_MATCHES(rebar(l, wide, 1.0, 0.5, u, u), ShapeError,
                       Catch::Message("reparam: rebar: f must give one cost per row or per group of rows (2 rows, got 2x3)"));
}
