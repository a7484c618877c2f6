#pragma once
/// \file matrix.hpp  The dense value type every node holds.

#include <type_traits>
#include <utility>

#include <Eigen/Core>

namespace reparam {

/// Row-major dense matrix: rows are the batch, columns the features; a scalar is 1x1.
/// Row-major so that `reshape` means what it means in NumPy and PyTorch.
template <class T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

using Index = Eigen::Index;

namespace detail {
/// A forward-mode dual scalar (reparam::Dual, or any type with a value `v` and a tangent `d`).
template <class T, class = void>
struct is_dual_scalar : std::false_type {};
template <class T>
struct is_dual_scalar<T, std::void_t<decltype(std::declval<T&>().v), decltype(std::declval<T&>().d)>> : std::true_type {};

template <class T, bool = is_dual_scalar<T>::value>
struct real_scalar {
  using type = T;
};
template <class T>
struct real_scalar<T, true> {
  using type = std::decay_t<decltype(std::declval<T&>().v)>;
};
/// The real number type under a scalar: T itself, or U for a dual number over U.
template <class T>
using real_t = typename real_scalar<T>::type;

/// The value part of a scalar (the scalar itself unless it is a dual number).
template <class T>
real_t<T> real_part(const T& x) {
  if constexpr (is_dual_scalar<T>::value) {
    return x.v;
  } else {
    return x;
  }
}

/// Scalars whose values the library checks (on their value part): float, double and duals of them.
template <class T>
inline constexpr bool checked_scalar = std::is_floating_point<real_t<T>>::value;
}  // namespace detail

}  // namespace reparam
