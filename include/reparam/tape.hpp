#pragma once
/// \file tape.hpp  The tape (`BasicTape`), its handles (`BasicVar`) and `Parameter`.
///
///     reparam::Tape tape;
///     reparam::Var x = tape.variable(m);           // leaf that receives a gradient
///     reparam::Var y = reparam::sum(reparam::square(x));
///     tape.backward(y);                            // x.grad() == 2 * m

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <reparam/detail/arena.hpp>
#include <reparam/errors.hpp>
#include <reparam/matrix.hpp>

namespace reparam {

template <class T>
class BasicTape;
template <class T>
class BasicVar;

/// A value that outlives tapes: model weights. `tape.variable(p)` reads `p.value` in place and
/// `backward` adds into `p.grad`. Optimizers (`reparam::optim::Adam`, `SGD`) step Parameters.
template <class T>
struct Parameter {
  Matrix<T> value;
  Matrix<T> grad;

  Parameter() = default;
  template <class Derived>
  explicit Parameter(const Eigen::DenseBase<Derived>& v) : value(v), grad(Matrix<T>::Zero(value.rows(), value.cols())) {}

  Index rows() const noexcept { return value.rows(); }
  Index cols() const noexcept { return value.cols(); }
  /// Gradient back to zero (same shape as the value).
  void zero_grad() { grad.setZero(value.rows(), value.cols()); }
};

namespace detail {

/// Whether an Eigen expression is a constant (`Constant(r, c, v)`): its value is one number.
template <class E>
struct is_constant_expr : std::false_type {};
template <class S, class P>
struct is_constant_expr<Eigen::CwiseNullaryOp<Eigen::internal::scalar_constant_op<S>, P>> : std::true_type {};

template <class T>
using CMap = Eigen::Map<const Matrix<T>>;
template <class T>
using MMap = Eigen::Map<Matrix<T>>;

enum class NodeKind : std::uint8_t {
  constant,   // leaf without gradient
  variable,   // leaf whose gradient persists across backward calls (like PyTorch's .grad)
  interior    // result of an operation; its gradient is recomputed by every backward call
};

/// One recorded operation. Values and gradients live in the tape's arena (or, for a Parameter, in
/// the Parameter itself); the backward rule is a plain function pointer, so recording a node never
/// touches the heap.
template <class T>
struct Node {
  using Backward = void (*)(BasicTape<T>&, const Node&);
  T* value = nullptr;
  T* grad = nullptr;  // null when no variable lies behind this node: nothing flows back
  Index rows = 0;
  Index cols = 0;
  Backward backward = nullptr;
  std::uint32_t in[2] = {0, 0};  // operand node indices
  T c{};                         // the operation's constant (scalar operand, exponent, ...)
  // An interior gradient holds a value only if `sweep` is the tape's current sweep (so starting a
  // sweep or zero_grad() invalidates every interior gradient at once); the first write assigns.
  mutable std::uint32_t sweep = 0;
  NodeKind kind = NodeKind::interior;
  bool requires_grad = false;  // a variable lies behind this node
  // The gradient is grad[0] everywhere (e.g. below a sum): kept as one number until an operation
  // needs the full matrix, which saves a pass over memory per node.
  mutable bool grad_const = false;
};

}  // namespace detail

/// Handle to one node of a tape: cheap to copy, valid until the tape is cleared.
template <class T>
class BasicVar {
 public:
  using Scalar = T;
  using ConstMap = detail::CMap<T>;

  BasicVar() = default;

  /// The node's value (rows x cols).
  ConstMap value() const;
  /// d(output)/d(this node) after `backward`; zeros before, or where nothing flowed back.
  /// Throws GraphError for a node without gradient (a constant, or one built only from constants).
  ConstMap grad() const;
  /// The value of a 1x1 node.
  T item() const;
  Index rows() const;
  Index cols() const;
  Index size() const { return rows() * cols(); }
  /// Whether a variable lies behind this node (so `backward` computes its gradient).
  bool requires_grad() const;

  BasicTape<T>& tape() const { return *tape_; }
  std::uint32_t index() const noexcept { return index_; }
  bool empty() const noexcept { return tape_ == nullptr; }

 private:
  friend class BasicTape<T>;
  BasicVar(BasicTape<T>* tape, std::uint32_t index, std::uint64_t generation)
      : tape_(tape), index_(index), generation_(generation) {}

  BasicTape<T>* tape_ = nullptr;
  std::uint32_t index_ = 0;
  std::uint64_t generation_ = 0;
};

/// Records operations on `BasicVar<T>`s and runs the reverse sweep. Owns all node memory; `clear()`
/// drops the graph and keeps the memory, so rebuilding the same graph allocates nothing.
/// Not copyable or movable: Vars point at it.
template <class T>
class BasicTape {
 public:
  using Scalar = T;
  using Var = BasicVar<T>;
  using Node = detail::Node<T>;
  using ConstMap = detail::CMap<T>;
  using MutMap = detail::MMap<T>;

  BasicTape() = default;
  BasicTape(const BasicTape&) = delete;
  BasicTape& operator=(const BasicTape&) = delete;

  /// Leaf that receives a gradient; `m` is any Eigen matrix or array expression (copied).
  template <class Derived>
  Var variable(const Eigen::DenseBase<Derived>& m) {
    return leaf(m, detail::NodeKind::variable);
  }
  /// 1x1 leaf that receives a gradient.
  Var variable(T s) { return leaf(Matrix<T>::Constant(1, 1, s), detail::NodeKind::variable); }
  /// Leaf reading `p.value` in place; `backward` adds into `p.grad` (resized to the value's shape
  /// if it is not already).
  Var variable(Parameter<T>& p) {
    if (p.grad.rows() != p.value.rows() || p.grad.cols() != p.value.cols()) p.zero_grad();
    Var v = push(0, 0, nullptr, 0, 0, T(0), true);
    Node& n = nodes_[v.index_];
    n.value = p.value.data();
    n.grad = p.grad.data();
    n.rows = p.value.rows();
    n.cols = p.value.cols();
    n.kind = detail::NodeKind::variable;
    return v;
  }
  /// Leaf without gradient.
  template <class Derived>
  Var constant(const Eigen::DenseBase<Derived>& m) {
    return leaf(m, detail::NodeKind::constant);
  }
  /// 1x1 leaf without gradient.
  Var constant(T s) { return leaf(Matrix<T>::Constant(1, 1, s), detail::NodeKind::constant); }

  /// Adds d y / d leaf into the gradient of every leaf behind `y`, which must be 1x1.
  /// May be called again on the same graph: each call adds once.
  void backward(const Var& y) {
    check(y, "backward");
    const Node& n = nodes_[y.index_];
    if (n.rows != 1 || n.cols != 1)
      detail::throw_shape("backward", "output must be 1x1 (got " + detail::shape_str(n.rows, n.cols) + ")");
    sweep(y, nullptr);
  }

  /// Vector-Jacobian product: adds `seed`-weighted gradients of `y` (any shape; `seed` has y's
  /// shape) into the leaves. `backward(y)` is this with seed 1.
  template <class Derived>
  void backward(const Var& y, const Eigen::DenseBase<Derived>& seed) {
    check(y, "backward");
    const Node& n = nodes_[y.index_];
    if (seed.rows() != n.rows || seed.cols() != n.cols)
      detail::throw_shape("backward", "seed must have the output's shape (output " + detail::shape_str(n.rows, n.cols) +
                                          ", seed " + detail::shape_str(seed.rows(), seed.cols()) + ")");
    seed_ = seed;  // reuses its storage when the shape repeats
    sweep(y, &seed_);
  }

  /// Every gradient to zero (leaves, Parameters read by this tape, interior nodes); graph kept.
  void zero_grad() {
    for (Node& n : nodes_) {
      if (!n.requires_grad) continue;
      if (n.kind == detail::NodeKind::variable) MutMap(n.grad, n.rows, n.cols).setZero();
    }
    next_sweep();  // interior gradients: none holds a value any more
  }

  /// Drops the graph (every Var of it becomes invalid) and keeps the memory for reuse.
  void clear() {
    nodes_.clear();
    arena_.reset();
    ++generation_;
  }

  /// Number of nodes recorded since the last `clear()`.
  std::size_t size() const noexcept { return nodes_.size(); }
  /// Bytes of node storage the tape owns (kept across `clear()`).
  std::size_t memory_bytes() const noexcept { return arena_.capacity() * sizeof(T) + nodes_.capacity() * sizeof(Node); }

  // ---- Internals used by the operations in reparam/ops/. Not part of the API. ----

  /// Throws GraphError unless `v` is a live node of this tape.
  void check(const Var& v, const char* op) const {
    if (v.tape_ == nullptr) detail::throw_graph(op, "Var is empty (default-constructed)");
    if (v.tape_ != this) detail::throw_graph(op, "Var belongs to another tape");
    if (v.generation_ != generation_) detail::throw_graph(op, "Var used after its tape was cleared");
  }

  /// Records a node of shape rows x cols with operands a, b. Its value is uninitialized; its
  /// gradient exists iff `requires_grad`.
  /// `extra` more elements are allocated after the value for the operation's own use (e.g. the
  /// base noise of a sample), reachable through `aux(node)`.
  Var push(Index rows, Index cols, typename Node::Backward backward, std::uint32_t a, std::uint32_t b, T c,
           bool requires_grad, std::size_t extra = 0) {
    if (nodes_.size() >= std::numeric_limits<std::uint32_t>::max())
      detail::throw_graph("tape", "too many nodes (more than 2^32 - 1)");
    const std::size_t n = static_cast<std::size_t>(rows * cols);
    Node node;
    node.value = n + extra ? arena_.allocate(n + extra) : nullptr;
    node.grad = requires_grad && n ? arena_.allocate(n) : nullptr;
    node.rows = rows;
    node.cols = cols;
    node.backward = requires_grad ? backward : nullptr;
    node.requires_grad = requires_grad;
    node.in[0] = a;
    node.in[1] = b;
    node.c = c;
    nodes_.push_back(node);
    return Var(this, static_cast<std::uint32_t>(nodes_.size() - 1), generation_);
  }

  /// A node whose value is another node's storage (reshape, stop_gradient): no copy.
  Var push_alias(std::uint32_t source, Index rows, Index cols, typename Node::Backward backward, bool requires_grad) {
    Var v = push(0, 0, backward, source, source, T(0), requires_grad);
    Node& n = nodes_[v.index_];
    n.value = nodes_[source].value;
    n.rows = rows;
    n.cols = cols;
    if (requires_grad) n.grad = arena_.allocate(static_cast<std::size_t>(rows * cols));
    return v;
  }

  const Node& node(std::uint32_t i) const { return nodes_[i]; }
  /// The extra storage of a node pushed with `extra` > 0 (right after its value).
  static T* aux(const Node& n) { return n.value + n.rows * n.cols; }
  ConstMap value(std::uint32_t i) const {
    const Node& n = nodes_[i];
    return ConstMap(n.value, n.rows, n.cols);
  }
  MutMap value_mut(std::uint32_t i) {
    Node& n = nodes_[i];
    return MutMap(n.value, n.rows, n.cols);
  }
  /// Whether gradients flow into node i.
  bool needs_grad(std::uint32_t i) const { return nodes_[i].requires_grad; }
  /// Whether node n's gradient holds a value in the current sweep (leaves always do).
  bool grad_ready(const Node& n) const { return n.kind == detail::NodeKind::variable || n.sweep == sweep_; }

  /// The incoming gradient of a node during its backward rule, as a full matrix.
  ConstMap grad_in(const Node& n) const {
    if (n.grad_const) materialize(n);
    return ConstMap(n.grad, n.rows, n.cols);
  }

  /// Gradient buffer of node i for accumulation. If it holds no value yet, `assign` tells the
  /// caller to overwrite (full writes) and otherwise it is zeroed first.
  MutMap grad_target(std::uint32_t i, bool full_write, bool& assign) {
    Node& n = nodes_[i];
    assign = false;
    if (!grad_ready(n)) {
      if (full_write) {
        assign = true;
      } else {
        MutMap(n.grad, n.rows, n.cols).setZero();
      }
      n.sweep = sweep_;
      n.grad_const = false;
    } else if (n.grad_const) {
      materialize(n);
    }
    return MutMap(n.grad, n.rows, n.cols);
  }

  /// Adds the same value v to every element of node i's gradient, without a pass over memory
  /// when the gradient held nothing or was constant already.
  void accumulate_const(std::uint32_t i, T v) {
    Node& n = nodes_[i];
    if (n.rows * n.cols == 0) {
      n.sweep = sweep_;
      return;
    }
    if (!grad_ready(n)) {
      n.grad[0] = v;
      n.grad_const = true;
      n.sweep = sweep_;
    } else if (n.grad_const) {
      n.grad[0] += v;
    } else {
      MutMap(n.grad, n.rows, n.cols).array() += v;
    }
  }

  /// `grad(i) += e` for an expression of node i's shape (assigns on the first write).
  template <class Expr>
  void accumulate(std::uint32_t i, const Expr& e) {
    if constexpr (detail::is_constant_expr<Expr>::value) {
      accumulate_const(i, e.functor()());
    } else {
      bool assign;
      MutMap g = grad_target(i, true, assign);
      if (assign)
        g.array() = e;
      else
        g.array() += e;
    }
  }

  /// `grad(i) += v` for a 1x1 node.
  void accumulate_scalar(std::uint32_t i, T v) {
    Node& n = nodes_[i];
    if (grad_ready(n)) {
      n.grad[0] += v;  // a constant 1x1 gradient is its own value
    } else {
      n.grad[0] = v;
      n.sweep = sweep_;
      n.grad_const = false;
    }
  }

  detail::Workspace<T>& workspace() { return workspace_; }

  // Used by BasicVar.
  ConstMap grad_of_var(const Var& v) {
    check(v, "grad");
    Node& n = nodes_[v.index_];
    if (!n.requires_grad) detail::throw_graph("grad", "node does not require a gradient (no variable lies behind it)");
    if (!grad_ready(n)) {  // nothing flowed back yet: the gradient is zero
      MutMap(n.grad, n.rows, n.cols).setZero();
      n.sweep = sweep_;
      n.grad_const = false;
    }
    return grad_in(n);
  }

 private:
  template <class Derived>
  Var leaf(const Eigen::DenseBase<Derived>& m, detail::NodeKind kind) {
    static_assert(std::is_same<typename Derived::Scalar, T>::value,
                  "reparam: tape.variable/constant: the matrix scalar type must be the tape's (use .cast<T>())");
    const bool var = kind == detail::NodeKind::variable;
    Var v = push(m.rows(), m.cols(), nullptr, 0, 0, T(0), var);
    Node& n = nodes_[v.index_];
    n.kind = kind;
    if (n.value) MutMap(n.value, n.rows, n.cols) = m.derived();
    if (var) MutMap(n.grad, n.rows, n.cols).setZero();
    return v;
  }

  void sweep(const Var& y, const Matrix<T>* seed) {
    const std::uint32_t top = y.index_;
    if (!nodes_[top].requires_grad)
      detail::throw_graph("backward", "output does not depend on any variable (nothing to differentiate)");
    next_sweep();  // interior gradients belong to one sweep; leaves accumulate across sweeps
    Node& out = nodes_[top];
    MutMap g(out.grad, out.rows, out.cols);
    if (grad_ready(out)) {  // a leaf: add the seed
      if (seed) g += *seed; else g.array() += T(1);
    } else {
      if (seed) g = *seed; else g.setConstant(T(1));
      out.sweep = sweep_;
      out.grad_const = false;
    }
    // Reverse sweep: one loop, no recursion (graphs of millions of nodes are fine).
    for (std::uint32_t i = top + 1; i-- > 0;) {
      const Node& n = nodes_[i];
      if (n.backward && n.sweep == sweep_) n.backward(*this, n);
    }
  }

  void next_sweep() {
    if (++sweep_ == 0) {  // after 2^32 sweeps: forget the old stamps once
      for (Node& n : nodes_) n.sweep = 0;
      sweep_ = 1;
    }
  }

  void materialize(const Node& n) const {
    MutMap(n.grad, n.rows, n.cols).setConstant(n.grad[0]);
    n.grad_const = false;
  }

  std::vector<Node> nodes_;
  detail::Arena<T> arena_;
  detail::Workspace<T> workspace_;
  Matrix<T> seed_;
  std::uint64_t generation_ = 1;
  std::uint32_t sweep_ = 1;
};

template <class T>
typename BasicVar<T>::ConstMap BasicVar<T>::value() const {
  if (!tape_) detail::throw_graph("value", "Var is empty (default-constructed)");
  tape_->check(*this, "value");
  return tape_->value(index_);
}
template <class T>
typename BasicVar<T>::ConstMap BasicVar<T>::grad() const {
  if (!tape_) detail::throw_graph("grad", "Var is empty (default-constructed)");
  return tape_->grad_of_var(*this);
}
template <class T>
T BasicVar<T>::item() const {
  ConstMap v = value();
  if (v.rows() != 1 || v.cols() != 1)
    detail::throw_shape("item", "Var must be 1x1 (got " + detail::shape_str(v.rows(), v.cols()) + ")");
  return v(0, 0);
}
template <class T>
Index BasicVar<T>::rows() const {
  return value().rows();
}
template <class T>
Index BasicVar<T>::cols() const {
  return value().cols();
}
template <class T>
bool BasicVar<T>::requires_grad() const {
  if (!tape_) detail::throw_graph("requires_grad", "Var is empty (default-constructed)");
  tape_->check(*this, "requires_grad");
  return tape_->needs_grad(index_);
}

using Tape = BasicTape<double>;
using Var = BasicVar<double>;
using TapeF = BasicTape<float>;
using VarF = BasicVar<float>;

}  // namespace reparam
