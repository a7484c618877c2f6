#pragma once
/// \file logit_relaxed_bernoulli.hpp  `LogitRelaxedBernoulli`: the binary Concrete distribution in
/// logit space, y = (logits + L) / temperature with L logistic noise, so RelaxedBernoulli's
/// sample is sigmoid(y). Use it when samples saturate: in float, sigmoid rounds to exactly 0 or 1
/// once |y| passes about 17 (double: 37), and a RelaxedBernoulli density of such a sample is not
/// finite; the logit-space density of y always is. `RelaxedBernoulli` (relaxed_bernoulli.hpp) is
/// built on it.

#include <reparam/detail/distribution.hpp>
#include <reparam/distributions/logistic.hpp>

namespace reparam {

template <class T>
class RelaxedBernoulli;

namespace detail {

// y = (logits + L) / tau;  dlogits = g / tau,  dtau = -g y / tau
struct LogitRelaxedOp {
  template <class A, class B, class E> static auto forward(const A& a, const B& b, const E& e) { return (a + e) / b; }
  template <class G, class A, class B, class E, class Y> static auto da(const G& g, const A&, const B& b, const E&, const Y&) { return g / b; }
  template <class G, class A, class B, class E, class Y> static auto db(const G& g, const A&, const B& b, const E&, const Y& y) { return -g * y / b; }
};
// x = sigmoid(z), z = (logits + L) / tau;  dz = g s'(z) with s'(z) = e^-|z| / (1 + e^-|z|)^2
// (exact where x has rounded to 0 or 1);  dlogits = dz / tau,  dtau = -dz z / tau
struct RelaxedSigmoidOp {
  template <class A, class B, class E> static auto forward(const A& a, const B& b, const E& e) {
    using T = typename A::Scalar;
    return (T(1) + safe_exp(-((a + e) / b))).inverse();
  }
  template <class Z> static auto slope(const Z& z) {
    using T = typename Z::Scalar;
    const auto e = safe_exp(-z.abs());
    return e / (T(1) + e).square();
  }
  template <class G, class A, class B, class E, class Y> static auto da(const G& g, const A& a, const B& b, const E& e, const Y&) {
    return g * slope((a + e) / b) / b;
  }
  template <class G, class A, class B, class E, class Y> static auto db(const G& g, const A& a, const B& b, const E& e, const Y&) {
    return -g * slope((a + e) / b) * ((a + e) / b) / b;
  }
};

}  // namespace detail

/// LogitRelaxedBernoulli(logits, temperature): elementwise; logits any shape, temperature a T or a
/// Var broadcasting with them (at least sqrt of the smallest normal number). Base noise:
/// u ~ U(0, 1); sample (logits + log u - log(1 - u)) / temperature.
template <class T>
class LogitRelaxedBernoulli : public ValueOverloads<LogitRelaxedBernoulli<T>, T> {
  using Base = ValueOverloads<LogitRelaxedBernoulli<T>, T>;
  friend class ValueOverloads<LogitRelaxedBernoulli<T>, T>;
  friend class RelaxedBernoulli<T>;

 public:
  using Base::log_prob;
  using Base::sample;
  static constexpr bool samples_any_shape = true;
  using Scalar = T;
  using Var = BasicVar<T>;
  static constexpr const char* name = "LogitRelaxedBernoulli";

  LogitRelaxedBernoulli(const Var& logits, const Var& temperature) : LogitRelaxedBernoulli(name, logits, temperature) {}
  LogitRelaxedBernoulli(const Var& logits, detail::same_t<T> temperature)
      : LogitRelaxedBernoulli(name, logits, temperature) {}

  const Var& logits() const noexcept { return logits_; }
  const Var& temperature() const noexcept { return tau_; }
  /// The batch shape: logits and temperature broadcast.
  Index rows() const noexcept { return R_; }
  Index cols() const noexcept { return C_; }
  Var probs() const { return broadcast_to(sigmoid(logits_), R_, C_); }

  template <class G>
  Var rsample(G& g) const {
    return draw<detail::LogitRelaxedOp>(g, R_, C_);
  }
  template <class G>
  Var rsample(G& g, Index rows, Index cols) const {
    return draw<detail::LogitRelaxedOp>(g, rows, cols);
  }
  template <class U>
  Var reparameterize(const Eigen::DenseBase<U>& u) const {
    return from_uniforms<detail::LogitRelaxedOp>(u);
  }
  template <class G>
  void sample(G& g, Matrix<T>& out) const {
    sample_into<detail::LogitRelaxedOp>(g, out);
  }

  /// Elementwise log density of logit-space points y (any finite value):
  /// log tau + d - 2 softplus(d), d = logits - tau y.
  Var log_prob(const Var& y) const {
    const detail::OpName op{name_, "log_prob"};
    check_x(op, y);
    detail::check_value(op, "value must be finite", y, [](T v) { return detail::finite(v); });
    return log_prob_unchecked(y);
  }

 private:
  template <class Tau>
  LogitRelaxedBernoulli(const char* who, const Var& logits, const Tau& tau)
      : logits_(logits), tau_(temperature_var(who, logits, tau)), name_(who) {
    detail::check_pair(logits_, tau_, who);
    detail::broadcast_params(who, "logits", logits_.rows(), logits_.cols(), "temperature", tau_.rows(), tau_.cols(), R_,
                             C_);
    detail::check_finite_param(who, "logits", logits_);
    detail::check_temperature_values(who, tau_);
  }
  static Var temperature_var(const char*, const Var&, const Var& tau) { return tau; }
  static Var temperature_var(const char* who, const Var& logits, T tau) {
    detail::check_var(logits, who);
    return logits.tape().constant(tau);
  }
  const Var& anchor() const { return logits_; }
  void check_x(detail::OpName op, const Var& x) const {
    detail::check_pair(logits_, x, op);
    detail::check_value_shape(op, x, R_, C_);
  }
  Var log_prob_unchecked(const Var& y) const {
    // log tau + f(logits - tau y), f the standard logistic log density (a fused node whose
    // derivative -tanh(d / 2) does not cancel near d = 0)
    return log(tau_) + detail::unary<detail::LogisticLogDensityOp>(logits_ - tau_ * y);
  }

  template <class Op, class G>
  Var draw(G& g, Index rows, Index cols) const {
    detail::check_sample_shape({name_, "rsample"}, rows, cols, R_, C_);
    return detail::noise_node<Op>(name_, logits_, tau_, rows, cols, [&](T* e) {
      const std::size_t n = static_cast<std::size_t>(rows * cols);
      detail::fill_uniform(g, e, n);
      detail::logistic_from_uniform(e, n);
    });
  }
  template <class Op, class U>
  Var from_uniforms(const Eigen::DenseBase<U>& u) const {
    const detail::OpName op{name_, "reparameterize"};
    detail::check_sample_shape(op, u.rows(), u.cols(), R_, C_);
    detail::check_uniforms<T>(op, u);
    return detail::noise_node<Op>(name_, logits_, tau_, u.rows(), u.cols(), [&](T* e) {
      detail::MMap<T> m(e, u.rows(), u.cols());
      m = u.derived().template cast<T>().unaryExpr([](T v) { return detail::clamp_unit(v); });
      detail::logistic_from_uniform(e, static_cast<std::size_t>(m.size()));
    });
  }
  template <class Op, class G>
  void sample_into(G& g, Matrix<T>& out) const {
    detail::check_sample_shape({name_, "sample"}, out.rows(), out.cols(), R_, C_);
    const std::size_t n = static_cast<std::size_t>(out.size());
    detail::fill_uniform(g, out.data(), n);
    detail::logistic_from_uniform(out.data(), n);
    detail::apply_noise_inplace<Op>(logits_.value(), tau_.value(), out);
  }

  Var logits_, tau_;
  const char* name_;
  Index R_ = 0, C_ = 0;
};
template <class T>
LogitRelaxedBernoulli(const BasicVar<T>&, const BasicVar<T>&) -> LogitRelaxedBernoulli<T>;

}  // namespace reparam
