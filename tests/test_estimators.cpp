// score_function surrogates and baselines.
#include <cmath>

#include "support.hpp"

using namespace reparam;
using test::Mat;

TEST_CASE("score_function: value sum((cost - b) log_prob), gradient (cost - b) dlog_prob", "[estimators]") {
  test::Gen g(3);
  const Mat mu0 = g.matrix(4, 1), x = g.matrix(4, 1, -2, 2), cost = g.matrix(4, 1, 0, 3);
  for (double b : {0.0, 0.7}) {
    Tape t;
    const Var mu = t.variable(mu0);
    const Var lp = Normal(mu, 1.0).log_prob(x);
    const Var s = score_function(lp, cost, b);
    const Mat lpv = lp.value();
    CHECK(test::close(s.item(), ((cost.array() - b) * lpv.array()).sum(), 1e-14));
    t.backward(s);
    // d log N(x; mu, 1) / dmu = x - mu
    const Mat want = ((cost.array() - b) * (x - mu0).array()).matrix();
    CHECK(Mat(mu.grad()).isApprox(want, 1e-14));
  }
  // cost and baseline as Vars are not differentiated through; matrix baselines broadcast.
  Tape t;
  const Var mu = t.variable(mu0);
  const Var c = square(mu);  // depends on mu, yet must not contribute a gradient
  const Var lp = Normal(mu, 1.0).log_prob(x);
  t.backward(score_function(lp, c, t.variable(Mat::Constant(1, 1, 0.5))));
  const Mat want = ((mu0.array().square() - 0.5) * (x - mu0).array()).matrix();
  CHECK(Mat(mu.grad()).isApprox(want, 1e-14));
  t.zero_grad();
  const Mat b = g.matrix(4, 1);
  t.backward(score_function(lp, cost, b));
  CHECK(Mat(mu.grad()).isApprox(((cost - b).array() * (x - mu0).array()).matrix(), 1e-14));
  // finite differences of the surrogate (cost held fixed)
  test::check_gradients([&](Tape&, const std::vector<Var>& v) {
    return score_function(Categorical(v[0]).log_prob(Mat{{0, 1, 0}, {1, 0, 0}}), Mat{{2.0}, {-1.0}}, 0.25);
  }, {g.matrix(2, 3)});
}

TEST_CASE("baselines: exponential moving average and leave-one-out", "[estimators]") {
  EmaBaseline<double> ema(0.9);
  REQUIRE_FALSE(ema.initialized());
  CHECK(ema.update(2.0) == 2.0);
  CHECK(test::close(ema.update(4.0), 0.9 * 2.0 + 0.1 * 4.0));
  CHECK(test::close(ema.update(Mat{{1.0, 3.0}}), 0.9 * 2.2 + 0.1 * 2.0));
  ema.reset();
  CHECK(ema.value() == 0.0);
  const Mat c{{1.0, 10.0}, {2.0, 20.0}, {6.0, 30.0}};
  const Mat b = leave_one_out_baseline(c);
  CHECK(b(0, 0) == 4.0);
  CHECK(b(1, 0) == 3.5);
  CHECK(b(2, 0) == 1.5);
  CHECK(b(2, 1) == 15.0);
  Tape t;
  const Var bv = leave_one_out_baseline(t.constant(c));  // a constant of the tape
  CHECK(Mat(bv.value()) == b);
  CHECK_FALSE(bv.requires_grad());
}

TEST_CASE("leave-one-out keeps the estimator unbiased and lowers its variance", "[estimators][stats]") {
  // Bernoulli(sigmoid(l)), cost f(x) = (x - 0.3)^2 + 5: dE/dl = p (1 - p) (f(1) - f(0)).
  const double l0 = 0.4, p = 1 / (1 + std::exp(-l0));
  const double exact = p * (1 - p) * ((0.49 + 5) - (0.09 + 5));
  const Index K = 8, reps = 20000;
  Rng rng(12);
  double m_plain = 0, m_loo = 0, v_plain = 0, v_loo = 0;
  for (Index r = 0; r < reps; ++r) {
    for (int use_loo = 0; use_loo < 2; ++use_loo) {
      Tape t;
      const Var l = t.variable(Mat::Constant(1, 1, l0));
      Bernoulli q(broadcast_to(l, K, 1));
      const Mat x = q.sample(rng);
      const Mat cost = ((x.array() - 0.3).square() + 5).matrix();
      const Var s = use_loo ? score_function(q.log_prob(x), cost, leave_one_out_baseline(cost)) : score_function(q.log_prob(x), cost);
      t.backward(s / double(K));
      const double gval = l.grad()(0, 0);
      (use_loo ? m_loo : m_plain) += gval;
      (use_loo ? v_loo : v_plain) += gval * gval;
    }
  }
  m_plain /= double(reps);
  m_loo /= double(reps);
  v_plain = v_plain / double(reps) - m_plain * m_plain;
  v_loo = v_loo / double(reps) - m_loo * m_loo;
  CHECK(std::abs(m_plain - exact) < 5 * std::sqrt(v_plain / double(reps)));
  CHECK(std::abs(m_loo - exact) < 5 * std::sqrt(v_loo / double(reps)));
  CHECK(v_loo < 0.1 * v_plain);
}
