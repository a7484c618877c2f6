#pragma once
/// \file logistic.hpp  `Logistic(loc, scale)`.

#include <reparam/detail/distribution.hpp>

namespace reparam {
namespace detail {

// log density of the standard logistic, -|z| - 2 log1p(e^-|z|) (symmetric, no overflow), with
// derivative -tanh(z / 2): exact near z = 0, where 1 - 2 sigmoid(-z) would cancel.
struct LogisticLogDensityOp {
  static constexpr const char* name = "Logistic.log_prob";
  template <class X, class C> static auto forward(const X& z, const C&) {
    using T = typename X::Scalar;
    return -z.abs() - T(2) * safe_log1p(safe_exp(-z.abs()));
  }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& z, const Y&, const C&) {
    using T = typename G::Scalar;
    return -g * fast_tanh(z * T(0.5));
  }
};

}  // namespace detail

/// Logistic(loc, scale). Base noise: u ~ U(0, 1); sample = loc + scale * (log u - log(1 - u)).
template <class T>
class Logistic : public LocationScale<T, Logistic<T>> {
  using Base = LocationScale<T, Logistic<T>>;
  friend Base;

 public:
  using Var = BasicVar<T>;
  static constexpr const char* name = "Logistic";
  static constexpr bool uniform_noise = true;

  Logistic(const Var& loc, const Var& scale) : Base(loc, scale) {}
  Logistic(const Var& loc, detail::same_t<T> scale) : Base(loc, Base::scale_on_tape(loc, scale)) {}

  /// u -> log u - log(1 - u), in place.
  static void transform(T* e, std::size_t n) { detail::logistic_from_uniform(e, n); }
  static Var noise_var(const Var& u) {
    const Var c = detail::unary<detail::ClampUnitOp>(u);
    return log(c) - log1p(-c);
  }

 private:
  // f(z) - log scale, f the standard log density (one fused node)
  Var log_prob_impl(const Var& x) const {
    return detail::unary<detail::LogisticLogDensityOp>((x - this->loc_) / this->scale_) - log(this->scale_);
  }
  Var cdf_impl(const Var& x) const { return sigmoid((x - this->loc_) / this->scale_); }
  Var icdf_impl(const Var& p) const { return this->loc_ + this->scale_ * (log(p) - log1p(-p)); }
  Var entropy_impl() const { return log(this->scale_) + T(2); }
  Var mean_impl() const { return this->loc_; }
  Var stddev_impl() const { return this->scale_ * T(detail::pi / 1.73205080756887729353); }  // pi / sqrt 3
};
template <class T>
Logistic(const BasicVar<T>&, const BasicVar<T>&) -> Logistic<T>;

}  // namespace reparam
