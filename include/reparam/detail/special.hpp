#pragma once
/// \file special.hpp  Special functions for the distributions: the standard normal cdf and quantile,
/// log((K-1)!) without glibc's global `signgam`, and constants.

#include <cmath>
#include <cstdint>
#include <limits>

namespace reparam {
namespace detail {

inline constexpr double log_sqrt_2pi = 0.91893853320467274178;  // log(sqrt(2 pi))
inline constexpr double sqrt_2pi = 2.50662827463100050242;
inline constexpr double inv_sqrt_2pi = 0.39894228040143267794;
inline constexpr double sqrt1_2 = 0.70710678118654752440;  // 1 / sqrt 2
inline constexpr double euler_gamma = 0.57721566490153286061;
inline constexpr double pi = 3.14159265358979323846;
inline constexpr double ln2 = 0.69314718055994530942;

/// Standard normal cdf, 0.5 erfc(-x / sqrt 2): accurate in both tails.
template <class T>
T ndtr(T x) {
  using std::erfc;
  return T(0.5) * erfc(-x * T(sqrt1_2));
}

/// log of the standard normal cdf for x <= -30, by the asymptotic series
/// ndtr(x) = phi(x) / |x| (1 - 1/x^2 + 3/x^4 - 15/x^6 + ...); eight terms reach double precision.
inline double log_ndtr_far(double x) {
  using std::log;
  const double z = 1 / (x * x);
  double s = 1, term = 1;
  for (int k = 1; k <= 10; ++k) {
    term *= -(2 * k - 1) * z;
    s += term;
  }
  return -0.5 * x * x - log(-x) - log_sqrt_2pi + log(s);
}

/// Acklam's rational approximation of the normal quantile (relative error below 1.2e-9).
inline double ndtri_acklam(double p) {
  using std::log;
  using std::sqrt;
  static constexpr double a[6] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                                  1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[5] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                  6.680131188771972e+01,  -1.328068155288572e+01};
  static constexpr double c[6] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                  -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[4] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                  3.754408661907416e+00};
  if (p < 0.02425) {
    const double q = sqrt(-2 * log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  const double q = p - 0.5;
  const double r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
         (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/// Standard normal quantile to full double precision from p = 5e-324 to 1 - 2^-53: Acklam's start
/// refined by two Newton steps on a residual that keeps its relative precision: erf around 1/2
/// (where p - 1/2 is exact), erfc in the tails, and log space below 1e-300, where phi(x)
/// underflows. ndtri(0) = -inf, ndtri(1) = +inf, NaN stays NaN.
inline double ndtri(double p) {
  using std::erf;
  using std::exp;
  using std::log;
  if (!(p > 0)) return p == 0 ? -std::numeric_limits<double>::infinity() : p;  // 0 or NaN (negatives are checked out)
  if (p >= 1) return p == 1 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  if (p >= 0.25 && p <= 0.75) {
    const double q = p - 0.5;  // exact (Sterbenz)
    double x = ndtri_acklam(p);
    for (int i = 0; i < 2; ++i) x -= (0.5 * erf(x * sqrt1_2) - q) * sqrt_2pi * exp(0.5 * x * x);
    return x;
  }
  const bool upper = p > 0.5;
  const double lo = upper ? 1 - p : p;  // exact for p >= 1/2
  double x = ndtri_acklam(lo);
  if (lo > 1e-300) {
    for (int i = 0; i < 2; ++i) x -= (ndtr(x) - lo) * sqrt_2pi * exp(0.5 * x * x);
  } else {
    const double target = log(lo);
    for (int i = 0; i < 2; ++i) {
      const double lf = log_ndtr_far(x);
      const double slope = exp(-0.5 * x * x - log_sqrt_2pi - lf);  // d log ndtr / dx = phi / ndtr
      x -= (lf - target) / slope;
    }
  }
  return upper ? -x : x;
}

/// log((K - 1)!) = lgamma(K) for an integer K >= 1, without std::lgamma (which writes glibc's
/// global signgam, a data race between threads): log(tgamma(K)) up to 170, Stirling's series above.
inline double lgamma_int(std::int64_t k) {
  using std::log;
  using std::tgamma;
  if (k <= 170) return log(tgamma(static_cast<double>(k)));
  const double x = static_cast<double>(k), z = 1 / (x * x);
  return (x - 0.5) * log(x) - x + log_sqrt_2pi + (1.0 / 12 - z * (1.0 / 360 - z * (1.0 / 1260 - z / 1680))) / x;
}

}  // namespace detail
}  // namespace reparam
