#pragma once
/// \file operation.hpp  Defining a differentiable operation: any number of operands, a forward
/// computation, and a backward rule written right beside it. The library's own operations and
/// distributions are defined this way.
///
///     // y = a * b + c elementwise (one shape)
///     template <class T>
///     reparam::BasicVar<T> fma(const reparam::BasicVar<T>& a, const reparam::BasicVar<T>& b,
///                              const reparam::BasicVar<T>& c) {
///       reparam::Operation<T> op("fma", {a, b, c});      // live Vars of one tape, or GraphError
///       op.require_same_shape();                        // or ShapeError naming fma and the shapes
///       return op.record(a.rows(), a.cols(),
///           [&](auto y) { y = a.value().cwiseProduct(b.value()) + c.value(); },
///           [](reparam::Backward<T>& bw) {
///             bw.add(0, bw.grad().cwiseProduct(bw.input(1)));   // d/da = b
///             bw.add(1, bw.grad().cwiseProduct(bw.input(0)));   // d/db = a
///             bw.add(2, bw.grad());                             // d/dc = 1
///           });
///     }
///
/// The rule is stored in the tape's arena (recording allocates nothing on the heap) and runs
/// during `backward` only if the result's gradient is needed. It is never destroyed, so it may
/// capture scalars, indices, pointers, `Eigen::Map`s and Vars, not owning objects: state of its
/// own goes into `op.state(n)`, arena storage that lives until the tape is cleared.

#include <cstdint>
#include <initializer_list>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include <reparam/tape.hpp>

namespace reparam {

/// Records one operation on the tape of its operands (see the file comment for an example).
/// Operands are the Vars the backward rule differentiates, numbered 0, 1, ... in order; a
/// forward computation may read other Vars of the tape too.
template <class T>
class Operation {
 public:
  using Var = BasicVar<T>;
  using ConstMap = detail::CMap<T>;
  using MutMap = detail::MMap<T>;

  /// Checks that every operand is a live Var of one tape; GraphError naming `name` otherwise.
  /// `name` must outlive the tape (a string literal).
  Operation(const char* name, std::initializer_list<BasicVar<T>> operands)
      : Operation(name, operands.begin(), operands.size()) {}
  Operation(const char* name, const std::vector<BasicVar<T>>& operands)
      : Operation(name, operands.data(), operands.size()) {}
  Operation(const char* name, const BasicVar<T>* operands, std::size_t count) : name_(name) {
    if (count == 0) detail::throw_shape(name, "needs at least one operand");
    if (count >= std::numeric_limits<std::uint32_t>::max()) detail::throw_shape(name, "too many operands");
    for (std::size_t k = 0; k < count; ++k) {
      const Var& v = operands[k];
      if (v.empty()) detail::throw_graph(name, "Var is empty (default-constructed)");
      if (k > 0 && &v.tape() != t_) detail::throw_graph(name, "operands belong to different tapes");
      if (k == 0) t_ = &v.tape();
      t_->check(v, name);
    }
    n_ = static_cast<std::uint32_t>(count);
    std::uint32_t* idx = small_;
    if (count > 2) idx = t_->arena_.template allocate<std::uint32_t>(count);
    for (std::size_t k = 0; k < count; ++k) {
      idx[k] = operands[k].index();
      rg_ = rg_ || t_->nodes_[idx[k]].requires_grad;
    }
    in_ = idx;
  }
  Operation(const Operation&) = delete;
  Operation& operator=(const Operation&) = delete;

  BasicTape<T>& tape() const noexcept { return *t_; }
  const char* name() const noexcept { return name_; }
  std::size_t inputs() const noexcept { return n_; }
  /// Operand k's value.
  ConstMap input(std::size_t k) const {
    const detail::Node<T>& n = t_->nodes_[in_[k]];
    return ConstMap(n.value, n.rows, n.cols);
  }
  Index rows(std::size_t k) const noexcept { return t_->nodes_[in_[k]].rows; }
  Index cols(std::size_t k) const noexcept { return t_->nodes_[in_[k]].cols; }
  /// Whether operand k needs a gradient; `requires_grad()`: whether any does (then the result
  /// does, and its backward rule will run).
  bool needs(std::size_t k) const noexcept { return t_->nodes_[in_[k]].requires_grad; }
  bool requires_grad() const noexcept { return rg_; }

  /// ShapeError unless every operand has the first one's shape:
  /// `reparam: fma: operands must have one shape (2x3 and 3x2)`.
  void require_same_shape() const {
    for (std::uint32_t k = 1; k < n_; ++k)
      if (rows(k) != rows(0) || cols(k) != cols(0))
        detail::throw_shape(name_, "operands must have one shape (" + detail::shape_str(rows(0), cols(0)) + " and " +
                                       detail::shape_str(rows(k), cols(k)) + ")");
  }

  /// Uninitialized storage for n elements in the tape's arena, valid until the tape is cleared:
  /// state the operation keeps for its backward rule (its noise, a mask, ...).
  T* state(std::size_t n) {
    if (n > std::size_t(detail::max_elements)) detail::throw_shape(name_, "size overflows (state of the operation)");
    return n ? t_->arena_.template allocate<T>(n) : nullptr;
  }
  /// The same for a matrix of rows x cols (sizes checked).
  MutMap state(Index rows, Index cols) {
    const Index n = detail::shape_size(name_, rows, cols);
    return MutMap(state(static_cast<std::size_t>(n)), rows, cols);
  }

  /// Records the result, of shape rows x cols: `forward(y)` writes its value into `y` (an
  /// `Eigen::Map<Matrix<T>>`, uninitialized before), and `rule(Backward<T>&)` is its backward
  /// rule. Sizes are checked (ShapeError when negative or overflowing) before anything is written.
  template <class Forward, class Rule>
  Var record(Index rows, Index cols, Forward&& forward, Rule&& rule) {
    const Var y = t_->push(name_, rows, cols, in_, n_, rg_, 0);
    detail::Node<T>& node = t_->nodes_[y.index()];
    if (rg_) store_rule(node, std::forward<Rule>(rule));
    if (node.size() != 0) forward(MutMap(node.value, rows, cols));
    return y;
  }

  /// A result through which no gradient flows (a sample, a hard threshold): a constant of the tape
  /// whose value `forward(y)` writes.
  template <class Forward>
  Var record_constant(Index rows, Index cols, Forward&& forward) {
    const Var y = t_->push(name_, rows, cols, nullptr, 0, false, 0);
    detail::Node<T>& node = t_->nodes_[y.index()];
    node.kind = detail::NodeKind::constant;
    if (node.size() != 0) forward(MutMap(node.value, rows, cols));
    return y;
  }

  /// A result that reads operand k's storage in place, from element `offset` on, as rows x cols
  /// (row-major): reshape, a block of rows, stop_gradient. No copy. The caller checks that the
  /// view lies inside the operand. With `differentiable` false no gradient flows back.
  template <class Rule>
  Var record_view(std::size_t k, Index offset, Index rows, Index cols, bool differentiable, Rule&& rule) {
    const bool rg = differentiable && rg_;
    const Var y = t_->push(name_, 0, 0, in_, n_, rg, 0);
    detail::Node<T>& node = t_->nodes_[y.index()];
    const detail::Node<T>& src = t_->nodes_[in_[k]];
    const Index size = detail::shape_size(name_, rows, cols);
    node.value = size ? src.value + offset : nullptr;
    node.rows = rows;
    node.cols = cols;
    if (rg) {
      node.grad = size ? t_->arena_.template allocate<T>(static_cast<std::size_t>(size)) : nullptr;
      store_rule(node, std::forward<Rule>(rule));
    }
    return y;
  }

  /// Scratch space for GEMM packing, reused by every operation of the tape.
  detail::Workspace<T>& workspace() noexcept { return t_->workspace_; }

 private:
  template <class R>
  static void invoke(const void* state, Backward<T>& bw) {
    (*static_cast<const R*>(state))(bw);
  }

  template <class Rule>
  void store_rule(detail::Node<T>& node, Rule&& rule) {
    using R = std::decay_t<Rule>;
    static_assert(std::is_trivially_destructible<R>::value,
                  "reparam: Operation::record: the backward rule is kept in the tape's arena and never destroyed: "
                  "capture scalars, indices, pointers, Eigen::Map or Vars only (keep other state in op.state(n))");
    static_assert(std::is_invocable<const R&, Backward<T>&>::value,
                  "reparam: Operation::record: the backward rule must be callable as rule(reparam::Backward<T>&)");
    R* p = t_->arena_.template allocate<R>(1);
    ::new (static_cast<void*>(p)) R(std::forward<Rule>(rule));
    node.rule = &invoke<R>;
    node.rule_state = p;
  }

  BasicTape<T>* t_ = nullptr;
  const char* name_;
  const std::uint32_t* in_ = nullptr;
  std::uint32_t n_ = 0;
  std::uint32_t small_[2] = {0, 0};
  bool rg_ = false;
};

}  // namespace reparam
