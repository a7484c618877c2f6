#pragma once
/// \file exp_concrete.hpp  `ExpConcrete`: the Concrete distribution in log space (Maddison et al.
/// 2017, appendix), and the fused sample node that `Concrete` (concrete.hpp) shares with it.
///
///     reparam::ExpConcrete q(logits, 0.05);      // finite densities at any temperature
///     reparam::Var y = q.rsample(rng);          // log_softmax((logits + g) / 0.05)
///     reparam::Var lp = q.log_prob(y);          // R x 1

#include <algorithm>
#include <cmath>
#include <limits>

#include <reparam/detail/distribution.hpp>

namespace reparam {

template <class T>
class Concrete;

namespace detail {

/// x = (z - max z) / tau for one row; a multiplication by 1 / tau unless that overflows. Returns
/// the index of the (first) largest z, where x is 0.
template <class T>
Index scaled_row(const T* z, T* x, Index K, T tau) {
  const Index j = row_argmax(z, K);
  const T m = z[j];
  const T inv = T(1) / tau;
  if (is_inf(inv)) {
    for (Index k = 0; k < K; ++k) x[k] = (z[k] - m) / tau;
  } else {
    for (Index k = 0; k < K; ++k) x[k] = (z[k] - m) * inv;
  }
  return j;
}

/// The relaxed categorical map on R x K perturbed logits z (in place on `x`, which may be z):
/// softmax(z / tau) per row (simplex) or log_softmax(z / tau) (log space). With `arg`, writes
/// each row's largest coordinate there (as a T) for the backward rule.
template <class T>
void relaxed_rows(const T* z, T* x, Index R, Index K, const CMap<T>& tau, bool log_space, T* arg = nullptr) {
  for (Index i = 0; i < R; ++i) {
    const Index j = scaled_row(z + i * K, x + i * K, K, tau(tau.rows() == 1 ? 0 : i, 0));
    if (arg) arg[i] = T(j);
    if (log_space) {
      T* xi = x + i * K;
      const T lse = log_sum_exp_at(xi, K, j);  // the dominant coordinate exact
      for (Index k = 0; k < K; ++k) xi[k] -= lse;
    }
  }
  if (!log_space) {
    MMap<T> xm(x, R, K);
    xm.array() = safe_exp(xm.array());
    for (Index i = 0; i < R; ++i) {
      T* xi = x + i * K;
      const T r = T(1) / row_sum(xi, K);
      for (Index k = 0; k < K; ++k) xi[k] *= r;
    }
  }
}

/// z = logits (R x K, or 1 x K shared by every row) + noise, in place on the noise.
template <class T>
void add_logits(T* z, const CMap<T>& l, Index R, Index K) {
  if (l.rows() == R) {
    MMap<T>(z, R, K).array() += l.array();
  } else {
    for (Index i = 0; i < R; ++i)
      for (Index k = 0; k < K; ++k) z[i * K + k] += l(0, k);
  }
}

// Backward of the relaxed categorical node, per row with t its temperature and w = (z - max) / t:
//   simplex  x = softmax(w):      dw = x (g - <g, x>)
//   log      y = log_softmax(w):  dw = g - e^y sum(g)
//   dlogits += dw / t;  dt -= <dw, z - max> / t^2
template <class T>
void relaxed_backward(Backward<T>& bw, const T* z, const T* arg, bool log_space) {
  using std::exp;
  const Index R = bw.rows(), K = bw.cols();
  const T* v = bw.value().data();
  const CMap<T> tau = bw.input(1);
  const bool dl = bw.needs(0), dt = bw.needs(1);
  if (!log_space && bw.grad_is_constant() && !dt) {
    // a constant incoming gradient c: x (c - c sum x) = 0 up to rounding; nothing reaches the logits
    if (dl) bw.add_constant(0, T(0));
    return;
  }
  const T* g = bw.grad().data();
  const bool lfull = bw.input(0).rows() == R;
  bool assign_l = false, assign_t = false;
  T* gl = dl ? bw.target(0, lfull, assign_l).data() : nullptr;
  T* gt = dt ? bw.target(1, false, assign_t).data() : nullptr;
  for (Index i = 0; i < R; ++i) {
    const T t = tau(tau.rows() == 1 ? 0 : i, 0);
    const T inv = T(1) / t;  // finite: temperatures are at least sqrt of the smallest normal
    const T* vi = v + i * K;
    const T* gi = g + i * K;
    // any index in range keeps the rules below exact; the largest makes them accurate (a float
    // holds indices exactly below 2^24; beyond, it may round, so it is kept in range)
    const Index jd = std::min(Index(real_part(arg[i])), K - 1);
    T c, dc = T(0);
    if (log_space) {
      c = row_sum(gi, K);
    } else if (K >= 32) {
      c = row_dot(gi, vi, K);
      dc = dominant_centered(gi, vi, K, jd);
    } else {
      // one pass for <g, x> and sum_k x_k (g_j - g_k) (see dominant_centered)
      const T gj = gi[jd];
      c = T(0);
      for (Index k = 0; k < K; ++k) {
        c += gi[k] * vi[k];
        dc += vi[k] * (gj - gi[k]);
      }
    }
    // the dominant coordinate jd without cancellation: simplex g_j - c as dominant_centered (when
    // x_j > 1/2), log space g_j - e^{y_j} c as log_softmax_dominant; the loops below run the plain
    // formula (vectorizable) and jd is written over afterwards
    // (computed on every row: a branch on x_j > 1/2 would mispredict on random rows)
    const bool fix = log_space || vi[jd] > T(0.5);
    const T dwd = log_space ? log_softmax_dominant(gi, vi, K, jd) : vi[jd] * dc;
    if (dl) {
      T* gli = gl + (lfull ? i * K : 0);
      const bool assign = lfull && assign_l;
      const T before = assign ? T(0) : gli[jd];
      if (log_space) {
        for (Index k = 0; k < K; ++k) gli[k] = (assign ? T(0) : gli[k]) + (gi[k] - exp(vi[k]) * c) * inv;
      } else if (assign) {
        for (Index k = 0; k < K; ++k) gli[k] = vi[k] * (gi[k] - c) * inv;
      } else {
        for (Index k = 0; k < K; ++k) gli[k] += vi[k] * (gi[k] - c) * inv;
      }
      if (lfull) gli[jd] = fix ? before + dwd * inv : gli[jd];
      // shared 1 x K logits (lfull false) accumulate every row into one gradient row: correct jd by
      // the difference instead (its rounding is that of the plain formula, no worse)
      if (fix && !lfull) gli[jd] += (dwd - (log_space ? gi[jd] - exp(vi[jd]) * c : vi[jd] * (gi[jd] - c))) * inv;
    }
    if (dt) {
      const T* zi = z + i * K;
      const T m = row_max(zi, K);
      T dtau = T(0);
      for (Index k = 0; k < K; ++k) {
        const T dw = fix && k == jd ? dwd : log_space ? gi[k] - exp(vi[k]) * c : vi[k] * (gi[k] - c);
        if (dw != T(0)) dtau += dw * ((zi[k] - m) * inv);
      }
      gt[tau.rows() == 1 ? 0 : i] -= dtau * inv;
    }
  }
}

/// Records the relaxed categorical sample of R rows: `fill(z)` writes R x K Gumbel noise, to which
/// the logits are added; the node keeps z for its backward rule.
template <class T, class Fill>
BasicVar<T> relaxed_categorical(const char* name, const BasicVar<T>& logits, const BasicVar<T>& tau, Index R,
                                bool log_space, Fill&& fill) {
  Operation<T> op(name, {logits, tau});
  const Index K = op.cols(0);
  T* z = op.state(static_cast<std::size_t>(shape_size(name, R, K + 1)));
  T* arg = z + R * K;  // each row's largest coordinate
  return op.record(
      R, K,
      [&](MMap<T> x) {
        fill(z);
        add_logits(z, op.input(0), R, K);
        relaxed_rows(z, x.data(), R, K, op.input(1), log_space, arg);
      },
      [z, arg, log_space](Backward<T>& bw) { relaxed_backward(bw, z, arg, log_space); });
}

/// Straight-through one-hot: the forward value is the one-hot argmax of each row of `soft` (the
/// first maximum on ties; the same for a simplex or a log-space sample), the gradient passes to
/// `soft` unchanged.
template <class T>
BasicVar<T> harden_rows(const BasicVar<T>& soft) {
  Operation<T> op("straight_through", {soft});
  const CMap<T> s = op.input(0);
  const BasicVar<T> hard = op.record_constant(s.rows(), s.cols(), [&](MMap<T> h) {
    h.setZero();
    for (Index i = 0; i < s.rows(); ++i) {
      Index k = 0;
      s.row(i).maxCoeff(&k);
      h(i, k) = T(1);
    }
  });
  return straight_through(soft, hard);
}

/// The checks of Concrete and ExpConcrete parameters; returns the batch rows.
template <class T>
Index check_relaxed_categorical(const char* op, const BasicVar<T>& logits, const BasicVar<T>& tau) {
  check_pair(logits, tau, op);
  check_finite_param(op, "logits", logits);
  check_temperature_values(op, tau);
  const Index R = logits.rows(), K = logits.cols();
  if (K == 0) throw_shape(op, "logits must have at least one column (got " + shape_str(R, K) + ")");
  // the temperature: 1x1, or one per row (R x 1; with 1 x K logits, any number of rows)
  if (tau.cols() != 1 || (tau.rows() != 1 && tau.rows() != R && R != 1))
    throw_shape(op, "temperature must be 1x1 or one per row (" + shape_str(R, 1) + ") (got " +
                        shape_str(tau.rows(), tau.cols()) + ")");
  return R == 1 ? tau.rows() : R;
}

}  // namespace detail

/// The Concrete distribution in log space: samples are y = log_softmax((logits + g) / temperature),
/// g Gumbel noise, one categorical per row of `logits` (R x K); `log_prob(y)` is the density of y.
/// Finite at any temperature and any number of categories, where the simplex form underflows.
/// The temperature is a T or a Var (1x1, or one per row), differentiable; it must be at least
/// sqrt of the smallest normal number (1.5e-154 in double).
template <class T>
class ExpConcrete : public ValueOverloads<ExpConcrete<T>, T> {
  using Base = ValueOverloads<ExpConcrete<T>, T>;
  friend class ValueOverloads<ExpConcrete<T>, T>;
  friend class Concrete<T>;

 public:
  using Base::log_prob;
  using Base::sample;
  static constexpr bool samples_any_shape = false;
  using Scalar = T;
  using Var = BasicVar<T>;
  static constexpr const char* name = "ExpConcrete";

  ExpConcrete(const Var& logits, const Var& temperature) : ExpConcrete(name, logits, temperature) {}
  ExpConcrete(const Var& logits, detail::same_t<T> temperature) : ExpConcrete(name, logits, temperature) {}

  const Var& logits() const noexcept { return logits_; }
  const Var& temperature() const noexcept { return tau_; }
  /// The batch shape: one row per categorical (the logits' rows, or the temperature's when the
  /// logits are one shared row), K columns.
  Index rows() const noexcept { return R_; }
  Index cols() const noexcept { return K_; }

  /// A pathwise sample in log space (each row's exp sums to 1), of the batch shape.
  template <class G>
  Var rsample(G& g) const {
    return draw(g, R_, true);
  }
  /// `rows` samples: the batch must have that many rows or one (then shared by all samples).
  template <class G>
  Var rsample(G& g, Index rows) const {
    return draw(g, rows, true);
  }
  /// The same map with the uniforms u (rows x K) given; 0 and 1 are moved inside (0, 1).
  template <class U>
  Var reparameterize(const Eigen::DenseBase<U>& u) const {
    return from_uniforms(u, true);
  }
  /// A sample without gradient into `out` (rows x K; `sample(g)` returns a new matrix).
  template <class G>
  void sample(G& g, Matrix<T>& out) const {
    sample_into(g, out, true);
  }

  /// Log density of log-space points y (R x 1). Rows of y must be finite with logsumexp 0.
  Var log_prob(const Var& y) const {
    const detail::OpName op{name_, "log_prob"};
    check_value(op, y);
    if constexpr (detail::checked_scalar<T>) {
      if (validation_enabled()) {
        const auto v = y.value();
        detail::check_all_finite(op, "value must be finite", v);
        const T tol = T(8) * std::numeric_limits<detail::real_t<T>>::epsilon() * T(std::max<Index>(v.cols(), 4));
        for (Index i = 0; i < v.rows(); ++i) {
          using std::abs;
          using std::log;
          const T m = v.row(i).maxCoeff();
          const T lse = m + log(detail::safe_exp(v.row(i).array() - m).sum());
          if (!(abs(lse) <= tol))
            detail::throw_domain(op, "rows must be log-probabilities with logsumexp 0 (got " + detail::scalar_str(lse) +
                                         " at row " + std::to_string(i) + ")");
        }
      }
    }
    return log_prob_unchecked(y);
  }

 private:
  template <class Tau>
  ExpConcrete(const char* who, const Var& logits, const Tau& tau)
      : logits_(logits), tau_(temperature_var(who, logits, tau)), name_(who) {
    R_ = detail::check_relaxed_categorical(who, logits_, tau_);
    K_ = logits_.cols();
  }
  static Var temperature_var(const char* who, const Var& logits, const Var& tau) {
    (void)who;
    (void)logits;
    return tau;
  }
  static Var temperature_var(const char* who, const Var& logits, T tau) {
    detail::check_var(logits, who);
    return logits.tape().constant(tau);
  }

  const Var& anchor() const { return logits_; }

  void check_rows(detail::OpName op, Index rows) const {
    detail::shape_size(op, rows, K_);
    if (rows != R_ && R_ != 1)
      detail::throw_shape(op, "sample rows do not fit the batch (" + std::to_string(rows) + " rows for batch " +
                                  detail::shape_str(R_, K_) + ")");
    if (tau_.rows() != 1 && tau_.rows() != rows)
      detail::throw_shape(op, "temperature does not fit the sample rows (" + detail::shape_str(tau_.rows(), 1) +
                                  " for " + std::to_string(rows) + " rows)");
  }
  void check_value(detail::OpName op, const Var& x) const {
    detail::check_pair(logits_, x, op);
    if (x.cols() != K_ || (x.rows() != R_ && R_ != 1))
      detail::throw_shape(op, "value does not fit the batch (" + detail::shape_str(x.rows(), x.cols()) + " and " +
                                  detail::shape_str(R_, K_) + ")");
  }

  template <class G>
  Var draw(G& g, Index rows, bool log_space) const {
    check_rows({name_, "rsample"}, rows);
    const std::size_t n = static_cast<std::size_t>(rows * K_);
    return detail::relaxed_categorical(name_, logits_, tau_, rows, log_space, [&](T* z) {
      detail::fill_uniform(g, z, n);
      detail::gumbel_from_uniform(z, n);
    });
  }
  template <class U>
  Var from_uniforms(const Eigen::DenseBase<U>& u, bool log_space) const {
    const detail::OpName op{name_, "reparameterize"};
    if (u.cols() != K_)
      detail::throw_shape(op, "uniforms do not fit the logits (" + detail::shape_str(u.rows(), u.cols()) + " and " +
                                  detail::shape_str(logits_.rows(), K_) + ")");
    check_rows(op, u.rows());
    detail::check_uniforms<T>(op, u);
    return detail::relaxed_categorical(name_, logits_, tau_, u.rows(), log_space, [&](T* z) {
      detail::MMap<T> m(z, u.rows(), u.cols());
      m = u.derived().template cast<T>().unaryExpr([](T v) { return detail::clamp_unit(v); });
      detail::gumbel_from_uniform(z, static_cast<std::size_t>(m.size()));
    });
  }
  template <class G>
  void sample_into(G& g, Matrix<T>& out, bool log_space) const {
    if (out.cols() != K_)
      detail::throw_shape({name_, "sample"}, "output does not fit the logits (" + detail::shape_str(out.rows(), out.cols()) +
                                                 " and " + detail::shape_str(logits_.rows(), K_) + ")");
    check_rows({name_, "sample"}, out.rows());
    const std::size_t n = static_cast<std::size_t>(out.size());
    detail::fill_uniform(g, out.data(), n);
    detail::gumbel_from_uniform(out.data(), n);
    detail::add_logits(out.data(), logits_.value(), out.rows(), K_);
    detail::relaxed_rows(out.data(), out.data(), out.rows(), K_, tau_.value(), log_space);
  }

  /// The density formula without value checks (used by Concrete::log_prob):
  /// sum_k (a_k) - K logsumexp(a) + (K - 1) log tau + log (K - 1)!, a = logits - tau y.
  Var log_prob_unchecked(const Var& y) const {
    const Var a = logits_ - tau_ * y;
    return sum_rows(a) - T(K_) * logsumexp(a) + T(K_ - 1) * log(tau_) + T(detail::lgamma_int(K_));
  }

  Var logits_, tau_;
  const char* name_;
  Index R_ = 0, K_ = 0;
};
template <class T>
ExpConcrete(const BasicVar<T>&, const BasicVar<T>&) -> ExpConcrete<T>;

}  // namespace reparam
