#pragma once
/// \file batcher.hpp  `data::Batcher`: seeded shuffled minibatches of row indices, epoch after
/// epoch, and `gather_rows` to copy them into a batch matrix without allocating, or straight
/// into a tape as a constant.
///
///     reparam::data::Batcher batches(train.size(), 100, /*seed*/ 1);
///     Matrix<float> x(100, 784);
///     reparam::data::gather_rows(train.images, batches.next(), x);
///     // or, on a tape, without the matrix:
///     Var xv = reparam::data::gather_rows(tape, train.images, batches.next(), 0, 100);
///
/// The source may hold another scalar type than the batch (images kept as bytes,
/// `load_mnist<std::uint8_t>`): each element is converted with static_cast as it is copied.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <reparam/errors.hpp>
#include <reparam/matrix.hpp>
#include <reparam/random/generator.hpp>
#include <reparam/tape.hpp>

namespace reparam {
namespace data {

/// Unbiased integer in [0, n) from a generator's 64-bit words (rejection of the low residues):
/// the same on every platform, unlike std::uniform_int_distribution.
template <class G>
std::uint64_t uniform_index(G& g, std::uint64_t n) {
  // words below 2^64 mod n are rejected, so every residue is equally likely
  const std::uint64_t threshold = (0 - n) % n;
  std::uint64_t x;
  do x = static_cast<std::uint64_t>(g());
  while (x < threshold);
  return x % n;
}

/// Minibatches of `batch` distinct indices in [0, n): each epoch is a fresh seeded permutation
/// (Fisher-Yates), cut into n / batch batches; the last n mod batch indices of each epoch are
/// skipped (PyTorch's drop_last = true), so every batch has the same size.
class Batcher {
 public:
  Batcher(Index n, Index batch, std::uint64_t seed) : rng_(seed) {
    if (batch <= 0 || n <= 0 || batch > n)
      reparam::detail::throw_domain("Batcher", "batch must be in [1, " + std::to_string(n) + "] (got " + std::to_string(batch) +
                                                   " for " + std::to_string(n) + " rows)");
    order_.resize(static_cast<std::size_t>(n));
    for (Index i = 0; i < n; ++i) order_[static_cast<std::size_t>(i)] = i;
    batch_ = batch;
    shuffle();
  }
  /// The next batch's indices (valid until the following call).
  const std::vector<Index>& next() {
    if (at_ + batch_ > static_cast<Index>(order_.size())) {
      shuffle();
      ++epoch_;
    }
    current_.assign(order_.begin() + at_, order_.begin() + at_ + batch_);  // capacity kept: no allocation
    at_ += batch_;
    return current_;
  }
  /// Completed epochs.
  long epoch() const noexcept { return epoch_; }
  Index batch() const noexcept { return batch_; }
  Index batches_per_epoch() const noexcept { return static_cast<Index>(order_.size()) / batch_; }

 private:
  void shuffle() {
    for (std::size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[uniform_index(rng_, i)]);
    at_ = 0;
  }
  Rng rng_;
  std::vector<Index> order_, current_;
  Index batch_ = 0, at_ = 0;
  long epoch_ = 0;
};

}  // namespace data
namespace detail {
/// idx[k], checked to be a row of src.
template <class S>
Index source_row(const Matrix<S>& src, const std::vector<Index>& idx, Index k) {
  const Index i = idx[static_cast<std::size_t>(k)];
  if (i < 0 || i >= src.rows())
    reparam::detail::throw_shape("gather_rows", "index out of range (got " + std::to_string(i) + " for " +
                                                    std::to_string(src.rows()) + " rows)");
  return i;
}
/// Checks that rows [first, first + count) are within a batch of n.
inline void check_share(Index first, Index count, Index n) {
  if (first < 0 || count < 0 || first > n - count) {
    // the end first + count, written as a sum where it would overflow
    constexpr Index hi = std::numeric_limits<Index>::max(), lo = std::numeric_limits<Index>::min();
    const bool wraps = (count > 0 && first > hi - count) || (count < 0 && first < lo - count);
    const std::string end = wraps ? std::to_string(first) + " + " + std::to_string(count) : std::to_string(first + count);
    reparam::detail::throw_shape("gather_rows", "rows [" + std::to_string(first) + ", " + end + ") are not within the " +
                                                    std::to_string(n) + " indices");
  }
}
/// out[0, n) = in[0, n), each element converted with static_cast (a plain loop: compilers
/// vectorize it, bytes to floats included).
template <class S, class T>
void copy_converted(const S* in, T* out, Index n) noexcept {
  if constexpr (std::is_same<S, T>::value) {
    std::copy(in, in + n, out);
  } else {
    for (Index j = 0; j < n; ++j) out[j] = static_cast<T>(in[j]);
  }
}
/// out.row(k) = src.row(idx[k]) for k in [first, first + count), indices checked.
template <class S, class T>
void copy_rows(const Matrix<S>& src, const std::vector<Index>& idx, Index first, Index count, Matrix<T>& out) {
  for (Index k = first; k < first + count; ++k)
    copy_converted(src.data() + source_row(src, idx, k) * src.cols(), out.data() + k * out.cols(), src.cols());
}
}  // namespace detail
namespace data {

/// out.row(k) = src.row(idx[k]) for every k; `out` is resized only if its shape differs.
template <class S, class T>
void gather_rows(const Matrix<S>& src, const std::vector<Index>& idx, Matrix<T>& out) {
  if (out.rows() != static_cast<Index>(idx.size()) || out.cols() != src.cols()) out.resize(static_cast<Index>(idx.size()), src.cols());
  reparam::detail::copy_rows(src, idx, 0, static_cast<Index>(idx.size()), out);
}

/// One thread's share of `gather_rows`: rows [first, first + count) of `out` only, which must
/// already have idx.size() rows of src.cols() (threads fill their own rows of one batch, as in
/// `nn::DataParallel`'s f).
template <class S, class T>
void gather_rows(const Matrix<S>& src, const std::vector<Index>& idx, Index first, Index count, Matrix<T>& out) {
  const Index n = static_cast<Index>(idx.size());
  if (out.rows() != n || out.cols() != src.cols())
    reparam::detail::throw_shape("gather_rows", "out must be " + reparam::detail::shape_str(n, src.cols()) + " (got " +
                                                    reparam::detail::shape_str(out.rows(), out.cols()) + ")");
  reparam::detail::check_share(first, count, n);
  reparam::detail::copy_rows(src, idx, first, count, out);
}

/// Rows [first, first + count) of the batch as a constant of `tape` (count x src.cols(): row k
/// is src.row(idx[first + k])), gathered straight into the tape's storage: the same values as
/// `tape.constant(out.middleRows(first, count))` after `gather_rows(src, idx, first, count,
/// out)`, without the batch matrix and its copy. A thread's share of a batch in
/// `nn::DataParallel`'s f, or the whole batch with first 0 and count idx.size(). From bytes
/// (`load_mnist<std::uint8_t>`, binarized) a batch of 100 Fashion-MNIST images reads 78 KB
/// instead of 314 KB of the training set, which does not fit in the caches.
template <class T, class S>
BasicVar<T> gather_rows(BasicTape<T>& tape, const Matrix<S>& src, const std::vector<Index>& idx, Index first, Index count) {
  const Index n = static_cast<Index>(idx.size());
  reparam::detail::check_share(first, count, n);
  for (Index k = first; k < first + count; ++k) reparam::detail::source_row(src, idx, k);  // before the tape records anything
  return tape.constant(count, src.cols(), [&](reparam::detail::MMap<T> out) {
    for (Index k = 0; k < count; ++k)  // checked above
      reparam::detail::copy_converted(src.data() + idx[static_cast<std::size_t>(first + k)] * src.cols(), out.data() + k * src.cols(),
                                      src.cols());
  });
}

}  // namespace data
}  // namespace reparam
