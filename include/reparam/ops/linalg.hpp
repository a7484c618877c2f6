#pragma once
/// \file linalg.hpp  `matmul`, `transpose`, `reshape`, `stop_gradient`.

#include <reparam/detail/gemm.hpp>
#include <reparam/ops/engine.hpp>

namespace reparam {
namespace detail {

// y = a b;  da += g b^T,  db += a^T g  (Eigen's GEMM accumulates in place: no temporaries)
template <class T>
void matmul_backward(BasicTape<T>& t, const Node<T>& n) {
  const CMap<T> g = t.grad_in(n);
  const CMap<T> a = t.value(n.in[0]);
  const CMap<T> b = t.value(n.in[1]);
  bool assign;
  if (t.needs_grad(n.in[0])) {
    MMap<T> ga = t.grad_target(n.in[0], false, assign);
    gemm_acc(ga, g, false, b, true, T(1), t.workspace());
  }
  if (t.needs_grad(n.in[1])) {
    MMap<T> gb = t.grad_target(n.in[1], false, assign);
    gemm_acc(gb, a, true, g, false, T(1), t.workspace());
  }
}

// y = a^T;  da += g^T
template <class T>
void transpose_backward(BasicTape<T>& t, const Node<T>& n) {
  t.accumulate(n.in[0], t.grad_in(n).transpose().array());
}

// y = a read in another shape (same row-major order);  da += g read in a's shape
template <class T>
void reshape_backward(BasicTape<T>& t, const Node<T>& n) {
  if (n.grad_const) return t.accumulate_const(n.in[0], n.grad[0]);
  const auto& in = t.node(n.in[0]);
  t.accumulate(n.in[0], CMap<T>(t.grad_in(n).data(), in.rows, in.cols).array());
}

}  // namespace detail

/// Matrix product (M x K)(K x N) -> M x N, through Eigen's GEMM.
template <class T> BasicVar<T> matmul(const BasicVar<T>& a, const BasicVar<T>& b) {
  detail::check_pair(a, b, "matmul");
  BasicTape<T>& t = a.tape();
  const auto& na = t.node(a.index());
  const auto& nb = t.node(b.index());
  if (na.cols != nb.rows)
    detail::throw_shape("matmul", "inner dimensions differ (" + detail::shape_str(na.rows, na.cols) + " and " +
                                      detail::shape_str(nb.rows, nb.cols) + ")");
  const Index rows = na.rows, cols = nb.cols;
  const bool rg = na.requires_grad || nb.requires_grad;
  BasicVar<T> y = t.push(rows, cols, &detail::matmul_backward<T>, a.index(), b.index(), T(0), rg);
  detail::MMap<T> out = t.value_mut(y.index());
  out.setZero();
  detail::gemm_acc(out, t.value(a.index()), false, t.value(b.index()), false, T(1), t.workspace());
  return y;
}
template <class T, class D> BasicVar<T> matmul(const BasicVar<T>& a, const Eigen::DenseBase<D>& m) {
  return matmul(a, detail::as_constant(a, m, "matmul"));
}
template <class T, class D> BasicVar<T> matmul(const Eigen::DenseBase<D>& m, const BasicVar<T>& b) {
  return matmul(detail::as_constant(b, m, "matmul"), b);
}

/// The transpose (N x M).
template <class T> BasicVar<T> transpose(const BasicVar<T>& a) {
  detail::check_var(a, "transpose");
  BasicTape<T>& t = a.tape();
  const auto& n = t.node(a.index());
  BasicVar<T> y = t.push(n.cols, n.rows, &detail::transpose_backward<T>, a.index(), a.index(), T(0), n.requires_grad);
  t.value_mut(y.index()) = t.value(a.index()).transpose();
  return y;
}

/// The same elements in row-major order, read as rows x cols (one of them may be -1: inferred).
/// Shares the operand's storage: no copy.
template <class T> BasicVar<T> reshape(const BasicVar<T>& a, Index rows, Index cols) {
  detail::check_var(a, "reshape");
  BasicTape<T>& t = a.tape();
  const auto& n = t.node(a.index());
  const Index size = n.rows * n.cols;
  const std::string from = detail::shape_str(n.rows, n.cols);
  if (rows == -1 && cols > 0 && size % cols == 0) rows = size / cols;
  if (cols == -1 && rows > 0 && size % rows == 0) cols = size / rows;
  if (rows < 0 || cols < 0 || rows * cols != size)
    detail::throw_shape("reshape", "cannot reshape " + from + " into " + detail::shape_str(rows, cols) + " (" +
                                       std::to_string(size) + " elements)");
  return t.push_alias(a.index(), rows, cols, &detail::reshape_backward<T>, n.requires_grad);
}

/// The same value with no gradient flowing back through it (shares the operand's storage).
template <class T> BasicVar<T> stop_gradient(const BasicVar<T>& a) {
  detail::check_var(a, "stop_gradient");
  BasicTape<T>& t = a.tape();
  const auto& n = t.node(a.index());
  return t.push_alias(a.index(), n.rows, n.cols, nullptr, false);
}

}  // namespace reparam
