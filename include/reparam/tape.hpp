#pragma once
/// \file tape.hpp  The tape (`BasicTape`), its handles (`BasicVar`), `Parameter`, and `Backward`,
/// what a backward rule sees. Operations are recorded through `reparam::Operation`
/// (operation.hpp).
///
///     reparam::Tape tape;
///     reparam::Var x = tape.variable(m);           // leaf that receives a gradient
///     reparam::Var y = reparam::sum(reparam::square(x));
///     tape.backward(y);                            // x.grad() == 2 * m

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <reparam/detail/arena.hpp>
#include <reparam/detail/gemm.hpp>
#include <reparam/detail/node.hpp>
#include <reparam/errors.hpp>
#include <reparam/matrix.hpp>

namespace reparam {

template <class T>
class BasicTape;
template <class T>
class BasicVar;
template <class T>
class Operation;

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

/// A gradient handed over as the factors of its product instead of its values: the gradient
/// (rows x cols, row-major) is alpha * a^T g, a being depth x rows and g depth x cols, both
/// row-major (a weight's gradient: a the layer's input, g the gradient of its output). Both
/// point into the tape's memory and stay valid and unchanged until the tape is cleared.
template <class T>
struct GradientFactors {
  const T* a = nullptr;
  const T* g = nullptr;
  Index depth = 0, rows = 0, cols = 0;
  T alpha = T(1);
};

/// Where a Parameter's gradient goes when it is streamed (`BasicTape::stream_gradient`) instead
/// of stored: `fn(context, tag, offset, count, g)` receives elements [offset, offset + count) of
/// the gradient (row-major), final for the sweep, in a scratch buffer the callee may overwrite.
/// `optim::Adam::stream_from` registers one per parameter, updating each block as it arrives.
/// With `factors` set, a rule that can (`linear`, `matmul`) hands the gradient over as its
/// factors instead, computing nothing (`nn::DataParallel` sums its threads' products block by
/// block after their sweeps); `fn` may then be null, and gradients that cannot be handed over
/// as factors are stored as usual.
template <class T>
struct GradientSink {
  void (*fn)(void* context, std::size_t tag, Index offset, Index count, T* g) = nullptr;
  void* context = nullptr;
  std::size_t tag = 0;
  void (*factors)(void* context, std::size_t tag, const GradientFactors<T>& f) = nullptr;
};

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

  /// The tape this Var belongs to; GraphError for an empty (default-constructed) Var.
  BasicTape<T>& tape() const {
    if (tape_ == nullptr) detail::throw_graph("tape", "Var is empty (default-constructed)");
    return *tape_;
  }
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

/// What a backward rule sees: the gradient of the operation's result, the values of its operands,
/// and where to add their gradients. Operands are numbered in the order they were given to
/// `Operation`. See operation.hpp for how rules are written.
template <class T>
class Backward {
 public:
  using ConstMap = detail::CMap<T>;
  using MutMap = detail::MMap<T>;

  /// d(output)/d(result), of the result's shape.
  ConstMap grad() const;
  /// The result's value.
  ConstMap value() const { return ConstMap(n_.value, n_.rows, n_.cols); }
  Index rows() const noexcept { return n_.rows; }
  Index cols() const noexcept { return n_.cols; }
  /// Number of operands.
  std::size_t inputs() const noexcept { return n_.n_in; }
  /// Operand k's value.
  ConstMap input(std::size_t k) const;
  /// Whether operand k receives a gradient (a variable lies behind it). `add` ignores the others.
  bool needs(std::size_t k) const;
  /// grad(operand k) += e, for any Eigen matrix or array expression of operand k's shape.
  template <class E>
  void add(std::size_t k, const Eigen::DenseBase<E>& e);
  /// grad(operand k) += v in every element.
  void add_constant(std::size_t k, T v);
  /// Operand k's gradient buffer for adding into in place (a GEMM, a block): it holds the
  /// gradient so far, zeros if nothing flowed into it yet. Empty when `needs(k)` is false.
  MutMap grad_buffer(std::size_t k);

  // ---- For rules that want the constant-gradient fast path (the library's own) ----------------

  /// Whether the incoming gradient is one number everywhere (then `grad_constant()` is it):
  /// below a `sum`, for example. `grad()` always works; this saves a pass over memory.
  bool grad_is_constant() const noexcept { return n_.grad_const; }
  T grad_constant() const noexcept { return n_.grad[0]; }
  /// Calls f with the incoming gradient as an Eigen array expression: a constant expression when
  /// it is one number, the buffer otherwise.
  template <class F>
  void with_grad(F&& f) const;
  /// Operand k's gradient buffer when the caller overwrites it whole (`assign` is set) or adds
  /// into it (`assign` false): saves zeroing on the first write.
  MutMap target(std::size_t k, bool full_write, bool& assign);
  /// grad(operand k) += v for a 1x1 operand (scalar graphs: no Eigen machinery).
  void add_scalar(std::size_t k, T v);
  /// Whether operand k's gradient may be handed out block by block (`stream`) instead of stored:
  /// it is a Parameter's leaf with a sink (`BasicTape::stream_gradient`), nothing has flowed into
  /// it in this graph (`overwrite_gradients`), and this operation is the only one on the graph
  /// that reads the Parameter's value, so the sink may change that value at once.
  bool streams(std::size_t k) const;
  /// After `streams(k)`: elements [offset, offset + count) of operand k's gradient, final; every
  /// element exactly once, in one rule. The buffer is the caller's scratch (the sink may
  /// overwrite it).
  void stream(std::size_t k, Index offset, Index count, T* g);
  /// Hands operand k's gradient, alpha a^T g (a: depth x rows, g: depth x cols, row-major), to
  /// its sink as factors (`GradientSink::factors`) and returns true, where that gives the stored
  /// result: the conditions of `streams(k)`, a sink that takes factors, factors in memory that
  /// stays unchanged until the tape is cleared (a value or gradient recorded on this tape, not a
  /// Parameter another sink updates) and a product the blocked kernel computes
  /// (`detail::gemm_tn_rows_applies`). Otherwise returns false and the rule computes the gradient.
  bool defer(std::size_t k, const ConstMap& a, const ConstMap& g, T alpha);
  /// After `target(k, true, assign)` gave assign: operand k's gradient becomes v everywhere,
  /// kept as one number.
  void assign_constant(std::size_t k, T v);
  /// Whether operand k's gradient is currently kept as one number.
  bool operand_grad_is_constant(std::size_t k) const noexcept { return t_.nodes_[n_.input(k)].grad_const; }

  /// The operation's name, as recorded.
  const char* name() const noexcept { return n_.name; }
  /// Index of operand k's node on the tape.
  std::uint32_t input_index(std::size_t k) const noexcept { return n_.input(k); }
  BasicTape<T>& tape() const noexcept { return t_; }
  /// Scratch space for GEMM packing, shared by the tape's operations.
  detail::Workspace<T>& workspace() const noexcept { return t_.workspace_; }

 private:
  friend class BasicTape<T>;
  Backward(BasicTape<T>& t, const detail::Node<T>& n) : t_(t), n_(n) {}
  [[noreturn]] void wrong_shape(std::size_t k, Index r, Index c) const;
  /// Operand k's sink where its gradient may bypass storage (see `streams`), else null.
  const GradientSink<T>* sink_for(std::size_t k) const;
  /// Operand k's gradient went to its sink: the leaf counts as written in this sweep.
  void taken(std::size_t k);

  BasicTape<T>& t_;
  const detail::Node<T>& n_;
};

/// Records operations on `BasicVar<T>`s and runs the reverse sweep. Owns all node memory; `clear()`
/// drops the graph and keeps the memory, so rebuilding the same graph allocates nothing.
/// Not copyable or movable: Vars point at it. Not thread-safe: use one tape per thread.
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
    return in_place(p, p.grad.data(), true);
  }
  /// Leaf reading `p.value` in place whose gradient goes to `grad` (resized to the value's shape
  /// and zeroed if it is not already that shape) instead of `p.grad`: for data-parallel steps,
  /// where threads share one Parameter's value and each adds into a gradient of its own (the
  /// value is only read, so threads may share it).
  Var variable(const Parameter<T>& p, Matrix<T>& grad) {
    if (grad.rows() != p.value.rows() || grad.cols() != p.value.cols()) grad.setZero(p.value.rows(), p.value.cols());
    return in_place(p, grad.data(), true);
  }
  /// Leaf reading `p.value` in place (no copy), without gradient.
  Var constant(const Parameter<T>& p) { return in_place(p, nullptr, false); }

  /// How layers read their weights: `variable(p)` normally; `constant(p)` while gradients are
  /// off (`NoGrad`, evaluation); `variable(p, buffer)` when `bind_gradient(p, buffer)` was called
  /// on this tape (data-parallel steps: each thread's tape adds into its own buffer).
  Var parameter(Parameter<T>& p) {
    if (!grad_enabled_) return constant(p);
    for (const Binding& b : bindings_)
      if (b.param == &p) return variable(p, *b.grad);
    return variable(p);
  }
  /// From now on (across `clear()`), `parameter(p)` on this tape adds p's gradient into `grad`
  /// instead of `p.grad`. Binding p again replaces its buffer; a buffer already bound to another
  /// Parameter is refused (GraphError). `grad` must outlive the binding.
  void bind_gradient(const Parameter<T>& p, Matrix<T>& grad) {
    for (const Binding& b : bindings_)
      if (b.param != &p && b.grad == &grad)
        detail::throw_graph("bind_gradient", "the buffer is already bound to another Parameter (each needs its own)");
    for (Binding& b : bindings_)
      if (b.param == &p) {
        b.grad = &grad;
        return;
      }
    bindings_.push_back({&p, &grad});
  }
  /// Drops every binding: `parameter(p)` adds into `p.grad` again.
  void unbind_gradients() noexcept { bindings_.clear(); }

  /// From now on (across `clear()`), graphs read p through a leaf whose gradient may be streamed
  /// to `sink` block by block as a backward rule produces it (`linear` and `matmul` stream a
  /// weight's gradient from their GEMM) instead of being stored in `p.grad`: an optimizer can
  /// then update each block while it is in cache (`optim::Adam::stream_from`). Streaming happens
  /// only where it gives the stored result: the leaf must be fresh (`overwrite_gradients()` was
  /// called on this graph and nothing has flowed into it) and the operation streaming it must be
  /// the only reader of p's value on the graph; otherwise the gradient is stored as usual. A
  /// streamed gradient is never written to `p.grad`, and since the sink may change p's value
  /// during the sweep, a second `backward` on the same graph is refused (GraphError). Calling it
  /// again for p replaces the sink; the sink's context must outlive the registration.
  void stream_gradient(const Parameter<T>& p, GradientSink<T> sink) {
    if (sink.fn == nullptr && sink.factors == nullptr) detail::throw_graph("stream_gradient", "the sink has no function");
    for (Stream& st : streams_)
      if (st.param == &p) {
        st.sink = sink;
        return;
      }
    streams_.push_back({&p, sink});
  }
  /// Drops every sink: gradients are stored again.
  void unstream_gradients() noexcept { streams_.clear(); }

  /// Until `clear()`, the gradient buffers of the Parameters this graph reads in place
  /// (`parameter(p)`, `variable(p)`, `variable(p, buffer)`) count as holding zeros without being
  /// zeroed: the first backward sweep assigns into them instead of adding (a GEMM with beta = 0,
  /// no zeroing pass and no read of the old contents), and zeroes those it sends nothing to. The
  /// result is that of zeroing them first (PyTorch's `zero_grad(set_to_none=True)`, then
  /// `backward`). A buffer that no sweep reached stays unwritten: `gradient_pending(buffer)`
  /// tells (nn::DataParallel zeroes those). Each Parameter buffer gets one leaf per graph: reading
  /// the same Parameter again returns the same Var.
  void overwrite_gradients() noexcept {
    overwrite_ = true;
    for (InPlace& l : in_place_)
      if (l.done) {
        l.done = false;
        nodes_[l.node].fresh = true;
      }
  }
  /// Whether `grad`'s contents are still pending after `overwrite_gradients()`: no backward sweep
  /// of this graph has written (or zeroed) it. False when `overwrite_gradients` was not called.
  bool gradient_pending(const Matrix<T>& grad) const noexcept {
    if (!overwrite_) return false;
    for (const InPlace& l : in_place_)
      if (l.grad == grad.data() && l.rows == grad.rows() && l.cols == grad.cols()) return !l.done;
    return true;
  }
  /// Whether `parameter(p)` records variables (true unless a `NoGrad` scope is open).
  bool grad_enabled() const noexcept { return grad_enabled_; }
  /// Turns recording of parameters as variables on or off; prefer the `NoGrad` scope.
  void set_grad_enabled(bool on) noexcept { grad_enabled_ = on; }

  /// Leaf without gradient.
  template <class Derived>
  Var constant(const Eigen::DenseBase<Derived>& m) {
    return leaf(m, detail::NodeKind::constant);
  }
  /// 1x1 leaf without gradient.
  Var constant(T s) { return leaf(Matrix<T>::Constant(1, 1, s), detail::NodeKind::constant); }
  /// Leaf without gradient, rows x cols, whose value `fill(y)` writes where the tape keeps it (y an
  /// `Eigen::Map<Matrix<T>>`, uninitialized before; not called for an empty shape): a constant
  /// built without the copy `constant(matrix)` makes, e.g. a batch gathered straight from its
  /// data set (`data::gather_rows(tape, images, rows, first, count)`). Sizes are checked
  /// (ShapeError when negative or overflowing) before anything is written.
  template <class Fill, class = decltype(std::declval<Fill&>()(std::declval<MutMap>()))>
  Var constant(Index rows, Index cols, Fill&& fill) {
    Var v = push("constant", rows, cols, nullptr, 0, false, 0);
    Node& n = nodes_[v.index_];
    n.kind = detail::NodeKind::constant;
    if (n.value) fill(MutMap(n.value, n.rows, n.cols));
    return v;
  }

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
      n.fresh = false;
    }
    for (InPlace& l : in_place_) l.done = true;
    next_sweep();  // interior gradients: none holds a value any more
  }

  /// Drops the graph (every Var of it becomes invalid) and keeps the memory for reuse; ends an
  /// `overwrite_gradients()`.
  void clear() {
    if (guard_op_ != nullptr) detail::throw_graph(guard_op_, guard_what_);
    nodes_.clear();
    in_place_.clear();
    overwrite_ = false;
    streamed_ = false;
    arena_.reset();
    ++generation_;
  }

  /// While guarded, `clear()` throws GraphError ("reparam: <op>: <what>") and frees nothing:
  /// `nn::DataParallel` guards each thread's tape from the end of its clear to the end of the
  /// step, since other threads read the gradients' factors in this tape's storage. `nullptr`
  /// lifts the guard. The strings must outlive it.
  void guard_clear(const char* op, const char* what) noexcept {
    guard_op_ = op;
    guard_what_ = what;
  }

  /// A number that changes at every `clear()` (Vars and factors handed out before are stale).
  std::uint64_t generation() const noexcept { return generation_; }
  /// Number of nodes recorded since the last `clear()`.
  std::size_t size() const noexcept { return nodes_.size(); }
  /// Bytes of node storage the tape owns (kept across `clear()`).
  std::size_t memory_bytes() const noexcept { return arena_.capacity() + nodes_.capacity() * sizeof(Node); }

  /// Throws GraphError unless `v` is a live node of this tape.
  void check(const Var& v, detail::OpName op) const {
    if (v.tape_ == nullptr) detail::throw_graph(op, "Var is empty (default-constructed)");
    if (v.tape_ != this) detail::throw_graph(op, "Var belongs to another tape");
    if (v.generation_ != generation_) detail::throw_graph(op, "Var used after its tape was cleared");
  }

 private:
  friend class BasicVar<T>;
  friend class Backward<T>;
  friend class Operation<T>;

  /// Records a node of shape rows x cols with the given operands. Its value is uninitialized; its
  /// gradient exists iff `requires_grad`. `extra` more elements are allocated after the value
  /// (the operation's own state). Sizes are checked here: every node passes through.
  Var push(const char* name, Index rows, Index cols, const std::uint32_t* in, std::uint32_t n_in, bool requires_grad,
           std::size_t extra) {
    if (in_sweep_) detail::throw_graph(name, "cannot record operations during backward");
    const Index size = detail::shape_size(name, rows, cols);
    if (nodes_.size() >= std::numeric_limits<std::uint32_t>::max())
      detail::throw_graph(name, "too many nodes on one tape (more than 2^32 - 1)");
    if (extra > std::size_t(detail::max_elements)) detail::throw_shape(name, "size overflows (state of the operation)");
    const std::size_t n = static_cast<std::size_t>(size);
    Node& node = nodes_.emplace_back();  // built in place: no copy of the node
    node.value = n + extra ? arena_.allocate<T>(n + extra) : nullptr;
    node.grad = requires_grad && n ? arena_.allocate<T>(n) : nullptr;
    node.rows = rows;
    node.cols = cols;
    node.name = name;
    node.requires_grad = requires_grad;
    node.n_in = n_in;
    if (n_in <= 2) {
      for (std::uint32_t k = 0; k < n_in; ++k) node.in[k] = in[k];
    } else {
      node.many = in;  // already in the arena (Operation put it there)
    }
    return Var(this, static_cast<std::uint32_t>(nodes_.size() - 1), generation_);
  }

  /// A leaf whose value is `p.value` itself (never written: only gradients of leaves are); a
  /// variable adding into `grad` (null for an empty Parameter), or a constant.
  /// One variable leaf per gradient buffer and graph (a second read returns the first Var).
  Var in_place(const Parameter<T>& p, T* grad, bool var) {
    if (var)
      for (const InPlace& l : in_place_)
        if (l.grad == grad && l.rows == p.value.rows() && l.cols == p.value.cols() &&
            nodes_[l.node].value == p.value.data())
          return Var(this, l.node, generation_);
    Var v = push(var ? "variable" : "constant", 0, 0, nullptr, 0, var, 0);
    Node& n = nodes_[v.index_];
    n.value = const_cast<T*>(p.value.data());
    n.grad = grad;
    n.rows = p.value.rows();
    n.cols = p.value.cols();
    n.kind = var ? detail::NodeKind::variable : detail::NodeKind::constant;
    if (var) {
      n.fresh = overwrite_;
      in_place_.push_back({grad, n.rows, n.cols, v.index_, !overwrite_});  // capacity kept across clear()
    }
    return v;
  }

  template <class Derived>
  Var leaf(const Eigen::DenseBase<Derived>& m, detail::NodeKind kind) {
    static_assert(std::is_same<typename Derived::Scalar, T>::value,
                  "reparam: tape.variable/constant: the matrix scalar type must be the tape's (use .cast<T>())");
    const bool var = kind == detail::NodeKind::variable;
    Var v = push(var ? "variable" : "constant", m.rows(), m.cols(), nullptr, 0, var, 0);
    Node& n = nodes_[v.index_];
    n.kind = kind;
    if (n.value) MutMap(n.value, n.rows, n.cols) = m.derived();
    if (var && n.grad) MutMap(n.grad, n.rows, n.cols).setZero();
    return v;
  }

  /// Whether node n's gradient holds a value in the current sweep (leaves always do, unless
  /// fresh: see overwrite_gradients).
  bool grad_ready(const Node& n) const {
    return (n.kind == detail::NodeKind::variable && !n.fresh) || n.sweep == sweep_;
  }

  /// After a sweep: fresh leaves it wrote hold their gradient (materialized if kept as one
  /// number), those it did not are zeroed; none is fresh any more.
  void settle_fresh() noexcept {
    for (InPlace& l : in_place_) {
      Node& n = nodes_[l.node];
      if (!n.fresh) continue;
      if (n.sweep != sweep_)
        MutMap(n.grad, n.rows, n.cols).setZero();
      else if (n.grad_const)
        materialize(n);
      n.fresh = false;
      n.grad_const = false;
      l.done = true;
    }
  }

  void materialize(Node& n) const {
    MutMap(n.grad, n.rows, n.cols).setConstant(n.grad[0]);
    n.grad_const = false;
  }

  /// Gradient buffer of node i. If it holds no value yet, `assign` tells the caller to overwrite
  /// (full writes); otherwise it is zeroed first.
  MutMap grad_target(std::uint32_t i, bool full_write, bool& assign) {
    Node& n = nodes_[i];
    assign = false;
    if (!grad_ready(n)) {
      if (full_write)
        assign = true;
      else
        MutMap(n.grad, n.rows, n.cols).setZero();
      n.sweep = sweep_;
      n.grad_const = false;
    } else if (n.grad_const) {
      materialize(n);
    }
    return MutMap(n.grad, n.rows, n.cols);
  }

  /// Adds v to every element of node i's gradient, without a pass over memory when the gradient
  /// held nothing or was constant already.
  void accumulate_const(std::uint32_t i, T v) {
    Node& n = nodes_[i];
    if (n.size() == 0) {
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

  ConstMap grad_of_var(const Var& v) {
    check(v, "grad");
    Node& n = nodes_[v.index_];
    if (!n.requires_grad) detail::throw_graph("grad", "node does not require a gradient (no variable lies behind it)");
    if (!grad_ready(n)) {  // nothing flowed back yet: the gradient is zero
      MutMap(n.grad, n.rows, n.cols).setZero();
      n.sweep = sweep_;
      n.grad_const = false;
      if (n.fresh) {
        n.fresh = false;
        for (InPlace& l : in_place_)
          if (l.node == v.index_) l.done = true;
      }
    }
    if (n.grad_const) materialize(n);
    return ConstMap(n.grad, n.rows, n.cols);
  }

  void sweep(const Var& y, const Matrix<T>* seed) {
    const std::uint32_t top = y.index_;
    if (!nodes_[top].requires_grad)
      detail::throw_graph("backward", "output does not depend on any variable (nothing to differentiate)");
    if (streamed_)
      detail::throw_graph("backward", "this graph's last sweep streamed gradients to an optimizer, which moved the "
                                      "parameters it reads: build the graph again after clear()");
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
    // Reverse sweep: one loop, no recursion (graphs of millions of nodes are fine). Rules of
    // empty results have nothing to pass on.
    struct Guard {  // also when a rule throws: no leaf stays fresh, none holds garbage
      BasicTape& tape;
      ~Guard() {
        tape.in_sweep_ = false;
        if (tape.overwrite_) tape.settle_fresh();
      }
    } guard{*this};
    in_sweep_ = true;
    for (std::uint32_t i = top + 1; i-- > 0;) {
      const Node& n = nodes_[i];
      if (n.rule && n.sweep == sweep_ && n.size() != 0) {
        Backward<T> bw(*this, n);
        n.rule(n.rule_state, bw);
      }
    }
  }

  void next_sweep() {
    if (++sweep_ == 0) {  // after 2^32 sweeps: forget the old stamps once
      for (Node& n : nodes_) n.sweep = 0;
      sweep_ = 1;
    }
  }

  struct Binding {
    const Parameter<T>* param;
    Matrix<T>* grad;
  };
  struct InPlace {  // a variable leaf on a Parameter's value, by gradient buffer
    T* grad;
    Index rows, cols;
    std::uint32_t node;
    bool done;  // the buffer holds its gradient (not pending an overwrite)
  };
  struct Stream {
    const Parameter<T>* param;
    GradientSink<T> sink;
  };
  /// The sink of a variable leaf on a Parameter's value, or null.
  const GradientSink<T>* sink_of(const Node& leaf) const noexcept {
    if (leaf.kind != detail::NodeKind::variable) return nullptr;
    for (const Stream& st : streams_)
      if (st.param->value.data() == leaf.value && st.param->value.size() == leaf.size()) return &st.sink;
    return nullptr;
  }

  std::vector<Node> nodes_;
  std::vector<Binding> bindings_;
  std::vector<InPlace> in_place_;
  std::vector<Stream> streams_;
  bool overwrite_ = false;
  bool streamed_ = false;  // a sweep of this graph streamed a gradient
  const char* guard_op_ = nullptr;  // guard_clear
  const char* guard_what_ = nullptr;
  bool grad_enabled_ = true;
  detail::Arena arena_;
  detail::Workspace<T> workspace_;
  Matrix<T> seed_;
  std::uint64_t generation_ = 1;
  std::uint32_t sweep_ = 1;
  bool in_sweep_ = false;
};

/// Evaluation scope: while it lives, `tape.parameter(p)` gives constants, so a model's forward
/// pass records no gradient buffers and `backward` has nothing to do (PyTorch's `no_grad`).
///
///     { reparam::NoGrad eval(tape); reparam::Var y = model(tape.constant(x)); }
template <class T>
class NoGrad {
 public:
  explicit NoGrad(BasicTape<T>& tape) noexcept : tape_(tape), was_(tape.grad_enabled()) { tape.set_grad_enabled(false); }
  ~NoGrad() { tape_.set_grad_enabled(was_); }
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  BasicTape<T>& tape_;
  bool was_;
};
template <class T>
NoGrad(BasicTape<T>&) -> NoGrad<T>;

// ---- BasicVar ----------------------------------------------------------------------------------

template <class T>
typename BasicVar<T>::ConstMap BasicVar<T>::value() const {
  if (!tape_) detail::throw_graph("value", "Var is empty (default-constructed)");
  tape_->check(*this, "value");
  const detail::Node<T>& n = tape_->nodes_[index_];
  return ConstMap(n.value, n.rows, n.cols);
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
  return tape_->nodes_[index_].requires_grad;
}

// ---- Backward ----------------------------------------------------------------------------------

template <class T>
typename Backward<T>::ConstMap Backward<T>::grad() const {
  if (n_.grad_const) t_.materialize(const_cast<detail::Node<T>&>(n_));
  return ConstMap(n_.grad, n_.rows, n_.cols);
}
template <class T>
typename Backward<T>::ConstMap Backward<T>::input(std::size_t k) const {
  const detail::Node<T>& in = t_.nodes_[n_.input(k)];
  return ConstMap(in.value, in.rows, in.cols);
}
template <class T>
bool Backward<T>::needs(std::size_t k) const {
  return t_.nodes_[n_.input(k)].requires_grad;
}
template <class T>
void Backward<T>::wrong_shape(std::size_t k, Index r, Index c) const {
  const detail::Node<T>& in = t_.nodes_[n_.input(k)];
  detail::throw_shape(n_.name, "backward rule adds a gradient of shape " + detail::shape_str(r, c) + " to operand " +
                                   std::to_string(k) + " of shape " + detail::shape_str(in.rows, in.cols));
}
template <class T>
template <class E>
void Backward<T>::add(std::size_t k, const Eigen::DenseBase<E>& e) {
  const std::uint32_t i = n_.input(k);
  const detail::Node<T>& in = t_.nodes_[i];
  if (e.rows() != in.rows || e.cols() != in.cols) wrong_shape(k, e.rows(), e.cols());
  if (!in.requires_grad || in.size() == 0) return;
  if constexpr (detail::is_constant_expr<E>::value) {
    t_.accumulate_const(i, e.derived().functor()());
  } else {
    bool assign;
    MutMap g = t_.grad_target(i, true, assign);
    if (assign)
      g.array() = e.derived().array();
    else
      g.array() += e.derived().array();
  }
}
template <class T>
void Backward<T>::add_constant(std::size_t k, T v) {
  const std::uint32_t i = n_.input(k);
  if (t_.nodes_[i].requires_grad) t_.accumulate_const(i, v);
}
template <class T>
typename Backward<T>::MutMap Backward<T>::grad_buffer(std::size_t k) {
  const std::uint32_t i = n_.input(k);
  if (!t_.nodes_[i].requires_grad) return MutMap(nullptr, 0, 0);
  bool assign;
  return t_.grad_target(i, false, assign);
}
template <class T>
typename Backward<T>::MutMap Backward<T>::target(std::size_t k, bool full_write, bool& assign) {
  return t_.grad_target(n_.input(k), full_write, assign);
}
template <class T>
const GradientSink<T>* Backward<T>::sink_for(std::size_t k) const {
  const std::uint32_t i = n_.input(k);
  const detail::Node<T>& leaf = t_.nodes_[i];
  if (t_.streams_.empty() || !leaf.fresh || t_.grad_ready(leaf) || leaf.size() == 0) return nullptr;
  const GradientSink<T>* sink = t_.sink_of(leaf);
  if (sink == nullptr) return nullptr;
  // Readers of the Parameter's value: operands of any node that are nodes on that memory.
  std::size_t readers = 0;
  for (const detail::Node<T>& n : t_.nodes_)
    for (std::uint32_t u = 0; u < n.n_in; ++u)
      readers += t_.nodes_[n.input(u)].value == leaf.value;
  return readers == 1 ? sink : nullptr;
}
template <class T>
bool Backward<T>::streams(std::size_t k) const {
  const GradientSink<T>* sink = sink_for(k);
  return sink != nullptr && sink->fn != nullptr;
}
template <class T>
void Backward<T>::taken(std::size_t k) {
  // The leaf counts as written in this sweep (settle_fresh leaves its buffer alone).
  detail::Node<T>& leaf = t_.nodes_[n_.input(k)];
  leaf.sweep = t_.sweep_;
  leaf.grad_const = false;
  t_.streamed_ = true;
}
template <class T>
void Backward<T>::stream(std::size_t k, Index offset, Index count, T* g) {
  const GradientSink<T>* sink = t_.sink_of(t_.nodes_[n_.input(k)]);
  REPARAM_ASSERT(sink != nullptr && sink->fn != nullptr);
  taken(k);
  sink->fn(sink->context, sink->tag, offset, count, g);
}
template <class T>
bool Backward<T>::defer(std::size_t k, const ConstMap& a, const ConstMap& g, T alpha) {
  if (t_.streams_.empty()) return false;
  const GradientSink<T>* sink = sink_for(k);
  if (sink == nullptr || sink->factors == nullptr) return false;
  const detail::Node<T>& leaf = t_.nodes_[n_.input(k)];
  if (a.rows() != g.rows() || a.cols() != leaf.rows || g.cols() != leaf.cols) wrong_shape(k, a.cols(), g.cols());
  if (!detail::gemm_tn_rows_applies<T>(a.cols(), g.cols(), a.rows())) return false;
  // Memory a sink may change after the sweep (the Parameters it updates) cannot hold a factor.
  const auto overlaps = [](const T* p, Index n, const T* q, Index m) {
    const auto lo = reinterpret_cast<std::uintptr_t>(p), hi = reinterpret_cast<std::uintptr_t>(p + n);
    const auto lo2 = reinterpret_cast<std::uintptr_t>(q), hi2 = reinterpret_cast<std::uintptr_t>(q + m);
    return lo < hi2 && lo2 < hi;
  };
  for (const auto& st : t_.streams_) {
    const Matrix<T>& v = st.param->value;
    if (overlaps(a.data(), a.size(), v.data(), v.size()) || overlaps(g.data(), g.size(), v.data(), v.size())) return false;
  }
  taken(k);
  sink->factors(sink->context, sink->tag, GradientFactors<T>{a.data(), g.data(), a.rows(), a.cols(), g.cols(), alpha});
  return true;
}
template <class T>
void Backward<T>::add_scalar(std::size_t k, T v) {
  const std::uint32_t i = n_.input(k);
  if (t_.nodes_[i].requires_grad) t_.accumulate_scalar(i, v);
}
template <class T>
void Backward<T>::assign_constant(std::size_t k, T v) {
  detail::Node<T>& n = t_.nodes_[n_.input(k)];
  n.grad[0] = v;
  n.grad_const = true;
}
template <class T>
template <class F>
void Backward<T>::with_grad(F&& f) const {
  using RowArray = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  if (n_.grad_const)
    f(RowArray::Constant(n_.rows, n_.cols, n_.grad[0]));
  else
    f(ConstMap(n_.grad, n_.rows, n_.cols).array());
}

using Tape = BasicTape<double>;
using Var = BasicVar<double>;
using TapeF = BasicTape<float>;
using VarF = BasicVar<float>;

}  // namespace reparam
