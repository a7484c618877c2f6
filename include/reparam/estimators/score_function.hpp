#pragma once
/// \file score_function.hpp  Score-function (REINFORCE) surrogates and their baselines.
///
///     reparam::Categorical q(logits);
///     reparam::Matrix<double> x = q.sample(rng);                // no gradient through x
///     reparam::Var lp = q.log_prob(x);                          // R x 1
///     reparam::Matrix<double> cost = f(x);                      // R x 1
///     tape.backward(reparam::score_function(lp, cost, baseline.value()));
///     baseline.update(cost.mean());

#include <string>

#include <reparam/detail/distribution.hpp>

namespace reparam {
namespace detail {

template <class T>
CMap<T> cost_map(const BasicVar<T>& c) {
  return c.value();
}
template <class T, class D>
decltype(auto) cost_map(const Eigen::DenseBase<D>& c) {
  if constexpr (std::is_same<typename D::Scalar, T>::value)
    return static_cast<const D&>(c.derived());  // a reference: cast<T>() through auto would copy
  else
    return c.derived().template cast<T>();
}

/// sum(w * log_prob), w = cost - baseline (both broadcast to one shape, then with log_prob), as a
/// constant of the tape: no heap allocation.
template <class T, class C, class B>
BasicVar<T> score_surrogate(const BasicVar<T>& log_prob, const C& cost, const B& baseline) {
  static constexpr const char* op = "score_function";
  check_var(log_prob, op);
  Index r, c, rr, cc;
  broadcast_params(op, "cost", cost.rows(), cost.cols(), "baseline", baseline.rows(), baseline.cols(), r, c);
  broadcast_params(op, "cost", r, c, "log_prob", log_prob.rows(), log_prob.cols(), rr, cc);
  Operation<T> weights("score_function", {log_prob});
  const BasicVar<T> w = weights.record_constant(r, c, [&](MMap<T> out) {
    for (Index i = 0; i < r; ++i)
      for (Index j = 0; j < c; ++j)
        out(i, j) = T(cost(cost.rows() == 1 ? 0 : i, cost.cols() == 1 ? 0 : j)) -
                    T(baseline(baseline.rows() == 1 ? 0 : i, baseline.cols() == 1 ? 0 : j));
  });
  if constexpr (detail::checked_scalar<T>)
    if (validation_enabled())
      check_all_finite(op, "cost - baseline must be finite", w.value());
  return sum(w * log_prob);
}

}  // namespace detail

/// The score-function surrogate sum(stop_gradient(cost - baseline) * log_prob): its gradient is
/// the REINFORCE estimate of d E[cost] / d parameters. `cost` and `baseline` broadcast with
/// `log_prob` and are never differentiated through (Vars, matrices, or a scalar baseline).
template <class T, class C>
BasicVar<T> score_function(const BasicVar<T>& log_prob, const C& cost, detail::same_t<T> baseline = T(0)) {
  const Eigen::Matrix<T, 1, 1> b(baseline);
  return detail::score_surrogate(log_prob, detail::cost_map<T>(cost), b);
}
template <class T, class C>
BasicVar<T> score_function(const BasicVar<T>& log_prob, const C& cost, const BasicVar<T>& baseline) {
  return detail::score_surrogate(log_prob, detail::cost_map<T>(cost), baseline.value());
}
template <class T, class C, class D>
BasicVar<T> score_function(const BasicVar<T>& log_prob, const C& cost, const Eigen::DenseBase<D>& baseline) {
  return detail::score_surrogate(log_prob, detail::cost_map<T>(cost), baseline.derived());
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
  /// Folds in a new cost (e.g. the batch mean) and returns the new value. The cost must be finite.
  T update(T cost) {
    if constexpr (detail::checked_scalar<T>)
      if (!detail::finite(cost))
        detail::throw_domain("EmaBaseline", "cost must be finite (got " + detail::scalar_str(cost) + ")");
    value_ = initialized_ ? decay_ * value_ + (T(1) - decay_) * cost : cost;
    initialized_ = true;
    return value_;
  }
  template <class D>
  T update(const Eigen::DenseBase<D>& costs) {
    if (costs.size() == 0) detail::throw_shape("EmaBaseline", "costs must not be empty (got 0 elements)");
    return update(static_cast<T>(costs.derived().mean()));
  }
  T update(const BasicVar<T>& costs) { return update(costs.value()); }
  void reset() noexcept {
    value_ = T(0);
    initialized_ = false;
  }

 private:
  T decay_;
  T value_ = T(0);
  bool initialized_ = false;
};

namespace detail {
inline void check_loo(Index K) {
  if (K < 2) throw_shape("leave_one_out_baseline", "needs at least 2 samples in the rows (got " + std::to_string(K) + ")");
}
}  // namespace detail

/// Leave-one-out baselines for K samples (the rows of `cost`, one column per independent
/// problem): b_k = (sum_j c_j - c_k) / (K - 1). Unbiased, since b_k does not depend on sample k.
template <class D>
Matrix<typename D::Scalar> leave_one_out_baseline(const Eigen::DenseBase<D>& cost) {
  using T = typename D::Scalar;
  const Index K = cost.rows();
  detail::check_loo(K);
  Matrix<T> out = cost.derived();
  for (Index j = 0; j < out.cols(); ++j) {
    const T total = out.col(j).sum();
    out.col(j) = ((-out.col(j)).array() + total) / T(K - 1);
  }
  return out;
}
/// The same for costs on the tape, as a constant of the tape (no heap allocation).
template <class T>
BasicVar<T> leave_one_out_baseline(const BasicVar<T>& cost) {
  Operation<T> op("leave_one_out_baseline", {cost});
  const Index K = op.rows(0);
  detail::check_loo(K);
  return op.record_constant(K, op.cols(0), [&](detail::MMap<T> out) {
    const detail::CMap<T> c = op.input(0);
    for (Index j = 0; j < c.cols(); ++j) {
      const T total = c.col(j).sum();
      out.col(j) = ((-c.col(j)).array() + total) / T(K - 1);
    }
  });
}

}  // namespace reparam
