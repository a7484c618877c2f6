#pragma once
/// \file bernoulli.hpp  `Bernoulli(logits)`, elementwise; samples are 0/1. Not reparameterizable:
/// use `score_function`, or `RelaxedBernoulli`.

#include <cmath>

#include <reparam/detail/distribution.hpp>

namespace reparam {

/// Bernoulli(sigmoid(logits)), elementwise; samples are 0/1.
template <class T>
class Bernoulli : public ValueOverloads<Bernoulli<T>, T> {
  using Base = ValueOverloads<Bernoulli<T>, T>;
  friend class ValueOverloads<Bernoulli<T>, T>;

 public:
  using Base::log_prob;
  using Scalar = T;
  using Var = BasicVar<T>;
  static constexpr const char* name = "Bernoulli";

  explicit Bernoulli(const Var& logits) : logits_(logits) {
    detail::check_finite_param(name, "logits", logits);
    R_ = logits.rows();
    C_ = logits.cols();
  }

  const Var& logits() const noexcept { return logits_; }
  Index rows() const noexcept { return R_; }
  Index cols() const noexcept { return C_; }
  Var probs() const { return sigmoid(logits_); }

  /// 1 where u < sigmoid(logits), i.e. where log u - log(1 - u) < logits (exact at any logit).
  template <class G>
  Matrix<T> sample(G& g) const {
    Matrix<T> out(R_, C_);
    sample(g, out);
    return out;
  }
  /// The same into `out`, resized to the logits' shape (no allocation when it has it).
  template <class G>
  void sample(G& g, Matrix<T>& out) const {
    const detail::CMap<T> l = logits_.value();
    out.resize(R_, C_);
    detail::fill_uniform(g, out.data(), static_cast<std::size_t>(out.size()));
    out.array() = ((out.array() / (T(1) - out.array())).log() < l.array()).template cast<T>();
  }

  /// Elementwise log p(x) for x in {0, 1}: -bce_with_logits(logits, x); linear in x.
  Var log_prob(const Var& x) const {
    const detail::OpName op{name, "log_prob"};
    detail::check_pair(logits_, x, op);
    detail::check_value_shape(op, x, R_, C_);
    detail::check_value(op, "value must be 0 or 1", x, [](T v) { return v == T(0) || v == T(1); });
    return -bce_with_logits(logits_, x);
  }
  /// -p log p - (1 - p) log(1 - p), from the logits (finite for any logit).
  Var entropy() const { return bce_with_logits(logits_, sigmoid(logits_)); }
  Var mean() const { return probs(); }
  Var variance() const { return sigmoid(logits_) * sigmoid(-logits_); }
  /// sqrt(p (1 - p)) = exp((log_sigmoid(l) + log_sigmoid(-l)) / 2): no underflow to 0 before it must.
  Var stddev() const { return exp((log_sigmoid(logits_) + log_sigmoid(-logits_)) * T(0.5)); }

 private:
  const Var& anchor() const { return logits_; }
  Var logits_;
  Index R_ = 0, C_ = 0;
};
template <class T>
Bernoulli(const BasicVar<T>&) -> Bernoulli<T>;

}  // namespace reparam
