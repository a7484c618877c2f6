#pragma once
/// \file second_order.hpp  Exact Hessian-vector products (forward over reverse, on a tape of
/// `Dual` scalars), Fisher-vector products as the Hessian of a KL, conjugate gradients,
/// flattening parameters into one vector and back, and natural-gradient steps in a KL trust region.
///
///     // H v of f at x: f(tape, leaves) builds a 1x1 Var on a tape of Dual<double>
///     auto hv = reparam::hessian_vector_product(
///         [](auto& t, const auto& xs) { return reparam::sum(reparam::exp(xs[0])); }, {x}, {v});
///     auto cg = reparam::conjugate_gradient([&](const Eigen::VectorXd& p) { return A * p; }, b, 50, 1e-10);

#include <cmath>
#include <initializer_list>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include <reparam/distributions.hpp>
#include <reparam/dual.hpp>
#include <reparam/errors.hpp>
#include <reparam/matrix.hpp>
#include <reparam/tape.hpp>

namespace reparam {

/// Hessian-vector products with a reusable tape: H v and the gradient and value of f at x, by one
/// forward and one reverse sweep on a tape of Dual<T> whose leaves are x + e v. `f(tape, leaves)`
/// returns a 1x1 Var on that tape (it may read other constants, e.g. data, with `tape.constant`).
/// Exact up to rounding. Parts of f held fixed with `stop_gradient` are constants in forward mode
/// too (as detach is in PyTorch): H v is then the derivative of the gradient with them held.
/// Calling again with the same shapes (and an f that records the same nodes) allocates nothing.
///
///     reparam::HessianVectorProduct<double> hvp;
///     const auto& hv = hvp(f, x, v);      // hv[i] matches x[i]; hvp.gradient(), hvp.value()
template <class T>
class HessianVectorProduct {
  static_assert(std::is_floating_point<T>::value, "reparam: HessianVectorProduct: T must be float or double");

 public:
  using D = Dual<T>;

  template <class F>
  const std::vector<Matrix<T>>& operator()(F&& f, const std::vector<Matrix<T>>& x, const std::vector<Matrix<T>>& v) {
    const char* op = "hessian_vector_product";
    if (x.size() != v.size())
      detail::throw_shape(op, "needs one direction per point (" + std::to_string(x.size()) + " points, " +
                                  std::to_string(v.size()) + " directions)");
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (x[i].rows() != v[i].rows() || x[i].cols() != v[i].cols())
        detail::throw_shape(op, "direction " + std::to_string(i) + " does not fit its point (" + detail::shape_str(v[i].rows(), v[i].cols()) +
                                    " and " + detail::shape_str(x[i].rows(), x[i].cols()) + ")");
      if (!x[i].allFinite() || !v[i].allFinite())
        detail::throw_domain(op, std::string(x[i].allFinite() ? "direction " : "point ") + std::to_string(i) + " must be finite");
    }
    tape_.clear();
    leaves_.clear();
    for (std::size_t i = 0; i < x.size(); ++i)
      leaves_.push_back(tape_.variable(x[i].binaryExpr(v[i], [](T a, T b) { return D(a, b); })));
    const BasicVar<D> y = f(tape_, static_cast<const std::vector<BasicVar<D>>&>(leaves_));
    tape_.backward(y);
    value_ = y.item().v;
    hv_.resize(x.size());
    grad_.resize(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      const auto g = leaves_[i].grad();
      hv_[i].resize(g.rows(), g.cols());
      grad_[i].resize(g.rows(), g.cols());
      for (Index k = 0; k < g.size(); ++k) {
        hv_[i].data()[k] = g.data()[k].d;
        grad_[i].data()[k] = g.data()[k].v;
      }
    }
    return hv_;
  }
  /// From the last call: H v, the gradient of f, and f.
  const std::vector<Matrix<T>>& result() const noexcept { return hv_; }
  const std::vector<Matrix<T>>& gradient() const noexcept { return grad_; }
  T value() const noexcept { return value_; }
  /// The tape of duals (its nodes stay readable until the next call).
  BasicTape<D>& tape() noexcept { return tape_; }

 private:
  BasicTape<D> tape_;
  std::vector<BasicVar<D>> leaves_;
  std::vector<Matrix<T>> hv_, grad_;
  T value_ = T(0);
};

/// H v and, on request, the gradient and the value of f at x, on a fresh tape (see
/// `HessianVectorProduct`, which reuses one). Costs one gradient in dual arithmetic: about 3
/// gradients in T where matrix products dominate (bench_second_order measures it).
template <class T, class F>
std::vector<Matrix<T>> hessian_vector_product(F&& f, const std::vector<Matrix<T>>& x, const std::vector<Matrix<T>>& v,
                                              std::vector<Matrix<T>>* gradient = nullptr, T* value = nullptr) {
  HessianVectorProduct<T> hvp;
  hvp(f, x, v);
  if (gradient) *gradient = hvp.gradient();
  if (value) *value = hvp.value();
  return hvp.result();
}

/// Fisher-vector products with a reusable tape: F v + damping v, F the Fisher information of the
/// distribution `make(tape, leaves)` in its parameters (the leaves, at `params`): the Hessian of
/// sum(kl_divergence(old, new)) at new = old, where old = make(tape, stop_gradient(leaves)) is
/// held fixed (its tangent is 0 too). Any distribution with a KL (Normal, Laplace, Categorical,
/// Bernoulli) and any map from the leaves to its parameters (a network, exp of a log-scale, ...).
/// Exact: one Hessian-vector product. Repeated calls with the same shapes allocate nothing.
template <class T>
class FisherVectorProduct {
 public:
  template <class Make>
  const std::vector<Matrix<T>>& operator()(Make&& make, const std::vector<Matrix<T>>& params, const std::vector<Matrix<T>>& v,
                                           T damping = T(0)) {
    if (!(damping >= T(0)) || !std::isfinite(damping))
      detail::throw_domain("fisher_vector_product", "damping must be finite and >= 0 (got " + detail::scalar_str(damping) + ")");
    auto kl = [&](auto& tape, const auto& leaves) {
      held_.clear();
      for (const auto& l : leaves) held_.push_back(stop_gradient(l));
      return sum(kl_divergence(make(tape, static_cast<const std::vector<BasicVar<Dual<T>>>&>(held_)), make(tape, leaves)));
    };
    hvp_(kl, params, v);
    fv_.resize(params.size());
    for (std::size_t i = 0; i < fv_.size(); ++i) {
      fv_[i].resize(v[i].rows(), v[i].cols());
      fv_[i] = hvp_.result()[i] + damping * v[i];
    }
    return fv_;
  }
  const std::vector<Matrix<T>>& result() const noexcept { return fv_; }

 private:
  HessianVectorProduct<T> hvp_;
  std::vector<BasicVar<Dual<T>>> held_;
  std::vector<Matrix<T>> fv_;
};

/// F v + damping v on a fresh tape (see `FisherVectorProduct`, which reuses one).
template <class T, class Make>
std::vector<Matrix<T>> fisher_vector_product(Make&& make, const std::vector<Matrix<T>>& params, const std::vector<Matrix<T>>& v,
                                             T damping = T(0)) {
  FisherVectorProduct<T> fvp;
  return fvp(make, params, v, damping);
}

/// What `conjugate_gradient` found: the solution, the iterations it took, the final residual
/// norm ||b - A x|| (as the recurrence tracks it), and whether it reached the tolerance.
template <class T>
struct CgResult {
  Eigen::Matrix<T, Eigen::Dynamic, 1> x;
  Index iterations = 0;
  T residual = T(0);
  bool converged = false;
};

namespace detail {
/// Conjugate gradients in caller-owned vectors (x, r, p, ap are resized to b's size: no allocation
/// when they already have it); `matvec(p, ap)` writes A p into ap. See `conjugate_gradient`.
template <class T, class MatVec>
CgResult<T> conjugate_gradient_into(MatVec&& matvec, const Eigen::Matrix<T, Eigen::Dynamic, 1>& b, Index iterations, T tolerance,
                                    Eigen::Matrix<T, Eigen::Dynamic, 1>& x, Eigen::Matrix<T, Eigen::Dynamic, 1>& r,
                                    Eigen::Matrix<T, Eigen::Dynamic, 1>& p, Eigen::Matrix<T, Eigen::Dynamic, 1>& ap) {
  const char* op = "conjugate_gradient";
  if (iterations < 1) throw_domain(op, "iterations must be at least 1 (got " + std::to_string(iterations) + ")");
  if (!(tolerance >= T(0)) || !std::isfinite(tolerance))
    throw_domain(op, "tolerance must be finite and >= 0 (got " + scalar_str(tolerance) + ")");
  if (!b.allFinite()) throw_domain(op, "b must be finite");
  CgResult<T> out;
  x.setZero(b.size());
  r = b;
  p = r;
  T rs = r.squaredNorm();
  const T stop = tolerance * std::sqrt(rs);
  out.residual = std::sqrt(rs);
  if (out.residual <= stop || b.size() == 0) {
    out.converged = true;
    return out;
  }
  for (Index it = 0; it < iterations; ++it) {
    ap.resize(b.size());
    matvec(static_cast<const Eigen::Matrix<T, Eigen::Dynamic, 1>&>(p), ap);
    if (ap.size() != b.size())
      throw_shape(op, "matvec returned " + std::to_string(ap.size()) + " elements for " + std::to_string(b.size()));
    const T pap = p.dot(ap);
    if (!(pap > T(0)))
      throw_domain(op, "A is not positive definite (p^T A p = " + scalar_str(pap) + " at iteration " + std::to_string(it + 1) + ")");
    const T alpha = rs / pap;
    x += alpha * p;
    r -= alpha * ap;
    const T rs_new = r.squaredNorm();
    out.iterations = it + 1;
    out.residual = std::sqrt(rs_new);
    if (out.residual <= stop) {
      out.converged = true;
      break;
    }
    p = r + (rs_new / rs) * p;
    rs = rs_new;
  }
  return out;
}
}  // namespace detail

/// Solves A x = b for a symmetric positive definite A given only as `matvec(p) -> A p`, by
/// conjugate gradients from x = 0: at most `iterations` products, stopping when
/// ||b - A x|| <= tolerance * ||b||. DomainError when a direction p has p^T A p <= 0 (A is not
/// positive definite), or for bad arguments; ShapeError when matvec returns the wrong size.
template <class T, class MatVec>
CgResult<T> conjugate_gradient(MatVec&& matvec, const Eigen::Matrix<T, Eigen::Dynamic, 1>& b, Index iterations, T tolerance) {
  using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  Vec x, r, p, ap;
  CgResult<T> out = detail::conjugate_gradient_into(
      [&](const Vec& q, Vec& aq) { aq = matvec(q); }, b, iterations, tolerance, x, r, p, ap);
  out.x = std::move(x);
  return out;
}

/// The values of `params` (in order, each row-major) as one vector.
template <class T>
Eigen::Matrix<T, Eigen::Dynamic, 1> flatten(const std::vector<Parameter<T>*>& params) {
  Index n = 0;
  for (const Parameter<T>* p : params) n += p->value.size();
  Eigen::Matrix<T, Eigen::Dynamic, 1> out(n);
  Index at = 0;
  for (const Parameter<T>* p : params) {
    out.segment(at, p->value.size()) = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(p->value.data(), p->value.size());
    at += p->value.size();
  }
  return out;
}
/// The gradients of `params` as one vector, in the order of `flatten`.
template <class T>
Eigen::Matrix<T, Eigen::Dynamic, 1> flatten_grad(const std::vector<Parameter<T>*>& params) {
  Index n = 0;
  for (const Parameter<T>* p : params) n += p->value.size();
  Eigen::Matrix<T, Eigen::Dynamic, 1> out = Eigen::Matrix<T, Eigen::Dynamic, 1>::Zero(n);
  Index at = 0;
  for (const Parameter<T>* p : params) {
    if (p->grad.size() == p->value.size())
      out.segment(at, p->value.size()) = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(p->grad.data(), p->grad.size());
    at += p->value.size();
  }
  return out;
}
/// Writes `v` (as `flatten` lays it out) back into the values of `params`; ShapeError unless its
/// size is the parameters' total.
template <class T, class D>
void unflatten(const Eigen::MatrixBase<D>& v, const std::vector<Parameter<T>*>& params) {
  Index n = 0;
  for (const Parameter<T>* p : params) n += p->value.size();
  if (v.size() != n)
    detail::throw_shape("unflatten", "vector has " + std::to_string(v.size()) + " elements, the parameters " + std::to_string(n));
  Index at = 0;
  for (Parameter<T>* p : params) {
    Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>(p->value.data(), p->value.size()) = v.segment(at, p->value.size());
    at += p->value.size();
  }
}

/// Settings of `natural_gradient_step`.
struct NaturalGradientOptions {
  double max_kl = 0.01;        ///< trust region: mean KL(old || new) per distribution element
  Index cg_iterations = 10;    ///< conjugate-gradient products of F
  double cg_tolerance = 1e-8;  ///< relative residual at which CG stops
  double damping = 1e-3;       ///< F + damping I
  int max_backtracks = 10;     ///< halvings of the step in the line search
};

/// What one natural-gradient step did.
struct NaturalGradientResult {
  bool accepted = false;   ///< false: no halving both kept the KL in the region and lowered the loss; parameters unchanged
  double loss_before = 0, loss_after = 0;
  double kl = 0;           ///< the mean KL of the accepted step (or of the last one tried)
  double step_scale = 0;   ///< the fraction of the quadratic model's step taken (1, 1/2, ...)
  int backtracks = 0;
  Index cg_iterations = 0;
};

/// Natural-gradient steps with a KL trust region (as in TRPO's update), reusing its tapes and
/// vectors: after the first step, steps on the same parameters allocate nothing. Each step: the
/// direction s = -(F + damping I)^-1 g by conjugate gradients on Fisher-vector products, the step
/// length sqrt(2 max_kl n / s'Fs) from the quadratic model of the summed KL (n: the
/// distribution's elements, so that the mean KL is max_kl), then a line search that halves the
/// step until the actual mean KL(old || new) is within max_kl and the loss is lower.
/// `loss(tape, leaves)` gives a 1x1 Var and `make(tape, leaves)` the distribution, both generic in
/// the tape's scalar (they run on T and on Dual<T>). The Parameters' values are updated in place
/// when the step is accepted.
///
///     reparam::NaturalGradient<double> ng({/*max_kl*/ 0.01});
///     for (...) ng.step(params, loss, make);
template <class T>
class NaturalGradient {
 public:
  using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;

  explicit NaturalGradient(const NaturalGradientOptions& o = {}) : o_(o) {
    const char* op = "natural_gradient_step";
    if (!(o.max_kl > 0) || !std::isfinite(o.max_kl))
      detail::throw_domain(op, "max_kl must be positive and finite (got " + detail::scalar_str(o.max_kl) + ")");
    if (o.max_backtracks < 0) detail::throw_domain(op, "max_backtracks must be >= 0 (got " + std::to_string(o.max_backtracks) + ")");
    if (!(o.damping >= 0) || !std::isfinite(o.damping))
      detail::throw_domain(op, "damping must be finite and >= 0 (got " + detail::scalar_str(o.damping) + ")");
  }
  const NaturalGradientOptions& options() const noexcept { return o_; }

  template <class Loss, class Make>
  NaturalGradientResult step(const std::vector<Parameter<T>*>& params, Loss&& loss, Make&& make) {
    const char* op = "natural_gradient_step";
    const std::size_t np = params.size();
    if (np == 0) detail::throw_shape(op, "needs at least one parameter (got 0)");
    for (std::size_t i = 0; i < np; ++i)
      if (!params[i]) detail::throw_domain(op, "parameter " + std::to_string(i) + " is null");
    NaturalGradientResult out;
    theta_.resize(np);
    dir_.resize(np);
    Index n = 0;
    for (std::size_t i = 0; i < np; ++i) {
      theta_[i] = params[i]->value;
      dir_[i].resize(theta_[i].rows(), theta_[i].cols());
      n += theta_[i].size();
    }
    // gradient and loss at the current parameters
    const BasicVar<T> l0 = on_leaves(params, loss);
    tape_.backward(l0);
    const T loss0 = l0.item();
    out.loss_before = out.loss_after = double(loss0);
    gvec_.resize(n);
    for (std::size_t i = 0, at = 0; i < np; at += std::size_t(theta_[i].size()), ++i) {
      const auto gi = leaves_[i].grad();
      gvec_.segment(Index(at), gi.size()) = -Eigen::Map<const Vec>(gi.data(), gi.size());
    }
    if (!std::isfinite(loss0) || !gvec_.allFinite())
      detail::throw_domain(op, "the loss and its gradient must be finite (loss " + detail::scalar_str(loss0) + ")");
    Index n_elements = 0;  // the number of KL terms (elements, or rows for Categorical)
    {
      const auto d = on_leaves(params, make);
      n_elements = kl_divergence(d, d).size();
    }
    auto fvp = [&](const Vec& v, Vec& fv) {
      for (std::size_t i = 0, at = 0; i < np; at += std::size_t(theta_[i].size()), ++i)
        dir_[i] = Eigen::Map<const Matrix<T>>(v.data() + at, theta_[i].rows(), theta_[i].cols());
      const std::vector<Matrix<T>>& r = fisher_(make, theta_, dir_, T(o_.damping));
      for (std::size_t i = 0, at = 0; i < np; at += std::size_t(theta_[i].size()), ++i)
        fv.segment(Index(at), r[i].size()) = Eigen::Map<const Vec>(r[i].data(), r[i].size());
    };
    const CgResult<T> cg = detail::conjugate_gradient_into(fvp, gvec_, o_.cg_iterations, T(o_.cg_tolerance), x_, r_, p_, ap_);
    out.cg_iterations = cg.iterations;
    ap_.resize(n);
    fvp(x_, ap_);
    const T sfs = x_.dot(ap_);
    if (!(sfs > T(0))) return out;  // a zero gradient: nothing to do
    const T beta = std::sqrt(T(2) * T(o_.max_kl) * T(n_elements) / sfs);
    // line search on the actual KL and loss
    T scale = T(1);
    for (int j = 0; j <= o_.max_backtracks; ++j, scale /= T(2)) {
      for (std::size_t i = 0, at = 0; i < np; at += std::size_t(theta_[i].size()), ++i)
        params[i]->value = theta_[i] + (beta * scale) * Eigen::Map<const Matrix<T>>(x_.data() + at, theta_[i].rows(), theta_[i].cols());
      tape_.clear();
      held_.clear();
      for (const Matrix<T>& m : theta_) held_.push_back(tape_.constant(m));
      const auto old_dist = make(tape_, static_cast<const std::vector<BasicVar<T>>&>(held_));
      leaves_.clear();
      for (Parameter<T>* p : params) leaves_.push_back(tape_.variable(p->value));
      const auto new_dist = make(tape_, static_cast<const std::vector<BasicVar<T>>&>(leaves_));
      const T kl = mean(kl_divergence(old_dist, new_dist)).item();
      const T l1 = on_leaves(params, loss).item();
      out.kl = double(kl);
      out.loss_after = double(l1);
      out.backtracks = j;
      out.step_scale = double(scale);
      if (kl <= T(o_.max_kl) && l1 < loss0) {
        out.accepted = true;
        return out;
      }
    }
    for (std::size_t i = 0; i < np; ++i) params[i]->value = theta_[i];
    out.loss_after = out.loss_before;
    return out;
  }
  /// The same with the parameters in braces: ng.step({&w1, &w2}, loss, make).
  template <class Loss, class Make>
  NaturalGradientResult step(std::initializer_list<Parameter<T>*> params, Loss&& loss, Make&& make) {
    list_.assign(params.begin(), params.end());
    return step(list_, loss, make);
  }

 private:
  template <class F>
  auto on_leaves(const std::vector<Parameter<T>*>& params, F& f) {
    tape_.clear();
    leaves_.clear();
    for (Parameter<T>* p : params) leaves_.push_back(tape_.variable(p->value));
    return f(tape_, static_cast<const std::vector<BasicVar<T>>&>(leaves_));
  }

  NaturalGradientOptions o_;
  BasicTape<T> tape_;
  std::vector<BasicVar<T>> leaves_, held_;
  std::vector<Matrix<T>> theta_, dir_;
  std::vector<Parameter<T>*> list_;
  FisherVectorProduct<T> fisher_;
  Vec gvec_, x_, r_, p_, ap_;
};

/// One natural-gradient step (see `NaturalGradient`, which reuses its workspaces across steps).
template <class T, class Loss, class Make>
NaturalGradientResult natural_gradient_step(const std::vector<Parameter<T>*>& params, Loss&& loss, Make&& make,
                                            const NaturalGradientOptions& o = {}) {
  NaturalGradient<T> ng(o);
  return ng.step(params, loss, make);
}
/// The same with the parameters in braces: natural_gradient_step({&w1, &w2}, loss, make).
template <class T, class Loss, class Make>
NaturalGradientResult natural_gradient_step(std::initializer_list<Parameter<T>*> params, Loss&& loss, Make&& make,
                                            const NaturalGradientOptions& o = {}) {
  return natural_gradient_step(std::vector<Parameter<T>*>(params), loss, make, o);
}

}  // namespace reparam
