#pragma once
/// \file broadcast.hpp  NumPy broadcasting of 1x1, 1xN and Mx1 operands without temporaries.
///
/// A result of shape R x C is produced in blocks of rows. An operand of the result's shape is read
/// as a block of itself; a 1x1 operand as a constant; a row (1xC) as itself; a column (Rx1) as a
/// constant row. When every operand is full-shaped or 1x1 the whole result is one block (one
/// vectorized Eigen expression); otherwise blocks are single rows, which row-major storage makes
/// contiguous.

#include <string>

#include <reparam/errors.hpp>
#include <reparam/tape.hpp>

namespace reparam {
namespace detail {

template <class T>
using RowArray = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// The error of `broadcast_shape`, out of line (see REPARAM_COLD).
[[noreturn]] REPARAM_COLD inline void throw_broadcast(OpName op, Index ar, Index ac, Index br, Index bc) {
  throw_shape(op, "shapes do not broadcast (" + shape_str(ar, ac) + " and " + shape_str(br, bc) + ")");
}

/// The broadcast shape of a and b, or ShapeError naming `op` and both shapes.
inline void broadcast_shape(OpName op, Index ar, Index ac, Index br, Index bc, Index& r, Index& c) {
  auto dim = [](Index x, Index y, Index& out) {
    if (x == y || y == 1) {
      out = x;
      return true;
    }
    if (x == 1) {
      out = y;
      return true;
    }
    return false;
  };
  if (!dim(ar, br, r) || !dim(ac, bc, c)) throw_broadcast(op, ar, ac, br, bc);
}

template <class M>
bool is_block_friendly(const M& m, Index R, Index C) {
  return (m.rows() == R && m.cols() == C) || m.size() == 1;
}

/// Calls f with operand m, broadcast to width C, for result rows [i0, i0 + n) (an Eigen array
/// expression of n x C). n > 1 only when m is full-shaped or 1x1.
template <class T, class F>
void with_block(const CMap<T>& m, Index i0, Index n, Index R, Index C, F&& f) {
  if (m.cols() == C && (m.rows() == R || (n == 1 && m.rows() == 1)))
    f(m.middleRows(m.rows() == R ? i0 : 0, n).array());
  else  // a 1x1, or a column read at row i0
    f(RowArray<T>::Constant(n, C, m(m.rows() == 1 ? 0 : i0, 0)));
}

/// Rows per block for a result R x C whose operands are a and b.
template <class A, class B>
Index block_rows(const A& a, const B& b, Index R, Index C) {
  return is_block_friendly(a, R, C) && is_block_friendly(b, R, C) ? R : 1;
}
template <class A>
Index block_rows(const A& a, Index R, Index C) {
  return is_block_friendly(a, R, C) ? R : 1;
}

/// Gradient target of operand k of a result R x C (assigns on the first write when full-shaped).
template <class T>
MMap<T> target(Backward<T>& bw, std::size_t k, Index R, Index C, bool& assign) {
  const CMap<T> x = bw.input(k);
  return bw.target(k, x.rows() == R && x.cols() == C, assign);
}

/// Accumulates an n x C block expression (rows [i0, i0 + n) of an R x C gradient) into the gradient
/// g of operand k, summing over the broadcast dimensions. A constant expression covering the whole
/// of a full-shaped operand stays one number.
template <class T, class E>
void sink(Backward<T>& bw, std::size_t k, MMap<T>& g, bool assign, Index i0, Index n, Index R, Index C, const E& e) {
  if (g.size() == 0) return;
  const bool full = g.rows() == R && g.cols() == C;
  if constexpr (is_constant_expr<E>::value) {
    if (full && n == R) {
      const T v = e.functor()();
      if (assign)
        bw.assign_constant(k, v);
      else
        bw.add_constant(k, v);
      return;
    }
  }
  if (bw.operand_grad_is_constant(k)) bw.target(k, true, assign);  // another contribution: expand
  if (full) {
    if (assign)
      g.middleRows(i0, n).array() = e;
    else
      g.middleRows(i0, n).array() += e;
  } else if (g.size() == 1) {
    g(0, 0) += e.sum();
  } else if (g.rows() == 1) {  // a row: n == 1 here
    REPARAM_ASSERT(n == 1);
    g.array() += e;
  } else {  // a column: n == 1 here
    REPARAM_ASSERT(n == 1);
    g(i0, 0) += e.sum();
  }
}

/// Adds the incoming gradient (R x C, the result's shape) into operand k's gradient, summed back
/// over the dimensions operand k was broadcast along.
template <class T>
void add_broadcast_grad(Backward<T>& bw, std::size_t k) {
  if (!bw.needs(k)) return;
  const Index R = bw.rows(), C = bw.cols();
  bool assign;
  MMap<T> gx = target(bw, k, R, C, assign);
  const CMap<T> x = bw.input(k);
  const Index nb = block_rows(x, R, C);
  if (bw.grad_is_constant()) {
    const T g0 = bw.grad_constant();
    for (Index i0 = 0; i0 < R; i0 += nb) sink(bw, k, gx, assign, i0, nb, R, C, RowArray<T>::Constant(nb, C, g0));
  } else {
    const CMap<T> g = bw.grad();
    for (Index i0 = 0; i0 < R; i0 += nb) sink(bw, k, gx, assign, i0, nb, R, C, g.middleRows(i0, nb).array());
  }
}

/// Adds the incoming gradient (of the result's shape: a column R x 1, a row 1 x C or 1x1) into
/// operand k's gradient, repeated out to the operand's shape R x C (the rule of sum_rows, sum_cols).
template <class T>
void add_expanded_grad(Backward<T>& bw, std::size_t k) {
  if (!bw.needs(k)) return;
  const CMap<T> x = bw.input(k);
  const Index R = x.rows(), C = x.cols();
  bool assign;
  MMap<T> gx = bw.target(k, true, assign);
  const CMap<T> g = bw.grad();
  const Index nb = block_rows(g, R, C);
  for (Index i0 = 0; i0 < R; i0 += nb)
    with_block(g, i0, nb, R, C, [&](const auto& G) { sink(bw, k, gx, assign, i0, nb, R, C, G); });
}

}  // namespace detail
}  // namespace reparam
