#pragma once
/// \file normal.hpp  `Normal(loc, scale)`.
///
///     reparam::Normal q(mu, sigma);            // Vars that broadcast against each other
///     reparam::Var z = q.rsample(rng);         // z = mu + sigma * eps, differentiable
///     reparam::Var lp = q.log_prob(z);         // elementwise

#include <reparam/detail/distribution.hpp>

namespace reparam {
namespace detail {

struct NdtrOp {
  static constexpr const char* name = "Normal.cdf";
  template <class X, class C> static auto forward(const X& x, const C&) {
    using T = typename X::Scalar;
    return x.unaryExpr([](T v) { return ndtr(v); });
  }
  // phi(x), with an exp that underflows to exactly 0 on every path
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y&, const C&) {
    using T = typename G::Scalar;
    return g * safe_exp(T(-0.5) * x.square()) * T(inv_sqrt_2pi);
  }
};
struct NdtriOp {
  static constexpr const char* name = "Normal.icdf";
  template <class X, class C> static auto forward(const X& x, const C&) {
    using T = typename X::Scalar;
    return x.unaryExpr([](T v) {
      if constexpr (is_dual_scalar<T>::value) {  // d ndtri(p) = sqrt(2 pi) e^(y^2 / 2) dp
        using R = real_t<T>;
        const R y = static_cast<R>(ndtri(static_cast<double>(v.v)));
        return T(y, v.d == R(0) ? R(0) : v.d * R(sqrt_2pi) * std::exp(R(0.5) * y * y));
      } else {
        return static_cast<T>(ndtri(static_cast<double>(v)));
      }
    });
  }
  // 1 / phi(y) = sqrt(2 pi) e^(y^2 / 2)
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X&, const Y& y, const C&) {
    using T = typename G::Scalar;
    return g * safe_exp(T(0.5) * y.square()) * T(sqrt_2pi);
  }
};

}  // namespace detail

/// Normal(loc, scale). Base noise: eps ~ N(0, 1) (the ziggurat of `reparam::normal`);
/// sample = loc + scale * eps.
template <class T>
class Normal : public LocationScale<T, Normal<T>> {
  using Base = LocationScale<T, Normal<T>>;
  friend Base;

 public:
  using Var = BasicVar<T>;
  static constexpr const char* name = "Normal";
  static constexpr bool uniform_noise = false;

  Normal(const Var& loc, const Var& scale) : Base(loc, scale) {}
  Normal(const Var& loc, detail::same_t<T> scale) : Base(loc, Base::scale_on_tape(loc, scale)) {}

  static Var noise_var(const Var& eps) { return eps; }

 private:
  // -z^2 / 2 - log scale - log sqrt(2 pi), z = (x - loc) / scale
  Var log_prob_impl(const Var& x) const {
    const Var z = (x - this->loc_) / this->scale_;
    return T(-0.5) * square(z) - log(this->scale_) - T(detail::log_sqrt_2pi);
  }
  Var cdf_impl(const Var& x) const { return detail::unary<detail::NdtrOp>((x - this->loc_) / this->scale_); }
  Var icdf_impl(const Var& p) const { return this->loc_ + this->scale_ * detail::unary<detail::NdtriOp>(p); }
  Var entropy_impl() const { return log(this->scale_) + T(0.5 + detail::log_sqrt_2pi); }
  Var mean_impl() const { return this->loc_; }
  Var stddev_impl() const { return this->scale_; }
};
template <class T>
Normal(const BasicVar<T>&, const BasicVar<T>&) -> Normal<T>;

}  // namespace reparam
