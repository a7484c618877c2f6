#pragma once
/// \file engine.hpp  Elementwise operations as small structs: `forward` (the value, as an Eigen array
/// expression) with its derivative rule right beside it. `unary<Op>` and `binary<Op>` record them
/// through `reparam::Operation`, with a scalar fast path for 1x1 graphs and NumPy broadcasting.

#include <cstdint>
#include <type_traits>

#include <reparam/detail/broadcast.hpp>
#include <reparam/operation.hpp>

namespace reparam {
namespace detail {

/// Non-deduced T: `x * 2` takes the scalar type from x.
template <class T>
struct identity {
  using type = T;
};
template <class T>
using same_t = typename identity<T>::type;

/// GraphError unless v is a live Var (for functions that record nothing themselves).
template <class T>
void check_var(const BasicVar<T>& v, OpName op) {
  if (v.empty()) throw_graph(op, "Var is empty (default-constructed)");
  v.tape().check(v, op);
}

/// GraphError unless a and b are live Vars of one tape.
template <class T>
void check_pair(const BasicVar<T>& a, const BasicVar<T>& b, OpName op) {
  if (a.empty() || b.empty()) throw_graph(op, "Var is empty (default-constructed)");
  if (&a.tape() != &b.tape()) throw_graph(op, "operands belong to different tapes");
  a.tape().check(a, op);
  a.tape().check(b, op);
}

template <class T>
using Scalar1 = Eigen::Array<T, 1, 1>;

// ---- unary: y = Op::forward(x, c); dx += Op::backward(g, x, y, c) --------------------------------

template <class Op, class T>
void unary_backward(Backward<T>& bw, T c) {
  const CMap<T> x = bw.input(0);
  const CMap<T> y = bw.value();
  if (y.size() == 1) {  // scalar graphs: no expression machinery (a 1x1 gradient is its own constant)
    bw.add_scalar(0, Op::backward(Scalar1<T>(bw.grad_constant()), Scalar1<T>(x(0, 0)), Scalar1<T>(y(0, 0)), c).value());
    return;
  }
  bw.with_grad([&](const auto& g) { bw.add(0, Op::backward(g, x.array(), y.array(), c)); });
}

/// Records y = Op(a) elementwise; `c` is the operation's constant (a scalar operand, an exponent).
template <class Op, class T>
BasicVar<T> unary(const BasicVar<T>& a, T c = T(0)) {
  Operation<T> op(Op::name, {a});
  const CMap<T> x = op.input(0);
  return op.record(
      x.rows(), x.cols(),
      [&](MMap<T> y) {
        if (y.size() == 1)
          y(0, 0) = Op::forward(Scalar1<T>(x(0, 0)), c).value();
        else
          y.array() = Op::forward(x.array(), c);
      },
      [c](Backward<T>& bw) { unary_backward<Op>(bw, c); });
}

// ---- binary with broadcasting: y = Op::forward(a, b); da, db from Op::da / Op::db ----------------

/// The backward sweep of a two-operand node whose operands broadcast to its R x C shape: block by
/// block of rows, `da(G, A, B, i0, nb)` and `db(...)` give the partial products for rows
/// i0..i0+nb (G the incoming gradient, A and B the operands' blocks, broadcast), summed back to
/// each operand's shape. Shared by `binary` and the distributions' fused sample nodes.
template <class T, class Da, class Db>
void broadcast_backward(Backward<T>& bw, Da&& da_fn, Db&& db_fn) {
  const Index R = bw.rows(), C = bw.cols();
  const CMap<T> a = bw.input(0);
  const CMap<T> b = bw.input(1);
  const bool da = bw.needs(0), db = bw.needs(1);
  bool assign_a = false, assign_b = false;
  // In this order: if a and b are one node, a's first write assigns and b's adds, block by block.
  MMap<T> ga = da ? target(bw, 0, R, C, assign_a) : MMap<T>(nullptr, 0, 0);
  MMap<T> gb = db ? target(bw, 1, R, C, assign_b) : MMap<T>(nullptr, 0, 0);
  const Index nb = block_rows(a, b, R, C);
  const bool gconst = bw.grad_is_constant();
  const CMap<T> g = gconst ? CMap<T>(nullptr, 0, 0) : bw.grad();
  const T g0 = gconst ? bw.grad_constant() : T(0);
  for (Index i0 = 0; i0 < R; i0 += nb) {
    with_block(a, i0, nb, R, C, [&](const auto& A) {
      with_block(b, i0, nb, R, C, [&](const auto& B) {
        auto run = [&](const auto& G) {
          if (da) sink(bw, 0, ga, assign_a, i0, nb, R, C, da_fn(G, A, B, i0, nb));
          if (db) sink(bw, 1, gb, assign_b, i0, nb, R, C, db_fn(G, A, B, i0, nb));
        };
        if (gconst)
          run(RowArray<T>::Constant(nb, C, g0));
        else
          run(g.middleRows(i0, nb).array());
      });
    });
  }
}

template <class Op, class T>
void binary_backward(Backward<T>& bw) {
  const CMap<T> y = bw.value();
  if (bw.rows() * bw.cols() == 1) {  // both operands 1x1: scalar code
    const CMap<T> a = bw.input(0), b = bw.input(1);
    const Scalar1<T> G(bw.grad_constant()), A(a(0, 0)), B(b(0, 0)), Y(y(0, 0));
    if (bw.needs(0)) bw.add_scalar(0, Op::da(G, A, B, Y).value());
    if (bw.needs(1)) bw.add_scalar(1, Op::db(G, A, B, Y).value());
    return;
  }
  broadcast_backward(
      bw, [&](const auto& G, const auto& A, const auto& B, Index i0, Index nb) { return Op::da(G, A, B, y.middleRows(i0, nb).array()); },
      [&](const auto& G, const auto& A, const auto& B, Index i0, Index nb) { return Op::db(G, A, B, y.middleRows(i0, nb).array()); });
}

/// Records y = Op(x, z) elementwise with broadcasting.
template <class Op, class T>
BasicVar<T> binary(const BasicVar<T>& x, const BasicVar<T>& z) {
  Operation<T> op(Op::name, {x, z});
  const CMap<T> a = op.input(0);
  const CMap<T> b = op.input(1);
  Index R, C;
  broadcast_shape(Op::name, a.rows(), a.cols(), b.rows(), b.cols(), R, C);
  return op.record(
      R, C,
      [&](MMap<T> out) {
        if (R * C == 1) {
          out(0, 0) = Op::forward(Scalar1<T>(a(0, 0)), Scalar1<T>(b(0, 0))).value();
          return;
        }
        const Index nb = block_rows(a, b, R, C);
        for (Index i0 = 0; i0 < R; i0 += nb)
          with_block(a, i0, nb, R, C, [&](const auto& A) {
            with_block(b, i0, nb, R, C, [&](const auto& B) { out.middleRows(i0, nb).array() = Op::forward(A, B); });
          });
      },
      [](Backward<T>& bw) { binary_backward<Op>(bw); });
}

}  // namespace detail
}  // namespace reparam
