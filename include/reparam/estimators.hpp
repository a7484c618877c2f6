#pragma once
/// \file estimators.hpp  Score-function (REINFORCE) surrogates and their baselines.
///
///     reparam::Categorical q(logits);
///     reparam::Matrix<double> x = q.sample(rng);                // no gradient through x
///     reparam::Var lp = q.log_prob(x);                          // R x 1
///     reparam::Matrix<double> cost = f(x);                      // R x 1
///     tape.backward(reparam::score_function(lp, cost, baseline.value()));
///     baseline.update(cost.mean());

#include <reparam/distributions/common.hpp>

namespace reparam {
namespace detail {

template <class T>
Matrix<T> cost_value(const BasicVar<T>& c) {
  return c.value();
}
template <class T, class D>
Matrix<T> cost_value(const Eigen::DenseBase<D>& c) {
  return c.derived().template cast<T>();
}

template <class T>
BasicVar<T> score_surrogate(const BasicVar<T>& log_prob, Matrix<T> weight) {
  static constexpr const char* op = "score_function";
  check_var(log_prob, op);
  Index r, c;
  broadcast_params(op, "cost", weight.rows(), weight.cols(), "log_prob", log_prob.rows(), log_prob.cols(), r, c);
  if constexpr (std::is_floating_point<T>::value)
    if (validation_enabled())
      check_elements(op, "cost - baseline must be finite", weight, [](T v) { return finite(v); });
  return sum(log_prob.tape().constant(weight) * log_prob);
}

}  // namespace detail

/// The score-function surrogate sum(stop_gradient(cost - baseline) * log_prob): its gradient is
/// the REINFORCE estimate of d E[cost] / d parameters. `cost` and `baseline` broadcast with
/// `log_prob` and are never differentiated through (Vars, matrices, or a scalar baseline).
template <class T, class C>
BasicVar<T> score_function(const BasicVar<T>& log_prob, const C& cost, detail::same_t<T> baseline = T(0)) {
  Matrix<T> w = detail::cost_value<T>(cost);
  w.array() -= baseline;
  return detail::score_surrogate(log_prob, std::move(w));
}
template <class T, class C>
BasicVar<T> score_function(const BasicVar<T>& log_prob, const C& cost, const BasicVar<T>& baseline) {
  return score_function(log_prob, cost, Matrix<T>(baseline.value()));
}
template <class T, class C, class D>
BasicVar<T> score_function(const BasicVar<T>& log_prob, const C& cost, const Eigen::DenseBase<D>& baseline) {
  const Matrix<T> c = detail::cost_value<T>(cost);
  const Matrix<T> b = baseline.derived().template cast<T>();
  Index r, k;
  detail::broadcast_params("score_function", "cost", c.rows(), c.cols(), "baseline", b.rows(), b.cols(), r, k);
  return detail::score_surrogate(log_prob, Matrix<T>(detail::expand<T>(c, r, k) - detail::expand<T>(b, r, k)));
}

/// Exponential moving average of the cost, the usual REINFORCE baseline:
/// b <- decay * b + (1 - decay) * mean cost (the first update sets b to the cost).
template <class T = double>
class EmaBaseline {
 public:
  explicit EmaBaseline(T decay = T(0.9)) : decay_(decay) {
    if (!(decay >= T(0) && decay < T(1)))
      detail::throw_domain("EmaBaseline", "decay must lie in [0, 1) (got " + detail::scalar_str(decay) + ")");
  }
  T value() const noexcept { return value_; }
  bool initialized() const noexcept { return initialized_; }
  /// Folds in a new cost (e.g. the batch mean) and returns the new value.
  T update(T cost) {
    value_ = initialized_ ? decay_ * value_ + (T(1) - decay_) * cost : cost;
    initialized_ = true;
    return value_;
  }
  template <class D>
  T update(const Eigen::DenseBase<D>& costs) {
    return update(static_cast<T>(costs.derived().mean()));
  }
  void reset() noexcept {
    value_ = T(0);
    initialized_ = false;
  }

 private:
  T decay_;
  T value_ = T(0);
  bool initialized_ = false;
};

/// Leave-one-out baselines for K samples (the rows of `cost`, one column per independent
/// problem): b_k = (sum_j c_j - c_k) / (K - 1). Unbiased, since b_k does not depend on sample k.
template <class D>
Matrix<typename D::Scalar> leave_one_out_baseline(const Eigen::DenseBase<D>& cost) {
  using T = typename D::Scalar;
  const Index K = cost.rows();
  if (K < 2) detail::throw_shape("leave_one_out_baseline", "needs at least 2 samples (rows), got " + std::to_string(K));
  const Matrix<T> c = cost.derived();
  const Eigen::Matrix<T, 1, Eigen::Dynamic> total = c.colwise().sum();
  return ((-c).rowwise() + total) / T(K - 1);
}
template <class T>
Matrix<T> leave_one_out_baseline(const BasicVar<T>& cost) {
  return leave_one_out_baseline(Matrix<T>(cost.value()));
}

}  // namespace reparam
