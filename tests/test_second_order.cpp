// Hessian-vector products (forward over reverse on a tape of reparam::Dual) against central
// differences of the gradient and against closed-form Hessians (a quadratic, log-sum-exp, the
// Normal log-density in loc and scale); conjugate gradients on random SPD systems; flattening
// parameters; every error.
#include <cmath>
#include <vector>

#include <reparam/second_order.hpp>

#include "support.hpp"

using namespace reparam;
using test::Gen;
using test::Mat;
using D = Dual<double>;
using Vec = Eigen::VectorXd;

namespace {

// A function of two leaves touching products, softmax, tanh, softplus and a log-density.
template <class T>
BasicVar<T> mixed_two_leaves(BasicTape<T>& t, const std::vector<BasicVar<T>>& xs) {
  const BasicVar<T> h = tanh(matmul(xs[0], xs[1]) + T(0.2));
  const BasicVar<T> p = softmax(h);
  return sum(p * log_softmax(h)) + sum(softplus(xs[0]) * T(0.3)) + sum(square(xs[1])) * T(0.05) +
         sum(Normal<T>(xs[0], t.constant(Matrix<T>::Constant(1, 1, T(1.3)))).log_prob(t.constant(Matrix<T>::Constant(1, 1, T(0.4)))));
}

std::vector<Mat> gradient_of_mixed(const std::vector<Mat>& x) {
  Tape t;
  std::vector<Var> vs;
  for (const Mat& m : x) vs.push_back(t.variable(m));
  t.backward(mixed_two_leaves<double>(t, vs));
  std::vector<Mat> g;
  for (const Var& v : vs) g.push_back(v.grad());
  return g;
}

}  // namespace

TEST_CASE("Hessian-vector products equal central differences of the gradient, and the gradient the double tape's",
          "[second_order]") {
  Gen gen(61);
  const std::vector<Mat> x = {gen.matrix(3, 4), gen.matrix(4, 2)}, v = {gen.matrix(3, 4), gen.matrix(4, 2)};
  std::vector<Mat> g;
  double value = 0;
  const std::vector<Mat> hv = hessian_vector_product([](auto& t, const auto& xs) { return mixed_two_leaves(t, xs); }, x, v, &g, &value);
  const std::vector<Mat> g0 = gradient_of_mixed(x);
  const double h = 1e-5;
  std::vector<Mat> xp = x, xm = x;
  for (std::size_t i = 0; i < x.size(); ++i) {
    xp[i] += h * v[i];
    xm[i] -= h * v[i];
  }
  const std::vector<Mat> gp = gradient_of_mixed(xp), gm = gradient_of_mixed(xm);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const Mat fd = (gp[i] - gm[i]) / (2 * h);
    INFO("leaf " << i << "\nhv\n" << hv[i] << "\nfd\n" << fd);
    REQUIRE(g[i].isApprox(g0[i], 1e-13));
    REQUIRE((hv[i] - fd).cwiseAbs().maxCoeff() < 1e-7 * (1 + fd.cwiseAbs().maxCoeff()));
  }
  REQUIRE(std::isfinite(value));
}

TEST_CASE("Hessian-vector products match closed-form Hessians", "[second_order]") {
  Gen gen(62);
  SECTION("quadratic 0.5 x'Ax + b'x: H = A") {
    const Index n = 6;
    const Mat M = gen.matrix(n, n), A = M + M.transpose(), b = gen.matrix(n, 1), x = gen.matrix(n, 1), v = gen.matrix(n, 1);
    std::vector<Mat> g;
    const auto hv = hessian_vector_product(
        [&](auto& t, const auto& xs) {
          using T = typename std::decay_t<decltype(xs[0])>::Scalar;
          const Matrix<T> Ad = A.cast<T>(), bd = b.cast<T>();
          return sum(xs[0] * matmul(t.constant(Ad), xs[0])) * T(0.5) + sum(xs[0] * t.constant(bd));
        },
        std::vector<Mat>{x}, std::vector<Mat>{v}, &g);
    REQUIRE(hv[0].isApprox(A * v, 1e-13));
    REQUIRE(g[0].isApprox(A * x + b, 1e-13));
  }
  SECTION("logsumexp: H = diag(p) - p p'") {
    const Mat x = gen.matrix(1, 7, -3, 3), v = gen.matrix(1, 7);
    const auto hv = hessian_vector_product([](auto&, const auto& xs) { return sum(logsumexp(xs[0])); }, std::vector<Mat>{x},
                                           std::vector<Mat>{v});
    Mat p = x.array().exp();
    p /= p.sum();
    const Mat H = Mat(p.row(0).asDiagonal()) - p.transpose() * p;
    REQUIRE(hv[0].isApprox(v * H, 1e-13));
  }
  SECTION("Normal log-density in loc and scale") {
    const Mat mu = gen.matrix(2, 3), sg = gen.matrix(2, 3, 0.5, 2), y = gen.matrix(2, 3), vm = gen.matrix(2, 3), vs = gen.matrix(2, 3);
    const auto hv = hessian_vector_product(
        [&](auto& t, const auto& xs) {
          using T = typename std::decay_t<decltype(xs[0])>::Scalar;
          return sum(Normal<T>(xs[0], xs[1]).log_prob(t.constant(Matrix<T>(y.cast<T>()))));
        },
        std::vector<Mat>{mu, sg}, std::vector<Mat>{vm, vs});
    // per element: d2/dmu2 = -1/s^2, d2/dmu ds = -2 (y - mu) / s^3, d2/ds2 = 1/s^2 - 3 (y - mu)^2 / s^4
    const Eigen::ArrayXXd r = (y - mu).array(), s = sg.array();
    const Mat hmm = (-1 / s.square()).matrix(), hms = (-2 * r / s.cube()).matrix(), hss = (1 / s.square() - 3 * r.square() / s.pow(4)).matrix();
    REQUIRE(hv[0].isApprox(Mat(hmm.cwiseProduct(vm) + hms.cwiseProduct(vs)), 1e-12));
    REQUIRE(hv[1].isApprox(Mat(hms.cwiseProduct(vm) + hss.cwiseProduct(vs)), 1e-12));
  }
}

TEST_CASE("conjugate gradients solve random SPD systems to the requested tolerance", "[second_order]") {
  Gen gen(63);
  for (Index n : {1, 5, 40, 120}) {
    const Mat M = gen.matrix(n, n);
    const Mat A = M.transpose() * M + 0.1 * Mat::Identity(n, n);
    const Vec b = gen.matrix(n, 1);
    for (double tol : {1e-4, 1e-10}) {
      int products = 0;
      const CgResult<double> r = conjugate_gradient(
          [&](const Vec& p) {
            ++products;
            return Vec(A * p);
          },
          b, 10 * n, tol);
      INFO("n " << n << " tol " << tol << " iterations " << r.iterations);
      REQUIRE(r.converged);
      REQUIRE(products == r.iterations);
      REQUIRE((A * r.x - b).norm() <= 10 * tol * b.norm());  // the recurrence's residual drifts a little from the true one
      REQUIRE(r.residual <= tol * b.norm());
    }
  }
  // too few iterations: not converged, and says so
  const Mat M = gen.matrix(30, 30);
  const Mat A = M.transpose() * M + 1e-3 * Mat::Identity(30, 30);
  const CgResult<double> r = conjugate_gradient([&](const Vec& p) { return Vec(A * p); }, Vec(Vec::Ones(30)), 2, 1e-12);
  REQUIRE_FALSE(r.converged);
  REQUIRE(r.iterations == 2);
}

TEST_CASE("flatten and unflatten a parameter list", "[second_order]") {
  Gen gen(64);
  Parameter<double> a(gen.matrix(2, 3)), b(gen.matrix(1, 4));
  const std::vector<Parameter<double>*> ps = {&a, &b};
  const Vec f = flatten(ps);
  REQUIRE(f.size() == 10);
  REQUIRE(f(4) == a.value(1, 1));
  REQUIRE(f(7) == b.value(0, 1));
  b.grad(0, 3) = 2.5;
  REQUIRE(flatten_grad(ps)(9) == 2.5);
  unflatten(Vec(f * 2), ps);
  REQUIRE(a.value(1, 2) == 2 * f(5));
  REQUIRE_THROWS_AS(unflatten(Vec(Vec::Zero(9)), ps), ShapeError);
  REQUIRE_THROWS_WITH(unflatten(Vec(Vec::Zero(9)), ps), "reparam: unflatten: vector has 9 elements, the parameters 10");
}

TEST_CASE("second-order errors", "[second_order][errors]") {
  const Mat x = Mat::Ones(2, 2);
  auto f = [](auto&, const auto& xs) { return sum(xs[0]); };
  REQUIRE_THROWS_WITH(hessian_vector_product(f, std::vector<Mat>{x}, std::vector<Mat>{}),
                      "reparam: hessian_vector_product: needs one direction per point (1 points, 0 directions)");
  REQUIRE_THROWS_AS(hessian_vector_product(f, std::vector<Mat>{x}, std::vector<Mat>{Mat::Ones(2, 3)}), ShapeError);
  REQUIRE_THROWS_WITH(hessian_vector_product(f, std::vector<Mat>{x}, std::vector<Mat>{Mat::Ones(2, 3)}),
                      "reparam: hessian_vector_product: direction 0 does not fit its point (2x3 and 2x2)");
  REQUIRE_THROWS_AS(hessian_vector_product(f, std::vector<Mat>{Mat::Constant(2, 2, std::nan(""))}, std::vector<Mat>{x}), DomainError);
  REQUIRE_THROWS_WITH(hessian_vector_product(f, std::vector<Mat>{Mat::Constant(2, 2, std::nan(""))}, std::vector<Mat>{x}),
                      "reparam: hessian_vector_product: point 0 must be finite");
  REQUIRE_THROWS_WITH(hessian_vector_product(f, std::vector<Mat>{x}, std::vector<Mat>{Mat::Constant(2, 2, HUGE_VAL)}),
                      "reparam: hessian_vector_product: direction 0 must be finite");
  // empty points are fine: nothing to differentiate but the empty leaves
  const auto hv0 = hessian_vector_product([](auto& t, const auto& xs) { return sum(xs[0]) + sum(t.constant(Mat::Ones(1, 1).cast<D>().eval())); },
                                          std::vector<Mat>{Mat(0, 3)}, std::vector<Mat>{Mat(0, 3)});
  REQUIRE(hv0[0].rows() == 0);
  const Vec b = Vec::Ones(3);
  auto id = [](const Vec& p) { return p; };
  REQUIRE_THROWS_WITH(conjugate_gradient(id, b, 0, 1e-6), "reparam: conjugate_gradient: iterations must be at least 1 (got 0)");
  REQUIRE_THROWS_AS(conjugate_gradient(id, b, 5, -1.0), DomainError);
  REQUIRE_THROWS_WITH(conjugate_gradient(id, b, 5, -1.0), "reparam: conjugate_gradient: tolerance must be finite and >= 0 (got -1)");
  REQUIRE_THROWS_WITH(conjugate_gradient([](const Vec& p) { return Vec(-p); }, b, 5, 1e-6),
                      "reparam: conjugate_gradient: A is not positive definite (p^T A p = -3 at iteration 1)");
  REQUIRE_THROWS_WITH(conjugate_gradient([](const Vec& p) { return Vec(p.head(2)); }, b, 5, 1e-6),
                      "reparam: conjugate_gradient: matvec returned 2 elements for 3");
  REQUIRE_THROWS_WITH(conjugate_gradient(id, Vec(Vec::Constant(3, std::nan(""))), 5, 1e-6), "reparam: conjugate_gradient: b must be finite");
}

TEST_CASE("Fisher-vector products: closed-form Fishers of Normal, Laplace, Categorical and Bernoulli", "[second_order]") {
  Gen gen(65);
  const Mat loc = gen.matrix(2, 3), ls = gen.matrix(2, 3, -1, 1), vl = gen.matrix(2, 3), vs = gen.matrix(2, 3);
  const std::vector<Mat> at = {loc, ls}, dir = {vl, vs};
  const Eigen::ArrayXXd s = ls.array().exp();
  SECTION("Normal in (loc, log scale): diag(1 / sigma^2, 2) per element") {
    const auto fv = fisher_vector_product([](auto&, const auto& p) { return Normal<D>(p[0], exp(p[1])); }, at, dir);
    REQUIRE(fv[0].isApprox(Mat(vl.array() / s.square()), 1e-13));
    REQUIRE(fv[1].isApprox(Mat(2 * vs), 1e-13));
    // damping adds damping * v
    const auto fd = fisher_vector_product([](auto&, const auto& p) { return Normal<D>(p[0], exp(p[1])); }, at, dir, 0.25);
    REQUIRE(fd[1].isApprox(Mat(2.25 * vs), 1e-13));
  }
  SECTION("Laplace in (loc, log scale): diag(1 / b^2, 1) per element") {
    // E[(d/dloc log p)^2] = E[sign^2] / b^2; d/dlog b log p = |x - loc| / b - 1 has Var(Exp(1)) = 1
    const auto fv = fisher_vector_product([](auto&, const auto& p) { return Laplace<D>(p[0], exp(p[1])); }, at, dir);
    REQUIRE(fv[0].isApprox(Mat(vl.array() / s.square()), 1e-13));
    REQUIRE(fv[1].isApprox(vs, 1e-13));
  }
  SECTION("Categorical in its logits: diag(p) - p p' per row") {
    const auto fv = fisher_vector_product([](auto&, const auto& p) { return Categorical<D>(p[0]); }, std::vector<Mat>{loc},
                                          std::vector<Mat>{vl});
    for (Index r = 0; r < 2; ++r) {
      Mat p = loc.row(r).array().exp();
      p /= p.sum();
      const Mat F = Mat(p.row(0).asDiagonal()) - p.transpose() * p;
      REQUIRE(fv[0].row(r).isApprox(vl.row(r) * F, 1e-13));
    }
  }
  SECTION("Bernoulli in its logits: p (1 - p) per element") {
    const auto fv = fisher_vector_product([](auto&, const auto& p) { return Bernoulli<D>(p[0]); }, std::vector<Mat>{loc},
                                          std::vector<Mat>{vl});
    const Eigen::ArrayXXd p = 1 / (1 + (-loc.array()).exp());
    REQUIRE(fv[0].isApprox(Mat(p * (1 - p) * vl.array()), 1e-13));
  }
}

namespace {
// A small network x -> tanh(x W1 + b1) W2 = (loc, log scale) of a Normal per row, in plain Eigen
// (the independent reference) and on the tape.
Mat net_plain(const Mat& x, const std::vector<Mat>& th) {
  const Mat h = ((x * th[0]).rowwise() + th[1].row(0)).array().tanh().matrix();
  return h * th[2];
}
template <class T>
Normal<T> net_tape(BasicTape<T>& t, const Mat& x, const std::vector<BasicVar<T>>& th) {
  const BasicVar<T> out = matmul(tanh(matmul(t.constant(Matrix<T>(x.cast<T>())), th[0]) + th[1]), th[2]);
  return Normal<T>(slice_cols(out, 0, 1), exp(slice_cols(out, 1, 1)));
}
}  // namespace

TEST_CASE("Fisher-vector products of a small network equal J' F J v computed explicitly", "[second_order]") {
  Gen gen(66);
  const Index N = 5;
  const Mat x = gen.matrix(N, 3);
  const std::vector<Mat> th = {gen.matrix(3, 4), gen.matrix(1, 4), gen.matrix(4, 2)}, v = {gen.matrix(3, 4), gen.matrix(1, 4), gen.matrix(4, 2)};
  const auto fv = fisher_vector_product([&](auto& t, const auto& p) { return net_tape(t, x, p); }, th, v);
  // J: d (loc_i, log sigma_i) / d theta by central differences of the plain network; F per row
  // diag(1 / sigma^2, 2)
  Index P = 0;
  for (const Mat& m : th) P += m.size();
  Mat J(2 * N, P), vflat(P, 1);
  Index k = 0;
  for (std::size_t m = 0; m < th.size(); ++m)
    for (Index e = 0; e < th[m].size(); ++e, ++k) {
      std::vector<Mat> tp = th, tm = th;
      const double h = 1e-6;
      tp[m].data()[e] += h;
      tm[m].data()[e] -= h;
      const Mat d = (net_plain(x, tp) - net_plain(x, tm)) / (2 * h);
      J.col(k) = Eigen::Map<const Eigen::VectorXd>(d.data(), 2 * N);  // row-major: (loc_0, ls_0, loc_1, ...)
      vflat(k, 0) = v[m].data()[e];
    }
  const Mat out = net_plain(x, th);
  Eigen::VectorXd F(2 * N);
  for (Index i = 0; i < N; ++i) {
    F(2 * i) = std::exp(-2 * out(i, 1));
    F(2 * i + 1) = 2;
  }
  const Mat want = J.transpose() * (F.asDiagonal() * (J * vflat));
  k = 0;
  for (std::size_t m = 0; m < th.size(); ++m)
    for (Index e = 0; e < th[m].size(); ++e, ++k) {
      INFO("parameter " << m << " element " << e);
      REQUIRE(std::abs(fv[m].data()[e] - want(k, 0)) < 1e-7 * (1 + std::abs(want(k, 0))));
    }
}

TEST_CASE("natural-gradient steps stay inside their KL radius and lower the loss", "[second_order]") {
  // y = sin(2x) + (0.1 + 0.3 |x|) eps; a Normal whose loc and log scale are linear in (1, x, x^2)
  Gen gen(67);
  const Index N = 64;
  Mat phi(N, 3), y(N, 1);
  for (Index i = 0; i < N; ++i) {
    const double x = -1 + 2 * double(i) / double(N - 1);
    phi.row(i) << 1, x, x * x;
    const double u1 = gen.uniform(1e-12, 1), u2 = gen.uniform();
    y(i, 0) = std::sin(2 * x) + (0.1 + 0.3 * std::abs(x)) * std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  Parameter<double> w(Mat::Zero(3, 2)), w_reused(Mat::Zero(3, 2));
  auto make = [&](auto& t, const auto& leaves) {
    using T = typename std::decay_t<decltype(leaves[0])>::Scalar;
    const auto out = matmul(t.constant(Matrix<T>(phi.cast<T>())), leaves[0]);
    return Normal<T>(slice_cols(out, 0, 1), exp(slice_cols(out, 1, 1)));
  };
  auto loss = [&](auto& t, const auto& leaves) {
    using T = typename std::decay_t<decltype(leaves[0])>::Scalar;
    return -mean(make(t, leaves).log_prob(t.constant(Matrix<T>(y.cast<T>()))));
  };
  NaturalGradientOptions o;
  o.max_kl = 0.02;
  double first = 0, last = 0;
  int accepted = 0;
  NaturalGradient<double> reused(o);  // its workspaces kept across steps: the same numbers
  for (int step = 0; step < 30; ++step) {
    const NaturalGradientResult r = natural_gradient_step(std::vector<Parameter<double>*>{&w}, loss, make, o);
    const NaturalGradientResult r2 = reused.step({&w_reused}, loss, make);
    REQUIRE(w_reused.value == w.value);
    REQUIRE(r2.kl == r.kl);
    if (step == 0) first = r.loss_before;
    INFO("step " << step << " kl " << r.kl << " loss " << r.loss_before << " -> " << r.loss_after << " backtracks " << r.backtracks);
    if (r.accepted) {
      ++accepted;
      REQUIRE(r.kl <= o.max_kl);
      REQUIRE(r.loss_after < r.loss_before);
    } else {
      REQUIRE(r.loss_after == r.loss_before);
    }
    last = r.loss_after;
  }
  REQUIRE(accepted >= 20);
  REQUIRE(last < first - 0.5);
  REQUIRE_THROWS_WITH(natural_gradient_step({&w}, loss, make, NaturalGradientOptions{-1.0}),
                      "reparam: natural_gradient_step: max_kl must be positive and finite (got -1)");
  NaturalGradientOptions bad;
  bad.damping = -0.5;
  REQUIRE_THROWS_WITH(NaturalGradient<double>(bad), "reparam: natural_gradient_step: damping must be finite and >= 0 (got -0.5)");
  bad = NaturalGradientOptions{};
  bad.max_backtracks = -1;
  REQUIRE_THROWS_WITH(NaturalGradient<double>(bad), "reparam: natural_gradient_step: max_backtracks must be >= 0 (got -1)");
  NaturalGradient<double> ng;
  REQUIRE_THROWS_WITH(ng.step(std::vector<Parameter<double>*>{}, loss, make),
                      "reparam: natural_gradient_step: needs at least one parameter (got 0)");
  REQUIRE_THROWS_WITH(ng.step(std::vector<Parameter<double>*>{nullptr}, loss, make), "reparam: natural_gradient_step: parameter 0 is null");
  Parameter<double> w_nan(Mat::Constant(3, 2, std::nan("")));
  REQUIRE_THROWS_WITH(ng.step({&w_nan}, loss, make), Catch::Matchers::StartsWith("reparam: "));  // a NaN weight: refused
  auto nan_loss = [&](auto& t, const auto& leaves) { return loss(t, leaves) * std::nan(""); };
  REQUIRE_THROWS_WITH(ng.step({&w}, nan_loss, make), "reparam: natural_gradient_step: the loss and its gradient must be finite (loss nan)");
  bad = NaturalGradientOptions{};
  bad.cg_iterations = 0;
  REQUIRE_THROWS_WITH(natural_gradient_step({&w}, loss, make, bad), "reparam: conjugate_gradient: iterations must be at least 1 (got 0)");
}
