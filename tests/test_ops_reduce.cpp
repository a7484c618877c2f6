// sum mean sum_rows sum_cols softmax log_softmax logsumexp.
#include <cmath>
#include <limits>

#include "support.hpp"

using namespace reparam;
using test::Gen;
using test::Mat;

TEST_CASE("reductions match their closed forms", "[ops][reduce]") {
  Gen gen(10);
  const Mat x = gen.matrix(5, 7);
  Tape tape;
  const Var c = tape.constant(x);
  double total = 0;
  for (Index i = 0; i < x.size(); ++i) total += x.data()[i];
  CHECK(test::close(sum(c).item(), total, 1e-14));
  CHECK(test::close(mean(c).item(), total / 35, 1e-14));
  const Var r = sum_rows(c), k = sum_cols(c);
  REQUIRE(r.rows() == 5);
  REQUIRE(r.cols() == 1);
  REQUIRE(k.rows() == 1);
  REQUIRE(k.cols() == 7);
  for (Index i = 0; i < 5; ++i) {
    double s = 0;
    for (Index j = 0; j < 7; ++j) s += x(i, j);
    CHECK(test::close(r.value()(i, 0), s, 1e-14));
  }
  for (Index j = 0; j < 7; ++j) {
    double s = 0;
    for (Index i = 0; i < 5; ++i) s += x(i, j);
    CHECK(test::close(k.value()(0, j), s, 1e-14));
  }
}

TEST_CASE("row-wise softmax family matches the naive formulas", "[ops][reduce]") {
  Gen gen(11);
  const Mat x = gen.matrix(4, 6, -3, 3);
  Tape tape;
  const Var c = tape.constant(x);
  const Var sm = softmax(c), lsm = log_softmax(c), lse = logsumexp(c);
  REQUIRE(lse.rows() == 4);
  REQUIRE(lse.cols() == 1);
  for (Index i = 0; i < 4; ++i) {
    long double z = 0;
    for (Index j = 0; j < 6; ++j) z += std::exp((long double)x(i, j));
    CHECK(test::close(lse.value()(i, 0), double(std::log(z)), 1e-15));
    for (Index j = 0; j < 6; ++j) {
      CHECK(test::close(sm.value()(i, j), double(std::exp((long double)x(i, j)) / z), 1e-14));
      CHECK(test::close(lsm.value()(i, j), double((long double)x(i, j) - std::log(z)), 1e-14));
    }
  }
}

TEST_CASE("reductions have correct gradients on random shapes", "[ops][reduce][grad]") {
  Gen gen(12);
  using Op = Var (*)(const Var&);
  const std::pair<const char*, Op> ops[] = {
      {"sum", [](const Var& x) { return sum(x); }},
      {"mean", [](const Var& x) { return mean(x); }},
      {"sum_rows", [](const Var& x) { return sum_rows(x); }},
      {"sum_cols", [](const Var& x) { return sum_cols(x); }},
      {"softmax", [](const Var& x) { return softmax(x); }},
      {"log_softmax", [](const Var& x) { return log_softmax(x); }},
      {"logsumexp", [](const Var& x) { return logsumexp(x); }},
  };
  for (const auto& op : ops) {
    SECTION(op.first) {
      for (int rep = 0; rep < 4; ++rep) {
        const Mat x = gen.matrix(gen.index(1, 6), gen.index(1, 6), -2, 2);
        test::check_gradients([&](Tape& t, const std::vector<Var>& v) { return test::weighted_sum(t, op.second(v[0])); }, {x});
      }
    }
  }
}

TEST_CASE("softmax family is finite and exact at logits of +-1e4", "[ops][reduce][extreme]") {
  Tape tape;
  Mat m(2, 3);
  m << 1e4, -1e4, 0, -1e4, -1e4, -1e4;
  const Var x = tape.variable(m);
  const Var sm = softmax(x), lsm = log_softmax(x), lse = logsumexp(x);
  CHECK(sm.value()(0, 0) == 1.0);
  CHECK(sm.value()(0, 1) == 0.0);
  CHECK(lsm.value()(0, 0) == 0.0);
  CHECK(lsm.value()(0, 1) == -2e4);
  CHECK(lsm.value()(0, 2) == -1e4);
  CHECK(lse.value()(0, 0) == 1e4);
  CHECK(test::close(lse.value()(1, 0), -1e4 + std::log(3.0), 1e-15));
  CHECK(test::close(sm.value()(1, 0), 1.0 / 3, 1e-15));
  tape.backward(sum(sm * 2.0) + sum(lsm) + sum(lse));
  CHECK(x.grad().allFinite());
}

TEST_CASE("logsumexp of a row of -inf is -inf, not NaN (masking idiom)", "[ops][reduce][extreme]") {
  Tape tape;
  const double inf = std::numeric_limits<double>::infinity();
  Mat m(2, 2);
  m << -inf, -inf, 0, -inf;
  const Var x = tape.constant(m);
  CHECK(logsumexp(x).value()(0, 0) == -inf);
  CHECK(logsumexp(x).value()(1, 0) == 0.0);
  CHECK(softmax(x).value()(1, 0) == 1.0);
  CHECK(softmax(x).value()(1, 1) == 0.0);
}

TEST_CASE("a dominant category keeps its tiny log-probability and gradient (closed forms)", "[ops][reduce][extreme]") {
  // logits (40, 0): p0 = 1 / (1 + e^-40), log p0 = -log1p(e^-40) = -4.25e-18 (x - logsumexp(x) gives 0)
  Tape tape;
  Mat m(1, 2);
  m << 40, 0;
  const Var x = tape.variable(m);
  const double e = std::exp(-40.0), lp0 = -std::log1p(e), p1 = e / (1 + e);
  const Var lsm = log_softmax(x);
  CHECK(test::close(lsm.value()(0, 0), lp0, 1e-15));
  // d log p0 / d x0 = 1 - p0 = p1 (1 - p0 rounds to 0 when computed as 1 - p0)
  tape.backward(sum(lsm * Mat((Mat(1, 2) << 1, 0).finished())));
  CHECK(test::close(x.grad()(0, 0), p1, 1e-15));
  CHECK(test::close(x.grad()(0, 1), -p1, 1e-15));
  // softmax: d p0 / d x0 = p0 p1
  tape.clear();
  const Var x2 = tape.variable(m);
  tape.backward(sum(softmax(x2) * Mat((Mat(1, 2) << 1, 0).finished())));
  CHECK(test::close(x2.grad()(0, 0), p1 / (1 + e), 1e-15));
  // the Categorical entropy near uniform logits: H = log 2 - x^2 / 2 + ..., dH/dx0 = -(x0 - x1) / 4 + ...
  tape.clear();
  Mat u(1, 2);
  u << 1e-20, -1e-20;
  const Var l = tape.variable(u);
  tape.backward(sum(Categorical<double>(l).entropy()));
  CHECK(test::close(l.grad()(0, 0), -0.5e-20, 1e-15));
  CHECK(test::close(l.grad()(0, 1), 0.5e-20, 1e-15));
}

namespace {

// log_softmax of one row by the per-row rule (detail::log_sum_exp_shifted, log_softmax_dominant):
// what the operation computed row by row before rows shorter than 32 got their vectorized pass.
template <class T>
void per_row_log_softmax(const Matrix<T>& x, Matrix<T>& y) {
  y.resize(x.rows(), x.cols());
  for (Index i = 0; i < x.rows(); ++i) {
    const T m = detail::row_shift(x.row(i));
    for (Index k = 0; k < x.cols(); ++k) y(i, k) = x(i, k) - m;
    const T lse = detail::log_sum_exp_shifted(y.row(i).data(), x.cols());
    for (Index k = 0; k < x.cols(); ++k) y(i, k) -= lse;
  }
}
template <class T>
void per_row_log_softmax_grad(const Matrix<T>& g, const Matrix<T>& y, Matrix<T>& gx) {
  gx.resize(y.rows(), y.cols());
  for (Index i = 0; i < y.rows(); ++i) {
    const T s = detail::row_sum(g.row(i).data(), g.cols());
    const Index j = detail::row_argmax(y.row(i).data(), y.cols());
    for (Index k = 0; k < y.cols(); ++k) gx(i, k) = g(i, k) - detail::safe_exp(Eigen::Array<T, 1, 1>(y(i, k)))(0) * s;
    gx(i, j) = detail::log_softmax_dominant(g.row(i).data(), y.row(i).data(), y.cols(), j);
  }
}
template <class T>
bool same_bits(T a, T b) {
  return a == b || (a != a && b != b);
}

template <class T>
void check_log_softmax_paths() {
  Gen gen(77);
  const T inf = std::numeric_limits<T>::infinity();
  const T specials[] = {T(0), -T(0), inf, -inf, std::numeric_limits<T>::denorm_min(), T(1e4), T(-1e4),
                        std::numeric_limits<T>::max(), std::numeric_limits<T>::lowest(), T(88), T(-103)};
  for (Index K : {1, 2, 3, 10, 17, 31}) {
    for (int trial = 0; trial < 12; ++trial) {
      const Index R = 1 + 7 * trial;  // up to 78 rows: whole AVX-512 packets and tails
      Matrix<T> x = gen.matrix(R, K, trial % 4 == 0 ? -100 : -4, trial % 4 == 0 ? 100 : 4).template cast<T>();
      if (trial % 3 == 0)
        for (Index n = 0; n < 1 + R * K / 4; ++n) x.data()[gen.index(0, R * K - 1)] = specials[gen.index(0, 10)];
      const Matrix<T> g = gen.matrix(R, K, -1, 1).template cast<T>();
      Matrix<T> y_ref, g_ref;
      per_row_log_softmax(x, y_ref);
      BasicTape<T> tape;
      const BasicVar<T> v = tape.variable(x);
      const BasicVar<T> y = log_softmax(v);
      // finite rows only for the gradient (a row holding +inf has NaN entries)
      tape.backward(sum(y.value().allFinite() ? y * tape.constant(g) : y * T(0)));
      INFO("K " << K << " trial " << trial);
      for (Index k = 0; k < R * K; ++k) REQUIRE(same_bits(y.value().data()[k], y_ref.data()[k]));
      for (Index i = 0; i < R; ++i) {  // each row alone (a 1 x K node) gives the same bits
        BasicTape<T> t1;
        const BasicVar<T> r = log_softmax(t1.constant(x.row(i)));
        for (Index k = 0; k < K; ++k) REQUIRE(same_bits(r.value()(0, k), y_ref(i, k)));
      }
      if (y.value().allFinite()) {
        per_row_log_softmax_grad(g, Matrix<T>(y.value()), g_ref);
        for (Index k = 0; k < R * K; ++k) REQUIRE(same_bits(v.grad().data()[k], g_ref.data()[k]));
      }
    }
  }
}

}  // namespace

TEST_CASE("log_softmax gives the per-row rule's bits at every shape (short rows vectorized)", "[ops][reduce][paths]") {
  check_log_softmax_paths<double>();
  check_log_softmax_paths<float>();
}

TEST_CASE("exp gives the same bits in a 1x1 node and inside whole packets", "[ops][reduce][paths]") {
  // Eigen's 16-wide float exp (AVX-512) is another algorithm than its 4-wide one; the library's
  // exp uses one kernel on every width (this runs in the -march=native test binary too).
  Gen gen(78);
  const Mat xd = gen.matrix(67, 1, -100, 100);
  const Matrix<float> xf = xd.cast<float>();
  BasicTape<float> tf;
  Tape td;
  const BasicVar<float> ef = exp(tf.constant(xf));
  const Var ed = exp(td.constant(xd));
  for (Index i = 0; i < xd.rows(); ++i) {
    INFO("x = " << xd(i, 0));
    BasicTape<float> t1;
    Tape t2;
    CHECK(exp(t1.constant(xf(i, 0))).item() == ef.value()(i, 0));
    CHECK(exp(t2.constant(xd(i, 0))).item() == ed.value()(i, 0));
  }
}
