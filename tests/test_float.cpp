// Float: the same graphs in float and double agree to float precision, values and gradients.
#include "support.hpp"

using namespace reparam;
using test::Gen;
using test::Mat;

namespace {
template <class T>
BasicVar<T> mixed(BasicTape<T>&, const std::vector<BasicVar<T>>& v) {
  const BasicVar<T> h = tanh(matmul(v[0], v[1]) + v[2]);  // 5x4 * 4x3 + 1x3
  const BasicVar<T> p = softmax(h * T(2));
  const BasicVar<T> l = log_softmax(h) + logsumexp(h) * T(0.1) + sum_rows(h) / T(3);
  const BasicVar<T> e = softplus(h) - log_sigmoid(h) + sigmoid(h) * relu(h) + abs(h) + exp(h) + expm1(h) + square(h);
  const BasicVar<T> q = sqrt(e + T(1)) + log(e + T(1)) + log1p(e) + pow(e + T(1), T(1.5)) + pow(p + T(1), v[2]);
  const BasicVar<T> b = bce_with_logits(h, p);
  return sum(p * l) + mean(q) + sum(sum_cols(b)) + sum(reshape(transpose(e), 1, 15) * T(0.01)) +
         sum(T(1) / (T(2) + h) - h / T(3));
}
}  // namespace

TEST_CASE("float graphs agree with double graphs to float precision", "[float]") {
  Gen gen(40);
  const std::vector<Mat> xs = {gen.matrix(5, 4), gen.matrix(4, 3), gen.matrix(1, 3)};
  Tape td;
  TapeF tf;
  std::vector<Var> vd;
  std::vector<VarF> vf;
  for (const Mat& x : xs) {
    vd.push_back(td.variable(x));
    vf.push_back(tf.variable(x.cast<float>().eval()));
  }
  const Var yd = mixed(td, vd);
  const VarF yf = mixed(tf, vf);
  CHECK(test::close(double(yf.item()), yd.item(), 2e-5));
  td.backward(yd);
  tf.backward(yf);
  for (std::size_t k = 0; k < xs.size(); ++k) {
    const Mat gd = vd[k].grad();
    const Mat gf = vf[k].grad().cast<double>();
    INFO("input " << k);
    CHECK((gd - gf).cwiseAbs().maxCoeff() <= 1e-4 * (1 + gd.cwiseAbs().maxCoeff()));
  }
}

TEST_CASE("the double graph used for the float check matches central differences", "[float][grad]") {
  Gen gen(40);
  const std::vector<Mat> xs = {gen.matrix(5, 4), gen.matrix(4, 3), gen.matrix(1, 3)};
  test::check_gradients([](Tape& t, const std::vector<Var>& v) { return mixed(t, v); }, xs, 1e-5, 1e-6);
}

TEST_CASE("float GEMM path and float extremes", "[float]") {
  Gen gen(41);
  const Mat a = gen.matrix(64, 100), b = gen.matrix(100, 40);
  TapeF t;
  const VarF va = t.variable(a.cast<float>().eval()), vb = t.variable(b.cast<float>().eval());
  const VarF y = matmul(va, vb);
  CHECK((y.value().cast<double>() - a * b).cwiseAbs().maxCoeff() < 1e-4);
  t.backward(sum(y));
  const Mat ga = Mat::Ones(64, 40) * b.transpose();
  CHECK((va.grad().cast<double>() - ga).cwiseAbs().maxCoeff() < 1e-3);
  Matrix<float> m(1, 2);
  m << -1e4f, 1e4f;
  const VarF x = t.variable(m);
  t.backward(sum(softplus(x)) + sum(log_sigmoid(x)) + sum(bce_with_logits(x, m * 0.f)) + sum(logsumexp(x)));
  CHECK(x.grad().allFinite());
}
