#pragma once
/// \file kl.hpp  `kl_divergence(p, q)` in closed form: Normal-Normal, Laplace-Laplace and
/// Bernoulli-Bernoulli elementwise (broadcast shape), Categorical-Categorical per row (R x 1).
/// Shapes are checked first, so a mismatch names kl_divergence and both distributions' shapes.

#include <string>

#include <reparam/distributions/bernoulli.hpp>
#include <reparam/distributions/categorical.hpp>
#include <reparam/distributions/laplace.hpp>
#include <reparam/distributions/normal.hpp>

namespace reparam {
namespace detail {

template <class T, class P, class Q>
void check_kl(const BasicVar<T>& pv, const BasicVar<T>& qv, const P& p, const Q& q, const char* what) {
  check_pair(pv, qv, "kl_divergence");
  Index r, c;
  if (!broadcasts(p.rows(), p.cols(), q.rows(), q.cols(), r, c))
    throw_shape("kl_divergence", std::string(what) + " batch shapes do not broadcast (" + shape_str(p.rows(), p.cols()) +
                                     " and " + shape_str(q.rows(), q.cols()) + ")");
}

}  // namespace detail

/// KL(p || q) of two normals, elementwise:
/// log(sq / sp) + (sp^2 + (mp - mq)^2) / (2 sq^2) - 1/2, with log(sq / sp) as log sq - log sp,
/// so that no ratio of scales overflows or underflows (finite for any valid scales).
template <class T>
BasicVar<T> kl_divergence(const Normal<T>& p, const Normal<T>& q) {
  detail::check_kl(p.loc(), q.loc(), p, q, "Normal");
  const BasicVar<T> r = p.scale() / q.scale();
  const BasicVar<T> t = (p.loc() - q.loc()) / q.scale();
  return T(0.5) * (square(r) + square(t) - T(1)) + (log(q.scale()) - log(p.scale()));
}

/// KL(p || q) of two Laplace distributions, elementwise, with d = mp - mq:
/// log(bq / bp) + |d| / bq + (bp / bq) e^(-|d| / bp) - 1, computed as
/// log(bq / bp) + bp / bq - 1 + (d / bq) g(d / bp) with g(t) = (e^-|t| - 1 + |t|) / t, which is smooth
/// where d = 0: the KL is twice differentiable there, and its Hessian (the Fisher) is exact.
template <class T>
BasicVar<T> kl_divergence(const Laplace<T>& p, const Laplace<T>& q) {
  detail::check_kl(p.loc(), q.loc(), p, q, "Laplace");
  const BasicVar<T> d = p.loc() - q.loc();
  return (log(q.scale()) - log(p.scale())) + (p.scale() / q.scale() - T(1)) +
         d / q.scale() * detail::unary<detail::LaplaceKlTailOp>(d / p.scale());
}

/// KL(p || q) of two categoricals per row: sum_k p_k (log p_k - log q_k). Logits broadcast by
/// rows (R x K against 1 x K).
template <class T>
BasicVar<T> kl_divergence(const Categorical<T>& p, const Categorical<T>& q) {
  detail::check_pair(p.logits(), q.logits(), "kl_divergence");
  if (p.cols() != q.cols() || (p.rows() != q.rows() && p.rows() != 1 && q.rows() != 1))
    detail::throw_shape("kl_divergence", "Categorical logits do not fit (" + detail::shape_str(p.rows(), p.cols()) +
                                             " and " + detail::shape_str(q.rows(), q.cols()) + ")");
  const BasicVar<T> lp = p.log_probs();
  return sum_rows(exp(lp) * (lp - q.log_probs()));
}

/// KL(p || q) of two Bernoullis, elementwise, from the logits (finite for any logits):
/// s(a) (log s(a) - log s(b)) + s(-a) (log s(-a) - log s(-b)).
template <class T>
BasicVar<T> kl_divergence(const Bernoulli<T>& p, const Bernoulli<T>& q) {
  detail::check_kl(p.logits(), q.logits(), p, q, "Bernoulli");
  const BasicVar<T>& a = p.logits();
  const BasicVar<T>& b = q.logits();
  return sigmoid(a) * (log_sigmoid(a) - log_sigmoid(b)) + sigmoid(-a) * (log_sigmoid(-a) - log_sigmoid(-b));
}

}  // namespace reparam
