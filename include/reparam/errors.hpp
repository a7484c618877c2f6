#pragma once
/// \file errors.hpp  Exception classes and the validation switch.
///
/// Every message is shaped `reparam: <op>: <what> (<details>)`; tests assert the text.

#include <atomic>
#include <cmath>
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

/// Operands whose shapes do not fit the operation (broadcasting, matmul, reshape, backward).
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

namespace detail {
inline std::atomic<bool>& validation_flag() noexcept {
  static std::atomic<bool> on{true};
  return on;
}
}  // namespace detail

/// Value checks (domains of `log`, `sqrt`, ...; distribution parameters) are on by default.
/// Turning them off skips one pass over the data per checked operation. Shape and graph checks
/// always stay on: they guard memory safety. Compile with `REPARAM_NO_VALIDATION` to remove the
/// value checks entirely.
inline void set_validation(bool on) noexcept { detail::validation_flag().store(on, std::memory_order_relaxed); }

/// Whether value checks run (see `set_validation`).
inline bool validation_enabled() noexcept {
#ifdef REPARAM_NO_VALIDATION
  return false;
#else
  return detail::validation_flag().load(std::memory_order_relaxed);
#endif
}

/// Switches value checks on or off for a scope and restores the previous setting on exit.
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

inline std::string shape_str(Index rows, Index cols) { return std::to_string(rows) + "x" + std::to_string(cols); }

template <class S, class = void>
struct is_streamable : std::false_type {};
template <class S>
struct is_streamable<S, std::void_t<decltype(std::declval<std::ostream&>() << std::declval<const S&>())>>
    : std::true_type {};

/// Prints a scalar the way users wrote it: shortest form that round-trips for float and double.
template <class S>
std::string scalar_str(const S& v) {
  if constexpr (std::is_floating_point<S>::value) {
    std::ostringstream os;
    os.precision(std::is_same<S, float>::value ? 9 : 17);
    // Try increasing precision until the printed value reads back exactly.
    for (int p = 1; p <= (std::is_same<S, float>::value ? 9 : 17); ++p) {
      std::ostringstream t;
      t.precision(p);
      t << v;
      std::istringstream in(t.str());
      S back{};
      in >> back;
      if (back == v || std::isnan(v) || std::isinf(v)) return t.str();
    }
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

[[noreturn]] inline void throw_shape(const char* op, const std::string& what) {
  throw ShapeError(std::string("reparam: ") + op + ": " + what);
}
[[noreturn]] inline void throw_domain(const char* op, const std::string& what) {
  throw DomainError(std::string("reparam: ") + op + ": " + what);
}
[[noreturn]] inline void throw_graph(const char* op, const std::string& what) {
  throw GraphError(std::string("reparam: ") + op + ": " + what);
}

/// Throws DomainError naming the first element of `m` for which `ok` is false, e.g.
/// `reparam: log: argument must be >= 0 (got -0.5 at row 0, col 1)`.
template <class Derived, class Pred>
void check_elements(const char* op, const char* what, const Eigen::DenseBase<Derived>& m, Pred ok) {
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = 0; j < m.cols(); ++j)
      if (!ok(m(i, j)))
        throw_domain(op, std::string(what) + " (got " + scalar_str(m(i, j)) + " at row " + std::to_string(i) +
                             ", col " + std::to_string(j) + ")");
}

}  // namespace detail
}  // namespace reparam
