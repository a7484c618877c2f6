#pragma once
/// \file discrete.hpp  The estimator zoo behind one interface: estimates of d/dlogits E[f(x)] for
/// discrete x, a one-hot row per row of logits (Family::categorical) or independent bits
/// (Family::bernoulli).
///
///     reparam::MuProp est;                                         // or Rebar{eta, tau}, ...
///     reparam::Estimate<double> e = est(reparam::Family::bernoulli, logits, f, rng);
///     tape.backward(e.surrogate);   // logits.grad(): the estimate; f's parameters: d mean cost
///
/// `f` maps an R x K Var of samples (one-hot rows or bits; relaxed ones for the relaxed
/// estimators) on the logits' tape to costs, C x 1, one per row or per group of R / C consecutive
/// rows (the latents of one data point: C images of R / C categorical latents each). Each call
/// draws its own noise from `rng` into the tape: no heap allocation once the tape has the room.
/// Every estimator returns `Estimate{surrogate, cost}`: the gradient of `surrogate` in the
/// logits is the estimate, its gradient in whatever parameters f reads is the gradient of the
/// sampled costs' sum (f's own training signal), and `cost` is f at the sample (S C x 1 for S
/// samples). The surrogate's value is not meaningful; report `cost`.
///
/// | estimator | unbiased | f evaluations | |
/// | --- | --- | --- | --- |
/// | ScoreFunctionEstimator (none, moving average, leave-one-out over S) | yes | S | |
/// | GumbelSoftmax{tau} / {tau, hard} | no (relaxed; straight-through) | 1 | Concrete or RelaxedBernoulli |
/// | StraightThrough, SlopeAnnealedStraightThrough{m} | no | 1 | backward through the probabilities |
/// | Darn | no (unless f is linear) | 2 (+1 detached) | |
/// | MuProp | yes | 2 (+1 detached) | |
/// | Rebar{eta, tau} | yes | 3 (+2 detached) | |
/// | GumbelRao{tau, S} | no (as straight-through Gumbel-softmax) | 1 | |
///
/// The Bernoulli family is run as categorical pairs: bit j of row i is the category of the row
/// (0, logits(i, j)) of a two-column logits matrix, which has the same law (sigmoid(l) =
/// softmax(0, l)_1, and the difference of two Gumbels is logistic: the pair's Concrete relaxation
/// is the RelaxedBernoulli one). f still sees R x K bits.

#include <string>

#include <reparam/distributions/concrete.hpp>
#include <reparam/distributions/relaxed_bernoulli.hpp>
#include <reparam/estimators/conditional_gumbel.hpp>
#include <reparam/estimators/score_function.hpp>

namespace reparam {

/// Which discrete law the logits parameterize: one categorical per row (softmax) or one
/// Bernoulli per element (sigmoid).
enum class Family { categorical, bernoulli };

/// What an estimator returns: backward(surrogate) gives the estimate in the logits; `cost` is f
/// at the sample(s).
template <class T>
struct Estimate {
  BasicVar<T> surrogate;
  BasicVar<T> cost;
};

namespace detail {

/// Checks an estimator's logits (a Var, finite, at least one column for categorical rows).
template <class T>
void check_estimator_logits(OpName op, Family family, const BasicVar<T>& logits) {
  check_var(logits, op);
  if (family == Family::categorical && logits.cols() == 0)
    throw_shape(op, "logits must have at least one column (got " + shape_str(logits.rows(), 0) + ")");
  if constexpr (detail::checked_scalar<T>)
    if (validation_enabled()) check_all_finite(op, "logits must be finite", logits.value());
}

/// m (R x K) times w (C x 1), w's row c applied to the c-th group of R / C rows.
template <class T>
BasicVar<T> scale_groups(const BasicVar<T>& m, const BasicVar<T>& w) {
  const Index R = m.rows(), K = m.cols(), C = w.rows();
  return R == C ? m * w : reshape(reshape(m, C, R / C * K) * w, R, K);
}

/// One-hot rows of argmax(logits + G(u)) (the Gumbel-max trick), a constant of the tape.
template <class T, class G>
BasicVar<T> one_hot_sample(const char* name, const BasicVar<T>& logits, G& rng) {
  const Index R = logits.rows(), K = logits.cols();
  const BasicVar<T> g = gumbel_constant(name, logits, [&](MMap<T> out) { fill_uniform(rng, out.data(), static_cast<std::size_t>(out.size())); });
  Operation<T> op(name, {logits});
  return op.record_constant(R, K, [&](MMap<T> out) {
    const CMap<T> lv = logits.value(), gv = g.value();
    out.setZero();
    for (Index i = 0; i < R; ++i) {
      Index best = 0;
      for (Index k = 1; k < K; ++k)
        if (lv(i, k) + gv(i, k) > lv(i, best) + gv(i, best)) best = k;
      out(i, best) = T(1);
    }
  });
}

/// A constant of the logits' tape with every element `v`.
template <class T>
BasicVar<T> filled(const char* name, const BasicVar<T>& like, Index rows, Index cols, T v) {
  Operation<T> op(name, {like});
  return op.record_constant(rows, cols, [&](MMap<T> out) { out.setConstant(v); });
}

/// Runs `body(L, F)` on categorical logits L (R x K) and costs F: the logits themselves for
/// Family::categorical, the pairs (0, l) for Family::bernoulli (F reshapes their second column
/// back to the bits' shape before calling f).
template <class T, class F, class Body>
Estimate<T> on_family(OpName op, Family family, const BasicVar<T>& logits, F& f, Body&& body) {
  check_estimator_logits(op, family, logits);
  if (family == Family::categorical) return body(logits, f);
  const Index R = logits.rows(), n = logits.cols();
  const BasicVar<T> pairs = concat_cols({filled(op.head, logits, R * n, 1, T(0)), reshape(logits, R * n, 1)});
  // y: pairs of S stacked blocks (S R n rows) for S samples
  auto bits = [&f, R, n](const BasicVar<T>& y) -> BasicVar<T> { return f(reshape(slice_cols(y, 1, 1), n == 0 ? R : y.rows() / n, n)); };
  return body(pairs, bits);
}

}  // namespace detail

/// REINFORCE: the surrogate sum(stop(cost - b) * log p(x)) averaged over `samples` draws per row,
/// with b = 0 (Baseline::none), a moving average of the mean cost (Baseline::moving_average,
/// decay 0.9 by default; updated after each call, so still unbiased) or, for S >= 2 samples, the
/// mean of the other S - 1 samples' costs (Baseline::leave_one_out). Unbiased; cost S
/// evaluations of f on S stacked blocks (f receives S R rows: block s is sample s of every row,
/// and gives S C costs).
class ScoreFunctionEstimator {
 public:
  enum class Baseline { none, moving_average, leave_one_out };
  explicit ScoreFunctionEstimator(Baseline baseline = Baseline::none, Index samples = 1, double decay = 0.9)
      : baseline_(baseline), samples_(samples), ema_(decay) {
    const detail::OpName op{"ScoreFunctionEstimator"};
    if (samples < 1) detail::throw_domain(op, "samples must be at least 1 (got " + std::to_string(samples) + ")");
    if (baseline == Baseline::leave_one_out && samples < 2)
      detail::throw_domain(op, "the leave-one-out baseline needs at least 2 samples (got " + std::to_string(samples) + ")");
  }
  static constexpr bool unbiased = true;
  Index samples() const noexcept { return samples_; }
  Baseline baseline() const noexcept { return baseline_; }
  /// The moving-average baseline's state (Baseline::moving_average).
  const EmaBaseline<double>& moving_average() const noexcept { return ema_; }
  std::string name() const {
    switch (baseline_) {
      case Baseline::moving_average: return "score function + moving average";
      case Baseline::leave_one_out: return "score function + leave-one-out (S=" + std::to_string(samples_) + ")";
      default: return samples_ == 1 ? "score function" : "score function (S=" + std::to_string(samples_) + ")";
    }
  }

  template <class T, class F, class G>
  Estimate<T> operator()(Family family, const BasicVar<T>& logits, F&& f, G& rng) {
    const detail::OpName op{"ScoreFunctionEstimator"};
    return detail::on_family(op, family, logits, f, [&](const BasicVar<T>& L1, auto& fc) {
      const Index R = L1.rows(), K = L1.cols(), S = samples_;
      // S stacked copies of the logits: block s of S R rows is sample s
      const BasicVar<T> L = S == 1 ? L1 : reshape(broadcast_to(reshape(L1, 1, R * K), S, R * K), S * R, K);
      const BasicVar<T> x = detail::one_hot_sample(op.head, L, rng);
      const BasicVar<T> cost = fc(x);
      const Index SC = detail::cost_rows(op, cost, S * R), C = SC / S;
      const BasicVar<T> lp = detail::group_rows(Categorical<T>(L).log_prob(x), SC);
      BasicVar<T> score;
      if (baseline_ == Baseline::leave_one_out) {
        const BasicVar<T> b = reshape(leave_one_out_baseline(reshape(cost, S, C)), SC, 1);
        score = score_function(lp, cost, b);
      } else {
        const T b = baseline_ == Baseline::moving_average && ema_.initialized() ? T(ema_.value()) : T(0);
        score = score_function(lp, cost, b);
        if (baseline_ == Baseline::moving_average && SC > 0) ema_.update(double(cost.value().mean()));
      }
      BasicVar<T> s = sum(cost) + score;
      return Estimate<T>{S == 1 ? s : s / T(S), cost};
    });
  }

 private:
  Baseline baseline_;
  Index samples_;
  EmaBaseline<double> ema_;
};

/// Gumbel-softmax: f at a Concrete (categorical) or RelaxedBernoulli (bits) sample of temperature
/// tau, differentiated along the path; with `hard`, f at the one-hot argmax or the 0/1 threshold
/// and the relaxed sample's gradient (straight-through Gumbel-softmax). Biased (f is evaluated
/// off the discrete support, or its gradient is); the bias falls with tau and the variance grows
/// like 1 / tau. One evaluation of f.
struct GumbelSoftmax {
  double temperature = 1.0;
  bool hard = false;
  static constexpr bool unbiased = false;
  std::string name() const { return std::string(hard ? "ST Gumbel-softmax" : "Gumbel-softmax") + " (tau=" + detail::scalar_str(temperature) + ")"; }

  template <class T, class F, class G>
  Estimate<T> operator()(Family family, const BasicVar<T>& logits, F&& f, G& rng) const {
    const detail::OpName op{"GumbelSoftmax"};
    detail::check_estimator_logits(op, family, logits);
    const T tau = T(temperature);
    detail::check_temperature(op, tau);
    BasicVar<T> y;
    if (family == Family::categorical) {
      const Concrete<T> q(logits, tau);
      y = hard ? q.rsample_hard(rng) : q.rsample(rng);
    } else {
      const RelaxedBernoulli<T> q(logits, tau);
      y = hard ? q.rsample_hard(rng) : q.rsample(rng);
    }
    const BasicVar<T> cost = f(y);
    detail::cost_rows(op, cost, logits.rows());
    return {sum(cost), cost};
  }
};

/// Slope-annealed straight-through (Chung, Ahn & Bengio 2017): the model's probabilities are
/// softmax(m a) (sigmoid(m a) for bits) of the pre-activations `a` passed as logits, with the
/// slope m raised during training (see `slope_schedule`); the forward value is a sample of them,
/// the backward pass goes through the probabilities: f(x) with dx/da := d softmax(m a)/da.
/// Biased; one evaluation of f. m = 1 is plain straight-through (Bengio et al. 2013).
struct SlopeAnnealedStraightThrough {
  double slope = 1.0;
  static constexpr bool unbiased = false;
  std::string name() const { return slope == 1.0 ? "straight-through" : "slope-annealed ST (m=" + detail::scalar_str(slope) + ")"; }

  template <class T, class F, class G>
  Estimate<T> operator()(Family family, const BasicVar<T>& logits, F&& f, G& rng) const {
    const detail::OpName op{name_of()};
    if (!(slope > 0) || !detail::finite(slope)) detail::throw_domain(op, "slope must be positive and finite (got " + detail::scalar_str(slope) + ")");
    const BasicVar<T> a = slope == 1.0 ? logits : logits * T(slope);
    return detail::on_family(op, family, a, f, [&](const BasicVar<T>& L, auto& fc) {
      const BasicVar<T> x = detail::one_hot_sample(op.head, L, rng);
      const BasicVar<T> cost = fc(straight_through(softmax(L), x));
      detail::cost_rows(op, cost, L.rows());
      return Estimate<T>{sum(cost), cost};
    });
  }

 private:
  const char* name_of() const { return slope == 1.0 ? "StraightThrough" : "SlopeAnnealedStraightThrough"; }
};
/// Plain straight-through (Bengio, Leonard & Courville 2013): forward a sample, backward through
/// the probabilities (softmax or sigmoid of the logits). Biased; one evaluation of f.
struct StraightThrough : SlopeAnnealedStraightThrough {};

/// The slope schedule of Chung et al.: m = min(max_slope, 1 + rate * step).
inline double slope_schedule(long step, double rate = 0.04, double max_slope = 5.0) {
  const double m = 1.0 + rate * double(step);
  return m < max_slope ? m : max_slope;
}

namespace detail {

/// Gradient-of-f-at-a-point terms for DARN and MuProp: x' = point + sign (x - stop(point)) *
/// (lp - stop(lp)) has the value of `point`, and d f(x') = f'(point) [d point + sign (x - point)
/// d lp]: the first-order Taylor term's score gradient without a second backward pass.
template <class T>
BasicVar<T> taylor_point(const BasicVar<T>& point, const BasicVar<T>& x, const BasicVar<T>& lp, T sign) {
  const BasicVar<T> dx = x - stop_gradient(point);
  return point + scale_groups(sign == T(1) ? dx : -dx, lp - stop_gradient(lp));
}

/// A one-hot sample of the rows of L, f at it, and the log-probability of each cost's group.
template <class T>
struct Sampled {
  BasicVar<T> x, cost, log_prob;
  Index costs;
};
template <class T, class F, class G>
Sampled<T> sample_with_cost(OpName op, const BasicVar<T>& L, F& fc, G& rng) {
  const BasicVar<T> x = one_hot_sample(op.head, L, rng);
  const BasicVar<T> cost = fc(x);
  const Index C = cost_rows(op, cost, L.rows());
  return {x, cost, group_rows(Categorical<T>(L).log_prob(x), C), C};
}

}  // namespace detail

/// DARN (Gregor et al. 2014, as Gu et al. 2016 read it): the learning signal f(x) replaced by its
/// first-order Taylor term around the fixed point x0 = 1/K (1/2 for bits):
/// g = [f'(x0) . (x - x0)] d log p(x). Low variance, biased unless f is linear (its mean is the
/// gradient of f's linearization). Two evaluations of f (the sample, and x0 with f's gradient),
/// plus one detached one while `detach_cost_parameters` keeps f's parameters out of it.
struct Darn {
  bool detach_cost_parameters = true;
  static constexpr bool unbiased = false;
  std::string name() const { return "DARN"; }

  template <class T, class F, class G>
  Estimate<T> operator()(Family family, const BasicVar<T>& logits, F&& f, G& rng) const {
    const detail::OpName op{"Darn"};
    return detail::on_family(op, family, logits, f, [&](const BasicVar<T>& L, auto& fc) {
      const detail::Sampled<T> d = detail::sample_with_cost(op, L, fc, rng);
      const BasicVar<T> x0 = detail::filled(op.head, L, L.rows(), L.cols(), T(1) / T(L.cols()));
      const BasicVar<T> at = fc(detail::taylor_point(x0, d.x, d.log_prob, T(1)));
      detail::check_same_cost(op, at, d.costs);
      BasicVar<T> s = sum(d.cost) + sum(at);
      if (detach_cost_parameters) s = s - sum(fc(x0));
      return Estimate<T>{s, d.cost};
    });
  }
};

/// MuProp (Gu, Levine, Sutskever & Mnih 2016): the score function with the first-order Taylor
/// expansion of f around the mean-field point mu = softmax(logits) (sigmoid for bits) as its
/// control variate, and that expansion's exact gradient added back:
/// g = [f(x) - f(mu) - f'(mu) . (x - mu)] d log p(x) + f'(mu) d mu. Unbiased; two evaluations of
/// f (the sample, and mu with f's gradient), plus one detached one while
/// `detach_cost_parameters` keeps f's parameters out of it.
struct MuProp {
  bool detach_cost_parameters = true;
  static constexpr bool unbiased = true;
  std::string name() const { return "MuProp"; }

  template <class T, class F, class G>
  Estimate<T> operator()(Family family, const BasicVar<T>& logits, F&& f, G& rng) const {
    const detail::OpName op{"MuProp"};
    return detail::on_family(op, family, logits, f, [&](const BasicVar<T>& L, auto& fc) {
      const detail::Sampled<T> d = detail::sample_with_cost(op, L, fc, rng);
      const BasicVar<T> mu = softmax(L);
      const BasicVar<T> at = fc(detail::taylor_point(mu, d.x, d.log_prob, T(-1)));  // value f(mu)
      detail::check_same_cost(op, at, d.costs);
      Operation<T> weight("MuProp", {d.cost, at});
      const BasicVar<T> w = weight.record_constant(d.costs, 1, [&](detail::MMap<T> out) { out = d.cost.value() - at.value(); });
      BasicVar<T> s = sum(d.cost) + score_function(d.log_prob, w) + sum(at);
      if (detach_cost_parameters) s = s - sum(fc(stop_gradient(mu)));
      return Estimate<T>{s, d.cost};
    });
  }
};

/// REBAR with fixed eta and temperature (see `rebar`) behind the common interface; for bits,
/// REBAR of Tucker et al.'s binary form (the pairs' relaxation is theirs). Unbiased; three
/// evaluations of f (the sample and two relaxations, with their gradients), plus two detached
/// ones while `detach_cost_parameters` keeps f's parameters out of the relaxed terms.
struct Rebar {
  double eta = 1.0;
  double temperature = 0.5;
  bool detach_cost_parameters = true;
  static constexpr bool unbiased = true;
  std::string name() const { return "REBAR (eta=" + detail::scalar_str(eta) + ", tau=" + detail::scalar_str(temperature) + ")"; }

  template <class T, class F, class G>
  Estimate<T> operator()(Family family, const BasicVar<T>& logits, F&& f, G& rng) const {
    const detail::OpName op{"Rebar"};
    return detail::on_family(op, family, logits, f, [&](const BasicVar<T>& L, auto& fc) {
      auto fill = [&](detail::MMap<T> out) { detail::fill_uniform(rng, out.data(), static_cast<std::size_t>(out.size())); };
      const detail::RebarTerms<T> r = detail::rebar_from(op, L, fc, T(eta), T(temperature), fill, fill);
      BasicVar<T> s = r.surrogate + sum(r.cost);
      if (detach_cost_parameters)
        s = s - T(eta) * (sum(fc(stop_gradient(r.relaxed))) - sum(fc(stop_gradient(r.conditional))));
      return Estimate<T>{s, r.cost};
    });
  }
};

/// Gumbel-Rao (see `gumbel_rao`) behind the common interface: f at the one-hot sample, the
/// gradient of the average of `samples` conditional relaxations at temperature tau. Biased as
/// straight-through Gumbel-softmax, with less variance; one evaluation of f, `samples`
/// conditional draws and softmaxes per row.
struct GumbelRao {
  double temperature = 0.5;
  Index samples = 10;
  static constexpr bool unbiased = false;
  std::string name() const { return "Gumbel-Rao (S=" + std::to_string(samples) + ", tau=" + detail::scalar_str(temperature) + ")"; }

  template <class T, class F, class G>
  Estimate<T> operator()(Family family, const BasicVar<T>& logits, F&& f, G& rng) const {
    const detail::OpName op{"GumbelRao"};
    return detail::on_family(op, family, logits, f, [&](const BasicVar<T>& L, auto& fc) {
      const BasicVar<T> x = detail::one_hot_sample(op.head, L, rng);
      const BasicVar<T> cost = fc(gumbel_rao(L, x.value(), T(temperature), samples, rng));
      detail::cost_rows(op, cost, L.rows());
      return Estimate<T>{sum(cost), cost};
    });
  }
};

}  // namespace reparam
