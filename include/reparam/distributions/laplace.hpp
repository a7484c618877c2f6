#pragma once
/// \file laplace.hpp  `Laplace(loc, scale)`: the whole family in one file, on `LocationScale`
/// (the README's "adding a distribution" walks through it). Its KL is in kl.hpp.

#include <reparam/detail/distribution.hpp>

namespace reparam {
namespace detail {

// cdf of the standard Laplace: e^z / 2 for z < 0, 1 - e^-z / 2 beyond; derivative e^-|z| / 2.
struct LaplaceCdfOp {
  static constexpr const char* name = "Laplace.cdf";
  template <class X, class C> static auto forward(const X& x, const C&) {
    using T = typename X::Scalar;
    return where(IsNegative{}, x, T(0.5) * safe_exp(x), T(1) - T(0.5) * safe_exp(-x));
  }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y&, const C&) {
    using T = typename G::Scalar;
    return g * T(0.5) * safe_exp(-x.abs());
  }
};
// quantile of the standard Laplace: -sign(p - 1/2) log(1 - 2 |p - 1/2|); derivative 1 / min(p, 1 - p)
struct LaplaceIcdfOp {
  static constexpr const char* name = "Laplace.icdf";
  template <class X, class C> static auto forward(const X& p, const C&) {
    using T = typename X::Scalar;
    // log(2p) below 1/2 and -log(2 (1 - p)) above: 2p and 1 - p are exact
    return where(Below<T>{T(0.5)}, p, safe_log(T(2) * p), -safe_log(T(2) * (T(1) - p)));
  }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& p, const Y&, const C&) {
    using T = typename G::Scalar;
    return g / p.min(T(1) - p);
  }
};

// g(t) = t psi(|t|), psi(a) = (e^-a - 1 + a) / a^2, and g'(t) = (1 - e^-a (1 + a)) / a^2 (a = |t|):
// the part of the Laplace KL beyond its first-order terms, smooth at t = 0 (g(t) = t / 2 - t |t| / 6
// + ...), so that the KL has its true second derivative there (the Fisher's loc block) instead of
// the 0 that |t| gives. Power series below a = 1 (no cancellation), the closed forms above.
template <class T>
T laplace_kl_g(T t) {
  const T a = t < T(0) ? -t : t;
  if (a < T(1)) {  // sum_k (-a)^k / (k + 2)!, k <= 18
    T s = T(0), c = T(1.0 / 2432902008176640000.0);  // 1 / 20!
    for (int k = 18; k >= 0; --k) {
      s = s * (-a) + c;
      c = c * T(k + 2);  // 1 / (k + 1)!
    }
    return t * s;
  }
  using std::expm1;
  const T psi_a = (expm1(-a) + a) / a;  // a psi(a), finite for every finite a
  return t < T(0) ? -psi_a : psi_a;
}
template <class T>
T laplace_kl_dg(T t) {
  const T a = t < T(0) ? -t : t;
  if (a < T(1)) {  // sum_k (k + 1) (-a)^k / (k + 2)!, k <= 18
    T s = T(0), c = T(1.0 / 2432902008176640000.0);
    for (int k = 18; k >= 0; --k) {
      s = s * (-a) + T(k + 1) * c;
      c = c * T(k + 2);
    }
    return s;
  }
  using std::exp;
  return (T(1) - exp(-a) * (T(1) + a)) / a / a;
}
struct LaplaceKlTailOp {
  static constexpr const char* name = "kl_divergence";
  template <class X, class C> static auto forward(const X& x, const C&) {
    using T = typename X::Scalar;
    return x.unaryExpr([](T t) { return laplace_kl_g(t); });
  }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y&, const C&) {
    using T = typename G::Scalar;
    return g * x.unaryExpr([](T t) { return laplace_kl_dg(t); });
  }
};

}  // namespace detail

/// Laplace(loc, scale), density exp(-|x - loc| / scale) / (2 scale). Base noise: u ~ U(0, 1);
/// sample = loc - scale * sign(u - 1/2) log(1 - 2 |u - 1/2|) (its quantile function).
template <class T>
class Laplace : public LocationScale<T, Laplace<T>> {
  using Base = LocationScale<T, Laplace<T>>;
  friend Base;

 public:
  using Var = BasicVar<T>;
  static constexpr const char* name = "Laplace";
  static constexpr bool uniform_noise = true;

  Laplace(const Var& loc, const Var& scale) : Base(loc, scale) {}
  Laplace(const Var& loc, detail::same_t<T> scale) : Base(loc, Base::scale_on_tape(loc, scale)) {}

  /// u -> -sign(u - 1/2) log(1 - 2 |u - 1/2|), in place.
  static void transform(T* e, std::size_t n) { detail::laplace_from_uniform(e, n); }
  static Var noise_var(const Var& u) { return detail::unary<detail::LaplaceIcdfOp>(detail::unary<detail::ClampUnitOp>(u)); }

 private:
  // -|x - loc| / scale - log(2 scale)
  Var log_prob_impl(const Var& x) const { return -abs(x - this->loc_) / this->scale_ - log(this->scale_) - T(detail::ln2); }
  Var cdf_impl(const Var& x) const { return detail::unary<detail::LaplaceCdfOp>((x - this->loc_) / this->scale_); }
  Var icdf_impl(const Var& p) const { return this->loc_ + this->scale_ * detail::unary<detail::LaplaceIcdfOp>(p); }
  Var entropy_impl() const { return log(this->scale_) + T(1 + detail::ln2); }  // 1 + log(2 scale)
  Var mean_impl() const { return this->loc_; }
  Var stddev_impl() const { return this->scale_ * T(1.41421356237309504880); }  // sqrt 2 scale
};
template <class T>
Laplace(const BasicVar<T>&, const BasicVar<T>&) -> Laplace<T>;

}  // namespace reparam
