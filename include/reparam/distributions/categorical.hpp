#pragma once
/// \file categorical.hpp  `Categorical` (alias `OneHotCategorical`): one categorical per row of
/// logits; samples and values are one-hot rows. Not reparameterizable: use `score_function`, or
/// the relaxations (`Concrete`).

#include <cmath>
#include <vector>

#include <reparam/detail/distribution.hpp>

namespace reparam {
namespace detail {

// Per row, from lp = log_softmax(logits) (the dominant entry exact, see log_sum_exp_shifted):
// p = e^lp and q = 1 - p = -expm1(lp) (exact when p ~ 1). For m = p q (variance) or sqrt(p q)
// (stddev), dm_k/dl_j = t_k (delta_kj - p_j) / g_k with t_k = g_k (q_k - p_k) p_k (variance) or
// g_k (q_k - p_k) r_k / 2, r = sqrt(p / q) (stddev; sqrt p taken as e^(lp / 2)), so
//   dl_j = t_j q_j - p_j sum_{k != j} t_k,
// with t_j q_j written as g_j (q_j - p_j) s_j / 2 for the stddev (finite where q = 0) and the sum
// over the others taken directly for the dominant entry (B - t_j would cancel there).
template <class T>
BasicVar<T> categorical_moment(const BasicVar<T>& logits, bool stddev) {
  Operation<T> op(stddev ? "Categorical.stddev" : "Categorical.variance", {logits});
  const Index R = op.rows(0), K = op.cols(0);
  T* lp = op.state(static_cast<std::size_t>(R * K));
  return op.record(
      R, K,
      [&](MMap<T> y) {
        using std::expm1;
        using std::sqrt;
        const CMap<T> l = op.input(0);
        MMap<T> L(lp, R, K);
        for (Index i = 0; i < R; ++i) {
          const T m = row_shift(l.row(i));
          L.row(i).array() = l.row(i).array() - m;
          L.row(i).array() -= log_sum_exp_shifted(L.row(i).data(), K);
        }
        for (Index j = 0; j < R * K; ++j) {
          // sqrt p as e^(lp / 2): nonzero where p itself underflows
          y.data()[j] = stddev ? safe_exp(Eigen::Array<T, 1, 1>(lp[j] / T(2)))(0) * sqrt(-expm1(lp[j]))
                               : safe_exp(Eigen::Array<T, 1, 1>(lp[j]))(0) * -expm1(lp[j]);
        }
      },
      [lp, stddev](Backward<T>& bw) {
        using std::expm1;
        using std::sqrt;
        const Index R = bw.rows(), K = bw.cols();
        const CMap<T> g = bw.grad();
        MMap<T> gl = bw.grad_buffer(0);
        auto pq = [](T l, T& p, T& q) {
          p = safe_exp(Eigen::Array<T, 1, 1>(l))(0);
          q = -expm1(l);
        };
        auto root_p = [&](Index i, Index k) { return safe_exp(Eigen::Array<T, 1, 1>(lp[i * K + k] / T(2)))(0); };
        auto t_of = [&](Index i, Index k) {
          T p, q;
          pq(lp[i * K + k], p, q);
          return stddev ? g(i, k) * (q - p) * (q > T(0) ? root_p(i, k) / sqrt(q) : T(0)) / T(2) : g(i, k) * (q - p) * p;
        };
        for (Index i = 0; i < R; ++i) {
          const Index jd = row_argmax(lp + i * K, K);
          T others = T(0);  // sum of t over all but the dominant entry
          for (Index k = 0; k < K; ++k)
            if (k != jd) others += t_of(i, k);
          const T total = others + t_of(i, jd);
          for (Index j = 0; j < K; ++j) {
            T p, q;
            pq(lp[i * K + j], p, q);
            const T tq = stddev ? g(i, j) * (q - p) * (root_p(i, j) * sqrt(q)) / T(2) : g(i, j) * (q - p) * p * q;
            gl(i, j) += tq - p * (j == jd ? others : total - t_of(i, j));
          }
        }
      });
}

// Entropy per row, H = -sum_k p_k lp_k, one node. With w = logits - max and L the row's
// log-sum-exp of w (lp = w - L): H = L - <p, w> and dH/dl_j = -p_j (lp_j + H) = -p_j (w_j - <p, w>),
// which keeps its size where it is tiny (nearly equal logits, where lp_j + H would cancel). The
// node keeps w and L.
template <class T>
BasicVar<T> categorical_entropy(const BasicVar<T>& logits) {
  Operation<T> op("Categorical.entropy", {logits});
  const Index R = op.rows(0), K = op.cols(0);
  T* w = op.state(static_cast<std::size_t>(shape_size("Categorical.entropy", R, K + 1)));
  T* L = w + R * K;
  return op.record(
      R, 1,
      [&](MMap<T> y) {
        const CMap<T> l = op.input(0);
        MMap<T> W(w, R, K);
        for (Index i = 0; i < R; ++i) {
          W.row(i).array() = l.row(i).array() - row_shift(l.row(i));
          L[i] = log_sum_exp_shifted(W.row(i).data(), K);
          // <p, w>, with p w = 0 where p underflows (w may be -inf there)
          const auto p = safe_exp(W.row(i).array() - L[i]);
          y(i, 0) = L[i] - where(IsZero{}, p, T(0), p * W.row(i).array()).sum();
        }
      },
      [w, L](Backward<T>& bw) {
        const Index R = bw.rows(), K = bw.input(0).cols();
        const CMap<T> g = bw.grad();
        MMap<T> gl = bw.grad_buffer(0);
        for (Index i = 0; i < R; ++i) {
          const auto wi = CMap<T>(w + i * K, 1, K).array();
          const auto p = safe_exp(wi - L[i]);
          const T pw = where(IsZero{}, p, T(0), p * wi).sum();
          gl.row(i).array() -= g(i, 0) * where(IsZero{}, p, T(0), p * (wi - pw));
        }
      });
}

}  // namespace detail

/// Categorical over the K columns of each row of `logits` (R x K). Samples and values are
/// one-hot rows.
template <class T>
class Categorical : public ValueOverloads<Categorical<T>, T> {
  using Base = ValueOverloads<Categorical<T>, T>;
  friend class ValueOverloads<Categorical<T>, T>;

 public:
  using Base::log_prob;
  using Base::sample;
  static constexpr bool samples_any_shape = false;
  using Scalar = T;
  using Var = BasicVar<T>;
  static constexpr const char* name = "Categorical";

  explicit Categorical(const Var& logits) : logits_(logits) {
    detail::check_finite_param(name, "logits", logits);
    R_ = logits.rows();
    K_ = logits.cols();
    if (K_ == 0) detail::throw_shape(name, "logits must have at least one column (got " + detail::shape_str(R_, 0) + ")");
  }

  const Var& logits() const noexcept { return logits_; }
  Index rows() const noexcept { return R_; }
  Index cols() const noexcept { return K_; }
  Var probs() const { return softmax(logits_); }
  /// Normalized log-probabilities, log_softmax(logits).
  Var log_probs() const { return log_softmax(logits_); }

  /// The sampled category of each row (inverse cdf with one uniform per row); `out` is resized to
  /// R (no allocation once it has the capacity).
  template <class G>
  void sample_indices(G& g, std::vector<Index>& out) const {
    out.resize(static_cast<std::size_t>(R_));
    for (Index i = 0; i < R_; ++i) out[static_cast<std::size_t>(i)] = draw_row(g, i);
  }
  template <class G>
  std::vector<Index> sample_indices(G& g) const {
    std::vector<Index> out;
    sample_indices(g, out);
    return out;
  }
  /// One-hot rows (R x K) of `sample_indices`, into `out`, resized to R x K (no allocation when it
  /// has that shape); `sample(g)` returns a new matrix.
  template <class G>
  void sample(G& g, Matrix<T>& out) const {
    out.setZero(R_, K_);
    for (Index i = 0; i < R_; ++i) out(i, draw_row(g, i)) = T(1);
  }

  /// log p(x) per row (R x 1) for one-hot rows x; linear in x, so differentiable in it too.
  Var log_prob(const Var& x) const {
    const detail::OpName op{name, "log_prob"};
    detail::check_pair(logits_, x, op);
    if (x.cols() != K_ || (x.rows() != R_ && R_ != 1 && x.rows() != 1))
      detail::throw_shape(op, "value does not fit the logits (" + detail::shape_str(x.rows(), x.cols()) + " and " +
                                  detail::shape_str(R_, K_) + ")");
    if constexpr (detail::checked_scalar<T>) {
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
  Var entropy() const { return detail::categorical_entropy(logits_); }
  /// The mean of the one-hot vector: the probabilities.
  Var mean() const { return probs(); }
  /// p (1 - p) per element (the one-hot vector's coordinates); finite gradients at any logits.
  Var variance() const { return detail::categorical_moment(logits_, false); }
  /// sqrt(p (1 - p)) per element; finite gradients at any logits (0 where p is exactly 0 or 1).
  Var stddev() const { return detail::categorical_moment(logits_, true); }

 private:
  const Var& anchor() const { return logits_; }

  // One category of row i by the inverse cdf: one uniform, scaled by the row's total mass.
  template <class G>
  Index draw_row(G& g, Index i) const {
    using std::exp;
    const detail::CMap<T> l = logits_.value();
    const T m = l.row(i).maxCoeff();
    T total = T(0);
    for (Index k = 0; k < K_; ++k) total += exp(l(i, k) - m);
    const T u = uniform<T>(g) * total;
    Index k = 0;
    T c = exp(l(i, 0) - m);
    while (k + 1 < K_ && !(u < c)) c += exp(l(i, ++k) - m);
    while (k > 0 && exp(l(i, k) - m) == T(0)) --k;  // never return a zero-probability category
    return k;
  }

  Var logits_;
  Index R_ = 0, K_ = 0;
};
template <class T>
Categorical(const BasicVar<T>&) -> Categorical<T>;

/// PyTorch's name for a Categorical with one-hot samples.
template <class T>
using OneHotCategorical = Categorical<T>;

}  // namespace reparam
