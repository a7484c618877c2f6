#pragma once
/// \file relaxed_bernoulli.hpp  `RelaxedBernoulli` (binary Concrete), built on
/// `LogitRelaxedBernoulli`.
///
///     reparam::RelaxedBernoulli q(logits, 0.5);
///     reparam::Var x = q.rsample(rng);          // sigmoid((logits + L) / 0.5), L ~ Logistic
///     reparam::Var h = q.rsample_hard(rng);     // 0/1 forward, soft gradient

#include <reparam/distributions/logit_relaxed_bernoulli.hpp>

namespace reparam {

/// RelaxedBernoulli (binary Concrete): elementwise, logits any shape, temperature a T or a Var
/// broadcasting with the logits. Base noise: u ~ U(0, 1); sample
/// sigmoid((logits + log u - log(1 - u)) / temperature). Its density needs samples strictly
/// inside (0, 1): where float samples saturate, use `LogitRelaxedBernoulli` (`logit_space()`).
template <class T>
class RelaxedBernoulli : public CdfOverloads<RelaxedBernoulli<T>, T> {
  using Base = CdfOverloads<RelaxedBernoulli<T>, T>;
  friend class ValueOverloads<RelaxedBernoulli<T>, T>;
  friend class CdfOverloads<RelaxedBernoulli<T>, T>;

 public:
  using Base::cdf;
  using Base::icdf;
  using Base::log_prob;
  using Base::sample;
  static constexpr bool samples_any_shape = true;
  using Scalar = T;
  using Var = BasicVar<T>;
  static constexpr const char* name = "RelaxedBernoulli";

  RelaxedBernoulli(const Var& logits, const Var& temperature) : base_(name, logits, temperature) {}
  RelaxedBernoulli(const Var& logits, detail::same_t<T> temperature) : base_(name, logits, temperature) {}

  const Var& logits() const noexcept { return base_.logits(); }
  const Var& temperature() const noexcept { return base_.temperature(); }
  Index rows() const noexcept { return base_.rows(); }
  Index cols() const noexcept { return base_.cols(); }
  Var probs() const { return base_.probs(); }
  /// The same distribution in logit space.
  const LogitRelaxedBernoulli<T>& logit_space() const noexcept { return base_; }

  template <class G>
  Var rsample(G& g) const {
    return base_.template draw<detail::RelaxedSigmoidOp>(g, rows(), cols());
  }
  template <class G>
  Var rsample(G& g, Index rows, Index cols) const {
    return base_.template draw<detail::RelaxedSigmoidOp>(g, rows, cols);
  }
  template <class U>
  Var reparameterize(const Eigen::DenseBase<U>& u) const {
    return base_.template from_uniforms<detail::RelaxedSigmoidOp>(u);
  }
  /// Straight-through: 1 where the soft sample is > 1/2, else 0, with the soft sample's gradient.
  template <class G>
  Var rsample_hard(G& g) const {
    return harden(rsample(g));
  }
  template <class U>
  Var reparameterize_hard(const Eigen::DenseBase<U>& u) const {
    return harden(reparameterize(u));
  }
  template <class G>
  void sample(G& g, Matrix<T>& out) const {
    base_.template sample_into<detail::RelaxedSigmoidOp>(g, out);
  }

  /// Elementwise log density at x in (0, 1): the logit-space density of logit(x) minus
  /// log x + log(1 - x); finite for any logit.
  Var log_prob(const Var& x) const {
    check_x({name, "log_prob"}, x);
    const Var lx = log(x), l1x = log1p(-x);
    return base_.log_prob_unchecked(lx - l1x) - lx - l1x;
  }
  /// P(X <= x) = sigmoid(temperature * logit(x) - logits), x in (0, 1).
  Var cdf(const Var& x) const {
    check_x({name, "cdf"}, x);
    return sigmoid(temperature() * (log(x) - log1p(-x)) - logits());
  }
  /// The x with cdf(x) = p: sigmoid((logits + logit(p)) / temperature), p in (0, 1).
  Var icdf(const Var& p) const {
    check_x({name, "icdf"}, p);
    return sigmoid((logits() + log(p) - log1p(-p)) / temperature());
  }

 private:
  const Var& anchor() const { return base_.logits(); }
  void check_x(detail::OpName op, const Var& x) const {
    base_.check_x(op, x);
    detail::check_value(op, "value must lie in (0, 1)", x, [](T v) { return v > T(0) && v < T(1); });
  }
  static Var harden(const Var& soft) {
    Operation<T> op("straight_through", {soft});
    const detail::CMap<T> s = op.input(0);
    const Var hard = op.record_constant(s.rows(), s.cols(), [&](detail::MMap<T> h) {
      h = (s.array() > T(0.5)).template cast<T>().matrix();
    });
    return straight_through(soft, hard);
  }

  LogitRelaxedBernoulli<T> base_;
};
template <class T>
RelaxedBernoulli(const BasicVar<T>&, const BasicVar<T>&) -> RelaxedBernoulli<T>;

}  // namespace reparam
