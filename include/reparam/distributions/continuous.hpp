#pragma once
/// \file continuous.hpp  Location-scale families with pathwise samples: `Normal`, `Gumbel`,
/// `Logistic`.
///
///     reparam::Normal q(mu, sigma);            // Vars that broadcast against each other
///     reparam::Var z = q.rsample(rng);         // z = mu + sigma * eps, differentiable
///     reparam::Var lp = q.log_prob(z);         // elementwise

#include <cmath>
#include <string>

#include <reparam/distributions/common.hpp>

namespace reparam {
namespace detail {

inline constexpr double log_sqrt_2pi = 0.91893853320467274178;  // log(sqrt(2 pi))
inline constexpr double euler_gamma = 0.57721566490153286061;
inline constexpr double pi = 3.14159265358979323846;

/// Standard normal cdf, 0.5 erfc(-x / sqrt 2): accurate in both tails.
template <class T>
T ndtr(T x) {
  using std::erfc;
  return T(0.5) * erfc(-x * T(0.70710678118654752440));
}

/// Standard normal quantile: Acklam's rational approximation (relative error < 1.2e-9) refined
/// by one Halley step on ndtr, which brings it to full double precision. ndtri(0) = -inf,
/// ndtri(1) = +inf.
inline double ndtri(double p) {
  using std::exp;
  using std::log;
  using std::log1p;
  using std::sqrt;
  if (p <= 0) return -std::numeric_limits<double>::infinity();
  if (p >= 1) return std::numeric_limits<double>::infinity();
  static constexpr double a[6] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                                  1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[5] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                  6.680131188771972e+01,  -1.328068155288572e+01};
  static constexpr double c[6] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                  -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[4] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                  3.754408661907416e+00};
  constexpr double p_low = 0.02425;
  double x;
  if (p < p_low) {
    const double q = sqrt(-2 * log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= 1 - p_low) {
    const double q = p - 0.5;
    const double r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    const double q = sqrt(-2 * log1p(-p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  // Halley step on f(x) = ndtr(x) - p, done on the smaller tail for accuracy.
  // ndtr(x) - p; for x >= 0 as (1 - p) - ndtr(-x), where 1 - p is exact (p >= 1/2).
  const double e = x < 0 ? ndtr(x) - p : (1 - p) - ndtr(-x);
  const double u = e * 2.50662827463100050242 * exp(0.5 * x * x);  // e / phi(x)
  return x - u / (1 + 0.5 * x * u);
}

struct NdtrOp {
  static constexpr const char* name = "ndtr";
  template <class X, class C> static auto forward(const X& x, const C&) {
    using T = typename X::Scalar;
    return x.unaryExpr([](T v) { return ndtr(v); });
  }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y&, const C&) {
    using T = typename G::Scalar;
    return g * (T(-0.5) * x.square()).exp() * T(0.39894228040143267794);  // phi(x)
  }
};
struct NdtriOp {
  static constexpr const char* name = "ndtri";
  template <class X, class C> static auto forward(const X& x, const C&) {
    using T = typename X::Scalar;
    return x.unaryExpr([](T v) { return static_cast<T>(ndtri(static_cast<double>(v))); });
  }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X&, const Y& y, const C&) {
    using T = typename G::Scalar;
    return g * (T(0.5) * y.square()).exp() * T(2.50662827463100050242);  // 1 / phi(y)
  }
};

/// What Normal, Gumbel and Logistic share: parameters, checks, shapes, sampling. D supplies
/// `name`, `uniform_noise` (false: the base noise is N(0, 1); true: it is U(0, 1), mapped by
/// `D::transform(e, n)` in place), `noise_var` (the same map on a Var) and the formulas.
template <class T, class D>
class LocScale : public CdfOverloads<D, T> {
  friend class ValueOverloads<D, T>;
  friend class CdfOverloads<D, T>;

 public:
  using Scalar = T;
  using Var = BasicVar<T>;
  using CdfOverloads<D, T>::log_prob;
  using CdfOverloads<D, T>::cdf;
  using CdfOverloads<D, T>::icdf;

  const Var& loc() const noexcept { return loc_; }
  const Var& scale() const noexcept { return scale_; }
  /// The batch shape: loc and scale broadcast.
  Index rows() const noexcept { return R_; }
  Index cols() const noexcept { return C_; }

  /// A pathwise sample of the batch shape: loc + scale * noise, differentiable in loc and scale.
  template <class G>
  Var rsample(G& g) const {
    return rsample(g, R_, C_);
  }
  /// A pathwise sample of shape rows x cols (which must contain the batch shape, e.g. n rows of a
  /// 1 x N batch).
  template <class G>
  Var rsample(G& g, Index rows, Index cols) const {
    check_sample_shape(op(Op::rsample), rows, cols, R_, C_);
    return affine_noise(loc_, scale_, rows, cols, [&](T* e) { draw(g, e, static_cast<std::size_t>(rows * cols)); });
  }
  /// The same map with the base noise given (see the class for what it is); the sample has the
  /// noise's shape.
  template <class N>
  Var reparameterize(const Eigen::DenseBase<N>& noise) const {
    check_noise_shape(noise.rows(), noise.cols());
    check_base_noise(noise.derived());
    return affine_noise(loc_, scale_, noise.rows(), noise.cols(), [&](T* e) {
      MMap<T> out(e, noise.rows(), noise.cols());
      from_base(noise.derived().template cast<T>(), out);
    });
  }
  /// With the base noise as a Var: differentiable in the noise too.
  Var reparameterize(const Var& noise) const {
    check_pair(loc_, noise, op(Op::reparameterize));
    check_noise_shape(noise.rows(), noise.cols());
    check_base_noise(noise.value());
    return loc_ + scale_ * D::noise_var(noise);
  }
  /// A sample without gradient.
  template <class G>
  Matrix<T> sample(G& g) const {
    return sample(g, R_, C_);
  }
  template <class G>
  Matrix<T> sample(G& g, Index rows, Index cols) const {
    check_sample_shape(op(Op::sample), rows, cols, R_, C_);
    Matrix<T> e(rows, cols);
    draw(g, e.data(), static_cast<std::size_t>(e.size()));
    return (expand<T>(loc_.value(), rows, cols).array() + expand<T>(scale_.value(), rows, cols).array() * e.array()).matrix();
  }

  /// Elementwise log density at x (x broadcasts with the batch shape); differentiable in x, loc
  /// and scale.
  Var log_prob(const Var& x) const {
    check_pair(loc_, x, op(Op::log_prob));
    check_value_shape(op(Op::log_prob), x, R_, C_);
    check_value(op(Op::log_prob), "value must be finite", x, [](T v) { return finite(v); });
    return self().log_prob_impl(x);
  }
  /// P(X <= x), elementwise.
  Var cdf(const Var& x) const {
    check_pair(loc_, x, op(Op::cdf));
    check_value_shape(op(Op::cdf), x, R_, C_);
    check_value(op(Op::cdf), "value must not be NaN", x, [](T v) { return v == v; });
    return self().cdf_impl(x);
  }
  /// The quantile function: the x with cdf(x) = p, for p in [0, 1] (+-inf at the ends).
  Var icdf(const Var& p) const {
    check_pair(loc_, p, op(Op::icdf));
    check_value_shape(op(Op::icdf), p, R_, C_);
    check_value(op(Op::icdf), "probability must lie in [0, 1]", p, [](T v) { return v >= T(0) && v <= T(1); });
    return self().icdf_impl(p);
  }
  /// Differential entropy, of the batch shape.
  Var entropy() const { return broadcast_to(self().entropy_impl(), R_, C_); }
  Var mean() const { return broadcast_to(self().mean_impl(), R_, C_); }
  Var stddev() const { return broadcast_to(self().stddev_impl(), R_, C_); }
  Var variance() const { return square(stddev()); }

 protected:
  LocScale(const Var& loc, const Var& scale) : loc_(loc), scale_(scale) {
    check_pair(loc, scale, D::name);
    broadcast_params(D::name, "loc", loc.rows(), loc.cols(), "scale", scale.rows(), scale.cols(), R_, C_);
    check_finite_param(D::name, "loc", loc);
    check_positive_param(D::name, "scale", scale);
  }

  const D& self() const { return static_cast<const D&>(*this); }
  const Var& anchor() const { return loc_; }

  enum class Op { rsample, sample, reparameterize, log_prob, cdf, icdf };
  /// "Normal.log_prob" and the like, for messages (made once).
  static const char* op(Op m) {
    static const std::string names[] = {std::string(D::name) + ".rsample", std::string(D::name) + ".sample",
                                        std::string(D::name) + ".reparameterize", std::string(D::name) + ".log_prob",
                                        std::string(D::name) + ".cdf", std::string(D::name) + ".icdf"};
    return names[static_cast<int>(m)].c_str();
  }

  // The base noise: from a generator, checked when given, and mapped from a given matrix.
  template <class G>
  static void draw(G& g, T* e, std::size_t n) {
    if constexpr (D::uniform_noise) {
      fill_uniform(g, e, n);
      D::transform(e, n);
    } else {
      fill_normal(g, e, n);
    }
  }
  template <class N>
  static void check_base_noise(const N& noise) {
    if constexpr (D::uniform_noise) {
      check_uniforms<T>(op(Op::reparameterize), noise);
    } else if constexpr (std::is_floating_point<T>::value) {
      if (validation_enabled())
        check_elements(op(Op::reparameterize), "noise must be finite", noise, [](T v) { return finite(v); });
    }
  }
  template <class N, class Out>
  static void from_base(const N& noise, Out& out) {
    if constexpr (D::uniform_noise) {
      out = noise.unaryExpr([](T v) { return clamp_unit(v); });
      D::transform(out.data(), static_cast<std::size_t>(out.size()));
    } else {
      out = noise;
    }
  }

  void check_noise_shape(Index r, Index c) const {
    Index rr, cc;
    broadcast_params(op(Op::reparameterize), "noise", r, c, "batch shape", R_, C_, rr, cc);
    if (rr != r || cc != c)
      throw_shape(op(Op::reparameterize), "noise " + shape_str(r, c) + " does not contain the batch shape " + shape_str(R_, C_));
  }

  Var loc_, scale_;
  Index R_ = 0, C_ = 0;
};

}  // namespace detail

/// Normal(loc, scale). Base noise: eps ~ N(0, 1) (the ziggurat of `reparam::normal`);
/// sample = loc + scale * eps.
template <class T>
class Normal : public detail::LocScale<T, Normal<T>> {
  using Base = detail::LocScale<T, Normal<T>>;
  friend Base;

 public:
  using Var = BasicVar<T>;
  static constexpr const char* name = "Normal";
  static constexpr bool uniform_noise = false;

  Normal(const Var& loc, const Var& scale) : Base(loc, scale) {}
  Normal(const Var& loc, detail::same_t<T> scale) : Base(loc, loc.tape().constant(scale)) {}

  static Var noise_var(const Var& eps) { return eps; }

 private:
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

/// Gumbel(loc, scale). Base noise: u ~ U(0, 1); sample = loc - scale * log(-log u).
template <class T>
class Gumbel : public detail::LocScale<T, Gumbel<T>> {
  using Base = detail::LocScale<T, Gumbel<T>>;
  friend Base;

 public:
  using Var = BasicVar<T>;
  static constexpr const char* name = "Gumbel";
  static constexpr bool uniform_noise = true;

  Gumbel(const Var& loc, const Var& scale) : Base(loc, scale) {}
  Gumbel(const Var& loc, detail::same_t<T> scale) : Base(loc, loc.tape().constant(scale)) {}

  /// u -> -log(-log u), in place.
  static void transform(T* e, std::size_t n) { detail::gumbel_from_uniform(e, n); }
  static Var noise_var(const Var& u) { return -log(-log(detail::unary<detail::ClampUnitOp>(u))); }

 private:
  Var log_prob_impl(const Var& x) const {
    const Var z = (x - this->loc_) / this->scale_;
    return -(z + exp(-z)) - log(this->scale_);
  }
  Var cdf_impl(const Var& x) const { return exp(-exp(-(x - this->loc_) / this->scale_)); }
  Var icdf_impl(const Var& p) const { return this->loc_ - this->scale_ * log(-log(p)); }
  Var entropy_impl() const { return log(this->scale_) + T(1 + detail::euler_gamma); }
  Var mean_impl() const { return this->loc_ + this->scale_ * T(detail::euler_gamma); }
  Var stddev_impl() const { return this->scale_ * T(detail::pi / 2.44948974278317809820); }  // pi / sqrt 6
};
template <class T>
Gumbel(const BasicVar<T>&, const BasicVar<T>&) -> Gumbel<T>;

/// Logistic(loc, scale). Base noise: u ~ U(0, 1); sample = loc + scale * (log u - log(1 - u)).
template <class T>
class Logistic : public detail::LocScale<T, Logistic<T>> {
  using Base = detail::LocScale<T, Logistic<T>>;
  friend Base;

 public:
  using Var = BasicVar<T>;
  static constexpr const char* name = "Logistic";
  static constexpr bool uniform_noise = true;

  Logistic(const Var& loc, const Var& scale) : Base(loc, scale) {}
  Logistic(const Var& loc, detail::same_t<T> scale) : Base(loc, loc.tape().constant(scale)) {}

  /// u -> log u - log(1 - u), in place.
  static void transform(T* e, std::size_t n) { detail::logistic_from_uniform(e, n); }
  static Var noise_var(const Var& u) {
    const Var c = detail::unary<detail::ClampUnitOp>(u);
    return log(c) - log1p(-c);
  }

 private:
  Var log_prob_impl(const Var& x) const {
    const Var z = (x - this->loc_) / this->scale_;
    return -z - T(2) * softplus(-z) - log(this->scale_);
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
