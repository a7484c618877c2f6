// Two estimators of d/dtheta E[x^2], x ~ N(theta, 1), whose exact value is 2 theta:
//   pathwise (reparameterization): x = theta + eps, gradient 2x, variance 4;
//   score function (REINFORCE): x^2 d/dtheta log N(x; theta, 1) = x^2 (x - theta),
//   variance theta^4 + 14 theta^2 + 15.
// Each estimate below is one sample's gradient; the program prints their means and variances
// over many samples next to the exact values.
//
//   score_vs_pathwise [theta] [samples]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <reparam/reparam.hpp>

int main(int argc, char** argv) {
  const double theta = argc > 1 ? std::atof(argv[1]) : 1.5;
  const long n = argc > 2 ? std::atol(argv[2]) : 100000;
  if (n < 2) {
    std::fprintf(stderr, "need at least 2 samples\n");
    return 1;
  }
  reparam::Rng rng(2017);
  reparam::Tape tape;

  // One sample per row: a column of n independent estimates, from one graph.
  const reparam::Var th = tape.variable(reparam::Matrix<double>::Constant(n, 1, theta));
  reparam::Normal q(th, 1.0);

  // Pathwise: differentiate x^2 through x = theta + eps.
  const reparam::Var x = q.rsample(rng);
  tape.backward(reparam::sum(reparam::square(x)));
  const reparam::Matrix<double> pathwise = th.grad();

  // Score function: x drawn without gradient, cost x^2 weighting d log q(x) / d theta.
  tape.zero_grad();
  const reparam::Matrix<double> xs = q.sample(rng);
  tape.backward(reparam::score_function(q.log_prob(xs), reparam::Matrix<double>(xs.array().square())));
  const reparam::Matrix<double> score = th.grad();

  // Each check allows 5 standard errors: the mean's from the sample variance, the variance's from
  // the fourth central moment (Var(s^2) ~ (m4 - s^4) / n).
  bool ok = true;
  auto report = [&](const char* name, const reparam::Matrix<double>& g, double exact_var) {
    const double m = g.mean();
    const double v = (g.array() - m).square().sum() / double(n - 1);
    const double m4 = (g.array() - m).pow(4).mean();
    const double se_mean = std::sqrt(v / double(n)), se_var = std::sqrt(std::max(m4 - v * v, 0.0) / double(n));
    const bool good = std::abs(m - 2 * theta) <= 5 * se_mean && std::abs(v - exact_var) <= 5 * se_var;
    ok = ok && good;
    std::printf("%-16s mean %9.5f (exact %9.5f, +- %.5f)   variance %9.4f (exact %9.4f, +- %.4f)  %s\n", name, m,
                2 * theta, se_mean, v, exact_var, se_var, good ? "ok" : "OFF");
  };
  std::printf("d/dtheta E[x^2], x ~ N(theta = %g, 1), %ld samples\n", theta, n);
  report("pathwise", pathwise, 4.0);
  report("score function", score, std::pow(theta, 4) + 14 * theta * theta + 15);
  return ok ? 0 : 1;
}
