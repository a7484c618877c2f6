// Leaves, accumulation, zero_grad, clear, Parameters, the vector-Jacobian product.
#include "support.hpp"

using namespace reparam;
using test::Gen;
using test::Mat;

TEST_CASE("the contract's first example: d/dx sum((x * c)^2) = 2 c^2 x", "[tape]") {
  Gen gen(30);
  const Mat m = gen.matrix(3, 4), k = gen.matrix(3, 4);
  Tape tape;
  const Var x = tape.variable(m);
  const Var c = tape.constant(k);
  const Var y = sum(square(x * c));
  tape.backward(y);
  CHECK(test::close(y.item(), (m.array() * k.array()).square().sum(), 1e-14));
  const Mat want = 2 * k.array().square() * m.array();
  CHECK((x.grad() - want).cwiseAbs().maxCoeff() < 1e-14);
  CHECK(x.rows() == 3);
  CHECK(x.cols() == 4);
  CHECK(x.value() == m);
}

TEST_CASE("backward adds into leaf gradients on every call, zero_grad resets them", "[tape]") {
  Tape tape;
  const Var x = tape.variable(Mat::Constant(2, 2, 1.5));
  const Var y = sum(square(x));
  tape.backward(y);
  CHECK((x.grad().array() == 3.0).all());
  tape.backward(y);  // same graph again: adds once more
  CHECK((x.grad().array() == 6.0).all());
  tape.zero_grad();
  CHECK((x.grad().array() == 0.0).all());
  tape.backward(y);
  CHECK((x.grad().array() == 3.0).all());
}

TEST_CASE("interior gradients are those of the last backward", "[tape]") {
  Tape tape;
  const Var x = tape.variable(2.0);
  const Var h = x * 3.0;
  const Var y = square(h);
  tape.backward(y);
  CHECK(h.grad()(0, 0) == 12.0);  // dy/dh = 2h = 12
  tape.backward(y);
  CHECK(h.grad()(0, 0) == 12.0);
  CHECK(x.grad()(0, 0) == 72.0);  // leaves accumulate: 2 * 36
}

TEST_CASE("nodes built only from constants carry no gradient and record no work", "[tape]") {
  Tape tape;
  const Var c = tape.constant(Mat::Ones(2, 2));
  const Var x = tape.variable(Mat::Ones(2, 2));
  const Var e = exp(c) * 2.0;
  CHECK_FALSE(c.requires_grad());
  CHECK_FALSE(e.requires_grad());
  CHECK(x.requires_grad());
  CHECK((e + x).requires_grad());
  CHECK_THROWS_AS(e.grad(), GraphError);
  const Var y = sum(e * x);
  tape.backward(y);
  CHECK(x.grad().isApprox(Mat::Constant(2, 2, 2 * std::exp(1.0))));
}

TEST_CASE("a variable that nothing flowed back to has a zero gradient", "[tape]") {
  Tape tape;
  const Var x = tape.variable(Mat::Ones(2, 3));
  const Var z = tape.variable(Mat::Ones(1, 1));
  const Var unused = exp(z);
  tape.backward(sum(x));
  CHECK((z.grad().array() == 0.0).all());
  CHECK((unused.grad().array() == 0.0).all());
}

TEST_CASE("clear drops the graph and keeps the tape usable", "[tape]") {
  Tape tape;
  for (int rep = 0; rep < 3; ++rep) {
    const Var x = tape.variable(Mat::Constant(1, 3, double(rep + 1)));
    tape.backward(sum(square(x)));
    CHECK((x.grad().array() == 2.0 * (rep + 1)).all());
    CHECK(tape.size() == 3);
    tape.clear();
    CHECK(tape.size() == 0);
    CHECK_THROWS_AS(x.value(), GraphError);
  }
  CHECK(tape.memory_bytes() > 0);
}

TEST_CASE("a Parameter is read in place and receives its gradient", "[tape][parameter]") {
  Gen gen(31);
  Parameter<double> w(gen.matrix(3, 2));
  REQUIRE(w.grad.rows() == 3);
  REQUIRE((w.grad.array() == 0).all());
  const Mat x = gen.matrix(4, 3);
  for (int step = 1; step <= 2; ++step) {
    Tape tape;  // a new tape each step: the Parameter outlives it
    const Var vw = tape.variable(w);
    CHECK(vw.value().data() == w.value.data());  // no copy
    tape.backward(sum(matmul(tape.constant(x), vw)));
    const Mat want = double(step) * x.transpose() * Mat::Ones(4, 2);
    CHECK((w.grad - want).cwiseAbs().maxCoeff() < 1e-13);
  }
  Tape tape;
  tape.variable(w);
  tape.zero_grad();  // zeroes the Parameters this tape reads too
  CHECK((w.grad.array() == 0).all());
  Parameter<double> fresh;
  fresh.value = Mat::Ones(2, 2);  // grad not sized yet: variable() sizes it
  const Var vf = tape.variable(fresh);
  tape.backward(sum(vf));
  CHECK((fresh.grad.array() == 1).all());
}

TEST_CASE("backward with a seed is the vector-Jacobian product", "[tape]") {
  Gen gen(32);
  const Mat a = gen.matrix(3, 4), seed = gen.matrix(3, 4);
  Tape tape;
  const Var x = tape.variable(a);
  const Var y = tanh(x);
  tape.backward(y, seed);
  const Mat want = seed.array() * (1 - a.array().tanh().square());
  CHECK((x.grad() - want).cwiseAbs().maxCoeff() < 1e-15);
}

TEST_CASE("backward of a leaf adds one", "[tape]") {
  Tape tape;
  const Var x = tape.variable(5.0);
  tape.backward(x);
  CHECK(x.grad()(0, 0) == 1.0);
  CHECK(x.item() == 5.0);
}

TEST_CASE("zero-sized matrices flow through", "[tape]") {
  Tape tape;
  const Var x = tape.variable(Mat(0, 3));
  const Var y = sum(exp(x) + x);
  CHECK(y.item() == 0.0);
  tape.backward(y);
  CHECK(x.grad().size() == 0);
}
