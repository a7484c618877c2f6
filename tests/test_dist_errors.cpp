// Every validation error of the distributions, estimators and Rng helpers: type and message.
#include <cmath>
#include <limits>

#include "support.hpp"

using namespace reparam;
using test::Mat;

#define REQUIRE_ERROR(expr, Type, text) REQUIRE_THROWS_MATCHES(expr, Type, Catch::Matchers::Message(text))

namespace {
const double kNan = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();
}  // namespace

TEST_CASE("invalid parameters are rejected when a distribution is built", "[dist][errors]") {
  Tape t;
  const Var loc = t.variable(Mat{{0.0, 1.0}}), bad_scale = t.variable(Mat{{1.0, -2.0}});
  REQUIRE_ERROR(Normal(loc, bad_scale), DomainError, "reparam: Normal: scale must be > 0 and finite (got -2 at row 0, col 1)");
  REQUIRE_ERROR(Gumbel(loc, 0.0), DomainError, "reparam: Gumbel: scale must be > 0 and finite (got 0 at row 0, col 0)");
  REQUIRE_ERROR(Logistic(loc, kInf), DomainError, "reparam: Logistic: scale must be > 0 and finite (got inf at row 0, col 0)");
  REQUIRE_ERROR(Normal(t.variable(Mat{{kNan}}), 1.0), DomainError, "reparam: Normal: loc must be finite (got nan at row 0, col 0)");
  REQUIRE_ERROR(Normal(t.variable(Mat::Zero(2, 2).eval()), t.variable(Mat::Ones(3, 1).eval())), ShapeError,
                "reparam: Normal: loc and scale do not broadcast (2x2 and 3x1)");
  const Var logits = t.variable(Mat{{0.5, kInf}});
  REQUIRE_ERROR(Concrete(logits, 1.0), DomainError, "reparam: Concrete: logits must be finite (got inf at row 0, col 1)");
  REQUIRE_ERROR(Concrete(loc, -0.5), DomainError, "reparam: Concrete: temperature must be >= 1.4916681462400413e-154 and finite (got -0.5 at row 0, col 0)");
  REQUIRE_ERROR(Concrete(loc, kNan), DomainError, "reparam: Concrete: temperature must be >= 1.4916681462400413e-154 and finite (got nan at row 0, col 0)");
  REQUIRE_ERROR(ExpConcrete(loc, 0.0), DomainError, "reparam: ExpConcrete: temperature must be >= 1.4916681462400413e-154 and finite (got 0 at row 0, col 0)");
  REQUIRE_ERROR(RelaxedBernoulli(loc, 0.0), DomainError, "reparam: RelaxedBernoulli: temperature must be >= 1.4916681462400413e-154 and finite (got 0 at row 0, col 0)");
  REQUIRE_ERROR(RelaxedBernoulli(logits, 1.0), DomainError, "reparam: RelaxedBernoulli: logits must be finite (got inf at row 0, col 1)");
  REQUIRE_ERROR(Categorical(logits), DomainError, "reparam: Categorical: logits must be finite (got inf at row 0, col 1)");
  REQUIRE_ERROR(Bernoulli(t.variable(Mat{{-kInf}})), DomainError, "reparam: Bernoulli: logits must be finite (got -inf at row 0, col 0)");
  const Var two_rows = t.variable(Mat::Zero(2, 3));
  REQUIRE_ERROR(Concrete(two_rows, t.variable(Mat::Ones(3, 1).eval())), ShapeError,
                "reparam: Concrete: temperature must be 1x1 or one per row (2x1) (got 3x1)");
  REQUIRE_ERROR(Concrete(t.variable(Mat(2, 0)), 1.0), ShapeError, "reparam: Concrete: logits must have at least one column (got 2x0)");
  REQUIRE_ERROR(Categorical(t.variable(Mat(2, 0))), ShapeError, "reparam: Categorical: logits must have at least one column (got 2x0)");
  REQUIRE_ERROR(RelaxedBernoulli(two_rows, t.variable(Mat::Ones(3, 3).eval())), ShapeError,
                "reparam: RelaxedBernoulli: logits and temperature do not broadcast (2x3 and 3x3)");
  // All are std::invalid_argument.
  REQUIRE_THROWS_AS(Normal(loc, bad_scale), std::invalid_argument);
}

TEST_CASE("values outside the support are rejected when passed in", "[dist][errors]") {
  Tape t;
  const Var loc = t.variable(Mat{{0.0, 1.0}});
  Normal n(loc, 1.0);
  REQUIRE_ERROR(n.log_prob(Mat{{0.0, kNan}}), DomainError, "reparam: Normal.log_prob: value must be finite (got nan at row 0, col 1)");
  REQUIRE_ERROR(n.log_prob(Mat::Zero(3, 3)), ShapeError, "reparam: Normal.log_prob: value and the batch shape do not broadcast (3x3 and 1x2)");
  REQUIRE_ERROR(n.cdf(Mat{{kNan, 0.0}}), DomainError, "reparam: Normal.cdf: value must not be NaN (got nan at row 0, col 0)");
  REQUIRE_ERROR(n.icdf(Mat{{0.5, 1.5}}), DomainError, "reparam: Normal.icdf: probability must lie in [0, 1] (got 1.5 at row 0, col 1)");
  REQUIRE_ERROR(Gumbel(loc, 1.0).icdf(Mat{{-0.1, 0.5}}), DomainError, "reparam: Gumbel.icdf: probability must lie in [0, 1] (got -0.1 at row 0, col 0)");
  REQUIRE_ERROR(Logistic(loc, 1.0).log_prob(Mat{{kInf, 0.0}}), DomainError, "reparam: Logistic.log_prob: value must be finite (got inf at row 0, col 0)");
  const Var l = t.variable(Mat{{0.2, -0.1, 0.4}});
  Concrete c(l, 0.5);
  REQUIRE_ERROR(c.log_prob(Mat{{0.5, 0.5, 0.0}}), DomainError,
                "reparam: Concrete.log_prob: value must lie in the open simplex: elements in (0, 1] (got 0 at row 0, col 2)");
  REQUIRE_ERROR(c.log_prob(Mat{{0.5, 0.4, 0.2}}), DomainError,
                "reparam: Concrete.log_prob: value must lie in the open simplex: rows must sum to 1 (got 1.1 at row 0)");
  REQUIRE_ERROR(c.log_prob(Mat{{0.5, 0.5}}), ShapeError, "reparam: Concrete.log_prob: value does not fit the batch (1x2 and 1x3)");
  ExpConcrete e(l, 0.5);
  REQUIRE_ERROR(e.log_prob(Mat{{0.0, 0.0, 0.0}}), DomainError,
                "reparam: ExpConcrete.log_prob: rows must be log-probabilities with logsumexp 0 (got 1.0986122886681098 at row 0)");
  REQUIRE_ERROR(e.log_prob(Mat{{0.0, -kInf, -kInf}}), DomainError, "reparam: ExpConcrete.log_prob: value must be finite (got -inf at row 0, col 1)");
  RelaxedBernoulli rb(l, 0.5);
  REQUIRE_ERROR(rb.log_prob(Mat{{0.5, 1.0, 0.5}}), DomainError, "reparam: RelaxedBernoulli.log_prob: value must lie in (0, 1) (got 1 at row 0, col 1)");
  REQUIRE_ERROR(rb.cdf(Mat{{0.0, 0.5, 0.5}}), DomainError, "reparam: RelaxedBernoulli.cdf: value must lie in (0, 1) (got 0 at row 0, col 0)");
  REQUIRE_ERROR(rb.icdf(Mat{{0.5, 0.5, 2.0}}), DomainError, "reparam: RelaxedBernoulli.icdf: value must lie in (0, 1) (got 2 at row 0, col 2)");
  Categorical cat(l);
  REQUIRE_ERROR(cat.log_prob(Mat{{0.5, 0.5, 0.0}}), DomainError,
                "reparam: Categorical.log_prob: value must be one-hot rows: elements 0 or 1 (got 0.5 at row 0, col 0)");
  REQUIRE_ERROR(cat.log_prob(Mat{{1.0, 1.0, 0.0}}), DomainError,
                "reparam: Categorical.log_prob: value must be one-hot rows: exactly one 1 per row (got 2 ones at row 0)");
  REQUIRE_ERROR(Bernoulli(l).log_prob(Mat{{1.0, 0.5, 0.0}}), DomainError, "reparam: Bernoulli.log_prob: value must be 0 or 1 (got 0.5 at row 0, col 1)");
}

TEST_CASE("base noise and sample shapes are checked", "[dist][errors]") {
  Tape t;
  const Var loc = t.variable(Mat::Zero(2, 3));
  Rng rng(1);
  REQUIRE_ERROR(Gumbel(loc, 1.0).reparameterize(Mat::Constant(2, 3, 1.5)), DomainError,
                "reparam: Gumbel.reparameterize: uniforms must lie in [0, 1] (got 1.5 at row 0, col 0)");
  REQUIRE_ERROR(Logistic(loc, 1.0).reparameterize(Mat::Constant(2, 3, kNan)), DomainError,
                "reparam: Logistic.reparameterize: uniforms must lie in [0, 1] (got nan at row 0, col 0)");
  REQUIRE_ERROR(Normal(loc, 1.0).reparameterize(Mat::Constant(2, 3, kInf)), DomainError,
                "reparam: Normal.reparameterize: noise must be finite (got inf at row 0, col 0)");
  REQUIRE_ERROR(Normal(loc, 1.0).reparameterize(Mat::Zero(1, 3)), ShapeError,
                "reparam: Normal.reparameterize: noise does not contain the batch shape (1x3 and 2x3)");
  REQUIRE_ERROR(Normal(loc, 1.0).rsample(rng, 4, 3), ShapeError,
                "reparam: Normal.rsample: sample shape and batch shape do not broadcast (4x3 and 2x3)");
  REQUIRE_ERROR(Normal(loc, 1.0).sample(rng, 1, 3), ShapeError,
                "reparam: Normal.sample: sample shape does not contain the batch shape (1x3 and 2x3)");
  Concrete c(loc, 0.5);
  REQUIRE_ERROR(c.rsample(rng, 5), ShapeError, "reparam: Concrete.rsample: sample rows do not fit the batch (5 rows for batch 2x3)");
  REQUIRE_ERROR(c.reparameterize(Mat::Constant(2, 2, 0.5)), ShapeError, "reparam: Concrete.reparameterize: uniforms do not fit the logits (2x2 and 2x3)");
  REQUIRE_ERROR(c.reparameterize(Mat::Constant(2, 3, -1.0)), DomainError,
                "reparam: Concrete.reparameterize: uniforms must lie in [0, 1] (got -1 at row 0, col 0)");
  REQUIRE_ERROR(RelaxedBernoulli(loc, 0.5).reparameterize(Mat::Constant(2, 3, 2.0)), DomainError,
                "reparam: RelaxedBernoulli.reparameterize: uniforms must lie in [0, 1] (got 2 at row 0, col 0)");
  REQUIRE_ERROR(straight_through(loc, t.variable(Mat::Zero(3, 2))), ShapeError,
                "reparam: straight_through: soft and hard must have one shape (2x3 and 3x2)");
  REQUIRE_ERROR(broadcast_to(loc, 4, 3), ShapeError, "reparam: broadcast_to: shapes do not broadcast (2x3 and 4x3)");
  REQUIRE_ERROR(broadcast_to(loc, 1, 3), ShapeError, "reparam: broadcast_to: cannot broadcast 2x3 to 1x3");
  REQUIRE_ERROR(soft_argmax(loc, 0.0), DomainError, "reparam: soft_argmax: temperature must be > 0 and finite (got 0)");
}

TEST_CASE("distributions check their operands' tapes", "[dist][errors]") {
  Tape a, b;
  const Var x = a.variable(Mat::Zero(1, 2)), y = b.variable(Mat::Ones(1, 2));
  REQUIRE_ERROR(Normal(x, y), GraphError, "reparam: Normal: operands belong to different tapes");
  REQUIRE_ERROR(Normal(x, 1.0).log_prob(y), GraphError, "reparam: Normal.log_prob: operands belong to different tapes");
  REQUIRE_ERROR(kl_divergence(Normal(x, 1.0), Normal(y, 1.0)), GraphError, "reparam: kl_divergence: operands belong to different tapes");
  REQUIRE_ERROR(Categorical(Var()), GraphError, "reparam: Categorical: Var is empty (default-constructed)");
  REQUIRE_ERROR(kl_divergence(Categorical(x), Categorical(a.variable(Mat::Zero(1, 3)))), ShapeError,
                "reparam: kl_divergence: Categorical logits do not fit (1x2 and 1x3)");
}

TEST_CASE("estimator errors", "[estimators][errors]") {
  Tape t;
  const Var lp = t.variable(Mat::Zero(3, 1));
  REQUIRE_ERROR(score_function(lp, Mat::Ones(2, 1)), ShapeError, "reparam: score_function: cost and log_prob do not broadcast (2x1 and 3x1)");
  REQUIRE_ERROR(score_function(lp, Mat::Constant(3, 1, kNan)), DomainError,
                "reparam: score_function: cost - baseline must be finite (got nan at row 0, col 0)");
  REQUIRE_ERROR(EmaBaseline<double>(1.0), DomainError, "reparam: EmaBaseline: decay must lie in [0, 1) (got 1)");
  REQUIRE_ERROR(leave_one_out_baseline(Mat::Ones(1, 3)), ShapeError, "reparam: leave_one_out_baseline: needs at least 2 samples in the rows (got 1)");
}

TEST_CASE("validation can be switched off for speed", "[dist][errors]") {
  Tape t;
  const Var loc = t.variable(Mat::Zero(1, 1));
  ValidationScope off(false);
  REQUIRE_NOTHROW(Normal(loc, -1.0));
  REQUIRE_NOTHROW(Concrete(loc, 0.0));
  REQUIRE_NOTHROW(Normal(loc, 1.0).log_prob(Mat::Constant(1, 1, kNan)));
}
