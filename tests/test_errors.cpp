// Every error path: exception type and message text.
#include <cmath>
#include <limits>
#include <string>

#include "support.hpp"

using namespace reparam;
using test::Mat;

#define REQUIRE_ERROR(expr, Type, text) REQUIRE_THROWS_MATCHES(expr, Type, Catch::Matchers::Message(text))

TEST_CASE("shapes that do not broadcast name the operation and both shapes", "[errors]") {
  Tape t;
  const Var a = t.variable(Mat::Ones(2, 3)), b = t.variable(Mat::Ones(3, 2)), r = t.variable(Mat::Ones(1, 2));
  REQUIRE_ERROR(a + b, ShapeError, "reparam: add: shapes do not broadcast (2x3 and 3x2)");
  REQUIRE_ERROR(a - b, ShapeError, "reparam: sub: shapes do not broadcast (2x3 and 3x2)");
  REQUIRE_ERROR(a * r, ShapeError, "reparam: mul: shapes do not broadcast (2x3 and 1x2)");
  REQUIRE_ERROR(r / a, ShapeError, "reparam: div: shapes do not broadcast (1x2 and 2x3)");
  REQUIRE_ERROR(pow(a, b), ShapeError, "reparam: pow: shapes do not broadcast (2x3 and 3x2)");
  REQUIRE_ERROR(bce_with_logits(a, b), ShapeError, "reparam: bce_with_logits: shapes do not broadcast (2x3 and 3x2)");
  REQUIRE_ERROR(a + Mat::Ones(4, 3), ShapeError, "reparam: add: shapes do not broadcast (2x3 and 4x3)");
  // A ShapeError is a std::invalid_argument.
  REQUIRE_THROWS_AS(a + b, std::invalid_argument);
}

TEST_CASE("matmul, reshape, backward and item report shapes", "[errors]") {
  Tape t;
  const Var a = t.variable(Mat::Ones(2, 3)), b = t.variable(Mat::Ones(2, 3));
  REQUIRE_ERROR(matmul(a, b), ShapeError, "reparam: matmul: inner dimensions differ (2x3 and 2x3)");
  REQUIRE_ERROR(reshape(a, 4, 2), ShapeError, "reparam: reshape: cannot reshape 2x3 into 4x2 (6 elements)");
  REQUIRE_ERROR(reshape(a, -1, 4), ShapeError, "reparam: reshape: cannot reshape 2x3 into -1x4 (6 elements)");
  REQUIRE_ERROR(t.backward(a), ShapeError, "reparam: backward: output must be 1x1 (got 2x3)");
  REQUIRE_ERROR(t.backward(a, Mat::Ones(3, 2)), ShapeError,
                "reparam: backward: seed must have the output's shape (output 2x3, seed 3x2)");
  REQUIRE_ERROR(a.item(), ShapeError, "reparam: item: Var must be 1x1 (got 2x3)");
  REQUIRE_ERROR(mean(t.variable(Mat(0, 2))), ShapeError, "reparam: mean: input must not be empty (got 0x2)");
  REQUIRE_ERROR(softmax(t.variable(Mat(2, 0))), ShapeError, "reparam: softmax: rows must not be empty (got 2x0)");
  REQUIRE_ERROR(log_softmax(t.variable(Mat(2, 0))), ShapeError, "reparam: log_softmax: rows must not be empty (got 2x0)");
  REQUIRE_ERROR(logsumexp(t.variable(Mat(2, 0))), ShapeError, "reparam: logsumexp: rows must not be empty (got 2x0)");
}

TEST_CASE("graph misuse is a GraphError (std::logic_error)", "[errors]") {
  Tape t1, t2;
  const Var a = t1.variable(Mat::Ones(2, 2)), b = t2.variable(Mat::Ones(2, 2));
  REQUIRE_ERROR(a + b, GraphError, "reparam: add: operands belong to different tapes");
  REQUIRE_ERROR(matmul(a, b), GraphError, "reparam: matmul: operands belong to different tapes");
  REQUIRE_ERROR(t1.backward(sum(b)), GraphError, "reparam: backward: Var belongs to another tape");
  REQUIRE_THROWS_AS(a + b, std::logic_error);

  const Var empty;
  REQUIRE_ERROR(exp(empty), GraphError, "reparam: exp: Var is empty (default-constructed)");
  REQUIRE_ERROR(empty + a, GraphError, "reparam: add: Var is empty (default-constructed)");
  REQUIRE_ERROR(empty.value(), GraphError, "reparam: value: Var is empty (default-constructed)");
  REQUIRE_ERROR(empty.grad(), GraphError, "reparam: grad: Var is empty (default-constructed)");
  REQUIRE_ERROR(t1.backward(empty), GraphError, "reparam: backward: Var is empty (default-constructed)");

  const Var c = t1.constant(Mat::Ones(1, 1));
  REQUIRE_ERROR(t1.backward(exp(c)), GraphError,
                "reparam: backward: output does not depend on any variable (nothing to differentiate)");
  REQUIRE_ERROR(c.grad(), GraphError, "reparam: grad: node does not require a gradient (no variable lies behind it)");

  t1.clear();
  REQUIRE_ERROR(exp(a), GraphError, "reparam: exp: Var used after its tape was cleared");
  REQUIRE_ERROR(a.value(), GraphError, "reparam: value: Var used after its tape was cleared");
  REQUIRE_ERROR(a.grad(), GraphError, "reparam: grad: Var used after its tape was cleared");
  REQUIRE_ERROR(a.rows(), GraphError, "reparam: value: Var used after its tape was cleared");
  REQUIRE_ERROR(a.requires_grad(), GraphError, "reparam: requires_grad: Var used after its tape was cleared");
  REQUIRE_ERROR(t1.backward(a), GraphError, "reparam: backward: Var used after its tape was cleared");
  REQUIRE_ERROR(a * 2.0, GraphError, "reparam: mul: Var used after its tape was cleared");
  REQUIRE_ERROR(a * Mat::Ones(2, 2), GraphError, "reparam: mul: Var used after its tape was cleared");
}

TEST_CASE("values outside an operation's domain are a DomainError naming the element", "[errors]") {
  Tape t;
  Mat m(2, 2);
  m << 1, 2, -0.5, 4;
  const Var x = t.variable(m);
  REQUIRE_ERROR(log(x), DomainError, "reparam: log: argument must be >= 0 (got -0.5 at row 1, col 0)");
  REQUIRE_ERROR(sqrt(x), DomainError, "reparam: sqrt: argument must be >= 0 (got -0.5 at row 1, col 0)");
  REQUIRE_ERROR(pow(x, 0.5), DomainError,
                "reparam: pow: base must be >= 0 for a non-integer exponent (got -0.5 at row 1, col 0)");
  REQUIRE_ERROR(log1p(x - 1.0), DomainError, "reparam: log1p: argument must be >= -1 (got -1.5 at row 1, col 0)");
  Mat n(1, 2);
  n << 1, std::numeric_limits<double>::quiet_NaN();
  REQUIRE_ERROR(log(t.variable(n)), DomainError, "reparam: log: argument must be >= 0 (got nan at row 0, col 1)");
  REQUIRE_THROWS_AS(log(x), std::invalid_argument);
  CHECK(pow(x, 3.0).value()(1, 0) == -0.125);  // integer exponents take any base
}

TEST_CASE("value checks can be switched off for speed", "[errors]") {
  Tape t;
  const Var x = t.variable(Mat::Constant(1, 1, -1.0));
  REQUIRE(validation_enabled());
  {
    ValidationScope off(false);
    CHECK_FALSE(validation_enabled());
    CHECK(std::isnan(log(x).item()));  // unchecked: the caller vouched for the input
  }
  CHECK(validation_enabled());
  CHECK_THROWS_AS(log(x), DomainError);
  set_validation(false);
  CHECK_NOTHROW(sqrt(x));
  set_validation(true);
  // Shape checks stay on regardless.
  ValidationScope off(false);
  CHECK_THROWS_AS(x + t.variable(Mat::Ones(2, 3)) + t.variable(Mat::Ones(3, 2)), ShapeError);
}

TEST_CASE("optimizer settings are checked", "[errors][optim]") {
  Parameter<double> p(Mat::Ones(2, 2));
  REQUIRE_ERROR(optim::Adam<double>({&p}, {-1.0}), DomainError, "reparam: Adam: lr must be >= 0 and finite (got -1)");
  optim::AdamOptions<double> o;
  o.beta1 = 1.0;
  REQUIRE_ERROR(optim::Adam<double>({&p}, o), DomainError, "reparam: Adam: beta1 must be in [0, 1) and finite (got 1)");
  o = {};
  o.beta2 = -0.1;
  REQUIRE_ERROR(optim::Adam<double>({&p}, o), DomainError, "reparam: Adam: beta2 must be in [0, 1) and finite (got -0.1)");
  o = {};
  o.eps = -1e-8;
  REQUIRE_ERROR(optim::Adam<double>({&p}, o), DomainError, "reparam: Adam: eps must be >= 0 and finite (got -1e-08)");
  REQUIRE_ERROR(optim::Adam<double>({nullptr}), GraphError, "reparam: Adam: parameter 0 is null");
  REQUIRE_ERROR(optim::Adam<double>({&p, &p}), GraphError, "reparam: Adam: parameter 1 is parameter 0 again");
  REQUIRE_ERROR(optim::SGD<double>({&p, &p}, {0.1}), GraphError, "reparam: SGD: parameter 1 is parameter 0 again");
  REQUIRE_ERROR(optim::SGD<double>({&p}, {-0.1}), DomainError, "reparam: SGD: lr must be >= 0 and finite (got -0.1)");
  optim::SGDOptions<double> s{0.1};
  s.nesterov = true;
  REQUIRE_ERROR(optim::SGD<double>({&p}, s), DomainError, "reparam: SGD: nesterov needs momentum > 0 and dampening 0 (got momentum 0, dampening 0)");
  s = {0.1};
  s.momentum = -1;
  REQUIRE_ERROR(optim::SGD<double>({&p}, s), DomainError, "reparam: SGD: momentum must be >= 0 and finite (got -1)");
  s = {0.1};
  s.weight_decay = -1;
  REQUIRE_ERROR(optim::SGD<double>({&p}, s), DomainError, "reparam: SGD: weight_decay must be >= 0 and finite (got -1)");
}
