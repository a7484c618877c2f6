// Elementwise functions: values against closed forms, gradients against central differences.
#include <cmath>
#include <functional>
#include <string>

#include "support.hpp"

using namespace reparam;
using test::Gen;
using test::Mat;

namespace {

struct UnaryCase {
  std::string name;
  std::function<Var(const Var&)> op;
  std::function<long double(long double)> exact;  // closed form, in long double
  double lo, hi;                                  // input range used for the checks
};

std::vector<UnaryCase> unary_cases() {
  return {
      {"exp", [](const Var& x) { return exp(x); }, [](long double x) { return std::exp(x); }, -3, 3},
      {"log", [](const Var& x) { return log(x); }, [](long double x) { return std::log(x); }, 0.1, 4},
      {"log1p", [](const Var& x) { return log1p(x); }, [](long double x) { return std::log1p(x); }, -0.9, 3},
      {"expm1", [](const Var& x) { return expm1(x); }, [](long double x) { return std::expm1(x); }, -3, 3},
      {"sqrt", [](const Var& x) { return sqrt(x); }, [](long double x) { return std::sqrt(x); }, 0.1, 4},
      {"square", [](const Var& x) { return square(x); }, [](long double x) { return x * x; }, -3, 3},
      {"pow 2.5", [](const Var& x) { return pow(x, 2.5); }, [](long double x) { return std::pow(x, 2.5L); }, 0.1, 3},
      {"pow -1.5", [](const Var& x) { return pow(x, -1.5); }, [](long double x) { return std::pow(x, -1.5L); }, 0.2, 3},
      {"pow 3 (negative base)", [](const Var& x) { return pow(x, 3.0); }, [](long double x) { return x * x * x; }, -2, 2},
      {"pow 0", [](const Var& x) { return pow(x, 0.0); }, [](long double) { return 1.0L; }, -2, 2},
      {"abs", [](const Var& x) { return abs(x); }, [](long double x) { return std::fabs(x); }, -3, 3},
      {"tanh", [](const Var& x) { return tanh(x); }, [](long double x) { return std::tanh(x); }, -3, 3},
      {"sigmoid", [](const Var& x) { return sigmoid(x); }, [](long double x) { return 1 / (1 + std::exp(-x)); }, -6, 6},
      {"log_sigmoid", [](const Var& x) { return log_sigmoid(x); }, [](long double x) { return -std::log1p(std::exp(-x)); }, -6, 6},
      {"relu", [](const Var& x) { return relu(x); }, [](long double x) { return x > 0 ? x : 0.0L; }, -3, 3},
      {"softplus", [](const Var& x) { return softplus(x); }, [](long double x) { return std::log1p(std::exp(x)); }, -6, 6},
      {"neg", [](const Var& x) { return -x; }, [](long double x) { return -x; }, -3, 3},
      {"x + 2", [](const Var& x) { return x + 2.0; }, [](long double x) { return x + 2; }, -3, 3},
      {"2 + x", [](const Var& x) { return 2.0 + x; }, [](long double x) { return 2 + x; }, -3, 3},
      {"x - 2", [](const Var& x) { return x - 2.0; }, [](long double x) { return x - 2; }, -3, 3},
      {"2 - x", [](const Var& x) { return 2.0 - x; }, [](long double x) { return 2 - x; }, -3, 3},
      {"x * 3", [](const Var& x) { return x * 3.0; }, [](long double x) { return x * 3; }, -3, 3},
      {"3 * x", [](const Var& x) { return 3.0 * x; }, [](long double x) { return 3 * x; }, -3, 3},
      {"x / 4", [](const Var& x) { return x / 4.0; }, [](long double x) { return x / 4; }, -3, 3},
      {"4 / x", [](const Var& x) { return 4.0 / x; }, [](long double x) { return 4 / x; }, 0.3, 3},
  };
}

}  // namespace

TEST_CASE("unary operations match their closed forms", "[ops][unary]") {
  Gen gen(1);
  for (const UnaryCase& c : unary_cases()) {
    SECTION(c.name) {
      const Mat x = gen.matrix(4, 7, c.lo, c.hi);
      Tape tape;
      const Var y = c.op(tape.constant(x));
      REQUIRE(y.rows() == 4);
      REQUIRE(y.cols() == 7);
      for (Index i = 0; i < x.size(); ++i) {
        const double want = double(c.exact(x.data()[i]));
        INFO(c.name << "(" << x.data()[i] << "): got " << y.value().data()[i] << ", want " << want);
        CHECK(test::close(y.value().data()[i], want, 4e-15, 1e-300));
      }
    }
  }
}

TEST_CASE("unary operations have correct gradients on random shapes", "[ops][unary][grad]") {
  Gen gen(2);
  for (const UnaryCase& c : unary_cases()) {
    SECTION(c.name) {
      for (int rep = 0; rep < 3; ++rep) {
        const Index r = gen.index(1, 6), k = gen.index(1, 6);
        Mat x = gen.matrix(r, k, c.lo, c.hi);
        if (c.name == "abs" || c.name == "relu")  // keep away from the kink at 0
          x = x.unaryExpr([](double v) { return std::abs(v) < 0.05 ? v + 0.1 : v; });
        test::check_gradients([&](Tape& t, const std::vector<Var>& v) { return test::weighted_sum(t, c.op(v[0])); }, {x});
      }
    }
  }
}

TEST_CASE("stable forms are finite and exact at logits of +-1e4", "[ops][unary][extreme]") {
  Tape tape;
  Mat m(1, 4);
  m << -1e4, -800, 800, 1e4;
  const Var x = tape.variable(m);
  const Var sp = softplus(x), ls = log_sigmoid(x), sg = sigmoid(x);
  // softplus(x) = x + log1p(e^-x) -> x for large x, e^x for very negative x
  CHECK(sp.value()(0, 0) == 0.0);
  CHECK(sp.value()(0, 1) == 0.0);
  CHECK(sp.value()(0, 2) == 800.0);
  CHECK(sp.value()(0, 3) == 1e4);
  CHECK(ls.value()(0, 0) == -1e4);
  CHECK(ls.value()(0, 1) == -800.0);
  CHECK(ls.value()(0, 2) == 0.0);
  CHECK(ls.value()(0, 3) == 0.0);
  CHECK(sg.value()(0, 0) == 0.0);
  CHECK(sg.value()(0, 3) == 1.0);
  tape.backward(sum(sp) + sum(ls) + sum(sg) + sum(tanh(x)) + sum(exp(x * 0.0)));
  // d softplus = s(x), d log_sigmoid = 1 - s(x), d sigmoid = s(1 - s): 1 at both tails summed
  CHECK(x.grad().allFinite());
  CHECK(x.grad()(0, 0) == 1.0);
  CHECK(x.grad()(0, 3) == 1.0);
}

TEST_CASE("softplus and log_sigmoid are accurate in the tails where naive forms fail", "[ops][unary][extreme]") {
  Tape tape;
  Mat m(1, 3);
  m << -40, 40, 30;
  const Var sp = softplus(tape.constant(m)), ls = log_sigmoid(tape.constant(m));
  CHECK(test::close(sp.value()(0, 0), double(std::exp(-40.0L)), 1e-15));  // log(1 + e^-40)
  CHECK(test::close(sp.value()(0, 1), 40 + double(std::exp(-40.0L)), 1e-15));
  CHECK(test::close(ls.value()(0, 1), -double(std::exp(-40.0L)), 1e-15));
  CHECK(test::close(ls.value()(0, 2), -double(std::log1p(std::exp(-30.0L))), 1e-15));
}
