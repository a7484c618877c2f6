// matmul (both Eigen paths: small lazy products and the workspace GEMM), transpose, reshape,
// stop_gradient.
#include "support.hpp"

using namespace reparam;
using test::Gen;
using test::Mat;

TEST_CASE("matmul equals Eigen's product for small and GEMM-sized shapes", "[ops][linalg]") {
  Gen gen(20);
  const Index shapes[][3] = {{1, 1, 1}, {2, 3, 4}, {1, 30, 40}, {40, 30, 1}, {64, 80, 48}, {130, 257, 65}};
  for (const auto& s : shapes) {
    DYNAMIC_SECTION(s[0] << "x" << s[1] << " times " << s[1] << "x" << s[2]) {
      const Mat a = gen.matrix(s[0], s[1]), b = gen.matrix(s[1], s[2]);
      Tape tape;
      const Var y = matmul(tape.constant(a), tape.constant(b));
      const Mat want = a * b;
      REQUIRE(y.rows() == s[0]);
      REQUIRE(y.cols() == s[2]);
      CHECK((y.value() - want).cwiseAbs().maxCoeff() <= 1e-12 * (1 + want.cwiseAbs().maxCoeff()));
    }
  }
}

TEST_CASE("matmul gradients: small shapes by central differences", "[ops][linalg][grad]") {
  Gen gen(21);
  for (int rep = 0; rep < 5; ++rep) {
    const Index m = gen.index(1, 5), k = gen.index(1, 5), n = gen.index(1, 5);
    const Mat a = gen.matrix(m, k), b = gen.matrix(k, n);
    test::check_gradients([](Tape& t, const std::vector<Var>& v) { return test::weighted_sum(t, matmul(v[0], v[1])); }, {a, b});
  }
  const Mat sq = gen.matrix(3, 3);
  test::check_gradients([](Tape& t, const std::vector<Var>& v) { return test::weighted_sum(t, matmul(v[0], v[0])); }, {sq});
}

TEST_CASE("matmul gradients through the GEMM path equal the closed form g b^T, a^T g", "[ops][linalg][grad]") {
  Gen gen(22);
  const Mat a = gen.matrix(70, 90), b = gen.matrix(90, 50), w = gen.matrix(70, 50);
  Tape tape;
  const Var va = tape.variable(a), vb = tape.variable(b);
  tape.backward(sum(matmul(va, vb) * w));
  const Mat ga = w * b.transpose(), gb = a.transpose() * w;
  CHECK((va.grad() - ga).cwiseAbs().maxCoeff() <= 1e-12 * ga.cwiseAbs().maxCoeff());
  CHECK((vb.grad() - gb).cwiseAbs().maxCoeff() <= 1e-12 * gb.cwiseAbs().maxCoeff());
  // A second backward adds once more.
  tape.backward(sum(matmul(va, vb) * w));
  CHECK((va.grad() - 2 * ga).cwiseAbs().maxCoeff() <= 1e-12 * ga.cwiseAbs().maxCoeff());
}

TEST_CASE("matmul with Eigen matrices on either side", "[ops][linalg]") {
  Gen gen(23);
  const Mat a = gen.matrix(3, 4), b = gen.matrix(4, 2);
  Tape tape;
  const Var va = tape.variable(a);
  CHECK((matmul(va, b).value() - a * b).cwiseAbs().maxCoeff() < 1e-14);
  const Var vb = tape.variable(b);
  CHECK((matmul(a, vb).value() - a * b).cwiseAbs().maxCoeff() < 1e-14);
  test::check_gradients([&](Tape& t, const std::vector<Var>& v) { return test::weighted_sum(t, matmul(v[0], b)); }, {a});
  test::check_gradients([&](Tape& t, const std::vector<Var>& v) { return test::weighted_sum(t, matmul(a, v[0])); }, {b});
}

TEST_CASE("transpose and reshape keep row-major order, gradients flow back", "[ops][linalg]") {
  Gen gen(24);
  const Mat x = gen.matrix(3, 4);
  Tape tape;
  const Var v = tape.constant(x);
  const Var t = transpose(v);
  REQUIRE(t.rows() == 4);
  REQUIRE(t.cols() == 3);
  CHECK(t.value() == x.transpose());
  const Var r = reshape(v, 2, 6);
  REQUIRE(r.rows() == 2);
  for (Index i = 0; i < 12; ++i) CHECK(r.value().data()[i] == x.data()[i]);  // NumPy order
  CHECK(r.value()(1, 0) == x(1, 2));
  CHECK(reshape(v, -1, 3).rows() == 4);
  CHECK(reshape(v, 12, -1).cols() == 1);
  test::check_gradients([](Tape& tp, const std::vector<Var>& a) { return test::weighted_sum(tp, transpose(a[0])); }, {x});
  test::check_gradients([](Tape& tp, const std::vector<Var>& a) { return test::weighted_sum(tp, reshape(a[0], 6, 2)); }, {x});
  test::check_gradients(
      [](Tape& tp, const std::vector<Var>& a) { return test::weighted_sum(tp, square(reshape(a[0], 2, 6)) + reshape(a[0], 2, 6)); }, {x});
}

TEST_CASE("stop_gradient keeps the value and blocks the gradient", "[ops][linalg]") {
  Tape tape;
  const Mat x = Mat::Constant(2, 2, 3.0);
  const Var v = tape.variable(x);
  const Var s = stop_gradient(v);
  CHECK(s.value() == x);
  CHECK_FALSE(s.requires_grad());
  tape.backward(sum(v * s));  // d/dv (v * stop(v)) = stop(v) = 3, not 2v = 6
  CHECK((v.grad().array() == 3.0).all());
}

TEST_CASE("GEMM-sized gradients assigned into buffers holding garbage equal those added into zeros", "[ops][linalg][grad]") {
  // Backward rules of matmul and linear assign (BLAS beta = 0) where nothing flowed yet: into
  // interior nodes' buffers, and into Parameter buffers after tape.overwrite_gradients().
  Gen gen(23);
  const Mat x = gen.matrix(40, 30);
  Parameter<double> w(gen.matrix(30, 50)), b(gen.matrix(1, 50)), u(gen.matrix(50, 20));
  auto loss = [&](Tape& t) {
    const Var h = tanh(linear(t.constant(x), t.parameter(w), t.parameter(b)));  // interior operand of matmul
    return sum(square(matmul(h, t.parameter(u))));
  };
  Tape ref;
  ref.backward(loss(ref));
  const Mat gw = w.grad, gb = b.grad, gu = u.grad;
  Tape tape;
  for (int rep = 0; rep < 2; ++rep) {  // the second time, the arena holds the first graph's numbers
    for (Parameter<double>* p : {&w, &b, &u}) p->grad.setConstant(std::numeric_limits<double>::quiet_NaN());
    tape.clear();
    tape.overwrite_gradients();
    tape.backward(loss(tape));
    CHECK(w.grad == gw);
    CHECK(b.grad == gb);
    CHECK(u.grad == gu);
  }
  // An inner dimension of 0: the product is zeros (assigned, not left as the arena's old numbers).
  tape.clear();
  const Var a0 = tape.variable(Mat(40, 0)), b0 = tape.variable(Mat(0, 50));
  const Var y0 = matmul(tanh(a0), b0);
  CHECK(y0.value() == Mat::Zero(40, 50));
  tape.backward(sum(y0));
  CHECK(a0.grad().size() == 0);
}
