// Everything on the dual scalar: every distribution member, every KL, pathwise samples with given
// noise and from a generator, samples without gradient, and every estimator, run on a tape of
// reparam::Dual<double>. For each, the value and the gradient (the v-parts) must equal the double
// tape's, and the Hessian-vector product (the d-parts) must equal central differences of the
// double tape's gradient along the direction. Samples drawn from a seeded generator on the dual
// tape must be the double tape's samples.
#include <cmath>
#include <vector>

#include <reparam/second_order.hpp>

#include "support.hpp"

using namespace reparam;
using test::Gen;
using test::Mat;

namespace {

template <class Tp>
using ScalarOf = typename std::decay_t<Tp>::Scalar;

template <class T>
Matrix<T> as(const Mat& m) {
  return m.template cast<T>();
}

/// The sweep's check: value, gradient and H v of build at x (direction from a seeded generator).
/// `fixed` leaves get a zero direction and their rows of H v are not compared (see the estimators).
template <class Build>
void check_on_duals(Build build, const std::vector<Mat>& x, std::uint64_t seed, std::vector<bool> fixed = {}) {
  const double fd_tol = 2e-6;
  fixed.resize(x.size(), false);
  Gen gen(seed);
  std::vector<Mat> v;
  for (std::size_t i = 0; i < x.size(); ++i) {
    v.push_back(gen.matrix(x[i].rows(), x[i].cols()));
    if (fixed[i]) v.back().setZero();
  }
  std::vector<Mat> g;
  double value = 0;
  const std::vector<Mat> hv = hessian_vector_product(build, x, v, &g, &value);
  const test::Fn fn = [&](Tape& t, const std::vector<Var>& xs) { return build(t, xs); };
  double value0 = 0;
  const std::vector<Mat> g0 = test::tape_grads(fn, x, &value0);
  CHECK(test::close(value, value0, 1e-13, 1e-13));
  const double h = 1e-5;
  std::vector<Mat> xp = x, xm = x;
  for (std::size_t i = 0; i < x.size(); ++i) {
    xp[i] += h * v[i];
    xm[i] -= h * v[i];
  }
  const std::vector<Mat> gp = test::tape_grads(fn, xp), gm = test::tape_grads(fn, xm);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const Mat fd = (gp[i] - gm[i]) / (2 * h);
    INFO("leaf " << i << "\ngradient\n" << g[i] << "\ndouble tape\n" << g0[i] << "\nH v\n" << hv[i] << "\ncentral difference\n" << fd);
    CHECK((g[i] - g0[i]).cwiseAbs().maxCoeff() <= 1e-12 * (1 + g0[i].cwiseAbs().maxCoeff()));
    if (!fixed[i]) CHECK((hv[i] - fd).cwiseAbs().maxCoeff() <= fd_tol * (1 + fd.cwiseAbs().maxCoeff()));
  }
}

// Every member of a location-scale family D<T> (Normal, Gumbel, Logistic, Laplace): leaves loc
// (1x3), log scale (1x3) and a value x (2x3); the noise is given (eps for Normal, uniforms for the
// others), as a matrix and as a Var, and drawn from a seeded generator.
template <template <class> class D>
struct LocationScaleAll {
  Mat noise, w;
  bool normal_noise;
  template <class Tape, class Leaves>
  auto operator()(Tape& t, const Leaves& xs) const {
    using T = ScalarOf<Tape>;
    const auto scale = exp(xs[1]);
    const D<T> d(xs[0], scale);
    const D<T> q(xs[2], scale * T(1.3) + T(0.1));
    const auto wv = t.constant(as<T>(w));
    const auto u = sigmoid(xs[2]);
    Rng rng(11);
    auto out = sum(wv * d.log_prob(xs[2])) + sum(d.cdf(xs[2]) * wv) + sum(d.icdf(u * T(0.9) + T(0.05)) * wv) +
               sum(d.entropy() * wv) + sum(d.mean() * d.stddev()) + sum(d.variance()) * T(0.3) +
               sum(square(d.reparameterize(as<T>(noise)))) * T(0.2) + sum(square(d.rsample(rng))) * T(0.1) +
               sum(square(d.rsample(rng, 4, 3))) * T(0.05) + sum(square(d.reparameterize(normal_noise ? xs[2] : u))) * T(0.1);
    if constexpr (std::is_same<D<T>, Normal<T>>::value || std::is_same<D<T>, Laplace<T>>::value)
      out = out + sum(kl_divergence(d, q)) + sum(kl_divergence(q, d) * wv);
    return out;
  }
};

template <template <class> class D>
void sweep_location_scale(bool normal_noise, std::uint64_t seed) {
  Gen gen(seed);
  LocationScaleAll<D> b{normal_noise ? gen.matrix(2, 3, -2, 2) : gen.matrix(2, 3, 0.02, 0.98), gen.matrix(2, 3), normal_noise};
  check_on_duals(b, {gen.matrix(1, 3), gen.matrix(1, 3, -0.5, 0.5), gen.matrix(2, 3, -1.5, 1.5)}, seed + 1);
}

// Categorical (3x4 logits) and Bernoulli (2x3 logits): every member and KL. Leaves: logits, the
// other distribution's logits.
struct DiscreteAll {
  Mat onehot, bits, w3, w2;
  template <class Tape, class Leaves>
  auto operator()(Tape& t, const Leaves& xs) const {
    using T = ScalarOf<Tape>;
    const Categorical<T> c(xs[0]), c2(xs[1]);
    const Bernoulli<T> b(xs[2]), b2(xs[3]);
    const auto w = t.constant(as<T>(w3)), wb = t.constant(as<T>(w2));
    return sum(c.log_prob(as<T>(onehot))) + sum(c.entropy()) * T(0.7) + sum(c.mean() * w) + sum(c.variance() * w) +
           sum(c.stddev()) * T(0.3) + sum(c.probs() * c.log_probs() * w) + sum(kl_divergence(c, c2)) +
           sum(kl_divergence(c2, c)) * T(0.4) + sum(b.log_prob(as<T>(bits)) * wb) + sum(b.entropy()) +
           sum(b.mean() * wb) + sum(b.variance()) + sum(b.stddev() * wb) + sum(b.probs() * b.probs()) +
           sum(kl_divergence(b, b2)) + sum(kl_divergence(b2, b) * wb);
  }
};

// The relaxations: Concrete, ExpConcrete (3x4 logits), RelaxedBernoulli, LogitRelaxedBernoulli
// (2x3 logits); a temperature leaf (log tau, 1x1); values from leaves through softmax or sigmoid;
// uniforms given, and drawn from a seeded generator; the hard (straight-through) forms.
struct RelaxedAll {
  Mat u3, u2, w3, w2;
  template <class Tape, class Leaves>
  auto operator()(Tape& t, const Leaves& xs) const {
    using T = ScalarOf<Tape>;
    const auto tau = exp(xs[1]);
    const Concrete<T> c(xs[0], tau);
    const ExpConcrete<T> e(xs[0], tau * T(1.5));
    const RelaxedBernoulli<T> r(xs[2], tau);
    const LogitRelaxedBernoulli<T> l(xs[2], tau * T(0.8));
    const auto w = t.constant(as<T>(w3)), wb = t.constant(as<T>(w2));
    Rng rng(13);
    auto out = sum(c.log_prob(softmax(xs[3]))) + sum(square(c.reparameterize(as<T>(u3))) * w) +
               sum(c.reparameterize_hard(as<T>(u3)) * w) + sum(square(c.rsample(rng))) + sum(c.rsample_hard(rng) * w) +
               sum(square(Concrete<T>(slice_rows(xs[0], 0, 1), tau).rsample(rng, 6))) * T(0.1) + sum(c.probs() * w) + sum(e.log_prob(log_softmax(xs[3]))) +
               sum(square(e.reparameterize(as<T>(u3)))) * T(0.1) + sum(square(e.rsample(rng))) * T(0.1);
    out = out + sum(r.log_prob(sigmoid(xs[4])) * wb) + sum(r.cdf(sigmoid(xs[4]))) + sum(r.icdf(sigmoid(xs[4] * wb))) +
          sum(square(r.reparameterize(as<T>(u2)))) + sum(r.reparameterize_hard(as<T>(u2)) * wb) +
          sum(square(r.rsample(rng))) + sum(r.rsample_hard(rng) * wb) + sum(square(r.rsample(rng, 2, 3))) * T(0.1) + sum(square(RelaxedBernoulli<T>(slice_rows(xs[2], 0, 1), tau).rsample(rng, 4, 3))) * T(0.1) +
          sum(r.probs() * wb) + sum(l.log_prob(xs[4] * T(2)) * wb) + sum(square(l.reparameterize(as<T>(u2)))) +
          sum(square(l.rsample(rng))) * T(0.2) + sum(gumbel_softmax(xs[0], tau, rng) * w) +
          sum(gumbel_softmax(xs[0], T(0.7), rng, true) * w);
    return out;
  }
};

// Every estimator on both families, on one seeded generator: leaves categorical logits (2x3),
// Bernoulli logits (2x3) and the cost's parameter theta (1x3), which f reads, so that the Hessian
// couples the logits and theta. What is held fixed (stop_gradient) is a constant in forward mode
// too, as detach is in PyTorch: the score function's weight stop(cost - baseline), DARN's and
// MuProp's expansion points, Gumbel-Rao's conditional noise. A central difference of the gradient
// moves them, so each block of H v is compared where they do not move: the logits' block with
// theta constant, for the estimators whose held parts do not depend on the logits (all but DARN,
// MuProp, Gumbel-Rao, whose values and gradients alone are compared there); theta's block along
// theta for all.
struct EstimatorsAll {
  bool all;  // DARN, MuProp and Gumbel-Rao too
  template <class Tape, class Leaves>
  auto operator()(Tape& t, const Leaves& xs) const {
    using T = ScalarOf<Tape>;
    using V = BasicVar<T>;
    const V theta = xs[2];
    auto f = [&](const V& z) { return sum_rows(square(z * theta - T(0.3))) + sum_rows(z) * T(0.1); };
    Rng rng(17);
    V total = t.constant(T(0));
    for (Family family : {Family::categorical, Family::bernoulli}) {
      const V& logits = family == Family::categorical ? xs[0] : xs[1];
      using SF = ScoreFunctionEstimator;
      SF ema(SF::Baseline::moving_average);
      ema(family, logits, f, rng);  // gives the moving average a value
      total = total + SF()(family, logits, f, rng).surrogate + ema(family, logits, f, rng).surrogate +
              SF(SF::Baseline::leave_one_out, 4)(family, logits, f, rng).surrogate +
              GumbelSoftmax{0.5}(family, logits, f, rng).surrogate + GumbelSoftmax{0.5, true}(family, logits, f, rng).surrogate +
              StraightThrough{}(family, logits, f, rng).surrogate +
              SlopeAnnealedStraightThrough{2.0}(family, logits, f, rng).surrogate + Rebar{1.0, 0.5}(family, logits, f, rng).surrogate;
      if (all)
        total = total + Darn{}(family, logits, f, rng).surrogate + MuProp{}(family, logits, f, rng).surrogate +
                GumbelRao{0.5, 4}(family, logits, f, rng).surrogate;
    }
    const Categorical<T> c(xs[0]);
    const Matrix<T> x = c.sample(rng);
    return total + score_function(c.log_prob(x), f(t.constant(x)), T(0.2));
  }
};

}  // namespace

TEST_CASE("dual sweep: every estimator on both families", "[dual][second_order]") {
  Gen gen(130);
  const std::vector<Mat> x = {gen.matrix(2, 3, -1, 1), gen.matrix(2, 3, -1, 1), gen.matrix(1, 3)};
  SECTION("the logits' block, theta constant") { check_on_duals(EstimatorsAll{false}, x, 131, {false, false, true}); }
  SECTION("values and gradients of all") { check_on_duals(EstimatorsAll{true}, x, 132, {true, true, true}); }
  SECTION("theta's block along theta") { check_on_duals(EstimatorsAll{true}, x, 133, {true, true, false}); }
}

TEST_CASE("dual sweep: every member and KL of Categorical and Bernoulli", "[dual][second_order]") {
  Gen gen(110);
  Mat onehot = Mat::Zero(3, 4), bits(2, 3);
  onehot(0, 1) = onehot(1, 3) = onehot(2, 0) = 1;
  bits << 1, 0, 1, 0, 0, 1;
  const DiscreteAll b{onehot, bits, gen.matrix(3, 4), gen.matrix(2, 3)};
  check_on_duals(b, {gen.matrix(3, 4, -2, 2), gen.matrix(3, 4, -2, 2), gen.matrix(2, 3, -2, 2), gen.matrix(2, 3, -2, 2)}, 111);
}

TEST_CASE("dual sweep: the relaxations, given uniforms and a generator, soft and hard", "[dual][second_order]") {
  Gen gen(120);
  const RelaxedAll b{gen.matrix(3, 4, 0.02, 0.98), gen.matrix(2, 3, 0.02, 0.98), gen.matrix(3, 4), gen.matrix(2, 3)};
  check_on_duals(b, {gen.matrix(3, 4, -2, 2), Mat::Constant(1, 1, std::log(0.8)), gen.matrix(2, 3, -2, 2), gen.matrix(3, 4), gen.matrix(2, 3)}, 121);
}

TEST_CASE("dual sweep: every member and KL of the location-scale families", "[dual][second_order]") {
  SECTION("Normal") { sweep_location_scale<Normal>(true, 101); }
  SECTION("Gumbel") { sweep_location_scale<Gumbel>(false, 102); }
  SECTION("Logistic") { sweep_location_scale<Logistic>(false, 103); }
  SECTION("Laplace") { sweep_location_scale<Laplace>(false, 104); }
}

TEST_CASE("dual tapes draw the double tape's samples, and check values as it does", "[dual][second_order]") {
  using D = Dual<double>;
  Gen gen(140);
  const Mat loc = gen.matrix(3, 5), logits = gen.matrix(3, 5, -2, 2);
  // every sampler, on a tape of T, from Rng(seed): the values as doubles
  auto draws = [&](auto scalar) {
    using T = decltype(scalar);
    BasicTape<T> t;
    const BasicVar<T> l = t.variable(as<T>(loc)), g = t.variable(as<T>(logits));
    Rng rng(21);
    std::vector<Matrix<T>> out = {Normal<T>(l, T(1.5)).rsample(rng).value(),   Gumbel<T>(l, T(0.5)).rsample(rng).value(),
                                  Logistic<T>(l, T(2)).rsample(rng).value(),   Laplace<T>(l, T(1)).rsample(rng).value(),
                                  Concrete<T>(g, T(0.3)).rsample(rng).value(), ExpConcrete<T>(g, T(0.3)).rsample(rng).value(),
                                  RelaxedBernoulli<T>(g, T(0.3)).rsample_hard(rng).value(),
                                  LogitRelaxedBernoulli<T>(g, T(0.3)).rsample(rng).value(),
                                  Normal<T>(l, T(1)).sample(rng),
                                  Categorical<T>(g).sample(rng),
                                  Bernoulli<T>(g).sample(rng),
                                  Normal<T>(slice_rows(l, 0, 1), T(1)).rsample(rng, 700, 5).value()};  // > 2 blocks
    std::vector<Mat> v;
    for (const Matrix<T>& m : out) {
      Mat r(m.rows(), m.cols());
      for (Index k = 0; k < m.size(); ++k) r.data()[k] = detail::real_part(m.data()[k]);
      v.push_back(r);
    }
    return v;
  };
  const std::vector<Mat> a = draws(0.0), b = draws(D(0));
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO("sampler " << i);
    // the same noise; the maps after it (softmax, sigmoid) run on scalar std functions for duals and
    // on Eigen's vectorized ones for doubles, which may differ in the last bits
    CHECK((a[i] - b[i]).cwiseAbs().maxCoeff() <= 1e-14 * (1 + a[i].cwiseAbs().maxCoeff()));
  }
  // value checks run on the value part, with the double tape's messages
  BasicTape<D> t;
  const BasicVar<D> l = t.variable(as<D>(loc));
  using Catch::Matchers::Message;
  REQUIRE_THROWS_MATCHES(Normal<D>(l, D(-1)), DomainError, Message("reparam: Normal: scale must be > 0 and finite (got -1 at row 0, col 0)"));
  REQUIRE_THROWS_MATCHES(Concrete<D>(l, D(0)), DomainError,
                         Message("reparam: Concrete: temperature must be >= 1.4916681462400413e-154 and finite (got 0 at row 0, col 0)"));
  REQUIRE_THROWS_MATCHES(log(t.constant(D(-0.5))), DomainError, Message("reparam: log: argument must be >= 0 (got -0.5 at row 0, col 0)"));
  REQUIRE_THROWS_MATCHES(Normal<D>(l, D(1)).icdf(t.constant(D(2))), DomainError,
                         Message("reparam: Normal.icdf: probability must lie in [0, 1] (got 2 at row 0, col 0)"));
  REQUIRE_THROWS_MATCHES(pow(t.constant(D(-0.25)), D(0.5)), DomainError,
                         Message("reparam: pow: base must be >= 0 for a non-integer exponent (got -0.25 at row 0, col 0)"));
}
