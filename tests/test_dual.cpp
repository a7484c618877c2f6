// The tape is generic in the scalar: with the dual number reparam::Dual, d = v + e dv, it runs
// unchanged, and the gradient's e-part is a Hessian-vector product (forward over reverse).
#include <cmath>
#include <ostream>

#include "support.hpp"

#include <reparam/dual.hpp>

using namespace reparam;
using DualD = reparam::Dual<double>;  // the public dual scalar (dual.hpp)
using test::Gen;
using test::Mat;

namespace {

// A function touching every operation.
template <class T>
BasicVar<T> f(BasicTape<T>& t, const BasicVar<T>& x, const Matrix<T>& w) {
  const BasicVar<T> h = tanh(matmul(x, t.constant(w)) + T(0.1));  // 3x4 * 4x2
  const BasicVar<T> p = softmax(h);
  const BasicVar<T> e = softplus(x) + log_sigmoid(x) + sigmoid(x) * x + relu(x) + abs(x) + expm1(x * T(0.5));
  const BasicVar<T> s = sqrt(square(x) + T(1)) + log(exp(x) + T(1)) + log1p(square(x)) + pow(square(x) + T(1), T(1.5));
  return sum(p * log_softmax(h)) + mean(e) + sum(sum_rows(s) * T(0.1)) + sum(logsumexp(h)) +
         sum(bce_with_logits(x, t.constant(Matrix<T>::Constant(3, 4, T(0.3))))) + sum(sum_cols(transpose(x))) +
         sum(reshape(x, 2, 6) / T(7)) + sum(stop_gradient(x) * x) + sum(x / (x * x + T(2)));
}

Mat grad_at(const Mat& x, const Mat& w) {
  Tape t;
  const Var v = t.variable(x);
  t.backward(f<double>(t, v, w));
  return v.grad();
}

}  // namespace

TEST_CASE("tape over dual numbers: gradient and Hessian-vector product", "[dual]") {
  Gen gen(50);
  const Mat x = gen.matrix(3, 4), dir = gen.matrix(3, 4), w = gen.matrix(4, 2);
  Matrix<DualD> xd(3, 4), wd(4, 2);
  for (Index i = 0; i < x.size(); ++i) xd.data()[i] = DualD(x.data()[i], dir.data()[i]);
  for (Index i = 0; i < w.size(); ++i) wd.data()[i] = DualD(w.data()[i]);
  BasicTape<DualD> t;
  const BasicVar<DualD> v = t.variable(xd);
  t.backward(f<DualD>(t, v, wd));
  const Mat g = grad_at(x, w);
  // e-part of the gradient: H dir, checked against a central difference of the gradient.
  const double h = 1e-5;
  // sum(stop_gradient(x) * x) has gradient stop_gradient(x): a central difference of the gradient
  // sees it move with x (+ dir), the dual tape holds it constant in forward mode too (tangent 0,
  // as detach in PyTorch's double backward), so its term of H dir is 0 there
  const Mat hv = (grad_at(x + h * dir, w) - grad_at(x - h * dir, w)) / (2 * h) - dir;
  for (Index i = 0; i < x.size(); ++i) {
    INFO("element " << i);
    CHECK(test::close(v.grad().data()[i].v, g.data()[i], 1e-12, 1e-14));
    CHECK(std::abs(v.grad().data()[i].d - hv.data()[i]) <= 1e-6 * (1 + std::abs(hv.data()[i])));
  }
}

// Dual GEMMs run as real products of the value and tangent planes, skipping a plane's product
// when its tangent is all zeros; each case must equal the product written with Dual arithmetic.
TEST_CASE("dual matmul: planes with and without zero tangents equal Dual arithmetic", "[dual]") {
  using M = Matrix<DualD>;
  Rng rng(5);
  const Index m = 9, k = 13, n = 11;  // m + n + k >= 20: the plane route
  for (int a_moves = 0; a_moves < 2; ++a_moves)
    for (int b_moves = 0; b_moves < 2; ++b_moves) {
      const Mat av = uniform_matrix<double>(rng, m, k), ad = uniform_matrix<double>(rng, m, k) * double(a_moves);
      const Mat bv = uniform_matrix<double>(rng, k, n), bd = uniform_matrix<double>(rng, k, n) * double(b_moves);
      M A(m, k), B(k, n);
      for (Index i = 0; i < A.size(); ++i) A.data()[i] = DualD(av.data()[i], ad.data()[i]);
      for (Index i = 0; i < B.size(); ++i) B.data()[i] = DualD(bv.data()[i], bd.data()[i]);
      BasicTape<DualD> t;
      const BasicVar<DualD> C = matmul(t.constant(A), t.constant(B));
      double worst = 0;
      for (Index i = 0; i < m; ++i)
        for (Index j = 0; j < n; ++j) {
          DualD ref(0.0);
          for (Index p = 0; p < k; ++p) ref += A(i, p) * B(p, j);
          worst = std::max({worst, std::abs(C.value()(i, j).v - ref.v), std::abs(C.value()(i, j).d - ref.d)});
        }
      CHECK(worst < 1e-13);
      if (!a_moves && !b_moves) {
        for (Index i = 0; i < C.value().size(); ++i) CHECK(C.value().data()[i].d == 0.0);
      }
    }
}
