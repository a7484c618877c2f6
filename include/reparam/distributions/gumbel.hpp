#pragma once
/// \file gumbel.hpp  `Gumbel(loc, scale)`.

#include <reparam/detail/distribution.hpp>

namespace reparam {
namespace detail {

// cdf of the standard Gumbel, exp(-exp(-z)); its derivative exp(-(z + exp(-z))) is one exp, so it
// is exactly 0 far in the left tail (the composed form would give 0 * inf).
struct GumbelCdfOp {
  static constexpr const char* name = "Gumbel.cdf";
  template <class X, class C> static auto forward(const X& x, const C&) { return safe_exp(-safe_exp(-x)); }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y&, const C&) {
    return g * safe_exp(-(x + safe_exp(-x)));
  }
};

}  // namespace detail

/// Gumbel(loc, scale). Base noise: u ~ U(0, 1); sample = loc - scale * log(-log u).
template <class T>
class Gumbel : public LocationScale<T, Gumbel<T>> {
  using Base = LocationScale<T, Gumbel<T>>;
  friend Base;

 public:
  using Var = BasicVar<T>;
  static constexpr const char* name = "Gumbel";
  static constexpr bool uniform_noise = true;

  Gumbel(const Var& loc, const Var& scale) : Base(loc, scale) {}
  Gumbel(const Var& loc, detail::same_t<T> scale) : Base(loc, Base::scale_on_tape(loc, scale)) {}

  /// u -> -log(-log u), in place.
  static void transform(T* e, std::size_t n) { detail::gumbel_from_uniform(e, n); }
  static Var noise_var(const Var& u) { return -log(-log(detail::unary<detail::ClampUnitOp>(u))); }

 private:
  // -(z + e^-z) - log scale
  Var log_prob_impl(const Var& x) const {
    const Var z = (x - this->loc_) / this->scale_;
    return -(z + exp(-z)) - log(this->scale_);
  }
  Var cdf_impl(const Var& x) const { return detail::unary<detail::GumbelCdfOp>((x - this->loc_) / this->scale_); }
  Var icdf_impl(const Var& p) const { return this->loc_ - this->scale_ * log(-log(p)); }
  Var entropy_impl() const { return log(this->scale_) + T(1 + detail::euler_gamma); }
  Var mean_impl() const { return this->loc_ + this->scale_ * T(detail::euler_gamma); }
  Var stddev_impl() const { return this->scale_ * T(detail::pi / 2.44948974278317809820); }  // pi / sqrt 6
};
template <class T>
Gumbel(const BasicVar<T>&, const BasicVar<T>&) -> Gumbel<T>;

}  // namespace reparam
