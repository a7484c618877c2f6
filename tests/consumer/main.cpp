// A user's program: d/dx sum(x^2) = 2x, checked; then a small model through a GEMM, a sampler,
// a density and a KL (enough of Eigen's vectorized kernels for the -Werror build of reparam::native).
#include <cmath>
#include <cstdio>

#include <reparam/reparam.hpp>

int main() {
  using namespace reparam;
  Tape tape;
  Var x = tape.variable(Matrix<double>::Constant(2, 3, 1.5));
  tape.backward(sum(square(x)));
  if (!(x.grad().array() == 3.0).all()) return 1;

  Rng rng(1);
  Tape t;
  const Var w = t.variable(normal_matrix(rng, 64, 32)), in = t.variable(normal_matrix(rng, 16, 64));
  const Normal<double> q(tanh(matmul(in, w)), 1.0);
  const Concrete<double> c(q.rsample(rng), 0.5);
  t.backward(sum(c.log_prob(c.rsample(rng))) + sum(kl_divergence(q, Normal<double>(t.constant(Matrix<double>::Zero(16, 32)), 2.0))));
  TapeF tf;
  const VarF a = tf.variable(Matrix<float>::Ones(8, 8));
  tf.backward(sum(matmul(a, a)));
  if (!w.grad().allFinite() || !(a.grad().array() == 16.0f).all()) return 1;
  std::printf("consumer ok (reparam %d)\n", version);
  return 0;
}
