// Every operation and distribution member against mpmath at 100 digits, in double and in float,
// on the scalar (1x1) path and on the vectorized path (17 copies of the case stacked as rows).
//
// The reference values, their gradients and their condition allowances come from
// tests/reference/make_mpmath_reference.py (see its header for the method). An error is measured
// in units of  ulp(exact) + u * allowance:  one unit is one ulp where the problem is well
// conditioned, and more only where the inputs' own rounding would move the exact answer that far.
// Where the exact result is subnormal, the unit is the smallest normal number (a result flushed
// to 0 is accurate). Results whose exact value overflows must be +-inf; nothing may be NaN.
//
// REPARAM_MPMATH_REPORT=1 prints the worst error of every function (the table in the README).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "support.hpp"

using namespace reparam;

namespace {

struct MpCaseHead {
  const char* fn;
  double k0, k1;
  std::size_t offset;
};

constexpr double INF = std::numeric_limits<double>::infinity();

#include "reference/mpmath_reference.inc"

// One case, read from the flat array.
struct MpInput {
  Index rows = 0, cols = 0;
  bool var = false, cond = false;
  std::vector<double> v;
};
struct MpCase {
  std::string fn;
  double k0 = 0, k1 = 0;
  std::vector<MpInput> in;
  Index out_rows = 0, out_cols = 0;
  std::vector<double> w, hi, lo, cabs;
  std::vector<std::vector<double>> ghi, glo, gcabs;  // per Var input
};

MpCase read_case(const MpCaseHead& h, const double* data) {
  MpCase c;
  c.fn = h.fn;
  c.k0 = h.k0;
  c.k1 = h.k1;
  const double* p = data + h.offset;
  const int n = int(*p++);
  for (int i = 0; i < n; ++i) {
    MpInput in;
    in.rows = Index(*p++);
    in.cols = Index(*p++);
    const int flags = int(*p++);
    in.var = flags & 1;
    in.cond = flags & 2;
    in.v.assign(p, p + in.rows * in.cols);
    p += in.rows * in.cols;
    c.in.push_back(in);
  }
  c.out_rows = Index(*p++);
  c.out_cols = Index(*p++);
  const std::size_t m = std::size_t(c.out_rows * c.out_cols);
  c.w.assign(p, p + m);
  p += m;
  for (std::size_t k = 0; k < m; ++k) {
    c.hi.push_back(*p++);
    c.lo.push_back(*p++);
  }
  c.cabs.assign(p, p + m);
  p += m;
  for (const MpInput& in : c.in) {
    if (!in.var) continue;
    const std::size_t s = in.v.size();
    std::vector<double> hi, lo;
    for (std::size_t k = 0; k < s; ++k) {
      hi.push_back(*p++);
      lo.push_back(*p++);
    }
    c.ghi.push_back(hi);
    c.glo.push_back(lo);
    c.gcabs.emplace_back(p, p + s);
    p += s;
  }
  return c;
}

template <class T>
using Fn = std::function<BasicVar<T>(const std::vector<BasicVar<T>>&, const std::vector<Matrix<T>>&, T, T)>;

template <class T>
std::map<std::string, Fn<T>> functions() {
  using V = BasicVar<T>;
  using Vs = std::vector<V>;
  using Ms = std::vector<Matrix<T>>;
  std::map<std::string, Fn<T>> f;
  auto un = [&](const char* name, V (*g)(const V&)) { f[name] = [g](const Vs& v, const Ms&, T, T) { return g(v[0]); }; };
  f["add"] = [](const Vs& v, const Ms&, T, T) { return v[0] + v[1]; };
  f["sub"] = [](const Vs& v, const Ms&, T, T) { return v[0] - v[1]; };
  f["mul"] = [](const Vs& v, const Ms&, T, T) { return v[0] * v[1]; };
  f["div"] = [](const Vs& v, const Ms&, T, T) { return v[0] / v[1]; };
  f["neg"] = [](const Vs& v, const Ms&, T, T) { return -v[0]; };
  f["add_scalar"] = [](const Vs& v, const Ms&, T k, T) { return v[0] + k; };
  f["mul_scalar"] = [](const Vs& v, const Ms&, T k, T) { return v[0] * k; };
  f["rdiv_scalar"] = [](const Vs& v, const Ms&, T k, T) { return k / v[0]; };
  f["rsub_scalar"] = [](const Vs& v, const Ms&, T k, T) { return k - v[0]; };
  un("exp", &reparam::exp<T>);
  un("log", &reparam::log<T>);
  un("log1p", &reparam::log1p<T>);
  un("expm1", &reparam::expm1<T>);
  un("sqrt", &reparam::sqrt<T>);
  un("square", &reparam::square<T>);
  un("abs", &reparam::abs<T>);
  un("tanh", &reparam::tanh<T>);
  un("sigmoid", &reparam::sigmoid<T>);
  un("log_sigmoid", &reparam::log_sigmoid<T>);
  un("relu", &reparam::relu<T>);
  un("softplus", &reparam::softplus<T>);
  f["pow_scalar"] = [](const Vs& v, const Ms&, T k, T) { return pow(v[0], k); };
  f["pow"] = [](const Vs& v, const Ms&, T, T) { return pow(v[0], v[1]); };
  f["clamp"] = [](const Vs& v, const Ms&, T lo, T hi) { return clamp(v[0], lo, hi); };
  f["bce_with_logits"] = [](const Vs& v, const Ms&, T, T) { return bce_with_logits(v[0], v[1]); };
  // "sum" is checked as sum() on one row and as sum_rows() on the stacked rows
  f["sum"] = [](const Vs& v, const Ms&, T, T) { return v[0].rows() == 1 ? sum(v[0]) : sum_rows(v[0]); };
  f["mean"] = [](const Vs& v, const Ms&, T, T) { return mean(v[0]); };
  un("logsumexp", &reparam::logsumexp<T>);
  un("softmax", &reparam::softmax<T>);
  un("log_softmax", &reparam::log_softmax<T>);
  f["soft_argmax"] = [](const Vs& v, const Ms&, T, T) { return soft_argmax(v[0]); };

  auto family = [&](const std::string& name, auto make) {
    f[name + ".log_prob"] = [make](const Vs& v, const Ms&, T, T) { return make(v[0], v[1]).log_prob(v[2]); };
    f[name + ".cdf"] = [make](const Vs& v, const Ms&, T, T) { return make(v[0], v[1]).cdf(v[2]); };
    f[name + ".icdf"] = [make](const Vs& v, const Ms&, T, T) { return make(v[0], v[1]).icdf(v[2]); };
    f[name + ".reparameterize"] = [make](const Vs& v, const Ms& m, T, T) {
      return v[2].requires_grad() ? make(v[0], v[1]).reparameterize(v[2]) : make(v[0], v[1]).reparameterize(m[2]);
    };
    f[name + ".entropy"] = [make](const Vs& v, const Ms&, T, T) { return make(v[0], v[1]).entropy(); };
    f[name + ".mean"] = [make](const Vs& v, const Ms&, T, T) { return make(v[0], v[1]).mean(); };
    f[name + ".stddev"] = [make](const Vs& v, const Ms&, T, T) { return make(v[0], v[1]).stddev(); };
    f[name + ".variance"] = [make](const Vs& v, const Ms&, T, T) { return make(v[0], v[1]).variance(); };
  };
  family("Normal", [](const V& a, const V& b) { return Normal<T>(a, b); });
  family("Gumbel", [](const V& a, const V& b) { return Gumbel<T>(a, b); });
  family("Logistic", [](const V& a, const V& b) { return Logistic<T>(a, b); });
  family("Laplace", [](const V& a, const V& b) { return Laplace<T>(a, b); });

  f["RelaxedBernoulli.log_prob"] = [](const Vs& v, const Ms&, T, T) { return RelaxedBernoulli<T>(v[0], v[1]).log_prob(v[2]); };
  f["RelaxedBernoulli.cdf"] = [](const Vs& v, const Ms&, T, T) { return RelaxedBernoulli<T>(v[0], v[1]).cdf(v[2]); };
  f["RelaxedBernoulli.icdf"] = [](const Vs& v, const Ms&, T, T) { return RelaxedBernoulli<T>(v[0], v[1]).icdf(v[2]); };
  f["RelaxedBernoulli.reparameterize"] = [](const Vs& v, const Ms& m, T, T) { return RelaxedBernoulli<T>(v[0], v[1]).reparameterize(m[2]); };
  f["RelaxedBernoulli.probs"] = [](const Vs& v, const Ms&, T, T) { return RelaxedBernoulli<T>(v[0], v[1]).probs(); };
  f["LogitRelaxedBernoulli.log_prob"] = [](const Vs& v, const Ms&, T, T) { return LogitRelaxedBernoulli<T>(v[0], v[1]).log_prob(v[2]); };
  f["LogitRelaxedBernoulli.reparameterize"] = [](const Vs& v, const Ms& m, T, T) {
    return LogitRelaxedBernoulli<T>(v[0], v[1]).reparameterize(m[2]);
  };
  f["Bernoulli.log_prob"] = [](const Vs& v, const Ms& m, T, T) { return Bernoulli<T>(v[0]).log_prob(m[1]); };
  f["Bernoulli.entropy"] = [](const Vs& v, const Ms&, T, T) { return Bernoulli<T>(v[0]).entropy(); };
  f["Bernoulli.probs"] = [](const Vs& v, const Ms&, T, T) { return Bernoulli<T>(v[0]).probs(); };
  f["Bernoulli.mean"] = [](const Vs& v, const Ms&, T, T) { return Bernoulli<T>(v[0]).mean(); };
  f["Bernoulli.variance"] = [](const Vs& v, const Ms&, T, T) { return Bernoulli<T>(v[0]).variance(); };
  f["Bernoulli.stddev"] = [](const Vs& v, const Ms&, T, T) { return Bernoulli<T>(v[0]).stddev(); };
  f["Categorical.log_prob"] = [](const Vs& v, const Ms& m, T, T) { return Categorical<T>(v[0]).log_prob(m[1]); };
  f["Categorical.entropy"] = [](const Vs& v, const Ms&, T, T) { return Categorical<T>(v[0]).entropy(); };
  f["Categorical.probs"] = [](const Vs& v, const Ms&, T, T) { return Categorical<T>(v[0]).probs(); };
  f["Categorical.log_probs"] = [](const Vs& v, const Ms&, T, T) { return Categorical<T>(v[0]).log_probs(); };
  f["Categorical.mean"] = [](const Vs& v, const Ms&, T, T) { return Categorical<T>(v[0]).mean(); };
  f["Categorical.variance"] = [](const Vs& v, const Ms&, T, T) { return Categorical<T>(v[0]).variance(); };
  f["Categorical.stddev"] = [](const Vs& v, const Ms&, T, T) { return Categorical<T>(v[0]).stddev(); };
  f["Concrete.log_prob"] = [](const Vs& v, const Ms&, T, T) { return Concrete<T>(v[0], v[1]).log_prob(v[2]); };
  f["Concrete.reparameterize"] = [](const Vs& v, const Ms& m, T, T) { return Concrete<T>(v[0], v[1]).reparameterize(m[2]); };
  f["Concrete.probs"] = [](const Vs& v, const Ms&, T, T) { return Concrete<T>(v[0], v[1]).probs(); };
  f["ExpConcrete.log_prob"] = [](const Vs& v, const Ms&, T, T) { return ExpConcrete<T>(v[0], v[1]).log_prob(v[2]); };
  f["ExpConcrete.reparameterize"] = [](const Vs& v, const Ms& m, T, T) { return ExpConcrete<T>(v[0], v[1]).reparameterize(m[2]); };
  f["kl.Normal"] = [](const Vs& v, const Ms&, T, T) { return kl_divergence(Normal<T>(v[0], v[1]), Normal<T>(v[2], v[3])); };
  f["kl.Laplace"] = [](const Vs& v, const Ms&, T, T) { return kl_divergence(Laplace<T>(v[0], v[1]), Laplace<T>(v[2], v[3])); };
  f["kl.Bernoulli"] = [](const Vs& v, const Ms&, T, T) { return kl_divergence(Bernoulli<T>(v[0]), Bernoulli<T>(v[1])); };
  f["kl.Categorical"] = [](const Vs& v, const Ms&, T, T) { return kl_divergence(Categorical<T>(v[0]), Categorical<T>(v[1])); };
  return f;
}

template <class T>
struct Traits;
template <>
struct Traits<double> {
  static constexpr int digits = 53, emin = -1022;
  static const double* data() { return mp_data_double; }
  static const MpCaseHead* cases() { return mp_cases_double; }
  static std::size_t count() { return sizeof(mp_cases_double) / sizeof(MpCaseHead); }
  static const char* name() { return "double"; }
};
template <>
struct Traits<float> {
  static constexpr int digits = 24, emin = -126;
  static const double* data() { return mp_data_float; }
  static const MpCaseHead* cases() { return mp_cases_float; }
  static std::size_t count() { return sizeof(mp_cases_float) / sizeof(MpCaseHead); }
  static const char* name() { return "float"; }
};

// The spacing of type T at x (x a T value held in a double): ulp of the binade, denorm_min below.
template <class T>
double ulp(double x) {
  const double a = std::abs(x);
  const int e = a >= std::ldexp(1.0, Traits<T>::emin) ? std::ilogb(a) : Traits<T>::emin;
  return std::ldexp(1.0, e - (Traits<T>::digits - 1));
}

// Error of `got` against the exact (hi + lo), in units of ulp(hi) + u * allowance.
template <class T>
double error_units(T got, double hi, double lo, double cabs) {
  const double g = double(got);
  if (std::isinf(hi)) return g == hi ? 0.0 : INF;
  if (!std::isfinite(g)) return INF;
  // Below the smallest normal number the promise is an absolute one: flushing to 0 or any value
  // within one smallest-normal of the exact result counts as accurate.
  const double smallest_normal = std::ldexp(1.0, Traits<T>::emin);
  const double unit = ulp<T>(hi) + std::ldexp(cabs, -Traits<T>::digits) + (std::abs(hi) < smallest_normal ? smallest_normal : 0.0);
  return std::abs((g - hi) - lo) / unit;
}

// Disagreement of two results of type T, in the same units as error_units (0 when both are the
// same infinity). Elementwise functions agree bit for bit (their scalar path runs the packet
// code); reductions may differ by their summation order, which the condition allowance bounds.
template <class T>
double units_apart(T a, T b, double cabs) {
  if (a == b) return 0.0;
  if (!std::isfinite(a) || !std::isfinite(b)) return INF;
  const double m = std::max(std::abs(double(a)), std::abs(double(b)));
  const double smallest_normal = std::ldexp(1.0, Traits<T>::emin);
  return std::abs(double(a) - double(b)) / (ulp<T>(m) + std::ldexp(cabs, -Traits<T>::digits) + (m < smallest_normal ? smallest_normal : 0.0));
}

// ---- known limits ------------------------------------------------------------------------------
// Where the library keeps a weaker promise than "a few ulps of the exact result", the case is
// measured against that promise instead, and the README lists it (section "Accuracy"):
//  - absolute: the KL divergences are differences of nearly equal terms where the two
//    distributions are close (log p - log q, p - q): their error is a few ulps of the largest term,
//    not of a result that cancels to nearly nothing. (The row operations over categories used to
//    be here too: softmax, log_softmax, soft_argmax, Categorical, Concrete and ExpConcrete now keep
//    a dominant category and nearly equal logits to the last bits, see detail::log_sum_exp_shifted.)
//  - quantile_slope: Normal.icdf's derivative 1/phi(x) = sqrt(2 pi) e^(x^2/2) carries x's own
//    rounding multiplied by x^2: relative error up to x^2 ulps (p = 1e-300: x = -37, ~1400 ulps).
//  - skip: the gradients of RelaxedBernoulli.cdf and .icdf at x or p below 1e-290 go through a
//    sigmoid that underflows to a subnormal (the chain rule multiplies it back by 1/x), and float
//    Gumbel.log_prob's scale gradient beyond |z| = 80 (double: 700) overflows an intermediate
//    e^z z; ExpConcrete.log_prob's gradients at log-values beyond 1e3 in size weigh them with
//    probabilities whose exponent was rounded at that size (relative errors up to ~1e-12);
//    Normal.icdf's gradient at p below 1e-300 (float: 1e-37).
//  - dense_density: the gradients of Concrete.log_prob and ExpConcrete.log_prob sum terms of
//    about 1/x and 1/tau that cancel (coordinates of 1e-310, log-values of -1e4): within 128 times
//    the strict bound (relative errors up to about 1e-13).
enum class Rule { strict, absolute, quantile_slope, skip, dense_density };

Rule limit_for(const MpCase& c, bool gradient, bool is_float) {
  const std::string& f = c.fn;
  auto starts = [&](const char* p) { return f.rfind(p, 0) == 0; };
  if (f == "ExpConcrete.log_prob" && gradient) {
    double ymax = 0;
    for (double v : c.in[2].v) ymax = std::max(ymax, std::abs(v));
    if (ymax > 1e3) return Rule::skip;
  }
  // REPARAM_MPMATH_STRICT=1 reports the absolute-rule functions in strict units (a diagnostic)
  static const bool strict_all = [] { const char* e = std::getenv("REPARAM_MPMATH_STRICT"); return e && *e == '1'; }();
  if (strict_all) return Rule::strict;
  if ((f == "Concrete.log_prob" || f == "ExpConcrete.log_prob") && gradient) return Rule::dense_density;
  if (starts("kl.")) return Rule::absolute;
  if (f == "Normal.icdf" && gradient) {
    const double p = c.in[2].v[0];
    // below these p, 1/phi(x) overflows (scale 1e-30) or p is subnormal
    if (std::min(p, 1 - p) < (is_float ? 1e-37 : 1e-300)) return Rule::skip;
    return Rule::quantile_slope;
  }
  if ((f == "RelaxedBernoulli.cdf" || f == "RelaxedBernoulli.icdf") && gradient) {
    const double x = c.in[2].v[0];
    const double edge = is_float ? 1e-20 : 1e-290;
    if (x < edge || 1 - x < edge) return Rule::skip;
  }
  if (f == "Gumbel.log_prob" && gradient) {
    const double z = (c.in[2].v[0] - c.in[0].v[0]) / c.in[1].v[0];
    if (std::abs(z) > (is_float ? 80 : 700)) return Rule::skip;
  }
  return Rule::strict;
}

// The largest term of a case: its largest input (divided by the temperature, for the relaxed
// families), at least 1.
double largest_term(const MpCase& c) {
  double m = 1;
  for (const MpInput& in : c.in)
    for (double v : in.v) m = std::max(m, std::abs(v));
  if (c.fn.rfind("Concrete.", 0) == 0 || c.fn.rfind("ExpConcrete.", 0) == 0) m /= c.in[1].v[0];
  return m;
}

struct Worst {
  int cases = 0;
  double value = 0, grad = 0, paths = 0;
  std::string value_at, grad_at, paths_at;
};

template <class T>
std::string describe(const MpCase& c) {
  std::string s = c.fn + "(";
  char buf[64];
  for (std::size_t i = 0; i < c.in.size(); ++i) {
    s += i ? "; " : "";
    for (std::size_t k = 0; k < c.in[i].v.size(); ++k) {
      std::snprintf(buf, sizeof buf, "%s%.9g", k ? " " : "", c.in[i].v[k]);
      s += buf;
    }
  }
  if (c.k0 != 0 || c.k1 != 0) {
    std::snprintf(buf, sizeof buf, "; k=%.9g,%.9g", c.k0, c.k1);
    s += buf;
  }
  return s + ")";
}

// Evaluates a case with every input stacked `copies` times (rows), returns value and gradients.
template <class T>
void run_case(const MpCase& c, const Fn<T>& fn, Index copies, Matrix<T>& value, std::vector<Matrix<T>>& grads) {
  BasicTape<T> t;
  std::vector<BasicVar<T>> vars;
  std::vector<Matrix<T>> mats;
  for (const MpInput& in : c.in) {
    Matrix<T> one(in.rows, in.cols);
    for (Index i = 0; i < in.rows; ++i)
      for (Index j = 0; j < in.cols; ++j) one(i, j) = T(in.v[std::size_t(i * in.cols + j)]);
    Matrix<T> m = one.replicate(copies, 1);
    vars.push_back(in.var ? t.variable(m) : t.constant(m));
    mats.push_back(m);
  }
  const BasicVar<T> out = fn(vars, mats, T(c.k0), T(c.k1));
  REQUIRE(out.rows() == c.out_rows * copies);
  REQUIRE(out.cols() == c.out_cols);
  Matrix<T> w1(c.out_rows, c.out_cols);
  for (Index i = 0; i < c.out_rows; ++i)
    for (Index j = 0; j < c.out_cols; ++j) w1(i, j) = T(c.w[std::size_t(i * c.out_cols + j)]);
  const Matrix<T> w = w1.replicate(copies, 1);
  value = out.value();
  t.backward(sum(out * w));
  grads.clear();
  for (std::size_t i = 0; i < c.in.size(); ++i)
    if (c.in[i].var) grads.push_back(vars[i].grad());
}

template <class T>
void check_all(double value_tol, double grad_tol, double paths_tol) {
  const auto fns = functions<T>();
  std::map<std::string, Worst> worst;
  const Index copies = 17;  // more than one AVX-512 packet of float, with a scalar tail
  for (std::size_t n = 0; n < Traits<T>::count(); ++n) {
    const MpCase c = read_case(Traits<T>::cases()[n], Traits<T>::data());
    const auto it = fns.find(c.fn);
    INFO(Traits<T>::name() << " " << describe<T>(c));
    REQUIRE(it != fns.end());
    Worst& wr = worst[c.fn];
    ++wr.cases;
    const bool stack = c.fn != "mean";  // mean() is a whole-matrix reduction
    Matrix<T> v1, vn;
    std::vector<Matrix<T>> g1, gn;
    run_case<T>(c, it->second, 1, v1, g1);
    if (stack) run_case<T>(c, it->second, copies, vn, gn);
    auto track = [&](double e, double& slot, std::string& at, const std::string& what) {
      if (e > slot || std::isnan(e)) {
        slot = std::isnan(e) ? INF : e;
        at = describe<T>(c) + " " + what;
      }
    };
    for (Index k = 0; k < v1.size(); ++k) {
      const Index i = k / c.out_cols, j = k % c.out_cols;
      const std::size_t s = std::size_t(k);
      const Rule rule = limit_for(c, false, std::is_same<T, float>::value);
      double e = error_units<T>(v1(i, j), c.hi[s], c.lo[s], c.cabs[s]);
      if (rule == Rule::absolute) e = std::min(e, std::abs(double(v1(i, j)) - c.hi[s]) / ulp<T>(largest_term(c)));
      if (rule == Rule::skip) e = 0;
      INFO("value " << k << ": got " << double(v1(i, j)) << ", exact " << c.hi[s] << " (+" << c.lo[s] << "), allowance " << c.cabs[s]);
      CHECK(e <= value_tol);
      track(e, wr.value, wr.value_at, "value");
      for (Index r = 0; stack && r < copies; ++r) {
        double d = units_apart<T>(v1(i, j), vn(r * c.out_rows + i, j), c.cabs[s]);
        if (rule == Rule::absolute)
          d = std::min(d, std::abs(double(v1(i, j)) - double(vn(r * c.out_rows + i, j))) / ulp<T>(largest_term(c)));
        CHECK(d <= paths_tol);
        track(d, wr.paths, wr.paths_at, "value, stacked");
      }
    }
    std::size_t gi = 0;
    for (std::size_t a = 0; a < c.in.size(); ++a) {
      if (!c.in[a].var) continue;
      const MpInput& in = c.in[a];
      for (Index k = 0; k < Index(in.v.size()); ++k) {
        const Index i = k / in.cols, j = k % in.cols;
        const std::size_t s = std::size_t(k);
        const Rule rule = limit_for(c, true, std::is_same<T, float>::value);
        double e = error_units<T>(g1[gi](i, j), c.ghi[gi][s], c.glo[gi][s], c.gcabs[gi][s]);
        // absolute: ulps of the largest term times the largest upstream weight (2)
        if (rule == Rule::absolute) e = std::min(e, std::abs(double(g1[gi](i, j)) - c.ghi[gi][s]) / (2 * ulp<T>(largest_term(c))));
        if (rule == Rule::quantile_slope) {
          const double z = detail::ndtri(c.in[2].v[0]);  // the standard quantile (loc + scale z may round to loc)
          e /= 1 + z * z;
        }
        if (rule == Rule::skip) e = 0;
        if (rule == Rule::dense_density) e /= 128;
        INFO("gradient of input " << a << " element " << k << ": got " << double(g1[gi](i, j)) << ", exact " << c.ghi[gi][s]
                                  << ", allowance " << c.gcabs[gi][s]);
        CHECK(e <= grad_tol);
        track(e, wr.grad, wr.grad_at, "d/d input " + std::to_string(a));
        for (Index r = 0; stack && r < copies; ++r) {
          double d = units_apart<T>(g1[gi](i, j), gn[gi](r * in.rows + i, j), c.gcabs[gi][s]);
          if (rule == Rule::absolute || rule == Rule::dense_density)
            d = std::min(d, std::abs(double(g1[gi](i, j)) - double(gn[gi](r * in.rows + i, j))) / (2 * ulp<T>(largest_term(c))));
          CHECK(d <= paths_tol);
          track(d, wr.paths, wr.paths_at, "d/d input " + std::to_string(a) + ", stacked");
        }
      }
      ++gi;
    }
  }
  if (const char* r = std::getenv("REPARAM_MPMATH_REPORT"); r && *r == '1') {
    std::printf("\n%s: worst errors against mpmath (units: ulp + u * condition allowance; the known limits\n"
                "in their own units, see limit_for)\n", Traits<T>::name());
    std::printf("| function | cases | value | gradient | 1x1 vs stacked |\n| --- | --- | --- | --- | --- |\n");
    for (const auto& [name, wr] : worst) std::printf("| %s | %d | %.2f | %.2f | %.2f |\n", name.c_str(), wr.cases, wr.value, wr.grad, wr.paths);
    if (std::getenv("REPARAM_MPMATH_WHERE"))
      for (const auto& [name, wr] : worst)
        std::printf("%s\n  value: %s\n  grad: %s\n  paths: %s\n", name.c_str(), wr.value_at.c_str(), wr.grad_at.c_str(), wr.paths_at.c_str());
  }
}

}  // namespace

TEST_CASE("every operation and distribution member agrees with mpmath in double, on both paths", "[mpmath][reference]") {
  check_all<double>(4.0, 8.0, 4.0);
}

TEST_CASE("every operation and distribution member agrees with mpmath in float, on both paths", "[mpmath][reference][float]") {
  check_all<float>(4.0, 8.0, 4.0);
}
