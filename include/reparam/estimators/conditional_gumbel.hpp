#pragma once
/// \file conditional_gumbel.hpp  Gumbel noise conditioned on its argmax, and the estimators built
/// on it: Gumbel-Rao and REBAR.
///
///     // b: one-hot rows drawn from Categorical(softmax(logits)); u, v: uniforms (R x K)
///     reparam::Var z = reparam::conditional_gumbel(logits, b, u);   // argmax of row i is b_i
///     reparam::Var y = reparam::gumbel_rao(logits, b, 0.5, v);      // value b, Rao-Blackwellized gradient
///
/// If b = argmax(logits + g) with g standard Gumbel noise, then given b the largest perturbed logit
/// is Gumbel(logsumexp(logits)) whatever b is, and every other one is Gumbel(logits_k) truncated
/// below it (Maddison et al. 2014; Tucker et al. 2017, appendix; Paulus et al. 2021):
///
///     z_b = logsumexp(logits) + G(u_b)
///     z_k = -log(e^-z_b + e^-(logits_k + G(u_k))) = z_b - softplus(z_b - logits_k - G(u_k))
///
/// with G(u) = -log(-log u). Drawing b first and then z given b gives z the law of logits + g:
/// REBAR and Gumbel-Rao need exactly this pair. z is differentiable in the logits (through the
/// log-sum-exp and the softplus), which is what those estimators differentiate.

#include <string>
#include <tuple>

#include <reparam/detail/distribution.hpp>
#include <reparam/distributions/categorical.hpp>
#include <reparam/estimators/score_function.hpp>
#include <reparam/random/noise.hpp>

namespace reparam {
namespace detail {

/// DomainError unless every row of `hard` holds a single 1 and zeros elsewhere.
template <class D>
void check_one_hot(OpName op, const Eigen::DenseBase<D>& hard) {
  using S = typename D::Scalar;
  for (Index i = 0; i < hard.rows(); ++i) {
    Index ones = 0;
    for (Index k = 0; k < hard.cols(); ++k) {
      const S h = hard(i, k);
      if (h == S(1))
        ++ones;
      else if (!(h == S(0)))
        throw_domain(op, "hard must hold one-hot rows of 0 and 1 (got " + scalar_str(double(h)) + " at row " +
                             std::to_string(i) + ", column " + std::to_string(k) + ")");
    }
    if (ones != 1)
      throw_domain(op, "hard must hold one-hot rows (row " + std::to_string(i) + " has " + std::to_string(ones) + " ones)");
  }
}

/// Checks of the logits and the one-hot rows; `u_rows`, the rows of the uniforms, must be
/// `blocks` times the logits' (any positive multiple when `blocks` is 0).
template <class T, class H>
void check_conditional(OpName op, const BasicVar<T>& logits, const Eigen::DenseBase<H>& hard, Index u_rows, Index u_cols,
                       Index blocks) {
  check_var(logits, op);
  const Index R = logits.rows(), K = logits.cols();
  if (K == 0) throw_shape(op, "logits must have at least one column (got " + shape_str(R, 0) + ")");
  if (hard.rows() != R || hard.cols() != K)
    throw_shape(op, "hard does not fit the logits (" + shape_str(hard.rows(), hard.cols()) + " and " + shape_str(R, K) + ")");
  const bool fits = u_cols == K && (blocks > 0 ? u_rows == blocks * R : (R == 0 ? u_rows == 0 : u_rows >= R && u_rows % R == 0));
  if (!fits)
    throw_shape(op, "uniforms do not fit the logits (" + shape_str(u_rows, u_cols) + " and " + shape_str(R, K) +
                        (blocks == 0 ? ", or a stack of such blocks)" : ")"));
  check_one_hot(op, hard);
  if constexpr (detail::checked_scalar<T>)
    if (validation_enabled()) check_all_finite(op, "logits must be finite", logits.value());
}

/// Standard Gumbel noise G(u) of the logits' shape as a constant of their tape; fill(out) writes
/// the uniforms (0 and 1 are moved inside).
template <class T, class Fill>
BasicVar<T> gumbel_constant(const char* name, const BasicVar<T>& logits, Fill&& fill) {
  Operation<T> noise(name, {logits});
  return noise.record_constant(logits.rows(), logits.cols(), [&](MMap<T> out) {
    fill(out);
    out = out.unaryExpr([](T v) { return clamp_unit(v); });
    gumbel_from_uniform(out.data(), static_cast<std::size_t>(out.size()));
  });
}

/// z given the argmax (see the file comment); fill(out) writes the R x K uniforms.
template <class T, class H, class Fill>
BasicVar<T> conditional_gumbel_from(const BasicVar<T>& logits, const Eigen::DenseBase<H>& hard, Fill&& fill) {
  const Index R = logits.rows(), K = logits.cols();
  const BasicVar<T> g = gumbel_constant("conditional_gumbel", logits, fill);
  const CMap<T> gv = g.value();
  Operation<T> others("conditional_gumbel", {logits}), at_b("conditional_gumbel", {logits});
  // 1 - hard (the entries below the top), and G(u_b) of each row
  const BasicVar<T> rest = others.record_constant(R, K, [&](MMap<T> out) { out = (T(1) - hard.derived().template cast<T>().array()).matrix(); });
  const BasicVar<T> gb = at_b.record_constant(R, 1, [&](MMap<T> out) {
    for (Index i = 0; i < R; ++i) {
      Index b = 0;
      while (b + 1 < K && !(hard(i, b) == 1)) ++b;
      out(i, 0) = gv(i, b);
    }
  });
  const BasicVar<T> top = logsumexp(logits) + gb;  // R x 1
  return top - rest * softplus(top - logits - g);
}

/// The forward value `hard` with the gradient of the average of S conditional relaxations;
/// fill(out, s) writes block s of the uniforms.
template <class T, class H, class Fill>
BasicVar<T> gumbel_rao_from(const BasicVar<T>& logits, const Eigen::DenseBase<H>& hard, T tau, Index S, Fill&& fill) {
  // the noise g_s = z_s - logits is drawn given the sample and then held fixed: the gradient is
  // straight-through Gumbel-softmax's, d softmax((logits + g) / tau), at those g
  const BasicVar<T> held = stop_gradient(logits);
  BasicVar<T> soft;
  for (Index s = 0; s < S; ++s) {
    const BasicVar<T> g = conditional_gumbel_from(held, hard, [&](MMap<T> out) { fill(out, s); }) - held;
    const BasicVar<T> y = softmax((logits + g) / tau);
    soft = s == 0 ? y : soft + y;
  }
  if (S > 1) soft = soft / T(S);
  Operation<T> h("gumbel_rao", {logits});
  const BasicVar<T> value =
      h.record_constant(logits.rows(), logits.cols(), [&](MMap<T> out) { out = hard.derived().template cast<T>(); });
  return straight_through(soft, value);
}

template <class T>
void check_temperature(OpName op, T tau) {
  if constexpr (detail::checked_scalar<T>)
    if (!(tau > T(0)) || !finite(tau)) throw_domain(op, "temperature must be positive and finite (got " + scalar_str(tau) + ")");
}

/// The number C of costs f gave for R rows of samples: C x 1 with C dividing R.
template <class T>
Index cost_rows(OpName op, const BasicVar<T>& cost, Index R) {
  const Index C = cost.rows();
  if (cost.cols() != 1 || (C == 0 ? R != 0 : R % C != 0))
    throw_shape(op, "f must give one cost per row or per group of rows (" + std::to_string(R) + " rows, got " +
                        shape_str(cost.rows(), cost.cols()) + ")");
  return C;
}
template <class T>
void check_same_cost(OpName op, const BasicVar<T>& cost, Index C) {
  if (cost.rows() != C || cost.cols() != 1)
    throw_shape(op, "f must give the same cost shape at every input (" + shape_str(C, 1) + ", then " +
                        shape_str(cost.rows(), cost.cols()) + ")");
}

/// R x 1 -> C x 1: the sums of consecutive groups of R / C rows.
template <class T>
BasicVar<T> group_rows(const BasicVar<T>& v, Index C) {
  return v.rows() == C ? v : sum_rows(reshape(v, C, v.rows() / C));
}

/// What `rebar` builds: the surrogate of the logits' estimate, the one-hot sample, f at it, and
/// the two relaxed samples softmax(z / tau) and softmax(z~ / tau) f was evaluated at.
template <class T>
struct RebarTerms {
  BasicVar<T> surrogate, sample, cost, relaxed, conditional;
};

/// REBAR's terms (see `rebar`); fill_u and fill_v write the R x K uniforms of z and of z~.
template <class T, class F, class FillU, class FillV>
RebarTerms<T> rebar_from(OpName op, const BasicVar<T>& logits, F& f, T eta, T tau, FillU&& fill_u, FillV&& fill_v) {
  const Index R = logits.rows(), K = logits.cols();
  check_temperature(op, tau);
  if constexpr (detail::checked_scalar<T>)
    if (!finite(eta)) throw_domain(op, "eta must be finite (got " + scalar_str(eta) + ")");
  // z = logits + G(u) (differentiable), and b its argmax, a constant one-hot matrix
  const BasicVar<T> z = logits + gumbel_constant(op.head, logits, fill_u);
  Operation<T> argmax(op.head, {z});
  const BasicVar<T> b = argmax.record_constant(R, K, [&](MMap<T> out) {
    const CMap<T> zv = z.value();
    out.setZero();
    for (Index i = 0; i < R; ++i) out(i, row_argmax(zv.row(i).data(), K)) = T(1);
  });
  const BasicVar<T> zc = conditional_gumbel_from(logits, b.value(), fill_v);
  const BasicVar<T> fb = f(b);
  const Index C = cost_rows(op, fb, R);
  const BasicVar<T> sz = softmax(z / tau), szc = softmax(zc / tau);
  const BasicVar<T> cz = f(sz), czc = f(szc);
  check_same_cost(op, cz, C);
  check_same_cost(op, czc, C);
  // the score term's weight f(b) - eta c(z~) is a constant of the tape
  Operation<T> weight(op.head, {fb, czc});
  const BasicVar<T> w = weight.record_constant(C, 1, [&](MMap<T> out) { out = fb.value() - eta * czc.value(); });
  const BasicVar<T> lp = group_rows(Categorical<T>(logits).log_prob(b), C);
  return {score_function(lp, w) + eta * (sum(cz) - sum(czc)), b, fb, sz, szc};
}

}  // namespace detail

/// Gumbel perturbations z of `logits` (R x K) whose argmax in row i is the 1 of the one-hot row i
/// of `hard` (a sample of Categorical(softmax(logits)), e.g. from the Gumbel-max trick), from R x K
/// uniforms `u` (0 and 1 are moved inside; NaN or values outside [0, 1] are errors): the law of
/// logits + Gumbel noise given its argmax (see the file comment). Differentiable in the logits.
/// z_k <= z_b in every row (equality only where the difference rounds away).
template <class T, class H, class U>
BasicVar<T> conditional_gumbel(const BasicVar<T>& logits, const Eigen::DenseBase<H>& hard, const Eigen::DenseBase<U>& u) {
  const detail::OpName op{"conditional_gumbel"};
  detail::check_conditional(op, logits, hard, u.rows(), u.cols(), 1);
  detail::check_uniforms<T>(op, u);
  return detail::conditional_gumbel_from(logits, hard, [&](detail::MMap<T> out) { out = u.derived().template cast<T>(); });
}
/// The same with the uniforms drawn from `rng` (into the tape: no heap allocation).
template <class T, class H, class G,
          class = std::enable_if_t<!std::is_base_of<Eigen::EigenBase<std::remove_cv_t<G>>, std::remove_cv_t<G>>::value>>
BasicVar<T> conditional_gumbel(const BasicVar<T>& logits, const Eigen::DenseBase<H>& hard, G& rng) {
  detail::check_conditional({"conditional_gumbel"}, logits, hard, logits.rows(), logits.cols(), 1);
  return detail::conditional_gumbel_from(logits, hard, [&](detail::MMap<T> out) {
    detail::fill_uniform(rng, out.data(), static_cast<std::size_t>(out.size()));
  });
}

/// The Gumbel-Rao estimator (Paulus, Maddison & Krause 2021): the forward value is the one-hot
/// sample `hard` itself, the gradient that of the average over S relaxations
///   mean_s softmax((logits + g_s) / tau),   g_s = conditional_gumbel(logits, hard, u_s) - logits
/// with the noise g_s held fixed (not differentiated: the gradient of the unconditional
/// reparameterization logits + g at noise drawn given the sample). That is straight-through
/// Gumbel-softmax with its noise averaged out given the sample: the same mean as
/// straight-through Gumbel-softmax (S = 1 has its law) and no more variance. Biased, as
/// every relaxation. `u` stacks the S blocks of R x K uniforms (S R x K). Cost: S conditional
/// samples and softmaxes of each row.
template <class T, class H, class U>
BasicVar<T> gumbel_rao(const BasicVar<T>& logits, const Eigen::DenseBase<H>& hard, detail::same_t<T> tau,
                       const Eigen::DenseBase<U>& u) {
  const detail::OpName op{"gumbel_rao"};
  detail::check_conditional(op, logits, hard, u.rows(), u.cols(), 0);
  detail::check_temperature(op, tau);
  detail::check_uniforms<T>(op, u);
  const Index R = logits.rows(), S = R == 0 ? 1 : u.rows() / R;
  return detail::gumbel_rao_from(logits, hard, T(tau), S,
                                 [&](detail::MMap<T> out, Index s) { out = u.derived().middleRows(s * R, R).template cast<T>(); });
}
/// The same with `samples` blocks of uniforms drawn from `rng` (into the tape: no heap allocation).
template <class T, class H, class G>
BasicVar<T> gumbel_rao(const BasicVar<T>& logits, const Eigen::DenseBase<H>& hard, detail::same_t<T> tau, Index samples, G& rng) {
  const detail::OpName op{"gumbel_rao"};
  if (samples < 1) detail::throw_domain(op, "samples must be at least 1 (got " + std::to_string(samples) + ")");
  detail::check_conditional(op, logits, hard, logits.rows(), logits.cols(), 1);
  detail::check_temperature(op, tau);
  return detail::gumbel_rao_from(logits, hard, T(tau), samples, [&](detail::MMap<T> out, Index) {
    detail::fill_uniform(rng, out.data(), static_cast<std::size_t>(out.size()));
  });
}

/// REBAR (Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein 2017) with a fixed scale `eta` and
/// temperature `tau`: an unbiased estimate of d/dlogits E[f(b)], b ~ Categorical(softmax(logits))
/// (one per row), that uses the Concrete relaxation as its control variate. With z = logits +
/// G(u), b = onehot(argmax z), z~ = conditional_gumbel(logits, b, v) and c(z) = f(softmax(z / tau)):
///
///     g = [f(b) - eta c(z~)] d log p(b) + eta d c(z) - eta d c(z~)
///
/// `f` maps an R x K Var (one-hot rows, or relaxed ones) to costs, C x 1, one per row or per
/// group of R / C consecutive rows (then log p(b) is the group's), a Var on the same tape,
/// differentiable where the relaxation needs it. Returns the surrogate whose gradient in the
/// logits is g (its value is not meaningful, and f's own parameters receive eta (dc(z) - dc(z~)):
/// `Rebar` in discrete.hpp gives them the sample's gradient instead); `sample`, when given,
/// receives b. Cost: three evaluations of f (one discrete, two relaxed) and their gradients.
/// u, v: R x K uniforms each.
template <class T, class F, class U, class V>
BasicVar<T> rebar(const BasicVar<T>& logits, F&& f, detail::same_t<T> eta, detail::same_t<T> tau, const Eigen::DenseBase<U>& u,
                  const Eigen::DenseBase<V>& v, Matrix<T>* sample = nullptr) {
  const detail::OpName op{"rebar"};
  detail::check_var(logits, op);
  const Index R = logits.rows(), K = logits.cols();
  if (K == 0) detail::throw_shape(op, "logits must have at least one column (got " + detail::shape_str(R, 0) + ")");
  for (const auto& [rows, cols, what] : {std::tuple<Index, Index, const char*>{u.rows(), u.cols(), "u"},
                                         std::tuple<Index, Index, const char*>{v.rows(), v.cols(), "v"}})
    if (rows != R || cols != K)
      detail::throw_shape(op, std::string("uniforms ") + what + " do not fit the logits (" + detail::shape_str(rows, cols) +
                                  " and " + detail::shape_str(R, K) + ")");
  detail::check_uniforms<T>(op, u);
  detail::check_uniforms<T>(op, v);
  const detail::RebarTerms<T> r = detail::rebar_from(op, logits, f, T(eta), T(tau), [&](detail::MMap<T> out) { out = u.derived().template cast<T>(); },
                                                     [&](detail::MMap<T> out) { out = v.derived().template cast<T>(); });
  if (sample) *sample = r.sample.value();
  return r.surrogate;
}

}  // namespace reparam
