#pragma once
/// \file discrete.hpp  `Categorical` (one categorical per row of logits; samples are one-hot
/// rows) and `Bernoulli` (elementwise). Not reparameterizable: use `score_function`, or the
/// relaxations in relaxed.hpp.

#include <cmath>
#include <vector>

#include <reparam/distributions/common.hpp>

namespace reparam {

/// Categorical over the K columns of each row of `logits` (R x K). Samples and values are
/// one-hot rows.
template <class T>
class Categorical : public detail::ValueOverloads<Categorical<T>, T> {
  using Base = detail::ValueOverloads<Categorical<T>, T>;
  friend class detail::ValueOverloads<Categorical<T>, T>;

 public:
  using Base::log_prob;
  using Scalar = T;
  using Var = BasicVar<T>;
  static constexpr const char* name = "Categorical";

  explicit Categorical(const Var& logits) : logits_(logits) {
    detail::check_finite_param(name, "logits", logits);
    if (logits.cols() == 0)
      detail::throw_shape(name, "logits must have at least one column (got " + detail::shape_str(logits.rows(), 0) + ")");
  }

  const Var& logits() const noexcept { return logits_; }
  Index rows() const noexcept { return logits_.rows(); }
  Index cols() const noexcept { return logits_.cols(); }
  Var probs() const { return softmax(logits_); }
  /// Normalized log-probabilities, log_softmax(logits).
  Var log_probs() const { return log_softmax(logits_); }

  /// The sampled category of each row (inverse cdf with one uniform per row).
  template <class G>
  std::vector<Index> sample_indices(G& g) const {
    const auto l = logits_.value();
    std::vector<Index> out(static_cast<std::size_t>(l.rows()));
    Eigen::Array<T, 1, Eigen::Dynamic> p(l.cols());
    for (Index i = 0; i < l.rows(); ++i) {
      const T m = l.row(i).maxCoeff();
      p = (l.row(i).array() - m).exp();
      const T u = uniform<T>(g) * p.sum();
      Index k = 0;
      T c = p(0);
      while (k + 1 < l.cols() && !(u < c)) c += p(++k);
      while (p(k) == T(0) && k > 0) --k;  // never return a zero-probability category
      out[static_cast<std::size_t>(i)] = k;
    }
    return out;
  }
  /// One-hot rows (R x K) of `sample_indices`.
  template <class G>
  Matrix<T> sample(G& g) const {
    const std::vector<Index> k = sample_indices(g);
    Matrix<T> x = Matrix<T>::Zero(rows(), cols());
    for (Index i = 0; i < rows(); ++i) x(i, k[static_cast<std::size_t>(i)]) = T(1);
    return x;
  }

  /// log p(x) per row (R x 1) for one-hot rows x; linear in x, so differentiable in it too.
  Var log_prob(const Var& x) const {
    static constexpr const char* op = "Categorical.log_prob";
    detail::check_pair(logits_, x, op);
    if (x.cols() != cols() || (x.rows() != rows() && rows() != 1 && x.rows() != 1))
      detail::throw_shape(op, "value " + detail::shape_str(x.rows(), x.cols()) + " does not fit logits " +
                                  detail::shape_str(rows(), cols()));
    if constexpr (std::is_floating_point<T>::value) {
      if (validation_enabled()) {
        const auto v = x.value();
        detail::check_elements(op, "value must be one-hot rows: elements 0 or 1", v,
                               [](T a) { return a == T(0) || a == T(1); });
        for (Index i = 0; i < v.rows(); ++i)
          if (v.row(i).sum() != T(1))
            detail::throw_domain(op, "value must be one-hot rows: exactly one 1 per row (got " +
                                         detail::scalar_str(v.row(i).sum()) + " ones at row " + std::to_string(i) + ")");
      }
    }
    return sum_rows(x * log_softmax(logits_));
  }
  /// -sum p log p per row (R x 1).
  Var entropy() const { return -sum_rows(softmax(logits_) * log_softmax(logits_)); }
  /// The mean of the one-hot vector: the probabilities.
  Var mean() const { return probs(); }
  /// sqrt(p (1 - p)) per element (the one-hot vector's coordinates).
  Var stddev() const { return sqrt(variance()); }
  Var variance() const {
    const Var p = probs();
    return p * (T(1) - p);
  }

 private:
  const Var& anchor() const { return logits_; }
  Var logits_;
};
template <class T>
Categorical(const BasicVar<T>&) -> Categorical<T>;

/// PyTorch's name for a Categorical with one-hot samples.
template <class T>
using OneHotCategorical = Categorical<T>;

/// Bernoulli(sigmoid(logits)), elementwise; samples are 0/1.
template <class T>
class Bernoulli : public detail::ValueOverloads<Bernoulli<T>, T> {
  using Base = detail::ValueOverloads<Bernoulli<T>, T>;
  friend class detail::ValueOverloads<Bernoulli<T>, T>;

 public:
  using Base::log_prob;
  using Scalar = T;
  using Var = BasicVar<T>;
  static constexpr const char* name = "Bernoulli";

  explicit Bernoulli(const Var& logits) : logits_(logits) { detail::check_finite_param(name, "logits", logits); }

  const Var& logits() const noexcept { return logits_; }
  Index rows() const noexcept { return logits_.rows(); }
  Index cols() const noexcept { return logits_.cols(); }
  Var probs() const { return sigmoid(logits_); }

  /// 1 where u < sigmoid(logits), i.e. where log u - log(1 - u) < logits (exact at any logit).
  template <class G>
  Matrix<T> sample(G& g) const {
    Matrix<T> u(rows(), cols());
    detail::fill_uniform(g, u.data(), static_cast<std::size_t>(u.size()));
    const auto l = logits_.value();
    return ((u.array() / (T(1) - u.array())).log() < l.array()).template cast<T>().matrix();
  }

  /// Elementwise log p(x) for x in {0, 1}: -bce_with_logits(logits, x); linear in x.
  Var log_prob(const Var& x) const {
    static constexpr const char* op = "Bernoulli.log_prob";
    detail::check_pair(logits_, x, op);
    detail::check_value_shape(op, x, rows(), cols());
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
};
template <class T>
Bernoulli(const BasicVar<T>&) -> Bernoulli<T>;

}  // namespace reparam
