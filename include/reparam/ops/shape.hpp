#pragma once
/// \file shape.hpp  Operations that move elements without arithmetic: `reshape`, `slice_rows`,
/// `slice_cols`, `concat_rows`, `concat_cols`, `broadcast_to`, and the gradient switches
/// `stop_gradient` and `straight_through`.

#include <initializer_list>
#include <type_traits>
#include <utility>
#include <string>
#include <vector>

#include <reparam/ops/engine.hpp>

namespace reparam {
namespace detail {

// The gradient of a node that reads operand 0's elements in the same row-major order, possibly
// from an offset (reshape, a block of rows): added back into that stretch.
template <class T>
void add_back_flat(Backward<T>& bw, Index offset) {
  const CMap<T> x = bw.input(0);
  if (offset == 0 && bw.rows() * bw.cols() == x.size()) {
    if (bw.grad_is_constant()) return bw.add_constant(0, bw.grad_constant());
    bw.add(0, CMap<T>(bw.grad().data(), x.rows(), x.cols()));
    return;
  }
  const Index n = bw.rows() * bw.cols();
  MMap<T> gx = bw.grad_buffer(0);
  Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>> flat(gx.data() + offset, n);
  if (bw.grad_is_constant())
    flat += bw.grad_constant();
  else
    flat += Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>(bw.grad().data(), n);
}

inline void check_slice(OpName op, const char* what, Index start, Index count, Index extent, Index rows, Index cols) {
  if (start < 0 || count < 0 || start > extent || count > extent - start)
    throw_shape(op, std::string(what) + " out of range (start " + std::to_string(start) + ", count " +
                        std::to_string(count) + " of " + shape_str(rows, cols) + ")");
}

}  // namespace detail

/// The same elements in row-major order, read as rows x cols (one of them may be -1: inferred).
/// Shares the operand's storage: no copy.
template <class T>
BasicVar<T> reshape(const BasicVar<T>& a, Index rows, Index cols) {
  Operation<T> op("reshape", {a});
  const Index size = op.rows(0) * op.cols(0);
  if (rows == -1 && cols > 0 && size % cols == 0) rows = size / cols;
  if (cols == -1 && rows > 0 && size % rows == 0) cols = size / rows;
  const bool valid = rows >= 0 && cols >= 0 && (cols == 0 || rows <= detail::max_elements / cols);
  if (!valid || rows * cols != size)
    detail::throw_shape("reshape", "cannot reshape " + detail::shape_str(op.rows(0), op.cols(0)) + " into " +
                                       detail::shape_str(rows, cols) + " (" + std::to_string(size) + " elements)");
  return op.record_view(0, 0, rows, cols, true, [](Backward<T>& bw) { detail::add_back_flat(bw, 0); });
}

/// Rows [start, start + count) of a (count x cols). Shares the operand's storage: no copy.
template <class T>
BasicVar<T> slice_rows(const BasicVar<T>& a, Index start, Index count) {
  Operation<T> op("slice_rows", {a});
  const Index R = op.rows(0), C = op.cols(0);
  detail::check_slice("slice_rows", "rows", start, count, R, R, C);
  const Index offset = start * C;
  return op.record_view(0, offset, count, C, true, [offset](Backward<T>& bw) { detail::add_back_flat(bw, offset); });
}

/// Columns [start, start + count) of a (rows x count).
template <class T>
BasicVar<T> slice_cols(const BasicVar<T>& a, Index start, Index count) {
  Operation<T> op("slice_cols", {a});
  const Index R = op.rows(0), C = op.cols(0);
  detail::check_slice("slice_cols", "columns", start, count, C, R, C);
  return op.record(
      R, count, [&](auto y) { y = op.input(0).middleCols(start, count); },
      [start](Backward<T>& bw) {  // the block of columns of da += g
        detail::MMap<T> gx = bw.grad_buffer(0);
        bw.with_grad([&](const auto& g) { gx.middleCols(start, bw.cols()).array() += g; });
      });
}

namespace detail {

// concat along columns (axis 1) or rows (axis 0): each operand's gradient is its block of g.
template <class T>
BasicVar<T> concat(const char* name, const BasicVar<T>* vs, std::size_t n, bool along_cols) {
  Operation<T> op(name, vs, n);
  Index total = 0;
  const Index fixed = along_cols ? op.rows(0) : op.cols(0);
  for (std::size_t k = 0; k < n; ++k) {
    const Index f = along_cols ? op.rows(k) : op.cols(k), v = along_cols ? op.cols(k) : op.rows(k);
    if (f != fixed)
      throw_shape(name, std::string(along_cols ? "operands must have the same number of rows"
                                               : "operands must have the same number of columns") +
                            " (" + shape_str(op.rows(0), op.cols(0)) + " and " + shape_str(op.rows(k), op.cols(k)) +
                            " at operand " + std::to_string(k) + ")");
    if (v > max_elements - total) throw_shape(name, "size overflows");
    total += v;
  }
  const Index R = along_cols ? fixed : total, C = along_cols ? total : fixed;
  return op.record(
      R, C,
      [&](MMap<T> y) {
        Index at = 0;
        for (std::size_t k = 0; k < n; ++k) {
          const CMap<T> x = op.input(k);
          if (along_cols)
            y.middleCols(at, x.cols()) = x;
          else
            y.middleRows(at, x.rows()) = x;
          at += along_cols ? x.cols() : x.rows();
        }
      },
      [along_cols](Backward<T>& bw) {
        const CMap<T> g = bw.grad();
        Index at = 0;
        for (std::size_t k = 0; k < bw.inputs(); ++k) {
          const CMap<T> x = bw.input(k);
          if (along_cols)
            bw.add(k, g.middleCols(at, x.cols()));
          else
            bw.add(k, g.middleRows(at, x.rows()));
          at += along_cols ? x.cols() : x.rows();
        }
      });
}

}  // namespace detail

/// The operands side by side (same number of rows): [a | b | ...]. Any number of operands.
template <class T>
BasicVar<T> concat_cols(std::initializer_list<BasicVar<T>> vs) {
  return detail::concat("concat_cols", vs.begin(), vs.size(), true);
}
template <class T>
BasicVar<T> concat_cols(const std::vector<BasicVar<T>>& vs) {
  return detail::concat("concat_cols", vs.data(), vs.size(), true);
}
/// The operands stacked (same number of columns). Any number of operands.
template <class T>
BasicVar<T> concat_rows(std::initializer_list<BasicVar<T>> vs) {
  return detail::concat("concat_rows", vs.begin(), vs.size(), false);
}
template <class T>
BasicVar<T> concat_rows(const std::vector<BasicVar<T>>& vs) {
  return detail::concat("concat_rows", vs.data(), vs.size(), false);
}

/// a repeated to rows x cols by broadcasting (a is 1x1, 1xcols, rowsx1 or rows x cols); the
/// gradient is summed back to a's shape.
template <class T>
BasicVar<T> broadcast_to(const BasicVar<T>& a, Index rows, Index cols) {
  Operation<T> op("broadcast_to", {a});
  detail::shape_size("broadcast_to", rows, cols);
  Index r, c;
  detail::broadcast_shape("broadcast_to", op.rows(0), op.cols(0), rows, cols, r, c);
  if (r != rows || c != cols)
    detail::throw_shape("broadcast_to", "cannot broadcast " + detail::shape_str(op.rows(0), op.cols(0)) + " to " +
                                            detail::shape_str(rows, cols));
  if (op.rows(0) == rows && op.cols(0) == cols) return a;
  return op.record(
      rows, cols,
      [&](detail::MMap<T> y) {
        const detail::CMap<T> x = op.input(0);
        const Index nb = detail::block_rows(x, rows, cols);
        for (Index i0 = 0; i0 < rows; i0 += nb)
          detail::with_block(x, i0, nb, rows, cols, [&](const auto& X) { y.middleRows(i0, nb).array() = X; });
      },
      [](Backward<T>& bw) { detail::add_broadcast_grad(bw, 0); });
}

/// The same value with no gradient flowing back through it (shares the operand's storage). On a
/// tape of dual numbers the result is a constant in forward mode too: its tangent is 0 (what
/// "held fixed" means for a Hessian-vector product, e.g. the old policy in a Fisher product).
template <class T>
BasicVar<T> stop_gradient(const BasicVar<T>& a) {
  Operation<T> op("stop_gradient", {a});
  if constexpr (detail::is_dual_scalar<T>::value) {
    return op.record_constant(op.rows(0), op.cols(0), [&](detail::MMap<T> out) {
      const detail::CMap<T> in = op.input(0);
      for (Index k = 0; k < in.size(); ++k) out.data()[k] = T(in.data()[k].v);
    });
  } else {
    return op.record_view(0, 0, op.rows(0), op.cols(0), false, [](Backward<T>&) {});
  }
}

/// The forward value of `hard` with the gradient of `soft` (straight-through estimator):
/// d/dsoft passes the incoming gradient unchanged. Shapes must be equal.
template <class T>
BasicVar<T> straight_through(const BasicVar<T>& soft, const BasicVar<T>& hard) {
  detail::check_pair(soft, hard, "straight_through");
  Operation<T> op("straight_through", {soft});
  const detail::CMap<T> h = hard.value();
  if (h.rows() != op.rows(0) || h.cols() != op.cols(0))
    detail::throw_shape("straight_through", "soft and hard must have one shape (" +
                                                detail::shape_str(op.rows(0), op.cols(0)) + " and " +
                                                detail::shape_str(h.rows(), h.cols()) + ")");
  return op.record(
      h.rows(), h.cols(), [&](auto y) { y = h; },
      [](Backward<T>& bw) { bw.with_grad([&](const auto& g) { bw.add(0, g); }); });  // dsoft += g
}

}  // namespace reparam
