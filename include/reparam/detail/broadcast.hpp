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

/// The broadcast shape of a and b, or ShapeError naming `op` and both shapes.
inline void broadcast_shape(const char* op, Index ar, Index ac, Index br, Index bc, Index& r, Index& c) {
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
  if (!dim(ar, br, r) || !dim(ac, bc, c))
    throw_shape(op, "shapes do not broadcast (" + shape_str(ar, ac) + " and " + shape_str(br, bc) + ")");
}

template <class T>
bool is_full(const CMap<T>& m, Index R, Index C) {
  return m.rows() == R && m.cols() == C;
}
template <class T>
bool is_block_friendly(const CMap<T>& m, Index R, Index C) {
  return is_full(m, R, C) || m.size() == 1;
}

/// Calls f with operand m, broadcast to width C, for result rows [i0, i0 + n) (an Eigen array
/// expression of n x C). n > 1 only when m is full-shaped or 1x1.
template <class T, class F>
void with_block(const CMap<T>& m, Index i0, Index n, Index R, Index C, F&& f) {
  using Array = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  if (m.cols() == C && (m.rows() == R || (n == 1 && m.rows() == 1)))
    f(m.middleRows(m.rows() == R ? i0 : 0, n).array());
  else  // a 1x1, or a column read at row i0
    f(Array::Constant(n, C, m(m.rows() == 1 ? 0 : i0, 0)));
}

/// Rows per block for a result R x C whose operands are a and b.
template <class T>
Index block_rows(const CMap<T>& a, const CMap<T>& b, Index R, Index C) {
  return is_block_friendly(a, R, C) && is_block_friendly(b, R, C) ? R : 1;
}
template <class T>
Index block_rows(const CMap<T>& a, Index R, Index C) {
  return is_block_friendly(a, R, C) ? R : 1;
}

/// Accumulates an n x C block expression (rows [i0, i0 + n) of an R x C gradient) into the gradient
/// g of operand node `idx`, summing over the broadcast dimensions. A constant expression covering
/// the whole of a full-shaped operand stays one number (see Node::grad_const).
template <class T, class E>
void sink(BasicTape<T>& t, std::uint32_t idx, MMap<T>& g, bool assign, Index i0, Index n, Index R, Index C, const E& e) {
  const bool full = g.rows() == R && g.cols() == C;
  if constexpr (is_constant_expr<E>::value) {
    if (full && n == R) {
      const T v = e.functor()();
      if (assign) {
        g.data()[0] = v;  // R * C > 0 here: the engines do not call sinks for empty results
        t.node(idx).grad_const = true;
      } else {
        t.accumulate_const(idx, v);
      }
      return;
    }
  }
  if (t.node(idx).grad_const) t.grad_target(idx, true, assign);  // another contribution: expand
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

/// Gradient target of operand i for a result R x C (assigns on first write when full-shaped).
template <class T>
MMap<T> target(BasicTape<T>& t, std::uint32_t i, Index R, Index C, bool& assign) {
  const auto& n = t.node(i);
  return t.grad_target(i, n.rows == R && n.cols == C, assign);
}

}  // namespace detail
}  // namespace reparam
