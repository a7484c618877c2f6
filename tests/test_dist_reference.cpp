// Every distribution member against PyTorch float64 (tests/reference/make_distribution_reference.py):
// the value, and the gradient of sum(value * weight) with respect to every parameter and the
// argument, for parameters that broadcast against each other.
#include <map>
#include <string>
#include <vector>

#include "support.hpp"

using namespace reparam;
using test::Mat;

namespace {

struct RefMat {
  Index rows, cols;
  std::vector<double> v;
  Mat mat() const {
    Mat m(rows, cols);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = v[static_cast<std::size_t>(i)];
    return m;
  }
};
struct RefCase {
  const char* dist;
  const char* member;
  std::vector<std::pair<const char*, RefMat>> params;
  bool has_arg;
  RefMat arg, value, weight;
  std::vector<RefMat> grads;
};

const std::vector<RefCase>& cases() {
  static const std::vector<RefCase> all = {
#include "reference/distribution_reference.inc"
  };
  return all;
}

template <class Dist>
Var loc_scale_member(const Dist& d, const std::string& m, const Var& x) {
  if (m == "log_prob") return d.log_prob(x);
  if (m == "cdf") return d.cdf(x);
  if (m == "icdf") return d.icdf(x);
  if (m == "entropy") return d.entropy();
  if (m == "mean") return d.mean();
  if (m == "stddev") return d.stddev();
  if (m == "reparameterize") return d.reparameterize(x);
  FAIL("unknown member " << m);
  return x;
}

Var evaluate(const std::string& dist, const std::string& m, std::map<std::string, Var>& p, const Var& x) {
  if (dist == "Normal") return loc_scale_member(Normal(p["loc"], p["scale"]), m, x);
  if (dist == "Gumbel") return loc_scale_member(Gumbel(p["loc"], p["scale"]), m, x);
  if (dist == "Logistic") return loc_scale_member(Logistic(p["loc"], p["scale"]), m, x);
  if (dist == "Laplace") {
    Laplace d(p["loc"], p["scale"]);
    if (m == "reparameterize") return d.reparameterize(x);  // uniforms as a Var: differentiable in them too
    return loc_scale_member(d, m, x);
  }
  if (dist == "LogitRelaxedBernoulli") {
    LogitRelaxedBernoulli d(p["logits"], p["temperature"]);
    if (m == "log_prob") return d.log_prob(x);
    return d.reparameterize(Mat(x.value()));
  }
  if (dist == "Concrete") {
    Concrete d(p["logits"], p["temperature"]);
    if (m == "log_prob") return d.log_prob(x);
    // reparameterize takes uniforms as a matrix (base noise is not differentiated here)
    return d.reparameterize(Mat(x.value()));
  }
  if (dist == "ExpConcrete") return ExpConcrete(p["logits"], p["temperature"]).log_prob(x);
  if (dist == "RelaxedBernoulli") {
    RelaxedBernoulli d(p["logits"], p["temperature"]);
    if (m == "log_prob") return d.log_prob(x);
    if (m == "cdf") return d.cdf(x);
    if (m == "icdf") return d.icdf(x);
    return d.reparameterize(Mat(x.value()));
  }
  if (dist == "Categorical") {
    Categorical d(p["logits"]);
    if (m == "log_prob") return d.log_prob(x);
    if (m == "entropy") return d.entropy();
    if (m == "mean") return d.mean();
    if (m == "variance") return d.variance();
    return d.stddev();
  }
  if (dist == "Bernoulli") {
    Bernoulli d(p["logits"]);
    if (m == "log_prob") return d.log_prob(x);
    if (m == "entropy") return d.entropy();
    if (m == "mean") return d.mean();
    return d.stddev();
  }
  if (dist == "KL") {
    if (m == "Normal") return kl_divergence(Normal(p["loc"], p["scale"]), Normal(p["loc2"], p["scale2"]));
    if (m == "Categorical") return kl_divergence(Categorical(p["logits"]), Categorical(p["logits2"]));
    if (m == "Laplace") return kl_divergence(Laplace(p["loc"], p["scale"]), Laplace(p["loc2"], p["scale2"]));
    return kl_divergence(Bernoulli(p["logits"]), Bernoulli(p["logits2"]));
  }
  FAIL("unknown distribution " << dist);
  return x;
}

void check_close(const Mat& got, const Mat& want, double rtol, double atol) {
  REQUIRE(got.rows() == want.rows());
  REQUIRE(got.cols() == want.cols());
  for (Index i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got.data()[i] << ", PyTorch " << want.data()[i]);
    CHECK(std::abs(got.data()[i] - want.data()[i]) <= atol + rtol * std::abs(want.data()[i]));
  }
}

}  // namespace

TEST_CASE("every distribution member matches PyTorch float64 in value and gradient", "[dist][reference]") {
  REQUIRE(cases().size() >= 40);
  for (const RefCase& c : cases()) {
    const bool reparam_noise = std::string(c.member) == "reparameterize";
    DYNAMIC_SECTION(c.dist << "." << c.member << " " << c.params.front().second.rows << "x" << c.params.front().second.cols) {
      Tape t;
      std::map<std::string, Var> p;
      std::vector<Var> leaves;
      for (const auto& [name, m] : c.params) {
        p[name] = t.variable(m.mat());
        leaves.push_back(p[name]);
      }
      Var x;
      if (c.has_arg) {
        x = t.variable(c.arg.mat());
        leaves.push_back(x);
      }
      const Var y = evaluate(c.dist, c.member, p, x);
      // atol covers cancellation: a log density near 0 is a sum of terms of order 10
      check_close(Mat(y.value()), c.value.mat(), 1e-13, 1e-13);
      t.backward(sum(y * t.constant(c.weight.mat())));
      REQUIRE(c.grads.size() == leaves.size());
      for (std::size_t k = 0; k < leaves.size(); ++k) {
        INFO("gradient of leaf " << k);
        if (reparam_noise && k + 1 == leaves.size() && (std::string(c.dist) == "Concrete" || std::string(c.dist) == "RelaxedBernoulli" ||
                                                    std::string(c.dist) == "LogitRelaxedBernoulli"))
          continue;  // uniforms passed as a matrix: no gradient to compare
        check_close(Mat(leaves[k].grad()), c.grads[k].mat(), 1e-12, 1e-13);
      }
    }
  }
}
