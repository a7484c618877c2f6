#pragma once
/// \file bernoulli.hpp  `Bernoulli(logits)`, elementwise; samples are 0/1. Not reparameterizable:
/// use `score_function`, or `RelaxedBernoulli`.

#include <cmath>

#include <reparam/detail/distribution.hpp>

namespace reparam {
namespace detail {

struct BernoulliEntropyOp {
  static constexpr const char* name = "Bernoulli.entropy";
  template <class X, class C> static auto forward(const X& l, const C&) {
    using T = typename X::Scalar;
    const auto a = l.abs();
    const auto e = safe_exp(-a);
    return safe_log1p(e) + a * e / (T(1) + e);
  }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& l, const Y&, const C&) {
    using T = typename G::Scalar;
    const auto e = safe_exp(-l.abs());
    return -g * l * e / (T(1) + e).square();
  }
};
struct BernoulliVarianceOp {
  static constexpr const char* name = "Bernoulli.variance";
  template <class X, class C> static auto forward(const X& l, const C&) {
    using T = typename X::Scalar;
    const auto e = safe_exp(-l.abs());
    return e / (T(1) + e).square();
  }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& l, const Y& y, const C&) {
    using T = typename G::Scalar;
    return -g * y * fast_tanh(l * T(0.5));
  }
};
struct BernoulliStddevOp {
  static constexpr const char* name = "Bernoulli.stddev";
  template <class X, class C> static auto forward(const X& l, const C&) {
    using T = typename X::Scalar;
    const auto e = safe_exp(-l.abs() * T(0.5));  // sqrt(e^-|l|) without underflow before it must
    return e / (T(1) + e.square());
  }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& l, const Y& y, const C&) {
    using T = typename G::Scalar;
    return -g * y * fast_tanh(l * T(0.5)) * T(0.5);
  }
};

}  // namespace detail

/// Bernoulli(sigmoid(logits)), elementwise; samples are 0/1.
template <class T>
class Bernoulli : public ValueOverloads<Bernoulli<T>, T> {
  using Base = ValueOverloads<Bernoulli<T>, T>;
  friend class ValueOverloads<Bernoulli<T>, T>;

 public:
  using Base::log_prob;
  using Base::sample;
  static constexpr bool samples_any_shape = false;
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

  /// 1 where u < sigmoid(logits), i.e. where log u - log(1 - u) < logits (exact at any logit), into
  /// `out`, resized to the logits' shape (no allocation when it has it); `sample(g)` returns one.
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
  /// log(1 + e^-|l|) + |l| e^-|l| / (1 + e^-|l|): two positive terms (softplus(l) - l s(l) cancels
  /// to nothing at l = 40); derivative -l p (1 - p).
  Var entropy() const { return detail::unary<detail::BernoulliEntropyOp>(logits_); }
  Var mean() const { return probs(); }
  /// p (1 - p) = e^-|l| / (1 + e^-|l|)^2; derivative -p (1 - p) tanh(l / 2) (no 1 - 2p cancellation).
  Var variance() const { return detail::unary<detail::BernoulliVarianceOp>(logits_); }
  /// sqrt(p (1 - p)), the same way.
  Var stddev() const { return detail::unary<detail::BernoulliStddevOp>(logits_); }

 private:
  const Var& anchor() const { return logits_; }
  Var logits_;
  Index R_ = 0, C_ = 0;
};
template <class T>
Bernoulli(const BasicVar<T>&) -> Bernoulli<T>;

}  // namespace reparam
