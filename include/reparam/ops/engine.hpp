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

template <class T, class Op>
void unary_backward(BasicTape<T>& t, const Node<T>& n) {
  const CMap<T> g = t.grad_in(n);
  const CMap<T> y(n.value, n.rows, n.cols);
  const CMap<T> x = t.value(n.in[0]);
  t.accumulate(n.in[0], Op::backward(g.array(), x.array(), y.array(), n.c));
}

template <class Op, class T>
BasicVar<T> unary(const BasicVar<T>& a, T c = T(0)) {
  check_var(a, Op::name);
  BasicTape<T>& t = a.tape();
  const auto& in = t.node(a.index());
  const BasicVar<T> y = t.push(in.rows, in.cols, &unary_backward<T, Op>, a.index(), a.index(), c, in.requires_grad);
  t.value_mut(y.index()).array() = Op::forward(t.value(a.index()).array(), c);
  return y;
}

// ---- binary with broadcasting: y = Op::forward(a, b); da, db from Op::da / Op::db ----------------

template <class T, class Op>
void binary_backward(BasicTape<T>& t, const Node<T>& n) {
  const Index R = n.rows, C = n.cols;
  const CMap<T> g = t.grad_in(n);
  const CMap<T> y(n.value, R, C);
  const CMap<T> a = t.value(n.in[0]);
  const CMap<T> b = t.value(n.in[1]);
  const bool da = t.needs_grad(n.in[0]), db = t.needs_grad(n.in[1]);
  bool assign_a = false, assign_b = false;
  // In this order: if a and b are one node, a's first write assigns and b's adds, block by block.
  MMap<T> ga = da ? target(t, n.in[0], R, C, assign_a) : MMap<T>(nullptr, 0, 0);
  MMap<T> gb = db ? target(t, n.in[1], R, C, assign_b) : MMap<T>(nullptr, 0, 0);
  const Index nb = block_rows(a, b, R, C);
  for (Index i0 = 0; i0 < R; i0 += nb) {
    with_block(a, i0, nb, R, C, [&](const auto& A) {
      with_block(b, i0, nb, R, C, [&](const auto& B) {
        if (da) sink(ga, assign_a, i0, nb, R, C, Op::da(g.middleRows(i0, nb).array(), A, B, y.middleRows(i0, nb).array()));
        if (db) sink(gb, assign_b, i0, nb, R, C, Op::db(g.middleRows(i0, nb).array(), A, B, y.middleRows(i0, nb).array()));
      });
    });
  }
}

template <class Op, class T>
BasicVar<T> binary(const BasicVar<T>& x, const BasicVar<T>& z) {
  check_pair(x, z, Op::name);
  BasicTape<T>& t = x.tape();
  const auto& nx = t.node(x.index());
  const auto& nz = t.node(z.index());
  Index R, C;
  broadcast_shape(Op::name, nx.rows, nx.cols, nz.rows, nz.cols, R, C);
  const bool rg = nx.requires_grad || nz.requires_grad;
  const BasicVar<T> y = t.push(R, C, &binary_backward<T, Op>, x.index(), z.index(), T(0), rg);
  const CMap<T> a = t.value(x.index());
  const CMap<T> b = t.value(z.index());
  MMap<T> out = t.value_mut(y.index());
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
    with_block(g, i0, nb, R, C, [&](const auto& G) { sink(gx, assign, i0, nb, R, C, G); });
}

}  // namespace detail
}  // namespace reparam
