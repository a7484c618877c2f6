#pragma once
/// \file dual.hpp  `Dual<T>`: a forward-mode dual number v + e d (e^2 = 0) usable as the tape's
/// scalar. A tape of duals computes, in one reverse sweep, the gradient (the v-parts) and its
/// directional derivative along the leaves' tangents (the d-parts): a Hessian-vector product
/// (forward over reverse). `hessian_vector_product` in second_order.hpp wraps it.
///
///     reparam::BasicTape<reparam::Dual<double>> t;
///     auto x = t.variable(xd);            // xd(i, j) = Dual(x(i, j), v(i, j))
///     t.backward(f(t, x));                // x.grad()(i, j).v: df/dx, .d: (H v)(i, j)

#include <cmath>
#include <ostream>
#include <type_traits>

#include <Eigen/Core>

namespace reparam {

template <class T>
struct Dual {
  T v = T(0), d = T(0);
  constexpr Dual() = default;
  constexpr Dual(T value, T tangent = T(0)) : v(value), d(tangent) {}  // NOLINT: implicit from T, as a scalar literal
  template <class U, class = std::enable_if_t<std::is_arithmetic<U>::value && !std::is_same<U, T>::value>>
  constexpr Dual(U value) : v(T(value)) {}  // NOLINT: implicit from any arithmetic literal (0, 1.0)
  /// The value as T (for printing, indices of an argmax, and checks).
  constexpr explicit operator T() const { return v; }

  // arithmetic as hidden friends, so that a plain number on either side converts:
  // d(a b) = da b + a db, d(a / b) = (da b - a db) / b^2
  friend constexpr Dual operator+(Dual a, Dual b) { return {a.v + b.v, a.d + b.d}; }
  friend constexpr Dual operator-(Dual a, Dual b) { return {a.v - b.v, a.d - b.d}; }
  friend constexpr Dual operator-(Dual a) { return {-a.v, -a.d}; }
  friend constexpr Dual operator*(Dual a, Dual b) { return {a.v * b.v, a.d * b.v + a.v * b.d}; }
  friend constexpr Dual operator/(Dual a, Dual b) { return {a.v / b.v, (a.d * b.v - a.v * b.d) / (b.v * b.v)}; }
  friend constexpr Dual& operator+=(Dual& a, Dual b) { return a = a + b; }
  friend constexpr Dual& operator-=(Dual& a, Dual b) { return a = a - b; }
  friend constexpr Dual& operator*=(Dual& a, Dual b) { return a = a * b; }
  friend constexpr Dual& operator/=(Dual& a, Dual b) { return a = a / b; }
  // comparisons see the value only (branches of max, relu, abs follow the value)
  friend constexpr bool operator<(Dual a, Dual b) { return a.v < b.v; }
  friend constexpr bool operator>(Dual a, Dual b) { return a.v > b.v; }
  friend constexpr bool operator<=(Dual a, Dual b) { return a.v <= b.v; }
  friend constexpr bool operator>=(Dual a, Dual b) { return a.v >= b.v; }
  friend constexpr bool operator==(Dual a, Dual b) { return a.v == b.v; }
  friend constexpr bool operator!=(Dual a, Dual b) { return a.v != b.v; }
};

// elementary functions, found by ADL: d f(a) = f'(a) da
template <class T> Dual<T> exp(Dual<T> a) { const T e = std::exp(a.v); return {e, a.d * e}; }
template <class T> Dual<T> log(Dual<T> a) { return {std::log(a.v), a.d / a.v}; }
template <class T> Dual<T> log1p(Dual<T> a) { return {std::log1p(a.v), a.d / (T(1) + a.v)}; }
template <class T> Dual<T> expm1(Dual<T> a) { return {std::expm1(a.v), a.d * std::exp(a.v)}; }
template <class T> Dual<T> sqrt(Dual<T> a) { const T s = std::sqrt(a.v); return {s, a.d / (T(2) * s)}; }
template <class T> Dual<T> tanh(Dual<T> a) { const T t = std::tanh(a.v); return {t, a.d * (T(1) - t * t)}; }
template <class T> Dual<T> abs(Dual<T> a) { return a.v < T(0) ? -a : a; }
// d erf(a) = 2 / sqrt(pi) e^(-a^2) da
template <class T> Dual<T> erf(Dual<T> a) { return {std::erf(a.v), a.d * T(1.12837916709551257390) * std::exp(-a.v * a.v)}; }
template <class T> Dual<T> erfc(Dual<T> a) { return {std::erfc(a.v), -a.d * T(1.12837916709551257390) * std::exp(-a.v * a.v)}; }
template <class T> Dual<T> floor(Dual<T> a) { return {std::floor(a.v), T(0)}; }
template <class T> Dual<T> pow(Dual<T> a, Dual<T> b) {
  const T p = std::pow(a.v, b.v);
  // d a^b = b a^(b-1) da + a^b log(a) db (the second term only where db is not 0: a may be 0)
  return {p, a.d * b.v * std::pow(a.v, b.v - T(1)) + (b.d != T(0) ? b.d * p * std::log(a.v) : T(0))};
}
template <class T> bool isfinite(Dual<T> a) { return std::isfinite(a.v) && std::isfinite(a.d); }
template <class T> std::ostream& operator<<(std::ostream& os, Dual<T> a) { return os << a.v << "+" << a.d << "e"; }

}  // namespace reparam

namespace Eigen {
template <class T>
struct NumTraits<reparam::Dual<T>> : NumTraits<T> {
  using Real = reparam::Dual<T>;
  using NonInteger = reparam::Dual<T>;
  using Nested = reparam::Dual<T>;
  using Literal = reparam::Dual<T>;
  enum { IsComplex = 0, IsInteger = 0, IsSigned = 1, RequireInitialization = 0, ReadCost = 2, AddCost = 2, MulCost = 4 };
};
}  // namespace Eigen
