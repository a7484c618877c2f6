#pragma once
/// \file arithmetic.hpp  `+ - * /` and `pow` between Vars, scalars and Eigen matrices, with NumPy
/// broadcasting of 1x1, 1xN and Mx1 operands (gradients are summed back to each operand's shape).

#include <cmath>
#include <string>

#include <reparam/detail/math.hpp>
#include <reparam/ops/engine.hpp>

namespace reparam {
namespace detail {

struct AddOp {
  static constexpr const char* name = "add";
  template <class A, class B> static auto forward(const A& a, const B& b) { return a + b; }
  template <class G, class A, class B, class Y> static auto da(const G& g, const A&, const B&, const Y&) { return g; }  // d(a+b)/da = 1
  template <class G, class A, class B, class Y> static auto db(const G& g, const A&, const B&, const Y&) { return g; }  // d(a+b)/db = 1
};

struct SubOp {
  static constexpr const char* name = "sub";
  template <class A, class B> static auto forward(const A& a, const B& b) { return a - b; }
  template <class G, class A, class B, class Y> static auto da(const G& g, const A&, const B&, const Y&) { return g; }   // 1
  template <class G, class A, class B, class Y> static auto db(const G& g, const A&, const B&, const Y&) { return -g; }  // -1
};

struct MulOp {
  static constexpr const char* name = "mul";
  template <class A, class B> static auto forward(const A& a, const B& b) { return a * b; }
  template <class G, class A, class B, class Y> static auto da(const G& g, const A&, const B& b, const Y&) { return g * b; }  // d(ab)/da = b
  template <class G, class A, class B, class Y> static auto db(const G& g, const A& a, const B&, const Y&) { return g * a; }  // d(ab)/db = a
};

struct DivOp {
  static constexpr const char* name = "div";
  template <class A, class B> static auto forward(const A& a, const B& b) { return a / b; }
  template <class G, class A, class B, class Y> static auto da(const G& g, const A&, const B& b, const Y&) { return g / b; }       // 1/b
  template <class G, class A, class B, class Y> static auto db(const G& g, const A&, const B& b, const Y& y) { return -g * y / b; }  // -a/b^2 = -y/b
};

struct PowOp {
  static constexpr const char* name = "pow";
  template <class A, class B> static auto forward(const A& a, const B& b) { return scalar_pow(a, b); }
  // d(a^b)/da = b a^(b-1), computed as b y / a where y = a^b is a normal number (b - 1 would be
  // rounded, an error that a^(b-1) multiplies by |log a|); 0 where b = 0
  template <class G, class A, class B, class Y> static auto da(const G& g, const A& a, const B& b, const Y& y) {
    using T = typename G::Scalar;
    return where(IsZero{}, b, T(0), g * where(IsNormal<T>{}, y, b * y / a, b * scalar_pow(a, b - T(1))));
  }
  // d(a^b)/db = a^b log a; taken as 0 where a^b = 0 (as PyTorch does), not 0 * -inf
  template <class G, class A, class B, class Y> static auto db(const G& g, const A& a, const B&, const Y& y) {
    using T = typename G::Scalar;
    return where(IsZero{}, y, T(0), g * y * safe_log(a));
  }
};

// Scalar operands are stored in the node (no constant node, no broadcasting pass).
struct NegOp {
  static constexpr const char* name = "neg";
  template <class X, class C> static auto forward(const X& x, const C&) { return -x; }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X&, const Y&, const C&) { return -g; }
};
struct AddScalarOp {
  static constexpr const char* name = "add";
  template <class X, class C> static auto forward(const X& x, const C& c) { return x + c; }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X&, const Y&, const C&) { return g; }
};
struct RSubScalarOp {  // c - x
  static constexpr const char* name = "sub";
  template <class X, class C> static auto forward(const X& x, const C& c) { return c - x; }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X&, const Y&, const C&) { return -g; }
};
struct MulScalarOp {
  static constexpr const char* name = "mul";
  template <class X, class C> static auto forward(const X& x, const C& c) { return x * c; }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X&, const Y&, const C& c) { return g * c; }
};
struct DivScalarOp {  // x / c
  static constexpr const char* name = "div";
  template <class X, class C> static auto forward(const X& x, const C& c) { return x / c; }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X&, const Y&, const C& c) { return g / c; }
};
struct RDivScalarOp {  // c / x
  static constexpr const char* name = "div";
  template <class X, class C> static auto forward(const X& x, const C& c) { return c / x; }
  // d(c/x)/dx = -c/x^2 = -y/x
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y& y, const C&) { return -g * y / x; }
};

template <class T, class D>
BasicVar<T> as_constant(const BasicVar<T>& like, const Eigen::DenseBase<D>& m, const char* op) {
  check_var(like, op);
  return like.tape().constant(m);
}

}  // namespace detail

// ---- Var op Var ---------------------------------------------------------------------------------
template <class T> BasicVar<T> operator+(const BasicVar<T>& a, const BasicVar<T>& b) { return detail::binary<detail::AddOp>(a, b); }
template <class T> BasicVar<T> operator-(const BasicVar<T>& a, const BasicVar<T>& b) { return detail::binary<detail::SubOp>(a, b); }
template <class T> BasicVar<T> operator*(const BasicVar<T>& a, const BasicVar<T>& b) { return detail::binary<detail::MulOp>(a, b); }
template <class T> BasicVar<T> operator/(const BasicVar<T>& a, const BasicVar<T>& b) { return detail::binary<detail::DivOp>(a, b); }
template <class T> BasicVar<T> operator-(const BasicVar<T>& a) { return detail::unary<detail::NegOp>(a); }

// ---- Var op scalar, scalar op Var ----------------------------------------------------------------
template <class T> BasicVar<T> operator+(const BasicVar<T>& a, detail::same_t<T> s) { return detail::unary<detail::AddScalarOp>(a, s); }
template <class T> BasicVar<T> operator+(detail::same_t<T> s, const BasicVar<T>& a) { return detail::unary<detail::AddScalarOp>(a, s); }
template <class T> BasicVar<T> operator-(const BasicVar<T>& a, detail::same_t<T> s) { return detail::unary<detail::AddScalarOp>(a, T(-s)); }
template <class T> BasicVar<T> operator-(detail::same_t<T> s, const BasicVar<T>& a) { return detail::unary<detail::RSubScalarOp>(a, s); }
template <class T> BasicVar<T> operator*(const BasicVar<T>& a, detail::same_t<T> s) { return detail::unary<detail::MulScalarOp>(a, s); }
template <class T> BasicVar<T> operator*(detail::same_t<T> s, const BasicVar<T>& a) { return detail::unary<detail::MulScalarOp>(a, s); }
template <class T> BasicVar<T> operator/(const BasicVar<T>& a, detail::same_t<T> s) { return detail::unary<detail::DivScalarOp>(a, s); }
template <class T> BasicVar<T> operator/(detail::same_t<T> s, const BasicVar<T>& a) { return detail::unary<detail::RDivScalarOp>(a, s); }

// ---- Var op matrix, matrix op Var (the matrix becomes a constant of the Var's tape) --------------
template <class T, class D> BasicVar<T> operator+(const BasicVar<T>& a, const Eigen::DenseBase<D>& m) { return a + detail::as_constant(a, m, "add"); }
template <class T, class D> BasicVar<T> operator+(const Eigen::DenseBase<D>& m, const BasicVar<T>& a) { return detail::as_constant(a, m, "add") + a; }
template <class T, class D> BasicVar<T> operator-(const BasicVar<T>& a, const Eigen::DenseBase<D>& m) { return a - detail::as_constant(a, m, "sub"); }
template <class T, class D> BasicVar<T> operator-(const Eigen::DenseBase<D>& m, const BasicVar<T>& a) { return detail::as_constant(a, m, "sub") - a; }
template <class T, class D> BasicVar<T> operator*(const BasicVar<T>& a, const Eigen::DenseBase<D>& m) { return a * detail::as_constant(a, m, "mul"); }
template <class T, class D> BasicVar<T> operator*(const Eigen::DenseBase<D>& m, const BasicVar<T>& a) { return detail::as_constant(a, m, "mul") * a; }
template <class T, class D> BasicVar<T> operator/(const BasicVar<T>& a, const Eigen::DenseBase<D>& m) { return a / detail::as_constant(a, m, "div"); }
template <class T, class D> BasicVar<T> operator/(const Eigen::DenseBase<D>& m, const BasicVar<T>& a) { return detail::as_constant(a, m, "div") / a; }

// ---- compound assignment rebinds the handle to the new node --------------------------------------
template <class T, class R> BasicVar<T>& operator+=(BasicVar<T>& a, const R& b) { return a = a + b; }
template <class T, class R> BasicVar<T>& operator-=(BasicVar<T>& a, const R& b) { return a = a - b; }
template <class T, class R> BasicVar<T>& operator*=(BasicVar<T>& a, const R& b) { return a = a * b; }
template <class T, class R> BasicVar<T>& operator/=(BasicVar<T>& a, const R& b) { return a = a / b; }

/// a^p elementwise for a scalar exponent. Negative a with a non-integer p is a DomainError.
template <class T> BasicVar<T> pow(const BasicVar<T>& a, detail::same_t<T> p);
/// a^b elementwise with broadcasting; differentiable in both. A negative base with a
/// non-integer exponent is a DomainError (as for a scalar exponent).
template <class T> BasicVar<T> pow(const BasicVar<T>& a, const BasicVar<T>& b) {
  if constexpr (detail::checked_scalar<T>) {
    detail::check_pair(a, b, "pow");
    if (validation_enabled()) {
      const detail::CMap<T> x = a.value(), p = b.value();
      Index R, C;
      detail::broadcast_shape("pow", x.rows(), x.cols(), p.rows(), p.cols(), R, C);
      for (Index i = 0; i < R; ++i)
        for (Index j = 0; j < C; ++j) {
          const T xv = x(x.rows() == 1 ? 0 : i, x.cols() == 1 ? 0 : j), pv = p(p.rows() == 1 ? 0 : i, p.cols() == 1 ? 0 : j);
          if (xv < T(0) && !(std::floor(detail::real_part(pv)) == detail::real_part(pv)))
            detail::throw_domain("pow", "base must be >= 0 for a non-integer exponent (got base " + detail::scalar_str(xv) +
                                            " and exponent " + detail::scalar_str(pv) + " at row " + std::to_string(i) +
                                            ", col " + std::to_string(j) + ")");
        }
    }
  }
  return detail::binary<detail::PowOp>(a, b);
}

}  // namespace reparam
