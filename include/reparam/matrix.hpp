#pragma once
/// \file matrix.hpp  The dense value type every node holds.

#include <Eigen/Core>

namespace reparam {

/// Row-major dense matrix: rows are the batch, columns the features; a scalar is 1x1.
/// Row-major so that `reshape` means what it means in NumPy and PyTorch.
template <class T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

using Index = Eigen::Index;

}  // namespace reparam
