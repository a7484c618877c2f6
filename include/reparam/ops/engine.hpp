#pragma once
/// \file engine.hpp  Recording of elementwise operations. Each operation is a struct with
/// `forward` (the value, as an Eigen array expression) and its derivative rule right beside it;
/// these engines record the node, evaluate the forward and replay the rule in the reverse sweep.

#include <cstdint>
#include <type_traits>

#include <reparam/detail/broadcast.hpp>
#include <reparam/tape.hpp>

namespace reparam {
namespace detail {

/// Non-deduced T: `x * 2` takes the scalar type from x.
template <class T>
struct identity {
  using type = T;
};
template <class T>
using same_t = typename identity<T>::type;

template <class T>
using RowArray = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class T>
void check_var(const BasicVar<T>& v, const char* op) {
  if (v.empty()) throw_graph(op, "Var is empty (default-constructed)");
  v.tape().check(v, op);
}

template <class T>
void check_pair(const BasicVar<T>& a, const BasicVar<T>& b, const char* op) {
  if (a.empty() || b.empty()) throw_graph(op, "Var is empty (default-constructed)");
  if (&a.tape() != &b.tape()) throw_graph(op, "operands belong to different tapes");
  a.tape().check(a, op);
  a.tape().check(b, op);
}

// ---- unary: y = Op::forward(x, c), dx += Op::backward(g, x, y, c) --------------------------------

template <class T>
using Scalar1 = Eigen::Array<T, 1, 1>;

/// The incoming gradient as an Eigen array expression: a constant when it is one (no pass over
/// memory), else the buffer. Calls f with it.
template <class T, class F>
void with_grad(BasicTape<T>& t, const Node<T>& n, F&& f) {
  if (n.grad_const)
    f(RowArray<T>::Constant(n.rows, n.cols, n.grad[0]));
  else
    f(t.grad_in(n).array());
}

template <class T, class Op>
void unary_backward(BasicTape<T>& t, const Node<T>& n) {
  const CMap<T> x = t.value(n.in[0]);
  if (n.rows * n.cols == 1) {  // scalar graphs: no expression machinery
    t.accumulate_scalar(n.in[0], Op::backward(Scalar1<T>(n.grad[0]), Scalar1<T>(x(0, 0)), Scalar1<T>(n.value[0]), n.c).value());
    return;
  }
  const CMap<T> y(n.value, n.rows, n.cols);
  with_grad(t, n, [&](const auto& g) { t.accumulate(n.in[0], Op::backward(g, x.array(), y.array(), n.c)); });
}

template <class Op, class T>
BasicVar<T> unary(const BasicVar<T>& a, T c = T(0)) {
  check_var(a, Op::name);
  BasicTape<T>& t = a.tape();
  const Node<T>& in = t.node(a.index());
  const Index rows = in.rows, cols = in.cols;
  const BasicVar<T> y = t.push(rows, cols, &unary_backward<T, Op>, a.index(), a.index(), c, in.requires_grad);
  const CMap<T> x = t.value(a.index());
  if (rows * cols == 1)
    t.value_mut(y.index())(0, 0) = Op::forward(Scalar1<T>(x(0, 0)), c).value();
  else
    t.value_mut(y.index()).array() = Op::forward(x.array(), c);
  return y;
}

// ---- binary with broadcasting: y = Op::forward(a, b); da, db from Op::da / Op::db ----------------

template <class T, class Op>
void binary_backward(BasicTape<T>& t, const Node<T>& n) {
  const Index R = n.rows, C = n.cols;
  const CMap<T> y(n.value, R, C);
  const CMap<T> a = t.value(n.in[0]);
  const CMap<T> b = t.value(n.in[1]);
  const bool da = t.needs_grad(n.in[0]), db = t.needs_grad(n.in[1]);
  if (R * C == 1) {  // both operands 1x1: scalar code
    const Scalar1<T> G(n.grad[0]), A(a(0, 0)), B(b(0, 0)), Y(y(0, 0));
    if (da) t.accumulate_scalar(n.in[0], Op::da(G, A, B, Y).value());
    if (db) t.accumulate_scalar(n.in[1], Op::db(G, A, B, Y).value());
    return;
  }
  if (R * C == 0) return;
  bool assign_a = false, assign_b = false;
  // In this order: if a and b are one node, a's first write assigns and b's adds, block by block.
  MMap<T> ga = da ? target(t, n.in[0], R, C, assign_a) : MMap<T>(nullptr, 0, 0);
  MMap<T> gb = db ? target(t, n.in[1], R, C, assign_b) : MMap<T>(nullptr, 0, 0);
  const Index nb = block_rows(a, b, R, C);
  const bool gconst = n.grad_const;
  const CMap<T> g = gconst ? CMap<T>(n.grad, 1, 1) : t.grad_in(n);
  for (Index i0 = 0; i0 < R; i0 += nb) {
    with_block(a, i0, nb, R, C, [&](const auto& A) {
      with_block(b, i0, nb, R, C, [&](const auto& B) {
        auto run = [&](const auto& G) {
          if (da) sink(t, n.in[0], ga, assign_a, i0, nb, R, C, Op::da(G, A, B, y.middleRows(i0, nb).array()));
          if (db) sink(t, n.in[1], gb, assign_b, i0, nb, R, C, Op::db(G, A, B, y.middleRows(i0, nb).array()));
        };
        if (gconst)
          run(RowArray<T>::Constant(nb, C, g(0, 0)));
        else
          run(g.middleRows(i0, nb).array());
      });
    });
  }
}

template <class Op, class T>
BasicVar<T> binary(const BasicVar<T>& x, const BasicVar<T>& z) {
  check_pair(x, z, Op::name);
  BasicTape<T>& t = x.tape();
  const Node<T>& nx = t.node(x.index());
  const Node<T>& nz = t.node(z.index());
  Index R, C;
  broadcast_shape(Op::name, nx.rows, nx.cols, nz.rows, nz.cols, R, C);
  const bool rg = nx.requires_grad || nz.requires_grad;
  const BasicVar<T> y = t.push(R, C, &binary_backward<T, Op>, x.index(), z.index(), T(0), rg);
  const CMap<T> a = t.value(x.index());
  const CMap<T> b = t.value(z.index());
  MMap<T> out = t.value_mut(y.index());
  if (R * C == 1) {
    out(0, 0) = Op::forward(Scalar1<T>(a(0, 0)), Scalar1<T>(b(0, 0))).value();
    return y;
  }
  const Index nb = block_rows(a, b, R, C);
  for (Index i0 = 0; i0 < R; i0 += nb)
    with_block(a, i0, nb, R, C, [&](const auto& A) {
      with_block(b, i0, nb, R, C, [&](const auto& B) { out.middleRows(i0, nb).array() = Op::forward(A, B); });
    });
  return y;
}

/// Adds `g` (a 1x1, row, column or full gradient) broadcast to R x C into node i's gradient.
template <class T>
void accumulate_broadcast(BasicTape<T>& t, std::uint32_t i, const CMap<T>& g, Index R, Index C) {
  bool assign;
  MMap<T> gx = t.grad_target(i, true, assign);
  const Index nb = block_rows(g, R, C);
  for (Index i0 = 0; i0 < R; i0 += nb)
    with_block(g, i0, nb, R, C, [&](const auto& G) { sink(t, i, gx, assign, i0, nb, R, C, G); });
}

}  // namespace detail
}  // namespace reparam
