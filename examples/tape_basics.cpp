// The same function twice: once with plain doubles, once on the tape, which also gives its
// gradient. Then a few steps of gradient descent on a small least-squares problem with Adam.
#include <cmath>
#include <cstdio>

#include <reparam/reparam.hpp>

// f(x, y) = log(1 + exp(x * y)) + y^2 / 2, written with doubles.
double f(double x, double y) { return std::log1p(std::exp(x * y)) + y * y / 2; }

int main() {
  // 1. With doubles: a value, no derivative.
  std::printf("f(0.5, -1.5) = %.12f\n", f(0.5, -1.5));

  // 2. The same arithmetic on the tape: the value and, after backward, df/dx and df/dy.
  reparam::Tape tape;
  reparam::Var x = tape.variable(0.5);
  reparam::Var y = tape.variable(-1.5);
  reparam::Var z = reparam::softplus(x * y) + reparam::square(y) / 2.0;
  tape.backward(z);
  const double s = 1 / (1 + std::exp(-0.5 * -1.5));  // sigmoid(xy), for the closed form
  std::printf("tape:  f = %.12f  df/dx = %.12f  df/dy = %.12f\n", z.item(), x.grad()(0, 0), y.grad()(0, 0));
  std::printf("exact:            df/dx = %.12f  df/dy = %.12f\n", s * -1.5, s * 0.5 + -1.5);

  // 3. Matrices: fit w in y = X w by Adam on a cleared, reused tape (no allocation per step).
  reparam::Matrix<double> X(4, 2), t(4, 1);
  X << 1, 0, 0, 1, 1, 1, 2, -1;
  t << 1, -2, -1, 4;  // exactly X * [1, -2]
  reparam::Parameter<double> w(reparam::Matrix<double>::Zero(2, 1));
  reparam::optim::Adam opt({&w}, {0.1});
  double loss = 0;
  for (int step = 0; step < 300; ++step) {
    tape.clear();
    opt.zero_grad();
    reparam::Var r = reparam::matmul(tape.constant(X), tape.variable(w)) - t;
    reparam::Var l = reparam::mean(reparam::square(r));
    tape.backward(l);
    opt.step();
    loss = l.item();
  }
  std::printf("least squares: w = [%.4f, %.4f] (exact [1, -2]), loss %.2e\n", w.value(0, 0), w.value(1, 0), loss);
  return std::abs(w.value(0, 0) - 1) < 1e-2 && std::abs(w.value(1, 0) + 2) < 1e-2 ? 0 : 1;
}
