// SGD and Adam follow torch.optim step for step (float64 references from
// tests/reference/make_optim_reference.py).
#include "support.hpp"

#include "reference/optim_reference.inc"

using namespace reparam;
using test::Mat;

namespace {

Mat from_rows(const double (&r)[6]) {
  Mat m(2, 3);
  for (int i = 0; i < 6; ++i) m.data()[i] = r[i];
  return m;
}

template <class Opt>
void run(Opt& opt, Parameter<double>& w, const double (&want)[5][6]) {
  Mat a(2, 3), b(2, 3);
  a << 1.0, 0.5, 2.0, 0.25, 3.0, 1.5;
  b << -0.5, 0.75, 0.1, 1.0, -2.0, 0.3;
  Tape tape;
  for (int step = 0; step < 5; ++step) {
    opt.zero_grad();
    tape.clear();
    const Var v = tape.variable(w);
    tape.backward(sum(v * v * a + v * b));
    opt.step();
    INFO("step " << step + 1);
    const Mat ref = from_rows(want[step]);
    CHECK((w.value - ref).cwiseAbs().maxCoeff() <= 1e-14 * (1 + ref.cwiseAbs().maxCoeff()));
  }
}

Parameter<double> start() {
  Mat w0(2, 3);
  w0 << 0.5, -1.25, 2.0, -0.75, 1.5, 0.25;
  return Parameter<double>(w0);
}

}  // namespace

TEST_CASE("Adam matches torch.optim.Adam", "[optim]") {
  SECTION("defaults, lr 0.1") {
    Parameter<double> w = start();
    optim::Adam opt({&w}, {0.1});
    run(opt, w, adam_default);
    CHECK(opt.steps() == 5);
  }
  SECTION("betas, eps and weight decay") {
    Parameter<double> w = start();
    optim::AdamOptions<double> o;
    o.lr = 0.05;
    o.beta1 = 0.8;
    o.beta2 = 0.95;
    o.eps = 1e-6;
    o.weight_decay = 0.01;
    optim::Adam opt({&w}, o);
    run(opt, w, adam_custom);
  }
}

TEST_CASE("SGD matches torch.optim.SGD", "[optim]") {
  SECTION("plain") {
    Parameter<double> w = start();
    optim::SGD opt({&w}, {0.1});
    run(opt, w, sgd_plain);
  }
  SECTION("momentum, dampening, weight decay") {
    Parameter<double> w = start();
    optim::SGDOptions<double> o{0.05};
    o.momentum = 0.9;
    o.dampening = 0.1;
    o.weight_decay = 0.02;
    optim::SGD opt({&w}, o);
    run(opt, w, sgd_momentum);
  }
  SECTION("nesterov") {
    Parameter<double> w = start();
    optim::SGDOptions<double> o{0.05};
    o.momentum = 0.9;
    o.nesterov = true;
    o.weight_decay = 0.01;
    optim::SGD opt({&w}, o);
    run(opt, w, sgd_nesterov);
  }
}

TEST_CASE("optimizers skip parameters no tape has read and zero gradients", "[optim]") {
  Parameter<double> used = start(), unused;
  unused.value = Mat::Ones(1, 1);  // never read: grad stays unsized
  optim::SGD opt({&used, &unused}, {0.1});
  Tape tape;
  tape.backward(sum(tape.variable(used)));
  opt.step();
  CHECK(unused.value(0, 0) == 1.0);
  CHECK(used.value(0, 0) == 0.4);
  opt.zero_grad();
  CHECK((used.grad.array() == 0).all());
}

TEST_CASE("Adam in float: the square root correctly rounded on every vector path (not Eigen's fast approximation)", "[optim][float]") {
  // One step from zero state with eps = 0: m = (1-b1) g, v = (1-b2) g^2, p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2)).
  // Every operation is one IEEE rounding (no sum a fused multiply-add could change), so the
  // expected values computed one float operation at a time must match to the bit.
  using MatF = Matrix<float>;
  test::Gen gen(21);
  const MatF g0 = gen.matrix(100, 100).cast<float>();
  Parameter<float> p(MatF::Constant(100, 100, 0.5f));
  p.grad = g0;
  optim::AdamOptions<float> o;
  o.lr = 1e-3f;
  o.eps = 0.0f;
  optim::Adam<float> adam({&p}, o);
  adam.step();
  const float bc1 = 1.0f - o.beta1, inv_bc2_sqrt = 1.0f / std::sqrt(1.0f - o.beta2), step_size = o.lr / bc1;
  int mismatches = 0;
  for (Index i = 0; i < g0.size(); ++i) {
    const float g = g0.data()[i];
    const float m = (1.0f - o.beta1) * g;
    const float gg = g * g;
    const float v = (1.0f - o.beta2) * gg;
    const float s = std::sqrt(v);
    const float den = s * inv_bc2_sqrt;
    const float num = step_size * m;
    const float want = 0.5f - num / den;
    mismatches += p.value.data()[i] != want;
  }
  CHECK(mismatches == 0);
}

namespace {
// One element of Adam's update computed one IEEE operation at a time, each "x y + z" one fused
// multiply-add where the build has them (else a product rounded, then a sum), as
// detail::adam_packet documents.
template <class T>
T madd_ref(T a, T b, T c) {
#ifdef EIGEN_VECTORIZE_FMA
  return std::fma(a, b, c);
#else
  const volatile T ab = a * b;
  return ab + c;
#endif
}
template <class T>
void check_adam_arithmetic() {
  test::Gen gen(41);
  for (const Index n : {Index(1), Index(7), Index(16), Index(37), Index(100)}) {
    const Matrix<T> p0 = gen.matrix(1, n).template cast<T>(), g0 = gen.matrix(1, n).template cast<T>();
    const Matrix<T> m0 = (T(0.1) * gen.matrix(1, n)).template cast<T>(), v0 = (T(0.01) * gen.matrix(1, n).cwiseAbs()).template cast<T>();
    for (const T wd : {T(0), T(0.01)}) {
      Parameter<T> p(p0);
      p.grad = g0;
      optim::AdamOptions<T> o;
      o.lr = T(1e-2);
      o.eps = T(1e-6);
      o.weight_decay = wd;
      optim::Adam<T> adam({&p}, o);
      adam.set_steps(4);  // bias corrections of step 5
      adam.exp_avg(0) = m0;
      adam.exp_avg_sq(0) = v0;
      adam.step();
      using std::pow;
      using std::sqrt;
      const T step_size = o.lr / (T(1) - pow(o.beta1, T(5))), inv_bc2_sqrt = T(1) / sqrt(T(1) - pow(o.beta2, T(5)));
      int mismatches = 0;
      for (Index i = 0; i < n; ++i) {
        T g = g0(0, i);
        if (wd != T(0)) g = madd_ref(wd, p0(0, i), g);
        const T m = madd_ref(T(1) - o.beta1, g, o.beta1 * m0(0, i));
        const T v = madd_ref(T(1) - o.beta2, g * g, o.beta2 * v0(0, i));
        const T den = madd_ref(T(sqrt(v)), inv_bc2_sqrt, o.eps);
        const T want = p0(0, i) - step_size * m / den;
        mismatches += p.value(0, i) != want || adam.exp_avg(0)(0, i) != m || adam.exp_avg_sq(0)(0, i) != v;
      }
      INFO(n << " elements, weight decay " << wd);
      CHECK(mismatches == 0);
    }
  }
}
}  // namespace

TEST_CASE("Adam's arithmetic: fused multiply-adds written out, the same bits in packets and tails", "[optim]") {
  check_adam_arithmetic<float>();
  check_adam_arithmetic<double>();
}
