#pragma once
/// \file concrete.hpp  `Concrete` (alias `RelaxedOneHotCategorical`), built on `ExpConcrete`, and
/// the free function `gumbel_softmax`.
///
///     reparam::Concrete q(logits, 0.5);             // one categorical per row of logits
///     reparam::Var y = q.rsample(rng);              // softmax((logits + g) / 0.5), g ~ Gumbel
///     reparam::Var h = q.rsample_hard(rng);         // one-hot forward, soft gradient
///     reparam::Var s = reparam::gumbel_softmax(logits, 0.5, rng, /*hard=*/true);

#include <reparam/distributions/exp_concrete.hpp>

namespace reparam {

/// Concrete / Gumbel-softmax (Maddison et al. 2017; Jang et al. 2017): one relaxed categorical
/// per row of `logits` (R x K). Base noise: u ~ U(0, 1), one per logit; sample
/// softmax((logits + g(u)) / temperature) with g(u) = -log(-log u). The temperature is a T or a
/// Var (1x1, or R x 1: one per row), differentiable. The same sample node as `ExpConcrete`,
/// read on the simplex.
template <class T>
class Concrete : public ValueOverloads<Concrete<T>, T> {
  using Base = ValueOverloads<Concrete<T>, T>;
  friend class ValueOverloads<Concrete<T>, T>;

 public:
  using Base::log_prob;
  using Base::sample;
  static constexpr bool samples_any_shape = false;
  using Scalar = T;
  using Var = BasicVar<T>;
  static constexpr const char* name = "Concrete";

  Concrete(const Var& logits, const Var& temperature) : base_(name, logits, temperature) {}
  Concrete(const Var& logits, detail::same_t<T> temperature) : base_(name, logits, temperature) {}

  const Var& logits() const noexcept { return base_.logits(); }
  const Var& temperature() const noexcept { return base_.temperature(); }
  Index rows() const noexcept { return base_.rows(); }
  Index cols() const noexcept { return base_.cols(); }
  /// The same distribution in log space.
  const ExpConcrete<T>& log_space() const noexcept { return base_; }
  /// softmax(logits): the probabilities of the categorical being relaxed.
  Var probs() const { return softmax(base_.logits()); }

  /// A pathwise sample (rows on the simplex), of the batch shape.
  template <class G>
  Var rsample(G& g) const {
    return base_.draw(g, rows(), false);
  }
  /// `rows` samples: the batch must have that many rows or one (then shared by all samples).
  template <class G>
  Var rsample(G& g, Index rows) const {
    return base_.draw(g, rows, false);
  }
  /// The same map with the uniforms u (rows x K) given; 0 and 1 are moved inside (0, 1).
  template <class U>
  Var reparameterize(const Eigen::DenseBase<U>& u) const {
    return base_.from_uniforms(u, false);
  }
  /// Straight-through: the one-hot argmax row forward, the soft sample's gradient backward.
  template <class G>
  Var rsample_hard(G& g) const {
    return detail::harden_rows(rsample(g));
  }
  template <class G>
  Var rsample_hard(G& g, Index rows) const {
    return detail::harden_rows(rsample(g, rows));
  }
  template <class U>
  Var reparameterize_hard(const Eigen::DenseBase<U>& u) const {
    return detail::harden_rows(reparameterize(u));
  }
  /// A sample without gradient (rows on the simplex) into `out` (rows x K): no allocation;
  /// `sample(g)` returns a new matrix.
  template <class G>
  void sample(G& g, Matrix<T>& out) const {
    base_.sample_into(g, out, false);
  }

  /// Log density of points x on the open simplex (one per row, R x 1), Maddison et al.'s
  /// density: the log-space density of log x minus sum(log x). Rows must be positive and sum to 1;
  /// a row with a zero (an underflowed sample at a low temperature) has no finite density: use
  /// `ExpConcrete`, which works in log space.
  Var log_prob(const Var& x) const {
    const detail::OpName op{name, "log_prob"};
    base_.check_value(op, x);
    if constexpr (detail::checked_scalar<T>) {
      if (validation_enabled()) {
        const auto v = x.value();
        detail::check_elements(op, "value must lie in the open simplex: elements in (0, 1]", v,
                               [](T a) { return a > T(0) && a <= T(1); });
        const T tol = T(8) * std::numeric_limits<detail::real_t<T>>::epsilon() * T(std::max<Index>(v.cols(), 4));
        for (Index i = 0; i < v.rows(); ++i) {
          using std::abs;
          const T s = v.row(i).sum();
          if (!(abs(s - T(1)) <= tol))
            detail::throw_domain(op, "value must lie in the open simplex: rows must sum to 1 (got " +
                                         detail::scalar_str(s) + " at row " + std::to_string(i) + ")");
        }
      }
    }
    const Var lx = log(x);
    return base_.log_prob_unchecked(lx) - sum_rows(lx);
  }

 private:
  const Var& anchor() const { return base_.logits(); }
  ExpConcrete<T> base_;
};
template <class T>
Concrete(const BasicVar<T>&, const BasicVar<T>&) -> Concrete<T>;

/// PyTorch's name for Concrete.
template <class T>
using RelaxedOneHotCategorical = Concrete<T>;

/// Gumbel-softmax as a function (Jang et al. 2017): a Concrete sample of `logits` at
/// `temperature`, or with `hard` its straight-through one-hot.
template <class T, class G>
BasicVar<T> gumbel_softmax(const BasicVar<T>& logits, detail::same_t<T> temperature, G& g, bool hard = false) {
  const Concrete<T> q(logits, temperature);
  return hard ? q.rsample_hard(g) : q.rsample(g);
}
template <class T, class G>
BasicVar<T> gumbel_softmax(const BasicVar<T>& logits, const BasicVar<T>& temperature, G& g, bool hard = false) {
  const Concrete<T> q(logits, temperature);
  return hard ? q.rsample_hard(g) : q.rsample(g);
}

}  // namespace reparam
