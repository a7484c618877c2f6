// Seeded statistical tests of every sampler (moments, Kolmogorov-Smirnov against the cdf,
// Gumbel-max frequencies) and unbiasedness of the pathwise and score-function gradients.
// Tolerances follow from the sample size: 5 standard errors, or the KS critical value at 1e-4.
#include <algorithm>
#include <cmath>
#include <vector>

#include "support.hpp"

using namespace reparam;
using test::Mat;

namespace {

std::vector<double> column(const Mat& m, Index j) {
  std::vector<double> v(static_cast<std::size_t>(m.rows()));
  for (Index i = 0; i < m.rows(); ++i) v[std::size_t(i)] = m(i, j);
  return v;
}

// Checks sample moments and the KS statistic of each column of an n x C sample against the
// distribution's own mean, stddev and cdf (themselves tested against PyTorch).
template <class Dist>
void check_sampler(const Dist& d, Rng& rng, Index n) {
  const Var s = d.rsample(rng, n, d.cols());
  const Mat x = s.value();
  const Mat mean = d.mean().value(), sd = d.stddev().value();
  for (Index j = 0; j < x.cols(); ++j) {
    INFO("column " << j);
    const double m = x.col(j).mean();
    const double v = (x.col(j).array() - m).square().mean();
    CHECK(std::abs(m - mean(0, j)) < 5 * sd(0, j) / std::sqrt(double(n)));
    // Var of the sample variance ~ (mu4 - sigma^4) / n; mu4 <= 9 sigma^4 for these families.
    CHECK(std::abs(v - sd(0, j) * sd(0, j)) < 5 * std::sqrt(8.0 / double(n)) * sd(0, j) * sd(0, j));
    const std::vector<double> col = column(x, j);
    const Mat xs = Eigen::Map<const Mat>(col.data(), Index(col.size()), 1);
    // cdf of the column's own distribution, evaluated through the tape
    Tape t2;
    const Dist dj(t2.constant(Mat::Constant(1, 1, d.loc().value()(0, j))), t2.constant(Mat::Constant(1, 1, d.scale().value()(0, j))));
    const Mat c = dj.cdf(xs).value();
    std::vector<double> u(c.data(), c.data() + c.size());
    CHECK(test::ks_statistic(u, [](double p) { return p; }) < test::ks_critical(col.size()));
  }
}

}  // namespace

TEST_CASE("Normal, Gumbel, Logistic and Laplace samples have their moments and cdf", "[dist][stats]") {
  Tape t;
  const Var loc = t.variable(Mat{{-1.0, 0.0, 2.5}});
  const Var scale = t.variable(Mat{{0.5, 1.0, 3.0}});
  Rng rng(2026);
  check_sampler(Normal(loc, scale), rng, 100000);
  check_sampler(Gumbel(loc, scale), rng, 100000);
  check_sampler(Logistic(loc, scale), rng, 100000);
  check_sampler(Laplace(loc, scale), rng, 100000);
}

TEST_CASE("float Laplace samples pass Kolmogorov-Smirnov against the closed-form cdf", "[dist][stats][float]") {
  TapeF t;
  const VarF loc = t.constant(Matrix<float>::Constant(1, 1, -0.25f));
  const VarF scale = t.constant(Matrix<float>::Constant(1, 1, 1.5f));
  Rng rng(11);
  const Index n = 100000;
  const Matrix<float> x = Laplace(loc, scale).rsample(rng, n, 1).value();
  std::vector<double> v(x.data(), x.data() + n);
  auto cdf = [](double e) {
    const double z = (e + 0.25) / 1.5;
    return z < 0 ? 0.5 * std::exp(z) : 1 - 0.5 * std::exp(-z);
  };
  CHECK(test::ks_statistic(v, cdf) < test::ks_critical(std::size_t(n)));
}

TEST_CASE("float samples pass the same Kolmogorov-Smirnov test", "[dist][stats][float]") {
  TapeF t;
  const VarF loc = t.constant(Matrix<float>::Constant(1, 1, 0.5f));
  const VarF scale = t.constant(Matrix<float>::Constant(1, 1, 2.0f));
  Rng rng(7);
  const Index n = 100000;
  const Matrix<float> xn = Normal(loc, scale).rsample(rng, n, 1).value();
  const Matrix<float> xg = Gumbel(loc, scale).rsample(rng, n, 1).value();
  const Matrix<float> xl = Logistic(loc, scale).rsample(rng, n, 1).value();
  std::vector<double> a(xn.data(), xn.data() + n), b(xg.data(), xg.data() + n), c(xl.data(), xl.data() + n);
  CHECK(test::ks_statistic(a, [](double x) { return detail::ndtr((x - 0.5) / 2); }) < test::ks_critical(std::size_t(n)));
  CHECK(test::ks_statistic(b, [](double x) { return std::exp(-std::exp(-(x - 0.5) / 2)); }) < test::ks_critical(std::size_t(n)));
  CHECK(test::ks_statistic(c, [](double x) { return 1 / (1 + std::exp(-(x - 0.5) / 2)); }) < test::ks_critical(std::size_t(n)));
}

TEST_CASE("sample() draws from the same law as rsample()", "[dist][stats]") {
  Tape t;
  Normal q(t.constant(Mat::Constant(1, 1, 1.0)), t.constant(Mat::Constant(1, 1, 2.0)));
  Rng rng(5);
  const Mat x = q.sample(rng, 100000, 1);
  std::vector<double> v(x.data(), x.data() + x.size());
  CHECK(test::ks_statistic(v, [](double e) { return detail::ndtr((e - 1) / 2); }) < test::ks_critical(v.size()));
  Rng a(9), b(9);
  REQUIRE(Mat(q.rsample(a, 3, 4).value()) == q.sample(b, 3, 4));  // same noise, same numbers
}

TEST_CASE("RelaxedBernoulli samples follow its cdf, a 2-class Concrete is a RelaxedBernoulli", "[dist][stats]") {
  const Index n = 100000;
  for (double tau : {0.3, 1.0, 4.0}) {
    INFO("temperature " << tau);
    Tape t;
    const Var l = t.constant(Mat::Constant(n, 1, 0.8));
    RelaxedBernoulli rb(l, tau);
    Rng rng(3);
    const Mat x = rb.rsample(rng).value();
    std::vector<double> v(x.data(), x.data() + n);
    // cdf sigmoid(tau logit(x) - l)
    auto cdf = [&](double e) { return 1 / (1 + std::exp(-(tau * (std::log(e) - std::log1p(-e)) - 0.8))); };
    CHECK(test::ks_statistic(v, cdf) < test::ks_critical(std::size_t(n)));
    // Concrete over logits (a, b): its first coordinate is RelaxedBernoulli(a - b, tau).
    const Var lc = t.constant(Mat{{0.5, -0.3}});
    Concrete c(lc, tau);
    const Mat y = c.rsample(rng, n).value();
    std::vector<double> w = column(y, 0);
    CHECK(test::ks_statistic(w, cdf) < test::ks_critical(std::size_t(n)));
    // LogitRelaxedBernoulli draws y = (l + logistic noise) / tau: P(Y <= y) = sigmoid(tau y - l).
    LogitRelaxedBernoulli lrb(l, tau);
    const Mat y2 = lrb.rsample(rng).value();
    std::vector<double> w2(y2.data(), y2.data() + n);
    CHECK(test::ks_statistic(w2, [&](double e) { return 1 / (1 + std::exp(-(tau * e - 0.8))); }) < test::ks_critical(std::size_t(n)));
  }
}

TEST_CASE("float RelaxedBernoulli samples saturate at low temperature, the logit-space form does not", "[dist][stats][float]") {
  // At tau = 0.1 and logit 3, about 4 samples in 5 have a logit y = (3 + noise) / 0.1 above 17, where
  // sigmoid rounds to exactly 1.0f: RelaxedBernoulli::log_prob refuses its own sample there.
  // LogitRelaxedBernoulli keeps the logit and gives the density of the same draw.
  TapeF t;
  const VarF l = t.variable(Matrix<float>::Constant(1000, 1, 3.0f));
  RelaxedBernoulli<float> rb(l, 0.1f);
  LogitRelaxedBernoulli<float> lrb(l, 0.1f);
  Rng a(4), b(4);
  const VarF x = rb.rsample(a);
  const VarF y = lrb.rsample(b);
  REQUIRE((x.value().array() == 1.0f).any());
  REQUIRE_THROWS_AS(rb.log_prob(x), DomainError);
  // Same noise: x = sigmoid(y) wherever x has not rounded.
  for (Index i = 0; i < 1000; ++i) {
    const float want = 1 / (1 + std::exp(-y.value()(i, 0)));
    REQUIRE(x.value()(i, 0) == Approx(want).epsilon(1e-6));
  }
  const VarF lp = lrb.log_prob(y);
  REQUIRE(lp.value().allFinite());
  // log density of the logistic variable: log tau + (l - tau y) - 2 softplus(l - tau y), in double
  for (Index i = 0; i < 1000; ++i) {
    const double u = 3.0 - 0.1 * double(y.value()(i, 0));
    const double sp = u > 0 ? u + std::log1p(std::exp(-u)) : std::log1p(std::exp(u));
    const double want = std::log(0.1) + u - 2 * sp;
    REQUIRE(double(lp.value()(i, 0)) == Approx(want).epsilon(1e-5).margin(1e-5));
  }
  t.backward(sum(lp));
  REQUIRE(l.grad().allFinite());
}

TEST_CASE("hard Concrete samples are Gumbel-max: frequencies equal softmax(logits)", "[dist][stats]") {
  const Mat logits{{1.5, -0.5, 0.0, 2.0, -3.0}};
  const Mat p = (logits.array() - logits.maxCoeff()).exp().matrix() / (logits.array() - logits.maxCoeff()).exp().sum();
  const Index n = 60000;
  for (double tau : {0.05, 0.5, 1.0, 5.0}) {
    INFO("temperature " << tau);
    Tape t;
    Concrete q(t.constant(logits), tau);
    Rng rng(17);
    const Mat h = q.rsample_hard(rng, n).value();
    REQUIRE((h.rowwise().sum().array() == 1.0).all());
    REQUIRE(((h.array() == 0.0) || (h.array() == 1.0)).all());
    const Mat freq = h.colwise().mean();
    for (Index k = 0; k < p.cols(); ++k)
      CHECK(std::abs(freq(0, k) - p(0, k)) < 5 * std::sqrt(p(0, k) * (1 - p(0, k)) / double(n)));
  }
  // The free function and the Categorical sampler agree with the same law.
  Tape t;
  Rng rng(23);
  const Mat h = gumbel_softmax(t.constant(logits.replicate(n, 1)), 0.7, rng, true).value();
  const Mat c = Categorical(t.constant(logits.replicate(n, 1))).sample(rng);
  for (Index k = 0; k < p.cols(); ++k) {
    CHECK(std::abs(h.col(k).mean() - p(0, k)) < 5 * std::sqrt(p(0, k) * (1 - p(0, k)) / double(n)));
    CHECK(std::abs(c.col(k).mean() - p(0, k)) < 5 * std::sqrt(p(0, k) * (1 - p(0, k)) / double(n)));
  }
}

TEST_CASE("hard RelaxedBernoulli and Bernoulli frequencies equal sigmoid(logits)", "[dist][stats]") {
  const Mat logits{{-2.0, -0.3, 0.0, 1.2, 4.0}};
  const Index n = 60000;
  for (double tau : {0.1, 1.0, 3.0}) {
    Tape t;
    RelaxedBernoulli q(t.constant(logits), tau);
    Rng rng(31);
    const Mat h = q.rsample_hard(rng).value();
    REQUIRE(h.rows() == 1);
    Mat acc = Mat::Zero(1, logits.cols());
    for (Index i = 0; i < n; ++i) acc += q.rsample_hard(rng).value();
    for (Index k = 0; k < logits.cols(); ++k) {
      const double p = 1 / (1 + std::exp(-logits(0, k)));
      CHECK(std::abs(acc(0, k) / double(n) - p) < 5 * std::sqrt(p * (1 - p) / double(n)));
    }
  }
  Tape t;
  Rng rng(37);
  const Mat b = Bernoulli(t.constant(logits.replicate(n, 1))).sample(rng);
  for (Index k = 0; k < logits.cols(); ++k) {
    const double p = 1 / (1 + std::exp(-logits(0, k)));
    CHECK(std::abs(b.col(k).mean() - p) < 5 * std::sqrt(p * (1 - p) / double(n)));
  }
}

TEST_CASE("pathwise and score-function gradients are unbiased", "[dist][stats][estimators]") {
  // d/dtheta E[x^2], x ~ N(theta, 1) = 2 theta. Pathwise: 2x (variance 4). Score function:
  // x^2 (x - theta) (variance theta^4 + 14 theta^2 + 15).
  const double theta = 1.5;
  const Index n = 200000;
  Tape t;
  const Var th = t.variable(Mat::Constant(1, 1, theta));
  Normal q(th, 1.0);
  Rng rng(41);
  const Var x = q.rsample(rng, n, 1);
  t.backward(mean(square(x)));
  const double pathwise = th.grad()(0, 0);
  CHECK(std::abs(pathwise - 2 * theta) < 5 * std::sqrt(4.0 / double(n)));
  t.zero_grad();
  const Mat xs = q.sample(rng, n, 1);
  t.backward(score_function(q.log_prob(xs), Mat(xs.array().square())) / double(n));
  const double sf = th.grad()(0, 0);
  const double sf_var = std::pow(theta, 4) + 14 * theta * theta + 15;
  CHECK(std::abs(sf - 2 * theta) < 5 * std::sqrt(sf_var / double(n)));

  // A categorical, by enumeration: d/dl_j sum_k p_k f_k = p_j (f_j - sum_k p_k f_k).
  const Mat logits{{0.3, -1.0, 0.8, 0.1}};
  const Mat f{{1.0, 4.0, -2.0, 0.5}};
  const Mat p = logits.array().exp().matrix() / logits.array().exp().sum();
  const double ef = (p.array() * f.array()).sum();
  const Mat exact = (p.array() * (f.array() - ef)).matrix();
  Tape t2;
  const Var l = t2.variable(logits.replicate(n, 1));
  Categorical c(l);
  const Mat s = c.sample(rng);
  const Mat cost = s * f.transpose();  // n x 1
  t2.backward(score_function(c.log_prob(s), cost, ef) / double(n));  // a constant baseline keeps it unbiased
  const Mat g = Mat(l.grad()).colwise().sum();
  // per-sample estimate (f_k - b)(x_j - p_j): variance <= max (f - b)^2 / 4
  const double spread = (f.array() - ef).abs().maxCoeff();
  for (Index k = 0; k < 4; ++k) CHECK(std::abs(g(0, k) - exact(0, k)) < 5 * spread * 0.5 / std::sqrt(double(n)));
}
