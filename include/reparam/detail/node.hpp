#pragma once
/// \file node.hpp  One recorded operation, as the tape stores it. Internal.

#include <cstdint>
#include <type_traits>

#include <Eigen/Core>

#include <reparam/matrix.hpp>

namespace reparam {

template <class T>
class Backward;

namespace detail {

template <class T>
using CMap = Eigen::Map<const Matrix<T>>;
template <class T>
using MMap = Eigen::Map<Matrix<T>>;

/// Whether an Eigen expression is a constant (`Constant(r, c, v)`): its value is one number.
template <class E>
struct is_constant_expr : std::false_type {};
template <class S, class P>
struct is_constant_expr<Eigen::CwiseNullaryOp<Eigen::internal::scalar_constant_op<S>, P>> : std::true_type {};

enum class NodeKind : std::uint8_t {
  constant,  // leaf without gradient
  variable,  // leaf whose gradient persists across backward calls (like PyTorch's .grad)
  interior   // result of an operation; its gradient is recomputed by every backward call
};

/// A recorded node. Values and gradients live in the tape's arena (or, for a Parameter, in the
/// Parameter itself); so do the operand list (beyond two operands) and the backward rule, a
/// closure called through `rule`. Recording a node never touches the heap.
template <class T>
struct Node {
  using Rule = void (*)(const void* state, Backward<T>& bw);
  T* value = nullptr;
  T* grad = nullptr;  // null when no variable lies behind this node: nothing flows back
  Index rows = 0;
  Index cols = 0;
  Rule rule = nullptr;              // null for leaves and for nodes without gradient
  const void* rule_state = nullptr;  // the closure object, in the arena
  const char* name = "leaf";        // the operation, for messages
  union {
    std::uint32_t in[2];          // operand node indices, when there are at most two
    const std::uint32_t* many;    // otherwise, in the arena
  };
  std::uint32_t n_in = 0;
  // An interior gradient holds a value only if `sweep` is the tape's current sweep (so starting a
  // sweep or zero_grad() invalidates every interior gradient at once); the first write assigns.
  std::uint32_t sweep = 0;
  NodeKind kind = NodeKind::interior;
  bool requires_grad = false;  // a variable lies behind this node
  // The gradient is grad[0] everywhere (e.g. below a sum): kept as one number until an operation
  // needs the full matrix, which saves a pass over memory per node.
  bool grad_const = false;
  // A variable leaf whose buffer holds nothing yet (`BasicTape::overwrite_gradients`): its
  // gradient is ready only once written in the current sweep, and the first write assigns.
  bool fresh = false;

  Node() : in{0, 0} {}
  std::uint32_t input(std::size_t k) const noexcept { return n_in <= 2 ? in[k] : many[k]; }
  Index size() const noexcept { return rows * cols; }
};

}  // namespace detail
}  // namespace reparam
