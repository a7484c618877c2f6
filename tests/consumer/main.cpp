// A user's program, in float: d/dx sum(x^2) = 2x, checked; then a small model through a GEMM, a
// sampler and a KL (Eigen's vectorized kernels and reparam's GEMM, for the -Werror build of
// reparam::native). Small on purpose: the packaging tests compile it three times.
#include <cstdio>

#include <reparam/reparam.hpp>

int main() {
  using namespace reparam;
  TapeF tape;
  VarF x = tape.variable(Matrix<float>::Constant(2, 3, 1.5f));
  tape.backward(sum(square(x)));
  if (!(x.grad().array() == 3.0f).all()) return 1;

  Rng rng(1);
  TapeF t;
  const VarF w = t.variable(normal_matrix<float>(rng, 64, 32)), in = t.constant(normal_matrix<float>(rng, 16, 64));
  const Normal<float> q(matmul(in, w), 1.0f);
  t.backward(sum(q.rsample(rng)) + sum(kl_divergence(q, Normal<float>(t.constant(Matrix<float>::Zero(16, 32)), 2.0f))));
  TapeF tf;
  const VarF a = tf.variable(Matrix<float>::Ones(8, 8));
  tf.backward(sum(matmul(a, a)));
  if (!w.grad().allFinite() || !(a.grad().array() == 16.0f).all()) return 1;
  std::printf("consumer ok (reparam %d)\n", version);
  return 0;
}
