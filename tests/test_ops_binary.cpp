// + - * / pow bce_with_logits: every broadcasting case, every operand kind; values against a
// hand-broadcast closed form, gradients against central differences.
#include <cmath>
#include <functional>
#include <utility>
#include <string>

#include "support.hpp"

using namespace reparam;
using test::Gen;
using test::Mat;

namespace {

struct BinaryCase {
  std::string name;
  std::function<Var(const Var&, const Var&)> op;
  std::function<double(double, double)> exact;
  double alo, ahi, blo, bhi;
};

std::vector<BinaryCase> binary_cases() {
  return {
      {"add", [](const Var& a, const Var& b) { return a + b; }, [](double a, double b) { return a + b; }, -2, 2, -2, 2},
      {"sub", [](const Var& a, const Var& b) { return a - b; }, [](double a, double b) { return a - b; }, -2, 2, -2, 2},
      {"mul", [](const Var& a, const Var& b) { return a * b; }, [](double a, double b) { return a * b; }, -2, 2, -2, 2},
      {"div", [](const Var& a, const Var& b) { return a / b; }, [](double a, double b) { return a / b; }, -2, 2, 0.5, 2},
      {"pow", [](const Var& a, const Var& b) { return pow(a, b); }, [](double a, double b) { return std::pow(a, b); }, 0.3, 2, -1.5, 2},
      {"bce_with_logits", [](const Var& a, const Var& b) { return bce_with_logits(a, b); },
       [](double x, double t) { return -(t * std::log(1 / (1 + std::exp(-x))) + (1 - t) * std::log(1 - 1 / (1 + std::exp(-x)))); },
       -4, 4, 0, 1},
  };
}

struct Shapes {
  const char* name;
  Index ar, ac, br, bc;
};
// Every broadcasting case of 1x1, 1xN and Mx1 operands, on either side.
const Shapes shape_cases[] = {
    {"same", 3, 4, 3, 4},      {"a 1x1", 1, 1, 3, 4},   {"b 1x1", 3, 4, 1, 1}, {"a row", 1, 4, 3, 4},
    {"b row", 3, 4, 1, 4},     {"a col", 3, 1, 3, 4},   {"b col", 3, 4, 3, 1}, {"row x col", 1, 4, 3, 1},
    {"col x row", 3, 1, 1, 4}, {"both 1x1", 1, 1, 1, 1}, {"col x 1x1", 5, 1, 1, 1}, {"1x1 x row", 1, 1, 1, 6},
};

Mat broadcast(const Mat& m, Index r, Index c) {
  Mat out(r, c);
  for (Index i = 0; i < r; ++i)
    for (Index j = 0; j < c; ++j) out(i, j) = m(m.rows() == 1 ? 0 : i, m.cols() == 1 ? 0 : j);
  return out;
}

}  // namespace

TEST_CASE("binary operations broadcast like NumPy: values", "[ops][binary]") {
  Gen gen(3);
  for (const BinaryCase& c : binary_cases())
    for (const Shapes& s : shape_cases) {
      DYNAMIC_SECTION(c.name << ", " << s.name) {
        const Mat a = gen.matrix(s.ar, s.ac, c.alo, c.ahi), b = gen.matrix(s.br, s.bc, c.blo, c.bhi);
        const Index R = std::max(s.ar, s.br), C = std::max(s.ac, s.bc);
        Tape tape;
        const Var y = c.op(tape.constant(a), tape.constant(b));
        REQUIRE(y.rows() == R);
        REQUIRE(y.cols() == C);
        const Mat A = broadcast(a, R, C), B = broadcast(b, R, C);
        for (Index i = 0; i < R; ++i)
          for (Index j = 0; j < C; ++j) CHECK(test::close(y.value()(i, j), c.exact(A(i, j), B(i, j)), 1e-14));
      }
    }
}

TEST_CASE("binary operations broadcast like NumPy: gradients summed to each operand's shape", "[ops][binary][grad]") {
  Gen gen(4);
  for (const BinaryCase& c : binary_cases())
    for (const Shapes& s : shape_cases) {
      DYNAMIC_SECTION(c.name << ", " << s.name) {
        const Mat a = gen.matrix(s.ar, s.ac, c.alo, c.ahi), b = gen.matrix(s.br, s.bc, c.blo, c.bhi);
        test::check_gradients([&](Tape& t, const std::vector<Var>& v) { return test::weighted_sum(t, c.op(v[0], v[1])); },
                              {a, b});
      }
    }
}

TEST_CASE("an operand used twice gets both contributions", "[ops][binary][grad]") {
  Gen gen(5);
  const Mat x = gen.matrix(3, 4, 0.5, 2);
  for (const BinaryCase& c : binary_cases()) {
    if (c.name == "bce_with_logits") continue;
    SECTION(c.name) {
      test::check_gradients([&](Tape& t, const std::vector<Var>& v) { return test::weighted_sum(t, c.op(v[0], v[0])); }, {x});
    }
  }
}

TEST_CASE("operands may be Vars, scalars or Eigen matrices on either side", "[ops][binary]") {
  Gen gen(6);
  const Mat a = gen.matrix(3, 4, 0.5, 2), m = gen.matrix(3, 4, 0.5, 2), row = gen.matrix(1, 4, 0.5, 2);
  const double s = 1.7;
  using F = std::function<Var(const Var&)>;
  using E = std::function<double(double, double)>;  // (a_ij, m_ij)
  struct Kind {
    const char* name;
    F f;
    E e;
  };
  const Kind kinds[] = {
      {"Var + Matrix", [&](const Var& x) { return x + m; }, [](double x, double y) { return x + y; }},
      {"Matrix + Var", [&](const Var& x) { return m + x; }, [](double x, double y) { return y + x; }},
      {"Var - Matrix", [&](const Var& x) { return x - m; }, [](double x, double y) { return x - y; }},
      {"Matrix - Var", [&](const Var& x) { return m - x; }, [](double x, double y) { return y - x; }},
      {"Var * Matrix", [&](const Var& x) { return x * m; }, [](double x, double y) { return x * y; }},
      {"Matrix * Var", [&](const Var& x) { return m * x; }, [](double x, double y) { return y * x; }},
      {"Var / Matrix", [&](const Var& x) { return x / m; }, [](double x, double y) { return x / y; }},
      {"Matrix / Var", [&](const Var& x) { return m / x; }, [](double x, double y) { return y / x; }},
      {"Var * array", [&](const Var& x) { return x * m.array(); }, [](double x, double y) { return x * y; }},
      {"Var + scalar", [&](const Var& x) { return x + s; }, [&](double x, double) { return x + s; }},
      {"scalar - Var", [&](const Var& x) { return s - x; }, [&](double x, double) { return s - x; }},
      {"scalar / Var", [&](const Var& x) { return s / x; }, [&](double x, double) { return s / x; }},
      {"Var * int", [&](const Var& x) { return x * 2; }, [&](double x, double) { return x * 2; }},
      {"Var += Matrix", [&](const Var& x) { Var y = x; y += m; return y; }, [](double x, double y) { return x + y; }},
      {"Var *= scalar", [&](const Var& x) { Var y = x; y *= s; return y; }, [&](double x, double) { return x * s; }},
      {"Var / row matrix", [&](const Var& x) { return x / row; }, nullptr},
  };
  for (const Kind& k : kinds) {
    SECTION(k.name) {
      Tape tape;
      const Var y = k.f(tape.constant(a));
      REQUIRE(y.rows() == 3);
      REQUIRE(y.cols() == 4);
      for (Index i = 0; i < 3; ++i)
        for (Index j = 0; j < 4; ++j) {
          const double want = k.e ? k.e(a(i, j), m(i, j)) : a(i, j) / row(0, j);
          CHECK(test::close(y.value()(i, j), want, 1e-15));
        }
      test::check_gradients([&](Tape& t, const std::vector<Var>& v) { return test::weighted_sum(t, k.f(v[0])); }, {a});
    }
  }
}

TEST_CASE("bce_with_logits is finite and exact at logits of +-1e4", "[ops][binary][extreme]") {
  Tape tape;
  Mat x(1, 4), t(1, 4);
  x << -1e4, -1e4, 1e4, 1e4;
  t << 0, 1, 0, 1;
  const Var lx = tape.variable(x), lt = tape.variable(t);
  const Var l = bce_with_logits(lx, lt);
  CHECK(l.value()(0, 0) == 0.0);
  CHECK(l.value()(0, 1) == 1e4);
  CHECK(l.value()(0, 2) == 1e4);
  CHECK(l.value()(0, 3) == 0.0);
  tape.backward(sum(l));
  // d/dx = sigmoid(x) - t; d/dt = -x
  CHECK(lx.grad()(0, 0) == 0.0);
  CHECK(lx.grad()(0, 1) == -1.0);
  CHECK(lx.grad()(0, 2) == 1.0);
  CHECK(lx.grad()(0, 3) == 0.0);
  CHECK(lt.grad()(0, 0) == 1e4);
  CHECK(lt.grad()(0, 3) == -1e4);
}

TEST_CASE("bce_with_logits accepts an Eigen matrix of targets", "[ops][binary]") {
  Tape tape;
  Mat x(2, 2), t(2, 2);
  x << 0.5, -1, 2, 0;
  t << 1, 0, 0.5, 1;
  const Var l = bce_with_logits(tape.variable(x), t);
  for (Index i = 0; i < 4; ++i) {
    const double xi = x.data()[i], ti = t.data()[i];
    CHECK(test::close(l.value().data()[i], std::log1p(std::exp(xi)) - xi * ti, 1e-15));
  }
}

// Logits and targets of one shape take a fused node (the loss and the kept gradient factor
// computed together, in blocks of 256 elements); broadcast operands take the elementwise node.
// Both must give the same bits, at every packet position, across blocks, in a last partial block
// and in the scalar tail, and a 1x1 node the same again.
template <class T>
void check_bce_paths(Index rows, Index cols) {
  using M = Matrix<T>;
  Rng rng(11);
  M x = (uniform_matrix<T>(rng, rows, cols).array() - T(0.5)) * T(60);
  x(0, 0) = T(0); x(0, 1) = T(-1e4); x(0, 2) = T(1e4); x(0, 3) = T(88.5); x(0, 4) = T(-750);
  x(1, 0) = std::numeric_limits<T>::denorm_min(); x(1, 1) = -std::numeric_limits<T>::min();
  const M t = (uniform_matrix<T>(rng, rows, cols).array() > T(0.5)).template cast<T>();
  const M g = uniform_matrix<T>(rng, rows, cols);
  BasicTape<T> tape;
  const BasicVar<T> xv = tape.variable(x), tv = tape.variable(t);
  const BasicVar<T> fused = bce_with_logits(xv, tv);
  tape.backward(sum(fused * g));
  const M fused_gx = xv.grad(), fused_gt = tv.grad();
  BasicTape<T> tape2;
  const BasicVar<T> xw = tape2.variable(x), tw = tape2.variable(t);
  // the elementwise node (what broadcast operands take)
  const BasicVar<T> elem = detail::binary<detail::BceWithLogitsOp>(xw, tw);
  tape2.backward(sum(elem * g));
  int diffs = 0;
  for (Index i = 0; i < x.size(); ++i) {
    diffs += fused.value().data()[i] != elem.value().data()[i];
    diffs += fused_gx.data()[i] != xw.grad().data()[i];
    diffs += fused_gt.data()[i] != tw.grad().data()[i];
    BasicTape<T> one;
    const BasicVar<T> a = one.variable(x.data()[i]);
    const BasicVar<T> s = bce_with_logits(a, one.constant(t.data()[i]));
    one.backward(s * g.data()[i]);
    diffs += s.item() != fused.value().data()[i];
    diffs += a.grad()(0, 0) != fused_gx.data()[i];
    CHECK(std::isfinite(fused.value().data()[i]));
  }
  CHECK(diffs == 0);
}

TEST_CASE("bce_with_logits: the fused same-shape node gives the elementwise node's and a 1x1 node's bits", "[ops][binary][paths]") {
  // 259 elements: a whole block, then a tail at any packet width; 903: three blocks, a partial
  // one and a tail
  for (const auto& shape : {std::make_pair(Index(7), Index(37)), std::make_pair(Index(3), Index(301))}) {
    check_bce_paths<double>(shape.first, shape.second);
    check_bce_paths<float>(shape.first, shape.second);
  }
}

TEST_CASE("bce_with_logits: float loss within 3 ulps and gradient within 2 of double libm", "[ops][binary]") {
  // Reference: the same quantity in double through libm (an independent computation), rounded.
  Rng rng(12);
  Matrix<float> x = (uniform_matrix<float>(rng, 1, 20000).array() - 0.5f) * 40.f;
  x(0, 0) = 0.f;
  x(0, 1) = 1e-8f;
  TapeF tape;
  const VarF xv = tape.variable(x);
  const VarF l = bce_with_logits(xv, tape.constant(Matrix<float>::Zero(1, x.cols())));
  tape.backward(sum(l));
  double worst = 0, worst_g = 0;
  for (Index i = 0; i < x.cols(); ++i) {
    const double xi = x(0, i);
    const double exact = std::max(xi, 0.0) + std::log1p(std::exp(-std::abs(xi)));  // loss at t = 0
    const float ref = float(exact);
    const double ulp = std::nextafter(ref, INFINITY) - double(ref);
    worst = std::max(worst, std::abs(double(l.value()(0, i)) - exact) / ulp);
    const float gref = float(1 / (1 + std::exp(-xi)));
    const double gulp = std::nextafter(gref, INFINITY) - double(gref);
    worst_g = std::max(worst_g, std::abs(double(xv.grad()(0, i)) - double(gref)) / gulp);
  }
  // measured: 2.5 ulps (the series for log1p(e); the log1p kernel it replaced gave 2.8), gradient 1
  CHECK(worst <= 3.0);
  CHECK(worst_g <= 2.0);
}
