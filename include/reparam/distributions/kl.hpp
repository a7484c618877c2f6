#pragma once
/// \file kl.hpp  `kl_divergence(p, q)` in closed form: Normal-Normal and Bernoulli-Bernoulli
/// elementwise (broadcast shape), Categorical-Categorical per row (R x 1).

#include <reparam/distributions/continuous.hpp>
#include <reparam/distributions/discrete.hpp>

namespace reparam {

/// KL(p || q) of two normals: log(sq / sp) + (sp^2 + (mp - mq)^2) / (2 sq^2) - 1/2, elementwise.
template <class T>
BasicVar<T> kl_divergence(const Normal<T>& p, const Normal<T>& q) {
  detail::check_pair(p.loc(), q.loc(), "kl_divergence");
  const BasicVar<T> ratio = square(p.scale() / q.scale());
  const BasicVar<T> t1 = square((p.loc() - q.loc()) / q.scale());
  return T(0.5) * (ratio + t1 - T(1) - log(ratio));
}

/// KL(p || q) of two categoricals per row: sum_k p_k (log p_k - log q_k). Logits broadcast by
/// rows (R x K against 1 x K).
template <class T>
BasicVar<T> kl_divergence(const Categorical<T>& p, const Categorical<T>& q) {
  detail::check_pair(p.logits(), q.logits(), "kl_divergence");
  if (p.cols() != q.cols())
    detail::throw_shape("kl_divergence", "categoricals must have the same number of categories (" +
                                             std::to_string(p.cols()) + " and " + std::to_string(q.cols()) + ")");
  const BasicVar<T> lp = p.log_probs();
  return sum_rows(exp(lp) * (lp - q.log_probs()));
}

/// KL(p || q) of two Bernoullis, elementwise, from the logits (finite for any logits):
/// s(a) (log s(a) - log s(b)) + s(-a) (log s(-a) - log s(-b)).
template <class T>
BasicVar<T> kl_divergence(const Bernoulli<T>& p, const Bernoulli<T>& q) {
  detail::check_pair(p.logits(), q.logits(), "kl_divergence");
  const BasicVar<T>& a = p.logits();
  const BasicVar<T>& b = q.logits();
  return sigmoid(a) * (log_sigmoid(a) - log_sigmoid(b)) + sigmoid(-a) * (log_sigmoid(-a) - log_sigmoid(-b));
}

}  // namespace reparam
