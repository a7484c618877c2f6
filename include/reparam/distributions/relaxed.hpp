#pragma once
/// \file relaxed.hpp  Continuous relaxations of discrete variables: `Concrete` (alias
/// `RelaxedOneHotCategorical`), its log-space form `ExpConcrete`, `RelaxedBernoulli`, the
/// straight-through (hard) samples, `gumbel_softmax` and `soft_argmax`.
///
///     reparam::Concrete q(logits, 0.5);             // one categorical per row of logits
///     reparam::Var y = q.rsample(rng);              // softmax((logits + g) / 0.5), g ~ Gumbel
///     reparam::Var h = q.rsample_hard(rng);         // one-hot forward, soft gradient
///     reparam::Var s = reparam::gumbel_softmax(logits, 0.5, rng, /*hard=*/true);

#include <cmath>

#include <reparam/distributions/common.hpp>

namespace reparam {
namespace detail {

// Rows are often short (K = 10), so the per-row work is plain loops and the exponentials are one
// vectorized pass over the whole R x K block; long rows reduce with Eigen (vectorized sums).
template <class T>
T row_sum(const T* a, Index K) {
  if (K >= 32) return Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>(a, K).sum();
  T s = T(0);
  for (Index k = 0; k < K; ++k) s += a[k];
  return s;
}
template <class T>
T row_dot(const T* a, const T* b, Index K) {
  using V = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;
  if (K >= 32) return (V(a, K) * V(b, K)).sum();
  T s = T(0);
  for (Index k = 0; k < K; ++k) s += a[k] * b[k];
  return s;
}
template <class T>
T row_max(const T* a, Index K) {
  if (K >= 32) return Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>(a, K).maxCoeff();
  T m = a[0];
  for (Index k = 1; k < K; ++k) m = a[k] > m ? a[k] : m;
  return m;
}

template <class T>
void concrete_backward(BasicTape<T>& t, const Node<T>& n) {
  const Index R = n.rows, K = n.cols;
  if (R * K == 0) return;
  const T* x = n.value;
  const T* z = BasicTape<T>::aux(n);
  const CMap<T> tau = t.value(n.in[1]);
  const bool gconst = n.grad_const;
  const T* g = gconst ? nullptr : t.grad_in(n).data();
  const bool dl = t.needs_grad(n.in[0]), dt = t.needs_grad(n.in[1]);
  const bool lfull = t.node(n.in[0]).rows == R;
  bool assign_l = false, assign_t = false;
  T* gl = dl ? t.grad_target(n.in[0], lfull, assign_l).data() : nullptr;
  T* gt = dt ? t.grad_target(n.in[1], false, assign_t).data() : nullptr;
  for (Index i = 0; i < R; ++i) {
    const T ti = tau(tau.rows() == 1 ? 0 : i, 0);
    const T* xi = x + i * K;
    const T* zi = z + i * K;
    if (gconst) {  // a constant incoming gradient c: x (c - c sum x) = 0 up to rounding
      if (dl && lfull && assign_l)
        for (Index k = 0; k < K; ++k) gl[i * K + k] = T(0);
      continue;
    }
    const T* gi = g + i * K;
    const T dot = row_dot(gi, xi, K);
    // dy = x (g - <g, x>) is the gradient at y = z / tau; dl = dy / tau; dtau = -<dy, z> / tau^2
    const T inv = T(1) / ti;
    T dtau = T(0);
    if (dl) {
      T* gli = gl + (lfull ? i * K : 0);
      if (lfull && assign_l) {
        for (Index k = 0; k < K; ++k) gli[k] = xi[k] * (gi[k] - dot) * inv;
      } else {
        for (Index k = 0; k < K; ++k) gli[k] += xi[k] * (gi[k] - dot) * inv;
      }
    }
    if (dt) {  // <x (g - dot), z> = <x g, z> - dot <x, z>
      for (Index k = 0; k < K; ++k) dtau += xi[k] * (gi[k] - dot) * zi[k];
      gt[tau.rows() == 1 ? 0 : i] -= dtau * inv * inv;
    }
  }
}

template <class T, class Fill>
BasicVar<T> concrete_node(const BasicVar<T>& logits, const BasicVar<T>& tau, Index R, Fill&& fill_gumbel) {
  BasicTape<T>& t = logits.tape();
  const Index K = logits.cols();
  const bool rg = logits.requires_grad() || tau.requires_grad();
  const BasicVar<T> y =
      t.push(R, K, &concrete_backward<T>, logits.index(), tau.index(), T(0), rg, static_cast<std::size_t>(R * K));
  if (R * K == 0) return y;
  const Node<T>& node = t.node(y.index());
  T* z = BasicTape<T>::aux(node);
  fill_gumbel(z);
  T* x = node.value;
  const CMap<T> l = t.value(logits.index());
  const CMap<T> tv = t.value(tau.index());
  if (l.rows() == R) {
    MMap<T>(z, R, K).array() += l.array();
  } else {
    const T* l0 = l.data();
    for (Index i = 0; i < R; ++i)
      for (Index k = 0; k < K; ++k) z[i * K + k] += l0[k];
  }
  for (Index i = 0; i < R; ++i) {  // x = (z - max) / tau, row by row
    const T inv = T(1) / tv(tv.rows() == 1 ? 0 : i, 0);
    const T* zi = z + i * K;
    const T m = row_max(zi, K);
    T* xi = x + i * K;
    for (Index k = 0; k < K; ++k) xi[k] = (zi[k] - m) * inv;
  }
  MMap<T> xm(x, R, K);
  xm.array() = safe_exp(xm.array());
  for (Index i = 0; i < R; ++i) {
    T* xi = x + i * K;
    const T r = T(1) / row_sum(xi, K);
    for (Index k = 0; k < K; ++k) xi[k] *= r;
  }
  return y;
}

// ---- straight-through: value of `hard`, gradient passed to `soft` unchanged ---------------------

template <class T>
void straight_through_backward(BasicTape<T>& t, const Node<T>& n) {
  if (n.grad_const)
    t.accumulate_const(n.in[0], n.grad[0]);
  else
    t.accumulate(n.in[0], t.grad_in(n).array());
}

/// Row-wise one-hot of the argmax (the first maximum on ties).
template <class T>
void one_hot_argmax(const CMap<T>& x, MMap<T> out) {
  out.setZero();
  for (Index i = 0; i < x.rows(); ++i) {
    Index k = 0;
    if (x.cols() > 0) {
      x.row(i).maxCoeff(&k);
      out(i, k) = T(1);
    }
  }
}

template <class T>
void check_temperature(const char* op, const BasicVar<T>& tau, Index R, bool per_row) {
  check_positive_param(op, "temperature", tau);
  if (per_row) {
    // R == 1: logits shared by every sample; the temperature may then have one row per sample
    if (tau.cols() != 1 || (tau.rows() != 1 && tau.rows() != R && R != 1))
      throw_shape(op, "temperature must be 1x1 or one per row (" + shape_str(R, 1) + "), got " +
                          shape_str(tau.rows(), tau.cols()));
  }
}

/// The checks of Concrete and ExpConcrete parameters.
template <class T>
void check_categorical_params(const char* op, const BasicVar<T>& logits, const BasicVar<T>& tau) {
  check_pair(logits, tau, op);
  check_finite_param(op, "logits", logits);
  check_temperature(op, tau, logits.rows(), true);
  if (logits.cols() == 0) throw_shape(op, "logits must have at least one column (got " + shape_str(logits.rows(), 0) + ")");
}

/// lgamma(K) as T (K >= 1).
template <class T>
T log_factorial_km1(Index K) {
  using std::lgamma;
  return static_cast<T>(lgamma(static_cast<double>(K)));
}

}  // namespace detail

/// The forward value of `hard` with the gradient of `soft` (straight-through estimator):
/// d/dsoft passes the incoming gradient unchanged. Shapes must be equal.
template <class T>
BasicVar<T> straight_through(const BasicVar<T>& soft, const BasicVar<T>& hard) {
  detail::check_pair(soft, hard, "straight_through");
  if (soft.rows() != hard.rows() || soft.cols() != hard.cols())
    detail::throw_shape("straight_through", "soft and hard must have one shape (" +
                                                detail::shape_str(soft.rows(), soft.cols()) + " and " +
                                                detail::shape_str(hard.rows(), hard.cols()) + ")");
  BasicTape<T>& t = soft.tape();
  const BasicVar<T> y = t.push(soft.rows(), soft.cols(), &detail::straight_through_backward<T>, soft.index(),
                               hard.index(), T(0), soft.requires_grad());
  t.value_mut(y.index()) = hard.value();
  return y;
}

/// Concrete / Gumbel-softmax (Maddison et al. 2017; Jang et al. 2017): one relaxed categorical
/// per row of `logits` (R x K). Base noise: u ~ U(0, 1), one per logit; sample
/// softmax((logits + g(u)) / temperature) with g(u) = -log(-log u). The temperature is a T or a
/// Var (1x1, or R x 1: one per row), differentiable.
template <class T>
class Concrete : public detail::ValueOverloads<Concrete<T>, T> {
  using Base = detail::ValueOverloads<Concrete<T>, T>;
  friend class detail::ValueOverloads<Concrete<T>, T>;

 public:
  using Base::log_prob;
  using Scalar = T;
  using Var = BasicVar<T>;
  static constexpr const char* name = "Concrete";

  Concrete(const Var& logits, const Var& temperature) : logits_(logits), tau_(temperature) {
    detail::check_categorical_params(name, logits, temperature);
  }
  Concrete(const Var& logits, detail::same_t<T> temperature) : Concrete(logits, logits.tape().constant(temperature)) {}

  const Var& logits() const noexcept { return logits_; }
  const Var& temperature() const noexcept { return tau_; }
  Index rows() const noexcept { return logits_.rows(); }
  Index cols() const noexcept { return logits_.cols(); }
  /// softmax(logits): the probabilities of the categorical being relaxed.
  Var probs() const { return softmax(logits_); }

  /// A pathwise sample (rows on the simplex), one row per row of logits.
  template <class G>
  Var rsample(G& g) const {
    return rsample(g, logits_.rows());
  }
  /// `rows` samples: logits must have that many rows or one row (then shared by all samples).
  template <class G>
  Var rsample(G& g, Index rows) const {
    check_rows("Concrete.rsample", rows);
    const std::size_t n = static_cast<std::size_t>(rows * cols());
    return detail::concrete_node(logits_, tau_, rows, [&](T* z) {
      detail::fill_uniform(g, z, n);
      detail::gumbel_from_uniform(z, n);
    });
  }
  /// The same map with the uniforms u (rows x K) given; 0 and 1 are moved inside (0, 1).
  template <class U>
  Var reparameterize(const Eigen::DenseBase<U>& u) const {
    check_uniform_shape("Concrete.reparameterize", u.rows(), u.cols());
    detail::check_uniforms<T>("Concrete.reparameterize", u);
    return detail::concrete_node(logits_, tau_, u.rows(), [&](T* z) {
      detail::MMap<T> m(z, u.rows(), u.cols());
      m = u.derived().template cast<T>().unaryExpr([](T v) { return detail::clamp_unit(v); });
      detail::gumbel_from_uniform(z, static_cast<std::size_t>(m.size()));
    });
  }
  /// Straight-through: the one-hot argmax row forward, the soft sample's gradient backward.
  template <class G>
  Var rsample_hard(G& g) const {
    return harden(rsample(g));
  }
  template <class G>
  Var rsample_hard(G& g, Index rows) const {
    return harden(rsample(g, rows));
  }
  template <class U>
  Var reparameterize_hard(const Eigen::DenseBase<U>& u) const {
    return harden(reparameterize(u));
  }
  /// A sample without gradient (rows on the simplex).
  template <class G>
  Matrix<T> sample(G& g) const {
    BasicTape<T> scratch;
    Concrete<T> q(scratch.constant(logits_.value()), scratch.constant(tau_.value()));
    return q.rsample(g).value();
  }

  /// Log density of points x on the open simplex (one per row, R x 1), Maddison et al.'s
  /// density. Rows must be positive and sum to 1; a row with a zero (an underflowed sample at a
  /// low temperature) has no finite density: use `ExpConcrete`, which works in log space.
  Var log_prob(const Var& x) const;

 private:
  const Var& anchor() const { return logits_; }
  void check_rows(const char* op, Index rows) const {
    if (rows < 0 || (logits_.rows() != rows && logits_.rows() != 1))
      detail::throw_shape(op, "cannot draw " + std::to_string(rows) + " rows from logits " +
                                  detail::shape_str(logits_.rows(), logits_.cols()));
    if (tau_.rows() != 1 && tau_.rows() != rows)
      detail::throw_shape(op, "temperature " + detail::shape_str(tau_.rows(), tau_.cols()) + " does not fit " +
                                  std::to_string(rows) + " rows");
  }
  void check_uniform_shape(const char* op, Index r, Index c) const {
    if (c != cols() || (r != logits_.rows() && logits_.rows() != 1))
      detail::throw_shape(op, "uniforms " + detail::shape_str(r, c) + " do not fit logits " +
                                  detail::shape_str(logits_.rows(), logits_.cols()));
    check_rows(op, r);
  }
  static Var harden(const Var& soft) {
    BasicTape<T>& t = soft.tape();
    const Var hard = t.push(soft.rows(), soft.cols(), nullptr, 0, 0, T(0), false);
    detail::one_hot_argmax<T>(t.value(soft.index()), t.value_mut(hard.index()));
    return straight_through(soft, hard);
  }

  Var logits_, tau_;
};
template <class T>
Concrete(const BasicVar<T>&, const BasicVar<T>&) -> Concrete<T>;

/// PyTorch's name for Concrete.
template <class T>
using RelaxedOneHotCategorical = Concrete<T>;

/// The Concrete distribution in log space (Maddison et al. 2017, appendix): samples are
/// y = log_softmax((logits + g) / temperature), and `log_prob(y)` is the density of y. Finite at
/// any temperature and any number of categories, where the simplex form underflows.
template <class T>
class ExpConcrete : public detail::ValueOverloads<ExpConcrete<T>, T> {
  using Base = detail::ValueOverloads<ExpConcrete<T>, T>;
  friend class detail::ValueOverloads<ExpConcrete<T>, T>;

 public:
  using Base::log_prob;
  using Scalar = T;
  using Var = BasicVar<T>;
  static constexpr const char* name = "ExpConcrete";

  ExpConcrete(const Var& logits, const Var& temperature) : logits_(logits), tau_(temperature) {
    detail::check_categorical_params(name, logits, temperature);
  }
  ExpConcrete(const Var& logits, detail::same_t<T> temperature)
      : ExpConcrete(logits, logits.tape().constant(temperature)) {}

  const Var& logits() const noexcept { return logits_; }
  const Var& temperature() const noexcept { return tau_; }

  /// A pathwise sample in log space (each row's exp sums to 1).
  template <class G>
  Var rsample(G& g) const {
    Matrix<T> u(logits_.rows(), logits_.cols());
    detail::fill_uniform(g, u.data(), static_cast<std::size_t>(u.size()));
    return reparameterize(u);
  }
  template <class U>
  Var reparameterize(const Eigen::DenseBase<U>& u) const {
    if (u.rows() != logits_.rows() || u.cols() != logits_.cols())
      detail::throw_shape("ExpConcrete.reparameterize", "uniforms " + detail::shape_str(u.rows(), u.cols()) +
                                                            " do not match logits " +
                                                            detail::shape_str(logits_.rows(), logits_.cols()));
    detail::check_uniforms<T>("ExpConcrete.reparameterize", u);
    Matrix<T> gmb = u.derived().template cast<T>().unaryExpr([](T v) { return detail::clamp_unit(v); });
    detail::gumbel_from_uniform(gmb.data(), static_cast<std::size_t>(gmb.size()));
    return log_softmax((logits_ + gmb) / tau_);
  }
  /// Log density of log-space points y (R x 1). Rows of y must be finite with logsumexp 0.
  Var log_prob(const Var& y) const {
    static constexpr const char* op = "ExpConcrete.log_prob";
    detail::check_pair(logits_, y, op);
    if (y.cols() != logits_.cols() || (y.rows() != logits_.rows() && logits_.rows() != 1))
      detail::throw_shape(op, "value " + detail::shape_str(y.rows(), y.cols()) + " does not fit logits " +
                                  detail::shape_str(logits_.rows(), logits_.cols()));
    if constexpr (std::is_floating_point<T>::value) {
      if (validation_enabled()) {
        const auto v = y.value();
        detail::check_elements(op, "value must be finite", v, [](T a) { return detail::finite(a); });
        const T tol = T(8) * std::numeric_limits<T>::epsilon() * T(std::max<Index>(v.cols(), 4));
        for (Index i = 0; i < v.rows(); ++i) {
          const T m = v.row(i).maxCoeff();
          const T lse = m + std::log((v.row(i).array() - m).exp().sum());
          if (!(std::abs(lse) <= tol))
            detail::throw_domain(op, "rows must be log-probabilities (logsumexp 0), got logsumexp " +
                                         detail::scalar_str(lse) + " at row " + std::to_string(i));
        }
      }
    }
    return log_prob_unchecked(y);
  }

  /// The density formula without value checks (used by Concrete::log_prob).
  Var log_prob_unchecked(const Var& y) const {
    const Index K = logits_.cols();
    const Var a = logits_ - tau_ * y;  // log alpha_k - tau y_k
    return sum_rows(a) - T(K) * logsumexp(a) + T(K - 1) * log(tau_) + detail::log_factorial_km1<T>(K);
  }

 private:
  const Var& anchor() const { return logits_; }
  Var logits_, tau_;
};
template <class T>
ExpConcrete(const BasicVar<T>&, const BasicVar<T>&) -> ExpConcrete<T>;

template <class T>
BasicVar<T> Concrete<T>::log_prob(const Var& x) const {
  static constexpr const char* op = "Concrete.log_prob";
  detail::check_pair(logits_, x, op);
  if (x.cols() != logits_.cols() || (x.rows() != logits_.rows() && logits_.rows() != 1))
    detail::throw_shape(op, "value " + detail::shape_str(x.rows(), x.cols()) + " does not fit logits " +
                                detail::shape_str(logits_.rows(), logits_.cols()));
  if constexpr (std::is_floating_point<T>::value) {
    if (validation_enabled()) {
      const auto v = x.value();
      detail::check_elements(op, "value must lie in the open simplex: elements in (0, 1]", v,
                             [](T a) { return a > T(0) && a <= T(1); });
      const T tol = T(8) * std::numeric_limits<T>::epsilon() * T(std::max<Index>(v.cols(), 4));
      for (Index i = 0; i < v.rows(); ++i) {
        const T s = v.row(i).sum();
        if (!(std::abs(s - T(1)) <= tol))
          detail::throw_domain(op, "value must lie in the open simplex: rows must sum to 1 (got " + detail::scalar_str(s) +
                                       " at row " + std::to_string(i) + ")");
      }
    }
  }
  const Var lx = log(x);
  return ExpConcrete<T>(logits_, tau_).log_prob_unchecked(lx) - sum_rows(lx);
}

/// RelaxedBernoulli (binary Concrete): elementwise, logits any shape, temperature a T or a Var
/// broadcasting with the logits. Base noise: u ~ U(0, 1); sample
/// sigmoid((logits + log u - log(1 - u)) / temperature).
template <class T>
class RelaxedBernoulli : public detail::CdfOverloads<RelaxedBernoulli<T>, T> {
  using Base = detail::CdfOverloads<RelaxedBernoulli<T>, T>;
  friend class detail::ValueOverloads<RelaxedBernoulli<T>, T>;
  friend class detail::CdfOverloads<RelaxedBernoulli<T>, T>;

 public:
  using Base::log_prob;
  using Base::cdf;
  using Base::icdf;
  using Scalar = T;
  using Var = BasicVar<T>;
  static constexpr const char* name = "RelaxedBernoulli";

  RelaxedBernoulli(const Var& logits, const Var& temperature) : logits_(logits), tau_(temperature) {
    detail::check_pair(logits, temperature, name);
    detail::broadcast_params(name, "logits", logits.rows(), logits.cols(), "temperature", temperature.rows(),
                             temperature.cols(), R_, C_);
    detail::check_finite_param(name, "logits", logits);
    detail::check_temperature(name, temperature, R_, false);
  }
  RelaxedBernoulli(const Var& logits, detail::same_t<T> temperature)
      : RelaxedBernoulli(logits, logits.tape().constant(temperature)) {}

  const Var& logits() const noexcept { return logits_; }
  const Var& temperature() const noexcept { return tau_; }
  Index rows() const noexcept { return R_; }
  Index cols() const noexcept { return C_; }
  Var probs() const { return broadcast_to(sigmoid(logits_), R_, C_); }

  template <class G>
  Var rsample(G& g) const {
    return rsample(g, R_, C_);
  }
  template <class G>
  Var rsample(G& g, Index rows, Index cols) const {
    detail::check_sample_shape("RelaxedBernoulli.rsample", rows, cols, R_, C_);
    Matrix<T> u(rows, cols);
    detail::fill_uniform(g, u.data(), static_cast<std::size_t>(u.size()));
    return from_uniform(u);
  }
  template <class U>
  Var reparameterize(const Eigen::DenseBase<U>& u) const {
    static constexpr const char* op = "RelaxedBernoulli.reparameterize";
    Index r, c;
    detail::broadcast_params(op, "uniforms", u.rows(), u.cols(), "batch shape", R_, C_, r, c);
    if (r != u.rows() || c != u.cols())
      detail::throw_shape(op, "uniforms " + detail::shape_str(u.rows(), u.cols()) + " do not contain the batch shape " +
                                  detail::shape_str(R_, C_));
    detail::check_uniforms<T>(op, u);
    return from_uniform(u.derived().template cast<T>());
  }
  /// Straight-through: 1 where the soft sample is > 1/2 (logits + logistic noise > 0), else 0,
  /// with the soft sample's gradient.
  template <class G>
  Var rsample_hard(G& g) const {
    return harden(rsample(g));
  }
  template <class U>
  Var reparameterize_hard(const Eigen::DenseBase<U>& u) const {
    return harden(reparameterize(u));
  }
  template <class G>
  Matrix<T> sample(G& g) const {
    BasicTape<T> scratch;
    RelaxedBernoulli<T> q(scratch.constant(logits_.value()), scratch.constant(tau_.value()));
    return q.rsample(g).value();
  }

  /// Elementwise log density at x in (0, 1), written with softplus: finite for any logit.
  Var log_prob(const Var& x) const {
    check_x("RelaxedBernoulli.log_prob", x);
    const Var lx = log(x), l1x = log1p(-x);
    const Var diff = logits_ - tau_ * (lx - l1x);
    return log(tau_) + diff - T(2) * softplus(diff) - lx - l1x;
  }
  /// P(X <= x) = sigmoid(temperature * logit(x) - logits), x in (0, 1).
  Var cdf(const Var& x) const {
    check_x("RelaxedBernoulli.cdf", x);
    return sigmoid(tau_ * (log(x) - log1p(-x)) - logits_);
  }
  /// The x with cdf(x) = p: sigmoid((logits + logit(p)) / temperature), p in (0, 1).
  Var icdf(const Var& p) const {
    check_x("RelaxedBernoulli.icdf", p);
    return sigmoid((logits_ + log(p) - log1p(-p)) / tau_);
  }

 private:
  const Var& anchor() const { return logits_; }
  template <class M>
  Var from_uniform(const M& u) const {
    Matrix<T> l = u.unaryExpr([](T v) { return detail::clamp_unit(v); });
    detail::logistic_from_uniform(l.data(), static_cast<std::size_t>(l.size()));
    return sigmoid((logits_ + l) / tau_);
  }
  void check_x(const char* op, const Var& x) const {
    detail::check_pair(logits_, x, op);
    detail::check_value_shape(op, x, R_, C_);
    detail::check_value(op, "value must lie in (0, 1)", x, [](T v) { return v > T(0) && v < T(1); });
  }
  static Var harden(const Var& soft) {
    BasicTape<T>& t = soft.tape();
    const Var hard = t.push(soft.rows(), soft.cols(), nullptr, 0, 0, T(0), false);
    t.value_mut(hard.index()) = (soft.value().array() > T(0.5)).template cast<T>().matrix();
    return straight_through(soft, hard);
  }

  Var logits_, tau_;
  Index R_ = 0, C_ = 0;
};
template <class T>
RelaxedBernoulli(const BasicVar<T>&, const BasicVar<T>&) -> RelaxedBernoulli<T>;

/// Gumbel-softmax as a function (Jang et al. 2017): a Concrete sample of `logits` at
/// `temperature`, or with `hard` its straight-through one-hot.
template <class T, class G>
BasicVar<T> gumbel_softmax(const BasicVar<T>& logits, detail::same_t<T> temperature, G& g, bool hard = false) {
  Concrete<T> q(logits, temperature);
  return hard ? q.rsample_hard(g) : q.rsample(g);
}
template <class T, class G>
BasicVar<T> gumbel_softmax(const BasicVar<T>& logits, const BasicVar<T>& temperature, G& g, bool hard = false) {
  Concrete<T> q(logits, temperature);
  return hard ? q.rsample_hard(g) : q.rsample(g);
}

/// Differentiable stand-in for argmax: sum_k k * softmax(a)_k per row (R x 1).
template <class T>
BasicVar<T> soft_argmax(const BasicVar<T>& a) {
  detail::check_var(a, "soft_argmax");
  Matrix<T> idx(1, a.cols());
  for (Index k = 0; k < a.cols(); ++k) idx(0, k) = T(k);
  return sum_rows(softmax(a) * idx);
}
/// soft_argmax(a / temperature): sharper as the temperature falls.
template <class T>
BasicVar<T> soft_argmax(const BasicVar<T>& a, detail::same_t<T> temperature) {
  if constexpr (std::is_floating_point<T>::value)
    if (!(temperature > T(0)) || detail::is_inf(temperature))
      detail::throw_domain("soft_argmax", "temperature must be > 0 and finite (got " + detail::scalar_str(temperature) + ")");
  return soft_argmax(a / temperature);
}

}  // namespace reparam
