#pragma once
/// \file unary.hpp  Elementwise functions: exp log log1p expm1 sqrt square pow abs tanh sigmoid
/// log_sigmoid relu softplus clamp. Each struct holds the forward map and, right under it, the
/// backward rule `dx += g * dy/dx` written with x, y = f(x) and the incoming gradient g.

#include <cmath>

#include <reparam/detail/math.hpp>
#include <reparam/ops/arithmetic.hpp>

namespace reparam {
namespace detail {

struct ExpOp {
  static constexpr const char* name = "exp";
  template <class X, class C> static auto forward(const X& x, const C&) { return safe_exp(x); }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X&, const Y& y, const C&) { return g * y; }  // e^x
};
struct LogOp {
  static constexpr const char* name = "log";
  template <class X, class C> static auto forward(const X& x, const C&) { return safe_log(x); }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y&, const C&) { return g / x; }  // 1/x
};
struct Log1pOp {
  static constexpr const char* name = "log1p";
  template <class X, class C> static auto forward(const X& x, const C&) { return safe_log1p(x); }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y&, const C&) {
    using T = typename G::Scalar;
    return g / (x + T(1));  // 1/(1+x)
  }
};
struct Expm1Op {
  static constexpr const char* name = "expm1";
  template <class X, class C> static auto forward(const X& x, const C&) { return safe_expm1(x); }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y&, const C&) {
    return g * safe_exp(x);  // e^x (not y + 1, which overflows one step early and loses the tail)
  }
};
struct SqrtOp {
  static constexpr const char* name = "sqrt";
  template <class X, class C> static auto forward(const X& x, const C&) { return exact_sqrt(x); }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X&, const Y& y, const C&) {
    using T = typename G::Scalar;
    return g * T(0.5) / y;  // 1/(2 sqrt x)
  }
};
struct SquareOp {
  static constexpr const char* name = "square";
  template <class X, class C> static auto forward(const X& x, const C&) { return x.square(); }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y&, const C&) {
    using T = typename G::Scalar;
    return g * (T(2) * x);  // 2x
  }
};
struct PowScalarOp {
  static constexpr const char* name = "pow";
  template <class X, class C> static auto forward(const X& x, const C& p) { return scalar_pow(x, p); }
  // p x^(p-1), as p y / x where y = x^p is a normal number (p - 1 is rounded, an error that
  // x^(p-1) multiplies by |log x|: 1e-14 at x = 1e-100, p = 1/3); the p == 0 case is recorded as
  // ZeroPowOp, so no 0 * inf arises at x = 0
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y& y, const C& p) {
    return g * where(IsNormal<C>{}, y, p * y / x, p * scalar_pow(x, p - C(1)));
  }
};
struct ZeroPowOp {  // x^0 = 1, derivative 0 everywhere
  static constexpr const char* name = "pow";
  template <class X, class C> static auto forward(const X& x, const C&) { return RowArray<C>::Constant(x.rows(), x.cols(), C(1)); }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X&, const Y&, const C&) { return g * C(0); }
};
struct AbsOp {
  static constexpr const char* name = "abs";
  template <class X, class C> static auto forward(const X& x, const C&) { return x.abs(); }
  // sign(x), 0 at 0 (comparisons, not Eigen's sign(), which needs isnan on the scalar)
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y&, const C&) {
    using T = typename G::Scalar;
    return where(IsPositive{}, x, g, where(IsNegative{}, x, -g, T(0)));
  }
};
struct TanhOp {
  static constexpr const char* name = "tanh";
  template <class X, class C> static auto forward(const X& x, const C&) { return fast_tanh(x); }
  // 1 - tanh^2 x: as 1 - y^2 while |y| < 0.625 (no cancellation), beyond as 4 e / (1 + e)^2 with
  // e = e^(-2|x|), exact where y has rounded to +-1 (a 1x1 select evaluates one branch only)
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y& y, const C&) {
    using T = typename G::Scalar;
    if constexpr (lane_path<T> || X::SizeAtCompileTime == 1) {
      const auto e = safe_exp(T(-2) * x.abs());
      return g * where(AbsBelow<T>{T(0.625)}, y, T(1) - y.square(), T(4) * e / (T(1) + e).square());
    } else {
      // scalar types without packets (dual numbers): the same two forms, taking the exponential
      // only where it is used (a ternary expression would take it for every element)
      return g * x.binaryExpr(y, [](const T& xv, const T& yv) {
        if (AbsBelow<T>{T(0.625)}(yv)) return T(1) - yv * yv;
        const T e = SafeExpFunctor<T>()(T(-2) * (xv < T(0) ? -xv : xv));
        return T(4) * e / ((T(1) + e) * (T(1) + e));
      });
    }
  }
};
struct SigmoidOp {
  static constexpr const char* name = "sigmoid";
  // with e = e^-|x| in (0, 1]: e / (1 + e) for x < 0 (exact down to subnormal results, where
  // 1 / (1 + e^-x) would give 0 once e^-x overflows), 1 / (1 + e) beyond
  template <class X, class C> static auto forward(const X& x, const C&) {
    using T = typename X::Scalar;
    const auto e = safe_exp(-x.abs());
    return where(IsNegative{}, x, e / (T(1) + e), (T(1) + e).inverse());
  }
  // s (1 - s): as y (1 - y) for x <= 0, beyond as e / (1 + e)^2 with e = e^-x, exact where y has
  // rounded to 1
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y& y, const C&) {
    using T = typename G::Scalar;
    const auto e = safe_exp(-x.abs());
    return g * where(AtMost<T>{T(0)}, x, y * (T(1) - y), e / (T(1) + e).square());
  }
};
struct LogSigmoidOp {
  static constexpr const char* name = "log_sigmoid";
  // log s(x) = min(x, 0) - log1p(e^-|x|): no overflow, exact in both tails
  template <class X, class C> static auto forward(const X& x, const C&) {
    using T = typename X::Scalar;
    return x.min(T(0)) - safe_log1p(safe_exp(-x.abs()));
  }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y&, const C&) {
    using T = typename G::Scalar;
    return g / (T(1) + safe_exp(x));  // 1 - s(x) = 1 / (1 + e^x)
  }
};
struct ReluOp {
  static constexpr const char* name = "relu";
  template <class X, class C> static auto forward(const X& x, const C&) {
    using T = typename X::Scalar;
    return x.max(T(0));
  }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y&, const C&) {
    using T = typename G::Scalar;
    return where(IsPositive{}, x, g, T(0));  // 1 for x > 0, else 0
  }
};
struct SoftplusOp {
  static constexpr const char* name = "softplus";
  // log(1 + e^x) = max(x, 0) + log1p(e^-|x|): exact for any x (PyTorch switches to x above 20)
  template <class X, class C> static auto forward(const X& x, const C&) {
    using T = typename X::Scalar;
    return x.max(T(0)) + safe_log1p(safe_exp(-x.abs()));
  }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y&, const C&) {
    using T = typename G::Scalar;
    return g * (T(1) + safe_exp(-x)).inverse();  // s(x)
  }
};

/// DomainError unless every element of a satisfies `ok` (when validation is on, for float/double).
template <class T, class Pred>
void check_domain(const BasicVar<T>& a, OpName op, const char* what, Pred ok) {
  check_var(a, op);
  if constexpr (detail::checked_scalar<T>) {
    if (!validation_enabled()) return;
    check_elements(op, what, a.value(), ok);
  }
}

}  // namespace detail

/// e^a elementwise (exact zeros on underflow, inf on overflow).
template <class T> BasicVar<T> exp(const BasicVar<T>& a) { return detail::unary<detail::ExpOp>(a); }
/// Natural log elementwise; a must be >= 0 (log 0 = -inf). Subnormal arguments are exact.
template <class T> BasicVar<T> log(const BasicVar<T>& a) {
  detail::check_domain(a, "log", "argument must be >= 0", [](T v) { return v >= T(0); });
  return detail::unary<detail::LogOp>(a);
}
/// log(1 + a), accurate for small a; a must be >= -1.
template <class T> BasicVar<T> log1p(const BasicVar<T>& a) {
  detail::check_domain(a, "log1p", "argument must be >= -1", [](T v) { return v >= T(-1); });
  return detail::unary<detail::Log1pOp>(a);
}
/// e^a - 1, accurate for small a.
template <class T> BasicVar<T> expm1(const BasicVar<T>& a) { return detail::unary<detail::Expm1Op>(a); }
/// Square root elementwise (correctly rounded); a must be >= 0.
template <class T> BasicVar<T> sqrt(const BasicVar<T>& a) {
  detail::check_domain(a, "sqrt", "argument must be >= 0", [](T v) { return v >= T(0); });
  return detail::unary<detail::SqrtOp>(a);
}
/// a^2 elementwise.
template <class T> BasicVar<T> square(const BasicVar<T>& a) { return detail::unary<detail::SquareOp>(a); }
/// a^p elementwise for a scalar exponent. Negative a with a non-integer p is a DomainError.
template <class T> BasicVar<T> pow(const BasicVar<T>& a, detail::same_t<T> p) {
  if constexpr (detail::checked_scalar<T>) {
    if (!(std::floor(detail::real_part(p)) == detail::real_part(p)))
      detail::check_domain(a, "pow", "base must be >= 0 for a non-integer exponent", [](T v) { return v >= T(0); });
  }
  if (p == T(0)) return detail::unary<detail::ZeroPowOp>(a, p);
  return detail::unary<detail::PowScalarOp>(a, p);
}
/// |a| elementwise (gradient 0 at 0).
template <class T> BasicVar<T> abs(const BasicVar<T>& a) { return detail::unary<detail::AbsOp>(a); }
/// tanh elementwise.
template <class T> BasicVar<T> tanh(const BasicVar<T>& a) { return detail::unary<detail::TanhOp>(a); }
/// 1 / (1 + e^-a) elementwise; finite for every a.
template <class T> BasicVar<T> sigmoid(const BasicVar<T>& a) { return detail::unary<detail::SigmoidOp>(a); }
/// log(sigmoid(a)), stable for any a.
template <class T> BasicVar<T> log_sigmoid(const BasicVar<T>& a) { return detail::unary<detail::LogSigmoidOp>(a); }
/// max(a, 0) (gradient 0 at 0, as in PyTorch).
template <class T> BasicVar<T> relu(const BasicVar<T>& a) { return detail::unary<detail::ReluOp>(a); }
/// log(1 + e^a), stable and exact for any a.
template <class T> BasicVar<T> softplus(const BasicVar<T>& a) { return detail::unary<detail::SoftplusOp>(a); }

/// min(max(a, lo), hi) elementwise; the gradient passes where lo <= a <= hi (as in PyTorch) and is
/// 0 outside. lo <= hi, neither NaN (DomainError otherwise).
template <class T>
BasicVar<T> clamp(const BasicVar<T>& a, detail::same_t<T> lo, detail::same_t<T> hi) {
  if (!(lo <= hi))
    detail::throw_domain("clamp", "bounds must satisfy lo <= hi (got lo " + detail::scalar_str(lo) + ", hi " +
                                      detail::scalar_str(hi) + ")");
  Operation<T> op("clamp", {a});
  const detail::CMap<T> x = op.input(0);
  return op.record(
      x.rows(), x.cols(), [&](auto y) { y.array() = x.array().max(lo).min(hi); },
      [lo, hi](Backward<T>& bw) {
        const detail::CMap<T> x = bw.input(0);
        bw.with_grad([&](const auto& g) { bw.add(0, detail::where(detail::InRange<T>{lo, hi}, x.array(), g, T(0))); });
      });
}

}  // namespace reparam
