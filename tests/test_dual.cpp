// The tape is generic in the scalar: with a dual number d = v + e dv it runs unchanged, and the
// gradient's e-part is a Hessian-vector product (forward over reverse).
#include <cmath>
#include <ostream>

#include "support.hpp"

namespace dual {
struct Dual {
  double v = 0, d = 0;
  Dual() = default;
  Dual(double value, double tangent = 0) : v(value), d(tangent) {}  // NOLINT: implicit from double
};
inline Dual operator+(Dual a, Dual b) { return {a.v + b.v, a.d + b.d}; }
inline Dual operator-(Dual a, Dual b) { return {a.v - b.v, a.d - b.d}; }
inline Dual operator-(Dual a) { return {-a.v, -a.d}; }
inline Dual operator*(Dual a, Dual b) { return {a.v * b.v, a.d * b.v + a.v * b.d}; }
inline Dual operator/(Dual a, Dual b) { return {a.v / b.v, (a.d * b.v - a.v * b.d) / (b.v * b.v)}; }
inline Dual& operator+=(Dual& a, Dual b) { return a = a + b; }
inline Dual& operator-=(Dual& a, Dual b) { return a = a - b; }
inline Dual& operator*=(Dual& a, Dual b) { return a = a * b; }
inline Dual& operator/=(Dual& a, Dual b) { return a = a / b; }
inline bool operator<(Dual a, Dual b) { return a.v < b.v; }
inline bool operator>(Dual a, Dual b) { return a.v > b.v; }
inline bool operator<=(Dual a, Dual b) { return a.v <= b.v; }
inline bool operator>=(Dual a, Dual b) { return a.v >= b.v; }
inline bool operator==(Dual a, Dual b) { return a.v == b.v; }
inline bool operator!=(Dual a, Dual b) { return a.v != b.v; }
inline Dual exp(Dual a) { const double e = std::exp(a.v); return {e, a.d * e}; }
inline Dual log(Dual a) { return {std::log(a.v), a.d / a.v}; }
inline Dual log1p(Dual a) { return {std::log1p(a.v), a.d / (1 + a.v)}; }
inline Dual expm1(Dual a) { return {std::expm1(a.v), a.d * std::exp(a.v)}; }
inline Dual sqrt(Dual a) { const double s = std::sqrt(a.v); return {s, a.d / (2 * s)}; }
inline Dual tanh(Dual a) { const double t = std::tanh(a.v); return {t, a.d * (1 - t * t)}; }
inline Dual abs(Dual a) { return a.v < 0 ? -a : a; }
inline Dual pow(Dual a, Dual b) {
  const double p = std::pow(a.v, b.v);
  return {p, a.d * b.v * std::pow(a.v, b.v - 1) + (b.d != 0 ? b.d * p * std::log(a.v) : 0.0)};
}
inline std::ostream& operator<<(std::ostream& os, Dual a) { return os << a.v << "+" << a.d << "e"; }
}  // namespace dual

namespace Eigen {
template <>
struct NumTraits<dual::Dual> : NumTraits<double> {
  using Real = dual::Dual;
  using NonInteger = dual::Dual;
  using Nested = dual::Dual;
  using Literal = dual::Dual;
  enum { IsComplex = 0, IsInteger = 0, IsSigned = 1, RequireInitialization = 0, ReadCost = 2, AddCost = 2, MulCost = 4 };
};
}  // namespace Eigen

using namespace reparam;
using dual::Dual;
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
  Matrix<Dual> xd(3, 4), wd(4, 2);
  for (Index i = 0; i < x.size(); ++i) xd.data()[i] = Dual(x.data()[i], dir.data()[i]);
  for (Index i = 0; i < w.size(); ++i) wd.data()[i] = Dual(w.data()[i]);
  BasicTape<Dual> t;
  const BasicVar<Dual> v = t.variable(xd);
  t.backward(f<Dual>(t, v, wd));
  const Mat g = grad_at(x, w);
  // e-part of the gradient: H dir, checked against a central difference of the gradient.
  const double h = 1e-5;
  const Mat hv = (grad_at(x + h * dir, w) - grad_at(x - h * dir, w)) / (2 * h);
  for (Index i = 0; i < x.size(); ++i) {
    INFO("element " << i);
    CHECK(test::close(v.grad().data()[i].v, g.data()[i], 1e-12, 1e-14));
    CHECK(std::abs(v.grad().data()[i].d - hv.data()[i]) <= 1e-6 * (1 + std::abs(hv.data()[i])));
  }
}
