#pragma once
/// \file reduce.hpp  Reductions (`sum`, `mean`, `sum_rows`, `sum_cols`) and the row-wise
/// `softmax`, `log_softmax`, `logsumexp`.

#include <reparam/detail/math.hpp>
#include <reparam/ops/engine.hpp>

namespace reparam {
namespace detail {

/// x + x == x holds for 0 and +-inf only: an infinity test that needs no std::isinf on T.
template <class T>
bool is_inf(const T& x) {
  return x != T(0) && x + x == x;
}

/// Row max used to shift exponentials; +-inf rows are shifted by 0 (as PyTorch does) so that a
/// row of -inf gives logsumexp -inf and not NaN.
template <class Row>
typename Row::Scalar row_shift(const Row& r) {
  using T = typename Row::Scalar;
  const T m = r.maxCoeff();
  return is_inf(m) ? T(0) : m;
}

// sum: y = sum x; dx += g
template <class T>
void sum_backward(BasicTape<T>& t, const Node<T>& n) {
  const auto& in = t.node(n.in[0]);
  t.accumulate(n.in[0], RowArray<T>::Constant(in.rows, in.cols, n.grad[0]));
}
// mean: y = sum x / N; dx += g / N
template <class T>
void mean_backward(BasicTape<T>& t, const Node<T>& n) {
  const auto& in = t.node(n.in[0]);
  t.accumulate(n.in[0], RowArray<T>::Constant(in.rows, in.cols, n.grad[0] / T(in.rows * in.cols)));
}
// sum_rows (Mx1) and sum_cols (1xN): dx += g broadcast back along the summed dimension
template <class T>
void broadcast_back(BasicTape<T>& t, const Node<T>& n) {
  const auto& in = t.node(n.in[0]);
  accumulate_broadcast(t, n.in[0], t.grad_in(n), in.rows, in.cols);
}

// softmax, per row: y = e^(x - max) / sum; dx += y * (g - sum(g * y))
template <class T>
void softmax_backward(BasicTape<T>& t, const Node<T>& n) {
  const CMap<T> g = t.grad_in(n);
  const CMap<T> y(n.value, n.rows, n.cols);
  bool assign;
  MMap<T> gx = t.grad_target(n.in[0], true, assign);
  for (Index i = 0; i < n.rows; ++i) {
    const T dot = (g.row(i).array() * y.row(i).array()).sum();
    if (assign)
      gx.row(i).array() = y.row(i).array() * (g.row(i).array() - dot);
    else
      gx.row(i).array() += y.row(i).array() * (g.row(i).array() - dot);
  }
}
// log_softmax, per row: y = x - logsumexp(x); dx += g - e^y * sum(g)
template <class T>
void log_softmax_backward(BasicTape<T>& t, const Node<T>& n) {
  const CMap<T> g = t.grad_in(n);
  const CMap<T> y(n.value, n.rows, n.cols);
  bool assign;
  MMap<T> gx = t.grad_target(n.in[0], true, assign);
  for (Index i = 0; i < n.rows; ++i) {
    const T s = g.row(i).sum();
    if (assign)
      gx.row(i).array() = g.row(i).array() - safe_exp(y.row(i).array()) * s;
    else
      gx.row(i).array() += g.row(i).array() - safe_exp(y.row(i).array()) * s;
  }
}
// logsumexp, per row: y_i = log sum_j e^x_ij; dx_ij += g_i e^(x_ij - y_i)
template <class T>
void logsumexp_backward(BasicTape<T>& t, const Node<T>& n) {
  const CMap<T> g = t.grad_in(n);
  const CMap<T> y(n.value, n.rows, n.cols);
  const CMap<T> x = t.value(n.in[0]);
  bool assign;
  MMap<T> gx = t.grad_target(n.in[0], true, assign);
  for (Index i = 0; i < x.rows(); ++i) {
    if (assign)
      gx.row(i).array() = g(i, 0) * safe_exp(x.row(i).array() - y(i, 0));
    else
      gx.row(i).array() += g(i, 0) * safe_exp(x.row(i).array() - y(i, 0));
  }
}

template <class T>
BasicVar<T> reduction(const BasicVar<T>& a, const char* op, Index rows, Index cols, typename Node<T>::Backward bw) {
  check_var(a, op);
  BasicTape<T>& t = a.tape();
  return t.push(rows, cols, bw, a.index(), a.index(), T(0), t.needs_grad(a.index()));
}

template <class T>
void require_nonempty_rows(const BasicVar<T>& a, const char* op) {
  check_var(a, op);
  const auto& n = a.tape().node(a.index());
  if (n.cols == 0) throw_shape(op, "rows must not be empty (got " + shape_str(n.rows, n.cols) + ")");
}

}  // namespace detail

/// Sum of all elements (1x1).
template <class T> BasicVar<T> sum(const BasicVar<T>& a) {
  detail::check_var(a, "sum");
  const detail::CMap<T> x = a.tape().value(a.index());
  BasicVar<T> y = detail::reduction(a, "sum", 1, 1, &detail::sum_backward<T>);
  a.tape().value_mut(y.index())(0, 0) = x.sum();
  return y;
}
/// Mean of all elements (1x1); a must not be empty.
template <class T> BasicVar<T> mean(const BasicVar<T>& a) {
  detail::check_var(a, "mean");
  const detail::CMap<T> x = a.tape().value(a.index());
  if (x.size() == 0) detail::throw_shape("mean", "input must not be empty (got " + detail::shape_str(x.rows(), x.cols()) + ")");
  BasicVar<T> y = detail::reduction(a, "mean", 1, 1, &detail::mean_backward<T>);
  a.tape().value_mut(y.index())(0, 0) = x.sum() / T(x.size());
  return y;
}
/// Sum of each row (Mx1).
template <class T> BasicVar<T> sum_rows(const BasicVar<T>& a) {
  detail::check_var(a, "sum_rows");
  const detail::CMap<T> x = a.tape().value(a.index());
  BasicVar<T> y = detail::reduction(a, "sum_rows", x.rows(), 1, &detail::broadcast_back<T>);
  a.tape().value_mut(y.index()).col(0) = x.rowwise().sum();
  return y;
}
/// Sum of each column (1xN).
template <class T> BasicVar<T> sum_cols(const BasicVar<T>& a) {
  detail::check_var(a, "sum_cols");
  const detail::CMap<T> x = a.tape().value(a.index());
  BasicVar<T> y = detail::reduction(a, "sum_cols", 1, x.cols(), &detail::broadcast_back<T>);
  detail::MMap<T> out = a.tape().value_mut(y.index());
  out.setZero();
  for (Index i = 0; i < x.rows(); ++i) out += x.row(i);  // contiguous rows: vectorizes
  return y;
}

/// Softmax over the columns of each row.
template <class T> BasicVar<T> softmax(const BasicVar<T>& a) {
  detail::require_nonempty_rows(a, "softmax");
  const detail::CMap<T> x = a.tape().value(a.index());
  BasicVar<T> y = detail::reduction(a, "softmax", x.rows(), x.cols(), &detail::softmax_backward<T>);
  detail::MMap<T> out = a.tape().value_mut(y.index());
  for (Index i = 0; i < x.rows(); ++i) {
    const T m = detail::row_shift(x.row(i));
    out.row(i).array() = detail::safe_exp(x.row(i).array() - m);
    out.row(i) /= out.row(i).sum();
  }
  return y;
}
/// log(softmax(a)) per row, computed as a - logsumexp(a): finite wherever a is.
template <class T> BasicVar<T> log_softmax(const BasicVar<T>& a) {
  detail::require_nonempty_rows(a, "log_softmax");
  const detail::CMap<T> x = a.tape().value(a.index());
  BasicVar<T> y = detail::reduction(a, "log_softmax", x.rows(), x.cols(), &detail::log_softmax_backward<T>);
  detail::MMap<T> out = a.tape().value_mut(y.index());
  for (Index i = 0; i < x.rows(); ++i) {
    using std::log;
    const T m = detail::row_shift(x.row(i));
    out.row(i).array() = x.row(i).array() - m;
    const T lse = log(detail::safe_exp(out.row(i).array()).sum());
    out.row(i).array() -= lse;
  }
  return y;
}
/// log(sum(exp(a))) of each row (Mx1), shifted by the row max so it never overflows.
template <class T> BasicVar<T> logsumexp(const BasicVar<T>& a) {
  detail::require_nonempty_rows(a, "logsumexp");
  const detail::CMap<T> x = a.tape().value(a.index());
  BasicVar<T> y = detail::reduction(a, "logsumexp", x.rows(), 1, &detail::logsumexp_backward<T>);
  detail::MMap<T> out = a.tape().value_mut(y.index());
  for (Index i = 0; i < x.rows(); ++i) {
    using std::log;
    const T m = detail::row_shift(x.row(i));
    out(i, 0) = m + log(detail::safe_exp(x.row(i).array() - m).sum());
  }
  return y;
}

}  // namespace reparam
