#pragma once
// Helpers shared by the tests: deterministic random matrices and a central-difference gradient
// checker that compares every leaf's tape gradient with (f(x + h) - f(x - h)) / 2h.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <reparam/reparam.hpp>

#include "catch.hpp"

namespace test {

using reparam::Index;
using Mat = reparam::Matrix<double>;

/// splitmix64: the same numbers on every platform (no std:: distributions).
struct Gen {
  std::uint64_t s;
  explicit Gen(std::uint64_t seed) : s(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform(double lo = 0.0, double hi = 1.0) { return lo + (hi - lo) * double(next() >> 11) * 0x1.0p-53; }
  Index index(Index lo, Index hi) { return lo + Index(next() % std::uint64_t(hi - lo + 1)); }
  Mat matrix(Index r, Index c, double lo = -1.0, double hi = 1.0) {
    Mat m(r, c);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = uniform(lo, hi);
    return m;
  }
};

/// Builds a scalar loss from leaves on a fresh tape.
using Fn = std::function<reparam::Var(reparam::Tape&, const std::vector<reparam::Var>&)>;

/// Runs f with every input as a variable; returns the tape gradients.
inline std::vector<Mat> tape_grads(const Fn& f, const std::vector<Mat>& xs, double* value = nullptr) {
  reparam::Tape tape;
  std::vector<reparam::Var> vs;
  for (const Mat& x : xs) vs.push_back(tape.variable(x));
  reparam::Var y = f(tape, vs);
  tape.backward(y);
  if (value) *value = y.item();
  std::vector<Mat> gs;
  for (auto& v : vs) gs.emplace_back(v.grad());
  return gs;
}

inline double eval(const Fn& f, const std::vector<Mat>& xs) {
  reparam::Tape tape;
  std::vector<reparam::Var> vs;
  for (const Mat& x : xs) vs.push_back(tape.constant(x));
  // Constants only: evaluate without gradient bookkeeping.
  return f(tape, vs).item();
}

/// Central differences with step h * max(1, |x|); error is O(h^2).
inline std::vector<Mat> numeric_grads(const Fn& f, const std::vector<Mat>& xs, double h = 1e-6) {
  std::vector<Mat> gs;
  std::vector<Mat> p = xs;
  for (std::size_t k = 0; k < xs.size(); ++k) {
    Mat g(xs[k].rows(), xs[k].cols());
    for (Index i = 0; i < xs[k].size(); ++i) {
      const double x0 = xs[k].data()[i];
      const double step = h * std::max(1.0, std::abs(x0));
      p[k].data()[i] = x0 + step;
      const double fp = eval(f, p);
      p[k].data()[i] = x0 - step;
      const double fm = eval(f, p);
      p[k].data()[i] = x0;
      g.data()[i] = (fp - fm) / (2 * step);
    }
    gs.push_back(g);
  }
  return gs;
}

/// Checks tape gradients against central differences, element by element.
inline void check_gradients(const Fn& f, const std::vector<Mat>& xs, double rtol = 1e-6, double atol = 1e-7) {
  const std::vector<Mat> ga = tape_grads(f, xs);
  const std::vector<Mat> gn = numeric_grads(f, xs);
  for (std::size_t k = 0; k < xs.size(); ++k) {
    INFO("input " << k << " (" << xs[k].rows() << "x" << xs[k].cols() << ")");
    REQUIRE(ga[k].rows() == xs[k].rows());
    REQUIRE(ga[k].cols() == xs[k].cols());
    for (Index i = 0; i < xs[k].size(); ++i) {
      INFO("element " << i << ": tape " << ga[k].data()[i] << " vs numeric " << gn[k].data()[i]);
      CHECK(std::abs(ga[k].data()[i] - gn[k].data()[i]) <= atol + rtol * std::abs(gn[k].data()[i]));
    }
  }
}

/// Reduces any-shaped output to a scalar with fixed random weights, so the check covers the full
/// vector-Jacobian product and not only the gradient of the plain sum.
inline reparam::Var weighted_sum(reparam::Tape& t, const reparam::Var& y, std::uint64_t seed = 99) {
  Gen g(seed);
  return reparam::sum(y * t.constant(g.matrix(y.rows(), y.cols(), 0.5, 1.5)));
}

/// Relative closeness for values.
inline bool close(double a, double b, double rtol = 1e-13, double atol = 0.0) {
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::abs(a - b) <= atol + rtol * std::max(std::abs(a), std::abs(b));
}

/// Kolmogorov-Smirnov statistic of a sample against a cdf.
template <class Cdf>
double ks_statistic(std::vector<double> x, Cdf cdf) {
  std::sort(x.begin(), x.end());
  const double n = double(x.size());
  double d = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double f = cdf(x[i]);
    d = std::max({d, f - double(i) / n, double(i + 1) / n - f});
  }
  return d;
}
/// Its critical value at level 1e-4 (asymptotic Kolmogorov distribution): sqrt(-log(alpha / 2) / 2) / sqrt(n).
inline double ks_critical(std::size_t n) { return std::sqrt(-std::log(0.5e-4) / 2) / std::sqrt(double(n)); }

}  // namespace test
