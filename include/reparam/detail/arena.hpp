#pragma once
/// \file arena.hpp  Bump allocation of node storage, kept across `Tape::clear()`.

#include <cstddef>
#include <new>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace reparam {
namespace detail {

/// Elements are handed out 64-byte aligned so that Eigen's packet loads never straddle.
inline constexpr std::size_t arena_alignment = 64;

/// Blocks of this size or more are placed on 2 MiB boundaries and, on Linux, offered transparent
/// huge pages: the arena is reused step after step, so fewer TLB misses pay back every step.
inline constexpr std::size_t huge_page = std::size_t(2) << 20;

template <class T>
T* aligned_alloc_array(std::size_t n) {
  const std::size_t bytes = n * sizeof(T);
  if (bytes < huge_page) return static_cast<T*>(::operator new(bytes, std::align_val_t{arena_alignment}));
  void* p = ::operator new(bytes, std::align_val_t{huge_page});
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  ::madvise(p, bytes, MADV_HUGEPAGE);  // advice only: failure changes nothing
#endif
  return static_cast<T*>(p);
}
template <class T>
void aligned_free_array(T* p, std::size_t n) noexcept {
  if (n * sizeof(T) < huge_page)
    ::operator delete(p, std::align_val_t{arena_alignment});
  else
    ::operator delete(p, std::align_val_t{huge_page});
}

/// A list of blocks handed out front to back. `reset()` rewinds without freeing; if a build needed
/// more than one block, the blocks are merged into one of the total size, so the next build of the
/// same graph fits without touching the heap.
template <class T>
class Arena {
  static_assert(std::is_trivially_copyable<T>::value && std::is_trivially_destructible<T>::value,
                "reparam: the scalar type must be trivially copyable and destructible "
                "(float, double, or a plain dual-number struct)");

 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena() { release(); }

  /// Uninitialized storage for `n` elements; 64-byte aligned when it spans a cache line or more
  /// (small ones are packed, so that graphs of scalars stay dense in cache).
  T* allocate(std::size_t n) {
    // per_line is a compile-time constant: the rounding compiles to shifts, not a division.
    std::size_t start = n * sizeof(T) >= arena_alignment ? (offset_ + per_line - 1) / per_line * per_line : offset_;
    if (blocks_.empty() || start + n > blocks_[current_].capacity) {
      next_block(n);
      start = 0;
    }
    T* p = blocks_[current_].data + start;
    used_ += start + n - offset_;
    offset_ = start + n;
    return p;
  }

  /// Forget every allocation; keep (and if need be merge) the memory.
  void reset() {
    if (blocks_.size() > 1) {
      std::size_t total = 0;
      for (const Block& b : blocks_) total += b.capacity;
      release();
      blocks_.push_back(Block{aligned_alloc_array<T>(total), total});
    }
    current_ = 0;
    offset_ = 0;
    used_ = 0;
  }

  /// Elements handed out since the last reset (including alignment padding).
  std::size_t used() const noexcept { return used_; }
  /// Elements owned in all blocks.
  std::size_t capacity() const noexcept {
    std::size_t total = 0;
    for (const Block& b : blocks_) total += b.capacity;
    return total;
  }

 private:
  struct Block {
    T* data;
    std::size_t capacity;
  };

  static constexpr std::size_t per_line = arena_alignment / sizeof(T) > 0 ? arena_alignment / sizeof(T) : 1;

  void next_block(std::size_t n) {
    const std::size_t next = blocks_.empty() ? 0 : current_ + 1;
    if (next < blocks_.size() && blocks_[next].capacity >= n) {
      current_ = next;
    } else {
      std::size_t cap = blocks_.empty() ? std::size_t(1) << 14 : 2 * blocks_.back().capacity;
      if (cap < n) cap = n;
      blocks_.insert(blocks_.begin() + static_cast<std::ptrdiff_t>(next), Block{aligned_alloc_array<T>(cap), cap});
      current_ = next;
    }
    offset_ = 0;
  }

  void release() noexcept {
    for (Block& b : blocks_) aligned_free_array(b.data, b.capacity);
    blocks_.clear();
  }

  std::vector<Block> blocks_;
  std::size_t current_ = 0;
  std::size_t offset_ = 0;
  std::size_t used_ = 0;
};

/// A grow-only aligned buffer for scratch space (GEMM packing), reused by every operation.
template <class T>
class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() { aligned_free_array(data_, size_); }

  T* get(std::size_t n) {
    if (n > size_) {
      aligned_free_array(data_, size_);
      data_ = nullptr;
      data_ = aligned_alloc_array<T>(n);
      size_ = n;
    }
    return data_;
  }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace detail
}  // namespace reparam
