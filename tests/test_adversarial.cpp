// Input an adversary would try, from an audit of the public API under ASan, UBSan and TSan: sizes
// that overflow or are negative, empty shapes, empty Vars, cleared tapes, NaN sources, two threads.
// Every case must end in a clear exception or a finite answer, never a crash or NaN.
#include <cmath>
#include <thread>

#include "support.hpp"

using namespace reparam;
using test::Gen;
using test::Mat;

namespace {
bool finite(const Mat& m) { return m.allFinite(); }
}  // namespace

TEST_CASE("sizes that overflow or are negative throw ShapeError", "[adversarial]") {
  Tape t;
  Rng rng(1);
  const Var x0 = t.variable(Mat(0, 0));
  const Var x1 = t.variable(Mat::Ones(1, 1));
  const Index big = Index(1) << 32;
  REQUIRE_THROWS_MATCHES(reshape(x0, big, big), ShapeError,
                         Catch::Matchers::Message("reparam: reshape: cannot reshape 0x0 into 4294967296x4294967296 (0 elements)"));
  REQUIRE_THROWS_AS(reshape(x1, 7, Index(0x6DB6DB6DB6DB6DB7)), ShapeError);
  REQUIRE_THROWS_MATCHES(Normal(x1, 1.0).rsample(rng, big, big), ShapeError,
                         Catch::Matchers::Message("reparam: Normal.rsample: size overflows (4294967296x4294967296)"));
  REQUIRE_THROWS_MATCHES(Concrete(t.variable(Mat::Ones(1, 3)), 0.5).rsample(rng, Index(1) << 62), ShapeError,
                         Catch::Matchers::Message("reparam: Concrete.rsample: size overflows (4611686018427387904x3)"));
  REQUIRE_THROWS_MATCHES(broadcast_to(x1, -1, -1), ShapeError,
                         Catch::Matchers::Message("reparam: broadcast_to: shape must not be negative (got -1x-1)"));
  REQUIRE_THROWS_MATCHES(uniform_matrix(rng, -1, -1), ShapeError,
                         Catch::Matchers::Message("reparam: uniform_matrix: shape must not be negative (got -1x-1)"));
  REQUIRE_THROWS_MATCHES(normal_matrix(rng, -3, 2), ShapeError,
                         Catch::Matchers::Message("reparam: normal_matrix: shape must not be negative (got -3x2)"));
  REQUIRE_THROWS_MATCHES(Normal(x1, 1.0).rsample(rng, -1, 2), ShapeError,
                         Catch::Matchers::Message("reparam: Normal.rsample: shape must not be negative (got -1x2)"));
}

TEST_CASE("empty shapes flow through forward and backward", "[adversarial]") {
  Tape t;
  const Var x = t.variable(Mat(1, 0));
  t.backward(sum_rows(x * 2.0));  // 1x1 output from an empty row
  CHECK(x.grad().size() == 0);
  const Var e = t.variable(Mat(0, 3));
  t.backward(sum(exp(e) + sum_cols(e)) + sum(matmul(e, t.variable(Mat::Ones(3, 2)))));
  CHECK(e.grad().size() == 0);
  Rng rng(1);
  const Var z = Normal(t.variable(Mat(0, 4)), 1.0).rsample(rng);
  CHECK(z.rows() == 0);
  CHECK(concat_rows({e, e}).rows() == 0);
}

TEST_CASE("empty Vars throw GraphError everywhere, before any reference is bound", "[adversarial]") {
  Tape t;
  Rng rng(1);
  const Var none;
  REQUIRE_THROWS_MATCHES(none.tape(), GraphError, Catch::Matchers::Message("reparam: tape: Var is empty (default-constructed)"));
  REQUIRE_THROWS_MATCHES(Normal<double>(none, 1.0), GraphError,
                         Catch::Matchers::Message("reparam: Normal: Var is empty (default-constructed)"));
  REQUIRE_THROWS_AS(Gumbel<double>(none, 1.0), GraphError);
  REQUIRE_THROWS_AS(Laplace<double>(none, 1.0), GraphError);
  REQUIRE_THROWS_AS(Concrete<double>(none, 0.5), GraphError);
  REQUIRE_THROWS_AS(ExpConcrete<double>(none, 0.5), GraphError);
  REQUIRE_THROWS_AS(RelaxedBernoulli<double>(none, 0.5), GraphError);
  REQUIRE_THROWS_AS(Categorical<double>(none), GraphError);
  REQUIRE_THROWS_AS(Bernoulli<double>(none), GraphError);
  REQUIRE_THROWS_AS(gumbel_softmax(none, 0.5, rng), GraphError);
  REQUIRE_THROWS_AS(exp(none), GraphError);
  REQUIRE_THROWS_AS(none + 1.0, GraphError);
}

TEST_CASE("distributions of a cleared tape throw, never terminate", "[adversarial]") {
  Tape t;
  Rng rng(1);
  const Bernoulli b(t.variable(Mat::Zero(2, 3)));
  const Categorical c(t.variable(Mat::Zero(2, 3)));
  const Concrete q(t.variable(Mat::Zero(2, 3)), 0.5);
  t.clear();
  CHECK(b.rows() == 2);  // shapes are kept: rows() and cols() are noexcept and stay so
  CHECK(c.cols() == 3);
  CHECK(q.rows() == 2);
  REQUIRE_THROWS_MATCHES(b.sample(rng), GraphError, Catch::Matchers::Message("reparam: value: Var used after its tape was cleared"));
  REQUIRE_THROWS_AS(c.sample(rng), GraphError);
  REQUIRE_THROWS_AS(q.rsample(rng), GraphError);
}

TEST_CASE("NaN and infinity sources found by the audit are finite or rejected", "[adversarial]") {
  Tape t;
  Rng rng(3);
  // a subnormal temperature is rejected (1 / tau overflows)
  REQUIRE_THROWS_AS(Concrete(t.variable(Mat::Zero(1, 3)), 1e-310), DomainError);
  REQUIRE_THROWS_AS(ExpConcrete(t.variable(Mat::Zero(1, 3)), t.variable(1e-300)), DomainError);
  // the smallest accepted temperature gives finite samples and gradients
  {
    Tape u;
    const Var l = u.variable(Mat{{0.3, -1.0, 2.0}}), tau = u.variable(2e-154);
    const Var y = Concrete(l, tau).rsample(rng);
    u.backward(sum(y * u.constant(Mat{{1.0, 2.0, 3.0}})));
    CHECK(finite(Mat(y.value())));
    CHECK(finite(Mat(l.grad())));
    CHECK(finite(Mat(tau.grad())));
  }
  // KL of normals with scales far apart (log of a ratio would overflow): exact closed form
  {
    Tape u;
    const Var sp = u.variable(1e-170), sq = u.variable(1.0);
    const Var k = kl_divergence(Normal(u.constant(0.0), sp), Normal(u.constant(0.0), sq));
    CHECK(test::close(k.item(), std::log(1e170) - 0.5, 1e-14));
    u.backward(k);
    CHECK(std::isfinite(sp.grad()(0, 0)));
    TapeF f;
    const VarF k2 = kl_divergence(Normal(f.constant(0.0f), f.variable(1e-30f)), Normal(f.constant(0.0f), f.variable(1.0f)));
    CHECK(std::abs(k2.item() - 68.5777f) < 1e-3f);  // log(1e30) - 1/2 = 68.58
  }
  // Categorical stddev and variance at logits +-1e4: finite gradients
  {
    Tape u;
    const Var l = u.variable(Mat{{1e4, -1e4, 0.0}, {-1e4, -1e4, 1e4}});
    u.backward(sum(Categorical(l).stddev()) + sum(Categorical(l).variance()));
    CHECK(finite(Mat(l.grad())));
  }
  // Gumbel cdf far in the left tail: value 0, gradient 0 (not 0 * inf)
  {
    Tape u;
    const Var loc = u.variable(0.0), scale = u.variable(1e-3);
    const Var c = Gumbel(loc, scale).cdf(u.constant(-1.0));
    u.backward(c);
    CHECK(c.item() == 0.0);
    CHECK(loc.grad()(0, 0) == 0.0);
    CHECK(scale.grad()(0, 0) == 0.0);
  }
  // pow with a negative base and a non-integer Var exponent is a DomainError, as with a scalar exponent
  REQUIRE_THROWS_MATCHES(pow(t.variable(Mat{{-2.0}}), t.variable(Mat{{0.5}})), DomainError,
                         Catch::Matchers::Message("reparam: pow: base must be >= 0 for a non-integer exponent (got base -2 and "
                                                  "exponent 0.5 at row 0, col 0)"));
  // SGD with NaN dampening; schedules at negative steps
  Parameter<double> p(Mat::Ones(2, 2));
  REQUIRE_THROWS_MATCHES(optim::SGD<double>({&p}, {0.1, 0.9, std::nan("")}), DomainError,
                         Catch::Matchers::Message("reparam: SGD: dampening must be >= 0 and finite (got nan)"));
  TemperatureSchedule sched{1.0, 3e-5, 0.5};  // deduces double
  CHECK(sched(-100) == 1.0);
}

TEST_CASE("ExpConcrete with per-row temperatures and shared logits draws independent rows", "[adversarial]") {
  Tape t;
  Rng rng(5);
  const Var l = t.variable(Mat{{0.1, 0.2, 0.3, 0.4}});
  const Var tau = t.variable(Mat::Constant(6, 1, 0.7));
  const ExpConcrete q(l, tau);
  REQUIRE(q.rows() == 6);
  const Mat y = q.rsample(rng).value();
  REQUIRE(y.rows() == 6);
  for (Index i = 1; i < 6; ++i) CHECK(y.row(i) != y.row(0));
}

TEST_CASE("optimizers refuse empty and resized parameters", "[adversarial]") {
  Parameter<double> empty;
  REQUIRE_THROWS_MATCHES(optim::Adam<double>({&empty}), ShapeError,
                         Catch::Matchers::Message("reparam: Adam: parameter 0 is empty (0x0)"));
  Parameter<double> p(Mat::Ones(2, 3));
  optim::Adam<double> adam({&p});
  optim::SGD<double> sgd({&p}, {0.1, 0.9});
  p.value.resize(3, 3);
  p.zero_grad();
  REQUIRE_THROWS_MATCHES(adam.step(), ShapeError,
                         Catch::Matchers::Message("reparam: Adam.step: parameter 0 changed shape (was 2x3, now 3x3)"));
  REQUIRE_THROWS_AS(sgd.step(), ShapeError);
}

TEST_CASE("validation is per thread, lgamma is not shared state", "[adversarial][threads]") {
  set_validation(true);
  bool other_sees = false;
  {
    ValidationScope off(false);
    CHECK_FALSE(validation_enabled());
    std::thread th([&] { other_sees = validation_enabled(); });
    th.join();
  }
  CHECK(other_sees);  // another thread keeps its checks
  CHECK(validation_enabled());
  // two threads computing Concrete densities at once (TSan: no race on glibc's signgam)
  auto work = [] {
    Tape t;
    Rng rng(9);
    for (int i = 0; i < 50; ++i) {
      t.clear();
      const Concrete q(t.variable(Mat::Zero(3, 7)), 0.7);
      (void)q.log_prob(q.rsample(rng));
    }
  };
  std::thread a(work), b(work);
  a.join();
  b.join();
}

TEST_CASE("Rng(seed, stream) equals stream jumps and costs at most 64 of them", "[adversarial][random]") {
  for (std::uint64_t k : {0u, 1u, 2u, 3u, 5u, 8u, 13u, 100u}) {
    Rng jumped(77);
    for (std::uint64_t i = 0; i < k; ++i) jumped.jump();
    Rng direct(77, k);
    INFO("stream " << k);
    CHECK(direct == jumped);
    CHECK(direct() == jumped());
  }
  Rng sequential(78);
  for (int i = 0; i < 1000; ++i) sequential.jump();
  CHECK(Rng(78, 1000) == sequential);
  // 2^64 - 1 sequential jumps would never finish; as table jumps this is at most 64 of them
  Rng far(1, ~std::uint64_t{0});
  CHECK(far != Rng(1));
}
