#pragma once
/// \file errors.hpp  Exception classes, the validation switch and the checks that build their
/// messages only when they fail.
///
/// Every message is shaped `reparam: <op>: <what> (<details>)`; tests assert the text.

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <reparam/matrix.hpp>

#ifndef NDEBUG
#include <cassert>
/// Internal invariant; vanishes in release builds.
#define REPARAM_ASSERT(cond) assert(cond)
#else
#define REPARAM_ASSERT(cond) ((void)0)
#endif

namespace reparam {

/// Operands whose shapes do not fit the operation (broadcasting, matmul, reshape, backward), and
/// sizes that are negative or overflow.
class ShapeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// A value outside the domain of an operation or the support of a distribution.
class DomainError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Misuse of the graph: mixing tapes, using a Var after `clear()`, an empty Var.
class GraphError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

/// A file that cannot be read or written, or whose contents are not what they must be
/// (checkpoints, datasets): truncated, corrupt, of another format or shape.
class FileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
inline bool& validation_flag() noexcept {
  thread_local bool on = true;
  return on;
}
}  // namespace detail

/// Value checks (domains of `log`, `sqrt`, ...; distribution parameters) are on by default.
/// Turning them off skips one pass over the data per checked operation. The switch is per
/// thread: it affects the calling thread only (each thread starts with checks on). Shape and
/// graph checks always stay on: they guard memory safety. Compile with `REPARAM_NO_VALIDATION` to
/// remove the value checks entirely.
inline void set_validation(bool on) noexcept { detail::validation_flag() = on; }

/// Whether value checks run in this thread (see `set_validation`).
inline bool validation_enabled() noexcept {
#ifdef REPARAM_NO_VALIDATION
  return false;
#else
  return detail::validation_flag();
#endif
}

/// Switches value checks on or off in this thread for a scope and restores the previous setting
/// on exit.
///     { reparam::ValidationScope off(false); hot_loop(); }
class ValidationScope {
 public:
  explicit ValidationScope(bool on) noexcept : previous_(validation_enabled()) { set_validation(on); }
  ~ValidationScope() { set_validation(previous_); }
  ValidationScope(const ValidationScope&) = delete;
  ValidationScope& operator=(const ValidationScope&) = delete;

 private:
  bool previous_;
};

namespace detail {

/// The name of an operation in a message: "log", or a distribution's member "Normal.log_prob"
/// kept as two pieces so that nothing is built unless a check fails.
struct OpName {
  const char* head;
  const char* member = nullptr;
  OpName(const char* h) noexcept : head(h) {}  // NOLINT: implicit from a plain name
  OpName(const char* h, const char* m) noexcept : head(h), member(m) {}
  std::string str() const { return member ? std::string(head) + "." + member : std::string(head); }
};

inline std::string shape_str(Index rows, Index cols) { return std::to_string(rows) + "x" + std::to_string(cols); }

template <class S, class = void>
struct is_streamable : std::false_type {};
template <class S>
struct is_streamable<S, std::void_t<decltype(std::declval<std::ostream&>() << std::declval<const S&>())>>
    : std::true_type {};

/// Prints a scalar the way users wrote it: shortest form that round-trips for float and double.
template <class S>
std::string scalar_str(const S& v) {
  if constexpr (is_dual_scalar<S>::value) {
    return scalar_str(v.v);  // a dual number prints its value
  } else if constexpr (std::is_floating_point<S>::value) {
    constexpr int max_digits = std::numeric_limits<S>::max_digits10;
    for (int p = 1; p < max_digits; ++p) {
      std::ostringstream t;
      t.precision(p);
      t << v;
      std::istringstream in(t.str());
      S back{};
      in >> back;
      if (back == v || std::isnan(v) || std::isinf(v)) return t.str();
    }
    std::ostringstream os;
    os.precision(max_digits);
    os << v;
    return os.str();
  } else if constexpr (is_streamable<S>::value) {
    std::ostringstream os;
    os << v;
    return os.str();
  } else {
    return "?";
  }
}

/// Marks the error paths out of line and unlikely, so that the checks on every operation's
/// recording path cost a compare and a branch: the compiler moves the messages' string building
/// (and, for literal messages, the std::string construction) out of the hot code. On 1x1 nodes
/// that was 11% of a scalar chain's time.
#if defined(__GNUC__)
#define REPARAM_COLD __attribute__((noinline, cold))
#else
#define REPARAM_COLD
#endif

[[noreturn]] REPARAM_COLD inline void throw_shape(OpName op, const std::string& what) {
  throw ShapeError("reparam: " + op.str() + ": " + what);
}
[[noreturn]] REPARAM_COLD inline void throw_domain(OpName op, const std::string& what) {
  throw DomainError("reparam: " + op.str() + ": " + what);
}
[[noreturn]] REPARAM_COLD inline void throw_graph(OpName op, const std::string& what) {
  throw GraphError("reparam: " + op.str() + ": " + what);
}
[[noreturn]] REPARAM_COLD inline void throw_file(OpName op, const std::string& what) {
  throw FileError("reparam: " + op.str() + ": " + what);
}
// The same for literal messages: the std::string is built inside, not at every call site.
[[noreturn]] REPARAM_COLD inline void throw_shape(OpName op, const char* what) { throw_shape(op, std::string(what)); }
[[noreturn]] REPARAM_COLD inline void throw_domain(OpName op, const char* what) { throw_domain(op, std::string(what)); }
[[noreturn]] REPARAM_COLD inline void throw_graph(OpName op, const char* what) { throw_graph(op, std::string(what)); }
[[noreturn]] REPARAM_COLD inline void throw_file(OpName op, const char* what) { throw_file(op, std::string(what)); }

/// The largest number of elements a node or sample may have: far below what overflows a byte
/// count of any scalar type (2^58 elements).
inline constexpr Index max_elements = Index(1) << 58;

/// rows * cols, or ShapeError when either is negative or the product overflows:
/// `reparam: reshape: size overflows (4294967296x4294967296)`.
/// shape_size beyond 2^31 rows or columns (or negative ones): out of line.
REPARAM_COLD inline Index shape_size_large(OpName op, Index rows, Index cols) {
  if (rows < 0 || cols < 0) throw_shape(op, "shape must not be negative (got " + shape_str(rows, cols) + ")");
  if (cols != 0 && rows > max_elements / cols) throw_shape(op, "size overflows (" + shape_str(rows, cols) + ")");
  return rows * cols;
}
inline Index shape_size(OpName op, Index rows, Index cols) {
  // common case first: both in [0, 2^31), so the product cannot pass 2^62 (no division)
  if (((static_cast<std::uint64_t>(rows) | static_cast<std::uint64_t>(cols)) >> 31) == 0) return rows * cols;
  return shape_size_large(op, rows, cols);
}

/// Throws DomainError naming the first element of `m` for which `ok` is false, e.g.
/// `reparam: log: argument must be >= 0 (got -0.5 at row 0, col 1)`. The message is `what`
/// followed by `what2`; it is built only when a check fails.
template <class Derived, class Pred>
void check_elements(OpName op, const char* what, const Eigen::DenseBase<Derived>& m, Pred ok, const char* what2 = "") {
  const Index R = m.rows(), C = m.cols();
  for (Index i = 0; i < R; ++i)
    for (Index j = 0; j < C; ++j)
      if (!ok(m(i, j)))
        throw_domain(op, std::string(what) + what2 + " (got " + scalar_str(m(i, j)) + " at row " + std::to_string(i) +
                             ", col " + std::to_string(j) + ")");
}

}  // namespace detail
}  // namespace reparam
