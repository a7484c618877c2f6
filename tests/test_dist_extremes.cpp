// Extreme but valid input stays finite (logits +-1e4, temperature 0.01, scales 1e-30 and 1e30,
// uniforms exactly 0 and 1), and finite-difference gradient checks of the sampling operations.
#include <cmath>
#include <limits>

#include "support.hpp"

using namespace reparam;
using test::Mat;

namespace {
bool finite(const Mat& m) { return m.allFinite(); }
}  // namespace

TEST_CASE("logits of +-1e4 and temperature 0.01: finite samples, densities and gradients", "[dist][extremes]") {
  const Mat logits{{1e4, -1e4, 0.0, 5.0}, {-1e4, -1e4, -1e4, 1e4}};
  for (double tau : {0.01, 0.05, 1.0}) {
    INFO("temperature " << tau);
    Tape t;
    const Var l = t.variable(logits);
    const Var tv = t.variable(Mat::Constant(1, 1, tau));
    Rng rng(1);
    Concrete q(l, tv);
    const Var x = q.rsample(rng);
    REQUIRE(finite(x.value()));
    const Var h = q.rsample_hard(rng);
    ExpConcrete e(l, tv);
    const Var y = e.rsample(rng);
    const Var lp = e.log_prob(y);
    REQUIRE(finite(y.value()));
    REQUIRE(finite(lp.value()));
    t.backward(sum(x * Mat::Ones(2, 4)) + sum(h * Mat::Constant(2, 4, 0.5)) + sum(lp));
    REQUIRE(finite(l.grad()));
    REQUIRE(finite(tv.grad()));

    RelaxedBernoulli rb(l, tv);
    const Var b = rb.rsample(rng);
    REQUIRE(finite(b.value()));
    const Var blp = rb.log_prob(Mat::Constant(2, 4, 0.3));
    REQUIRE(finite(blp.value()));
    t.zero_grad();
    t.backward(sum(b) + sum(blp) + sum(rb.rsample_hard(rng)));
    REQUIRE(finite(l.grad()));
    REQUIRE(finite(tv.grad()));
  }
  Tape t;
  const Var l = t.variable(logits), l2 = t.variable(Mat(-logits));
  const Var k = kl_divergence(Categorical(l), Categorical(l2)) ;
  const Var kb = kl_divergence(Bernoulli(l), Bernoulli(l2));
  const Var hb = Bernoulli(l).entropy(), hc = Categorical(l).entropy();
  const Var lpb = Bernoulli(l).log_prob(Mat{{0, 1, 0, 1}, {1, 0, 1, 0}});
  for (const Var& v : {k, kb, hb, hc, lpb}) REQUIRE(finite(v.value()));
  t.backward(sum(k) + sum(kb) + sum(hb) + sum(hc) + sum(lpb));
  REQUIRE(finite(l.grad()));
  REQUIRE(finite(l2.grad()));
  // Closed form: log p(1) = -softplus(-l), log p(0) = -softplus(l); softplus(1e4) = 1e4 exactly in
  // double, softplus(-1e4) = exp(-1e4) underflows to 0, softplus(0) = log 2, softplus(5) = 5 + log1p(e^-5).
  const Mat x01{{1, 0, 0, 1}, {0, 0, 0, 1}};
  const Mat got = Bernoulli(l).log_prob(x01).value();
  const auto softplus = [](double v) { return v > 0 ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v)); };
  for (Index i = 0; i < 2; ++i) {
    for (Index j = 0; j < 4; ++j) {
      const double v = logits(i, j);
      const double want = x01(i, j) == 1.0 ? -softplus(-v) : -softplus(v);
      INFO("logit " << v << " x " << x01(i, j));
      CHECK(got(i, j) == Approx(want).epsilon(1e-15).margin(1e-300));
    }
  }
}

TEST_CASE("ExpConcrete at temperature 0.05 over 1000 categories has a finite density", "[dist][extremes]") {
  Tape t;
  Rng rng(3);
  const Var l = t.variable(Mat(normal_matrix(rng, 4, 1000) * 3.0));
  ExpConcrete e(l, 0.05);
  const Var y = e.rsample(rng);
  const Var lp = e.log_prob(y);
  REQUIRE(finite(lp.value()));
  t.backward(sum(lp));
  REQUIRE(finite(l.grad()));
  // With logits spread ten times wider, the log-values of a sample fall below log(5e-324) = -744.4
  // and the simplex form of the same sample holds exact zeros: Concrete::log_prob says so.
  const Var wide = t.variable(Mat(l.value() * 10.0));
  const Var y2 = ExpConcrete(wide, 0.05).rsample(rng);
  REQUIRE(finite(y2.value()));
  REQUIRE((y2.value().array() < -745.2).any());
  const Mat x = y2.value().unaryExpr([](double v) { return std::exp(v); });
  REQUIRE((x.array() == 0.0).any());
  Concrete c(wide, 0.05);
  REQUIRE_THROWS_AS(c.log_prob(x), DomainError);
}

TEST_CASE("scales 1e-30 and 1e30 stay finite", "[dist][extremes]") {
  for (double s : {1e-30, 1e30}) {
    INFO("scale " << s);
    Tape t;
    const Var loc = t.variable(Mat{{0.5, -2.0}});
    const Var scale = t.variable(Mat::Constant(1, 2, s));
    Rng rng(2);
    auto check = [&](const auto& d) {
      const Var z = d.rsample(rng);
      const Var lp = d.log_prob(z);
      const Var h = d.entropy();
      REQUIRE(finite(z.value()));
      REQUIRE(finite(lp.value()));
      REQUIRE(finite(h.value()));
      t.zero_grad();
      t.backward(sum(lp) + sum(h) + sum(z) * (1 / s));
      REQUIRE(finite(loc.grad()));
      REQUIRE(finite(scale.grad()));
    };
    check(Normal(loc, scale));
    check(Gumbel(loc, scale));
    check(Logistic(loc, scale));
  }
}

TEST_CASE("uniforms of exactly 0 and 1 are moved inside (0, 1) by reparameterize", "[dist][extremes]") {
  Tape t;
  const Var loc = t.variable(Mat::Zero(1, 2)), scale = t.variable(Mat::Ones(1, 2));
  const Mat u{{0.0, 1.0}};
  for (const Var& v : {Gumbel(loc, scale).reparameterize(u), Logistic(loc, scale).reparameterize(u),
                       Gumbel(loc, scale).reparameterize(t.variable(u)), Logistic(loc, scale).reparameterize(t.variable(u))})
    REQUIRE(finite(v.value()));
  CHECK(Gumbel(loc, scale).reparameterize(u).value()(0, 0) < -3.5);  // -log(-log 2^-53) = -3.6
  CHECK(Gumbel(loc, scale).reparameterize(u).value()(0, 1) > 36.0);  // -log(2^-53) = 36.7
  const Var l = t.variable(Mat{{0.3, -0.2}});
  Concrete c(l, 0.5);
  RelaxedBernoulli rb(l, 0.5);
  for (const Var& v : {c.reparameterize(u), c.reparameterize_hard(u), rb.reparameterize(u), rb.reparameterize_hard(u)})
    REQUIRE(finite(v.value()));
  t.backward(sum(c.reparameterize(u)) + sum(rb.reparameterize(u)));
  REQUIRE(finite(l.grad()));
  // float too
  TapeF tf;
  const VarF lf = tf.variable(Matrix<float>{{0.3f, -0.2f}});
  const Matrix<float> uf{{0.0f, 1.0f}};
  REQUIRE(Concrete(lf, 0.01f).reparameterize(uf).value().allFinite());
  REQUIRE(RelaxedBernoulli(lf, 0.01f).reparameterize(uf).value().allFinite());
  REQUIRE(Gumbel(lf, 1.0f).reparameterize(uf).value().allFinite());
}

namespace {
// Gumbel, Logistic and Laplace reparameterized from given uniforms, with validation on and off.
template <class T>
void check_nan_uniforms_with_validation_off() {
  using M = Matrix<T>;
  BasicTape<T> t;
  const BasicVar<T> loc = t.variable(M::Zero(1, 5));
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const M finite_u{{T(0.3), T(0.5), T(0), T(1), T(0.9)}};
  M bad = finite_u;
  bad(0, 2) = nan;
  auto each = [&](auto&& f) {
    f(Gumbel<T>(loc, T(1)));
    f(Logistic<T>(loc, T(1)));
    f(Laplace<T>(loc, T(1)));
  };
  each([&](const auto& d) {
    INFO(d.name);
    const M on = d.reparameterize(finite_u).value();
    REQUIRE_THROWS_AS(d.reparameterize(bad), DomainError);
    ValidationScope off(false);
    // finite uniforms: the same bits as with validation on (-0 included)
    const M same = d.reparameterize(finite_u).value();
    for (Index j = 0; j < 5; ++j) {
      CHECK(same(0, j) == on(0, j));
      CHECK(std::signbit(same(0, j)) == std::signbit(on(0, j)));
    }
    // a NaN uniform gives a NaN sample there (not a finite wrong number), the others unchanged
    const M got = d.reparameterize(bad).value();
    CHECK(std::isnan(got(0, 2)));
    for (Index j : {0, 1, 3, 4}) CHECK(got(0, j) == on(0, j));
    // -inf and +inf are moved inside as 0 and 1 are: the same samples, not NaN
    M infs = finite_u;
    infs(0, 2) = -std::numeric_limits<T>::infinity();
    infs(0, 3) = std::numeric_limits<T>::infinity();
    const M clamped = d.reparameterize(infs).value();
    for (Index j = 0; j < 5; ++j) CHECK(clamped(0, j) == on(0, j));
  });
}
}  // namespace

TEST_CASE("with validation off, a NaN uniform gives a NaN sample, not a finite wrong one", "[dist][extremes]") {
  check_nan_uniforms_with_validation_off<float>();
  check_nan_uniforms_with_validation_off<double>();
}

TEST_CASE("Gumbel log_prob is finite far in the left tail", "[dist][extremes]") {
  Tape t;
  Gumbel g(t.variable(Mat::Zero(1, 1)), 1.0);
  // z = -50: log p = -(z + e^-z) = 50 - e^50 (PyTorch's transformed form gives -inf below z ~ -6.6)
  const Var lp = g.log_prob(Mat::Constant(1, 1, -50.0));
  REQUIRE(std::isfinite(lp.item()));
  CHECK(test::close(lp.item(), 50.0 - std::exp(50.0), 1e-14));
  TapeF tf;
  Gumbel gf(tf.variable(Matrix<float>::Zero(1, 1)), 1.0f);
  REQUIRE(std::isfinite(gf.log_prob(Matrix<float>::Constant(1, 1, -80.0f)).item()));
}

TEST_CASE("gradient checks of the sampling operations (central differences)", "[dist][gradcheck]") {
  test::Gen g(5);
  const Mat eps = g.matrix(3, 4), u = g.matrix(3, 4, 0.05, 0.95);
  // Fused location-scale samples, with a row loc and a column scale broadcasting.
  test::check_gradients([&](Tape& t, const std::vector<Var>& v) {
    return test::weighted_sum(t, Normal(v[0], v[1]).reparameterize(eps));
  }, {g.matrix(1, 4), g.matrix(3, 1, 0.5, 2.0)});
  test::check_gradients([&](Tape& t, const std::vector<Var>& v) {
    return test::weighted_sum(t, Gumbel(v[0], v[1]).reparameterize(u));
  }, {g.matrix(3, 4), g.matrix(1, 1, 0.5, 2.0)});
  test::check_gradients([&](Tape& t, const std::vector<Var>& v) {
    return test::weighted_sum(t, Logistic(v[0], v[1]).reparameterize(v[2]));
  }, {g.matrix(3, 1), g.matrix(1, 4, 0.5, 2.0), u});
  // The fused Concrete node in logits (full and shared row) and temperature (1x1 and per row).
  test::check_gradients([&](Tape& t, const std::vector<Var>& v) {
    return test::weighted_sum(t, Concrete(v[0], v[1]).reparameterize(u));
  }, {g.matrix(3, 4, -2, 2), g.matrix(1, 1, 0.3, 2.0)});
  test::check_gradients([&](Tape& t, const std::vector<Var>& v) {
    return test::weighted_sum(t, Concrete(v[0], v[1]).reparameterize(u));
  }, {g.matrix(1, 4, -2, 2), g.matrix(3, 1, 0.3, 2.0)});
  test::check_gradients([&](Tape& t, const std::vector<Var>& v) {
    return test::weighted_sum(t, RelaxedBernoulli(v[0], v[1]).reparameterize(u));
  }, {g.matrix(3, 4, -2, 2), g.matrix(1, 1, 0.3, 2.0)});
  // log densities in parameters and value
  test::check_gradients([&](Tape& t, const std::vector<Var>& v) {
    return test::weighted_sum(t, ExpConcrete(v[0], v[1]).log_prob(log_softmax(v[2])));
  }, {g.matrix(3, 4, -2, 2), g.matrix(1, 1, 0.3, 2.0), g.matrix(3, 4, -3, 3)});
  test::check_gradients([&](Tape& t, const std::vector<Var>& v) {
    return test::weighted_sum(t, Concrete(v[0], v[1]).log_prob(softmax(v[2])));
  }, {g.matrix(3, 4, -2, 2), g.matrix(1, 1, 0.3, 2.0), g.matrix(3, 4, -1, 1)});
  // cdf / icdf through ndtr and ndtri
  test::check_gradients([&](Tape& t, const std::vector<Var>& v) {
    return test::weighted_sum(t, Normal(v[0], v[1]).cdf(v[2]) + Normal(v[0], v[1]).icdf(v[3]));
  }, {g.matrix(3, 4), g.matrix(1, 4, 0.5, 2.0), g.matrix(3, 4, -3, 3), u});
  // broadcast_to, straight_through, soft_argmax
  test::check_gradients([&](Tape& t, const std::vector<Var>& v) {
    return test::weighted_sum(t, broadcast_to(v[0], 3, 4) * broadcast_to(v[1], 3, 4) + broadcast_to(v[2], 3, 4));
  }, {g.matrix(1, 4), g.matrix(3, 1), g.matrix(1, 1)});
  {  // straight-through: the tape gradient is the central difference of the soft path
    const Mat x = g.matrix(3, 4);
    const auto st = test::tape_grads([&](Tape& t, const std::vector<Var>& v) {
      return test::weighted_sum(t, straight_through(square(v[0]), t.constant(Mat::Ones(3, 4))));
    }, {x});
    const auto fd = test::numeric_grads([&](Tape& t, const std::vector<Var>& v) {
      return test::weighted_sum(t, square(v[0]));
    }, {x});
    REQUIRE(st[0].isApprox(fd[0], 1e-7));
  }
  test::check_gradients([&](Tape& t, const std::vector<Var>& v) {
    return test::weighted_sum(t, soft_argmax(v[0]) + soft_argmax(v[0], 0.5));
  }, {g.matrix(3, 5, -2, 2)});
}

TEST_CASE("hard samples: one-hot forward, the soft sample's gradient backward", "[dist]") {
  test::Gen g(9);
  const Mat u = g.matrix(3, 4, 0.05, 0.95);
  Tape t;
  const Var l = t.variable(g.matrix(3, 4, -2, 2));
  Concrete q(l, 0.7);
  const Var soft = q.reparameterize(u), hard = q.reparameterize_hard(u);
  for (Index i = 0; i < 3; ++i) {
    Index k;
    soft.value().row(i).maxCoeff(&k);
    REQUIRE(hard.value()(i, k) == 1.0);
    REQUIRE(hard.value().row(i).sum() == 1.0);
  }
  const Mat w = g.matrix(3, 4);
  t.backward(sum(hard * w));
  const Mat gh = l.grad();
  t.zero_grad();
  t.backward(sum(soft * w));
  REQUIRE(Mat(l.grad()).isApprox(gh, 1e-15));
  RelaxedBernoulli rb(l, 0.7);
  const Var hb = rb.reparameterize_hard(u);
  REQUIRE((hb.value().array() == (rb.reparameterize(u).value().array() > 0.5).cast<double>()).all());
}

TEST_CASE("temperature schedule: tau = max(tau_min, tau0 exp(-rate step))", "[dist]") {
  TemperatureSchedule<double> s{1.0, 1e-3, 0.5};
  CHECK(s(0) == 1.0);
  CHECK(test::close(s(100), std::exp(-0.1)));
  CHECK(s(100000) == 0.5);
  TemperatureSchedule<double> every{2.0, 1e-3, 0.1, 1000};
  CHECK(every(999) == 2.0);
  CHECK(test::close(every(1500), 2.0 * std::exp(-1.0)));
  CHECK(anneal_temperature(1.0, 1e-3, 100, 0.5) == s(100));
}
