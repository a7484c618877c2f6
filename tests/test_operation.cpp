// The public operation interface (reparam::Operation / reparam::Backward) and the operations built
// on it this pass: slice_rows, slice_cols, concat_rows, concat_cols, clamp, linear, soft_argmax.
// Gradients against central differences; errors by type and message.
#include <cstring>

#include "support.hpp"

using namespace reparam;
using test::Gen;
using test::Mat;

namespace {

// A user-defined operation with three operands: y = a * b + c (one shape).
template <class T>
BasicVar<T> fma3(const BasicVar<T>& a, const BasicVar<T>& b, const BasicVar<T>& c) {
  Operation<T> op("fma", {a, b, c});
  op.require_same_shape();
  return op.record(
      a.rows(), a.cols(), [&](auto y) { y = a.value().cwiseProduct(b.value()) + c.value(); },
      [](Backward<T>& bw) {
        bw.add(0, bw.grad().cwiseProduct(bw.input(1)));  // d/da = b
        bw.add(1, bw.grad().cwiseProduct(bw.input(0)));  // d/db = a
        bw.add(2, bw.grad());                            // d/dc = 1
      });
}

// An operation with state of its own in the arena: y = x * m, m a random mask drawn at record time.
Var masked(const Var& x, std::uint64_t seed) {
  Operation<double> op("masked", {x});
  double* mask = op.state(static_cast<std::size_t>(x.size()));
  Gen g(seed);
  for (Index i = 0; i < x.size(); ++i) mask[i] = g.uniform() < 0.5 ? 0.0 : 2.0;
  return op.record(
      x.rows(), x.cols(), [&](auto y) { y.array() = x.value().array() * test::Mat::Map(mask, x.rows(), x.cols()).array(); },
      [mask](Backward<double>& bw) {
        bw.add(0, bw.grad().array() * Eigen::Map<const Mat>(mask, bw.rows(), bw.cols()).array());
      });
}

}  // namespace

TEST_CASE("a user-defined three-operand operation records, runs and differentiates", "[operation]") {
  Gen g(1);
  const Mat a = g.matrix(3, 4), b = g.matrix(3, 4), c = g.matrix(3, 4);
  test::check_gradients(
      [](Tape& t, const std::vector<Var>& v) { return test::weighted_sum(t, fma3(v[0], v[1], v[2])); }, {a, b, c});
  // the same operand three times: every contribution lands
  test::check_gradients([](Tape& t, const std::vector<Var>& v) { return test::weighted_sum(t, fma3(v[0], v[0], v[0])); }, {a});
  Tape t;
  const Var y = fma3(t.variable(a), t.constant(b), t.constant(c));
  CHECK(Mat(y.value()).isApprox(Mat(a.cwiseProduct(b) + c)));
  CHECK(y.requires_grad());
  CHECK_FALSE(fma3(t.constant(a), t.constant(b), t.constant(c)).requires_grad());
}

TEST_CASE("operation state lives in the arena and is read by the backward rule", "[operation]") {
  Gen g(2);
  const Mat x = g.matrix(4, 5);
  test::check_gradients([](Tape& t, const std::vector<Var>& v) { return test::weighted_sum(t, masked(v[0], 7)); }, {x});
}

TEST_CASE("operation errors name the operation", "[operation][errors]") {
  Tape t, u;
  const Var a = t.variable(Mat::Ones(2, 3)), b = t.variable(Mat::Ones(3, 2)), c = u.variable(Mat::Ones(2, 3));
  REQUIRE_THROWS_MATCHES(fma3(a, b, a), ShapeError, Catch::Matchers::Message("reparam: fma: operands must have one shape (2x3 and 3x2)"));
  REQUIRE_THROWS_MATCHES(fma3(a, a, c), GraphError, Catch::Matchers::Message("reparam: fma: operands belong to different tapes"));
  REQUIRE_THROWS_MATCHES(fma3(a, Var(), a), GraphError, Catch::Matchers::Message("reparam: fma: Var is empty (default-constructed)"));
  REQUIRE_THROWS_MATCHES(Operation<double>("none", std::vector<Var>{}), ShapeError,
                         Catch::Matchers::Message("reparam: none: needs at least one operand"));
  // a rule that adds a gradient of the wrong shape is caught, not written out of bounds
  auto bad = [](const Var& x) {
    Operation<double> op("bad_rule", {x});
    return op.record(1, 1, [&](auto y) { y(0, 0) = x.value().sum(); },
                     [](Backward<double>& bw) { bw.add(0, Mat::Ones(1, 1)); });
  };
  REQUIRE_THROWS_MATCHES(t.backward(bad(a)), ShapeError,
                         Catch::Matchers::Message("reparam: bad_rule: backward rule adds a gradient of shape 1x1 to operand 0 of shape 2x3"));
  // recording during backward is refused (the node list must not move under the sweep)
  auto greedy = [](const Var& x) {
    Operation<double> op("greedy", {x});
    return op.record(1, 1, [&](auto y) { y(0, 0) = x.value().sum(); },
                     [x](Backward<double>& bw) {
                       (void)exp(x);
                       bw.add_constant(0, 1.0);
                     });
  };
  REQUIRE_THROWS_MATCHES(t.backward(greedy(a)), GraphError,
                         Catch::Matchers::Message("reparam: exp: cannot record operations during backward"));
  // and the tape still works after the failed sweeps
  t.zero_grad();
  t.backward(sum(a * 2.0));
  CHECK(Mat(a.grad()).isApprox(Mat::Constant(2, 3, 2.0)));
}

TEST_CASE("slices and concatenations have correct values and gradients", "[operation][shape]") {
  Gen g(3);
  const Mat x = g.matrix(5, 4), y = g.matrix(5, 2), z = g.matrix(3, 4);
  Tape t;
  const Var vx = t.constant(x);
  CHECK(Mat(slice_rows(vx, 1, 3).value()) == x.middleRows(1, 3));
  CHECK(Mat(slice_cols(vx, 2, 2).value()) == x.middleCols(2, 2));
  CHECK(slice_rows(vx, 5, 0).rows() == 0);
  const Var cc = concat_cols({t.constant(x), t.constant(y), t.constant(x)});
  REQUIRE(cc.cols() == 10);
  CHECK(Mat(cc.value()).middleCols(4, 2) == y);
  const Var cr = concat_rows(std::vector<Var>{t.constant(x), t.constant(z)});
  REQUIRE(cr.rows() == 8);
  CHECK(Mat(cr.value()).bottomRows(3) == z);
  auto chk = [&](auto f, std::vector<Mat> in) {
    test::check_gradients([&](Tape& tt, const std::vector<Var>& v) { return test::weighted_sum(tt, f(v)); }, in);
  };
  chk([](const std::vector<Var>& v) { return slice_rows(v[0], 1, 3); }, {x});
  chk([](const std::vector<Var>& v) { return slice_cols(v[0], 1, 2); }, {x});
  chk([](const std::vector<Var>& v) { return concat_cols({v[0], v[1], v[0]}); }, {x, y});
  chk([](const std::vector<Var>& v) { return concat_rows({v[0], v[1]}); }, {x, z});
  // below a sum (constant incoming gradient) and composed with each other
  chk([](const std::vector<Var>& v) { return sum(slice_rows(v[0], 2, 2)) * slice_cols(concat_cols({v[0], v[1]}), 3, 2); }, {x, y});
}

TEST_CASE("slice and concat errors", "[operation][shape][errors]") {
  Tape t;
  const Var x = t.variable(Mat::Ones(5, 4));
  REQUIRE_THROWS_MATCHES(slice_rows(x, 3, 3), ShapeError,
                         Catch::Matchers::Message("reparam: slice_rows: rows out of range (start 3, count 3 of 5x4)"));
  REQUIRE_THROWS_MATCHES(slice_cols(x, -1, 2), ShapeError,
                         Catch::Matchers::Message("reparam: slice_cols: columns out of range (start -1, count 2 of 5x4)"));
  REQUIRE_THROWS_MATCHES(slice_cols(x, 1, Index(1) << 62), ShapeError,
                         Catch::Matchers::Message("reparam: slice_cols: columns out of range (start 1, count 4611686018427387904 of 5x4)"));
  REQUIRE_THROWS_MATCHES(concat_cols({x, t.variable(Mat::Ones(3, 4))}), ShapeError,
                         Catch::Matchers::Message("reparam: concat_cols: operands must have the same number of rows (5x4 and 3x4 at operand 1)"));
  REQUIRE_THROWS_MATCHES(concat_rows({x, t.variable(Mat::Ones(5, 3))}), ShapeError,
                         Catch::Matchers::Message("reparam: concat_rows: operands must have the same number of columns (5x4 and 5x3 at operand 1)"));
  REQUIRE_THROWS_MATCHES(concat_rows(std::vector<Var>{}), ShapeError, Catch::Matchers::Message("reparam: concat_rows: needs at least one operand"));
}

TEST_CASE("clamp: value, gradient inside and outside the bounds, errors", "[operation][unary]") {
  Tape t;
  const Var x = t.variable(Mat{{-2.0, -0.5, 0.0, 0.5, 2.0, 1.0}});
  const Var y = clamp(x, -1.0, 1.0);
  CHECK(Mat(y.value()) == Mat{{-1.0, -0.5, 0.0, 0.5, 1.0, 1.0}});
  t.backward(sum(y * t.constant(Mat{{1, 2, 3, 4, 5, 6}})));
  CHECK(Mat(x.grad()) == Mat{{0, 2, 3, 4, 0, 6}});  // the bound itself passes the gradient (PyTorch)
  Gen g(4);
  test::check_gradients([](Tape& tt, const std::vector<Var>& v) { return test::weighted_sum(tt, clamp(v[0], -0.5, 0.25)); },
                        {g.matrix(4, 6)});
  REQUIRE_THROWS_MATCHES(clamp(x, 1.0, -1.0), DomainError,
                         Catch::Matchers::Message("reparam: clamp: bounds must satisfy lo <= hi (got lo 1, hi -1)"));
  REQUIRE_THROWS_MATCHES(clamp(x, std::nan(""), 1.0), DomainError,
                         Catch::Matchers::Message("reparam: clamp: bounds must satisfy lo <= hi (got lo nan, hi 1)"));
}

namespace {
// A layer (`linear` or `linear_relu`) against its formula on m x k inputs and k x n weights, its
// gradients by central differences, and its shape errors by message.
template <class Layer>
void check_layer(const std::string& name, const Layer& layer, bool relu, Gen& g, std::initializer_list<Index> ms,
                 std::initializer_list<Index> ks, Index n) {
  for (Index m : ms)
    for (Index k : ks) {
      const Mat x = g.matrix(m, k), w = g.matrix(k, n), b = g.matrix(1, n);
      INFO(name << " " << m << "x" << k);
      const Mat pre = (x * w).rowwise() + b.row(0);
      if (relu) REQUIRE(pre.cwiseAbs().minCoeff() > 1e-4);  // no pre-activation at relu's kink, where differences fail
      Tape t;
      const Var y = layer(t.constant(x), t.constant(w), t.constant(b));
      CHECK(Mat(y.value()).isApprox(relu ? Mat(pre.cwiseMax(0.0)) : pre, 1e-13));
      test::check_gradients([&](Tape& tt, const std::vector<Var>& v) { return test::weighted_sum(tt, layer(v[0], v[1], v[2])); },
                            {x, w, b});
    }
  Tape t;
  const Var x = t.variable(Mat::Ones(2, 3)), w = t.variable(Mat::Ones(3, 4));
  REQUIRE_THROWS_MATCHES(layer(x, w, t.variable(Mat::Ones(1, 3))), ShapeError,
                         Catch::Matchers::Message("reparam: " + name + ": bias must be 1x4 (got 1x3)"));
  REQUIRE_THROWS_MATCHES(layer(x, t.variable(Mat::Ones(2, 4)), t.variable(Mat::Ones(1, 4))), ShapeError,
                         Catch::Matchers::Message("reparam: " + name + ": inner dimensions differ (2x3 and 2x4)"));
}
}  // namespace

TEST_CASE("linear is x W + b in one node, with the gradients of the three", "[operation][linalg]") {
  Gen g(5);
  check_layer("linear", [](const Var& x, const Var& w, const Var& b) { return linear(x, w, b); }, false, g, {1, 7, 40}, {1, 9, 33}, 6);
}

namespace {
// relu(x W + b) as linear_relu's one node and as relu(linear(...))'s two, on one tape each: the
// values and the gradients of x, W and b (through a fixed weighting of the output).
template <class T>
void check_linear_relu_bits(const Mat& x64, const Mat& w64, const Mat& b64) {
  using M = Matrix<T>;
  const M x = x64.template cast<T>(), w = w64.template cast<T>(), b = b64.template cast<T>();
  Gen g(7);
  const M weights = g.matrix(x.rows(), w.cols(), -1.0, 1.0).template cast<T>();
  auto run = [&](bool fused, M& y, M& gx, M& gw, M& gb) {
    BasicTape<T> t;
    const BasicVar<T> vx = t.variable(x), vw = t.variable(w), vb = t.variable(b);
    const BasicVar<T> out = fused ? linear_relu(vx, vw, vb) : relu(linear(vx, vw, vb));
    y = out.value();
    t.backward(sum(out * t.constant(weights)));
    gx = vx.grad();
    gw = vw.grad();
    gb = vb.grad();
  };
  M y1, gx1, gw1, gb1, y2, gx2, gw2, gb2;
  run(true, y1, gx1, gw1, gb1);
  run(false, y2, gx2, gw2, gb2);
  auto same = [](const M& a, const M& c) {  // bit for bit, NaN where NaN
    if (a.rows() != c.rows() || a.cols() != c.cols()) return false;
    for (Index i = 0; i < a.size(); ++i)
      if (std::memcmp(a.data() + i, c.data() + i, sizeof(T)) != 0) return false;
    return true;
  };
  CHECK(same(y1, y2));
  CHECK(same(gx1, gx2));
  CHECK(same(gw1, gw2));
  CHECK(same(gb1, gb2));
}
}  // namespace

TEST_CASE("linear_relu is relu(linear(x, W, b)) in one node: the same bits, at every shape and kernel", "[operation][linalg]") {
  Gen g(8);
  // m x k x n: 1x1, masked last vectors (n = 9, 50), the in-place kernel's sizes (m <= 256, n >= 16),
  // m > 256 (Eigen's kernel), an inner dimension of 0
  const Index shapes[][3] = {{1, 1, 1}, {3, 5, 9}, {7, 9, 50}, {40, 33, 16}, {64, 130, 100}, {257, 20, 30}, {6, 0, 20}, {0, 4, 20}};
  for (bool inplace : {true, false})
    for (const auto& s : shapes) {
      INFO(s[0] << "x" << s[1] << "x" << s[2] << (inplace ? " in-place kernel where built" : " Eigen's kernel"));
      const bool was = inplace_gemm();
      set_inplace_gemm(inplace);
      Mat x = g.matrix(s[0], s[1]);
      const Mat w = g.matrix(s[1], s[2]), b = g.matrix(1, s[2], -0.3, 0.3);
      check_linear_relu_bits<double>(x, w, b);
      check_linear_relu_bits<float>(x, w, b);
      if (x.size() > 1) {  // a NaN in the input: NaN through the max in both
        x(0, 0) = std::numeric_limits<double>::quiet_NaN();
        check_linear_relu_bits<double>(x, w, b);
        check_linear_relu_bits<float>(x, w, b);
      }
      set_inplace_gemm(was);
    }
}

TEST_CASE("linear_relu gradients by central differences, its errors name it", "[operation][linalg][grad]") {
  Gen g(9);
  check_layer("linear_relu", [](const Var& x, const Var& w, const Var& b) { return linear_relu(x, w, b); }, true, g, {1, 5, 30},
              {1, 7, 20}, 18);
}

TEST_CASE("soft_argmax is sum_k k softmax_k per row", "[operation][reduce]") {
  Gen g(6);
  const Mat a = g.matrix(3, 5, -2, 2);
  Tape t;
  const Var y = soft_argmax(t.constant(a));
  for (Index i = 0; i < 3; ++i) {
    const Eigen::RowVectorXd p = (a.row(i).array() - a.row(i).maxCoeff()).exp().matrix();
    double s = 0;
    for (Index k = 0; k < 5; ++k) s += double(k) * p(k) / p.sum();
    CHECK(test::close(y.value()(i, 0), s, 1e-14));
  }
  test::check_gradients([](Tape& tt, const std::vector<Var>& v) { return test::weighted_sum(tt, soft_argmax(v[0], 0.5)); }, {a});
}
