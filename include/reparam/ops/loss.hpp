#pragma once
/// \file loss.hpp  `bce_with_logits`.

#include <reparam/detail/math.hpp>
#include <reparam/ops/arithmetic.hpp>

namespace reparam {
namespace detail {

struct BceWithLogitsOp {
  static constexpr const char* name = "bce_with_logits";
  // -[t log s(x) + (1-t) log(1 - s(x))] = max(x, 0) - x t + log1p(e^-|x|): finite for any x
  template <class X, class Z> static auto forward(const X& x, const Z& t) {
    using T = typename X::Scalar;
    return x.max(T(0)) - x * t + safe_log1p(safe_exp(-x.abs()));
  }
  // s(x) - t, written (1 - t) s(x) - t s(-x): exact for t = 0 or 1 at any x (1 - s(20) would cancel)
  template <class G, class X, class Z, class Y> static auto da(const G& g, const X& x, const Z& t, const Y&) {
    using T = typename G::Scalar;
    const auto e = safe_exp(-x.abs());
    const auto s_pos = where(IsNegative{}, x, e / (T(1) + e), (T(1) + e).inverse());  // s(x)
    const auto s_neg = where(IsNegative{}, x, (T(1) + e).inverse(), e / (T(1) + e));  // s(-x)
    return g * ((T(1) - t) * s_pos - t * s_neg);
  }
  template <class G, class X, class Z, class Y> static auto db(const G& g, const X& x, const Z&, const Y&) { return -g * x; }  // -x
};

}  // namespace detail

/// Elementwise binary cross-entropy of `targets` under Bernoulli(sigmoid(logits)), with
/// broadcasting; exact and finite for any logit. Differentiable in both arguments.
template <class T> BasicVar<T> bce_with_logits(const BasicVar<T>& logits, const BasicVar<T>& targets) {
  return detail::binary<detail::BceWithLogitsOp>(logits, targets);
}
template <class T, class D> BasicVar<T> bce_with_logits(const BasicVar<T>& logits, const Eigen::DenseBase<D>& targets) {
  return bce_with_logits(logits, detail::as_constant(logits, targets, "bce_with_logits"));
}

}  // namespace reparam
