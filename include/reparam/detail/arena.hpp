#pragma once
/// \file arena.hpp  Bump allocation of node storage (values, gradients, operand lists, backward
/// rules and their state), kept across `Tape::clear()`.

#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace reparam {
namespace detail {

/// Allocations of a cache line or more start on a 64-byte boundary, so that Eigen's packet loads
/// never straddle; smaller ones are packed (graphs of scalars stay dense in cache).
inline constexpr std::size_t arena_alignment = 64;

/// Blocks of this size or more are placed on 2 MiB boundaries and, on Linux, offered transparent
/// huge pages: the arena is reused step after step, so fewer TLB misses pay back every step.
inline constexpr std::size_t huge_page = std::size_t(2) << 20;

inline void* aligned_alloc_bytes(std::size_t bytes) {
  if (bytes < huge_page) return ::operator new(bytes, std::align_val_t{arena_alignment});
  void* p = ::operator new(bytes, std::align_val_t{huge_page});
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  ::madvise(p, bytes, MADV_HUGEPAGE);  // advice only: failure changes nothing
#endif
  return p;
}
inline void aligned_free_bytes(void* p, std::size_t bytes) noexcept {
  if (bytes < huge_page)
    ::operator delete(p, std::align_val_t{arena_alignment});
  else
    ::operator delete(p, std::align_val_t{huge_page});
}

/// A list of byte blocks handed out front to back. `reset()` rewinds without freeing; if a build
/// needed more than one block, the blocks are merged into one of the total size, so the next build
/// of the same graph fits without touching the heap. Holds only trivially destructible objects.
class Arena {
 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena() { release(); }

  /// Uninitialized storage for n objects of type U (trivially destructible: nothing is ever
  /// destroyed). Callers keep n * sizeof(U) far below SIZE_MAX (the tape checks sizes first).
  template <class U>
  U* allocate(std::size_t n) {
    static_assert(std::is_trivially_destructible<U>::value, "reparam: arena objects are never destroyed");
    const std::size_t bytes = n * sizeof(U);
    const std::size_t align = bytes >= arena_alignment ? arena_alignment : alignof(U);
    return static_cast<U*>(allocate_bytes(bytes, align));
  }

  /// Forget every allocation; keep (and if need be merge) the memory.
  void reset() {
    if (blocks_.size() > 1) {
      std::size_t total = 0;
      for (const Block& b : blocks_) total += b.capacity;
      release();
      blocks_.push_back(Block{static_cast<unsigned char*>(aligned_alloc_bytes(total)), total});
    }
    current_ = 0;
    offset_ = 0;
    used_before_ = 0;
    data_ = blocks_.empty() ? nullptr : blocks_[0].data;
    capacity_ = blocks_.empty() ? 0 : blocks_[0].capacity;
  }

  /// Bytes handed out since the last reset (including alignment padding).
  std::size_t used() const noexcept { return used_before_ + offset_; }
  /// Bytes owned in all blocks.
  std::size_t capacity() const noexcept {
    std::size_t total = 0;
    for (const Block& b : blocks_) total += b.capacity;
    return total;
  }

 private:
  struct Block {
    unsigned char* data;
    std::size_t capacity;
  };

  void* allocate_bytes(std::size_t bytes, std::size_t align) {
    const std::size_t start = (offset_ + align - 1) & ~(align - 1);
    if (start + bytes <= capacity_) {  // the common case: a bump in the current block
      offset_ = start + bytes;
      return data_ + start;
    }
    return allocate_slow(bytes);
  }

#if defined(__GNUC__)
  __attribute__((noinline))
#endif
  void* allocate_slow(std::size_t bytes) {
    used_before_ += offset_;  // the block left behind: what was handed out of it
    next_block(bytes);
    offset_ = bytes;
    return data_;
  }

  void next_block(std::size_t bytes) {
    const std::size_t next = blocks_.empty() ? 0 : current_ + 1;
    if (next < blocks_.size() && blocks_[next].capacity >= bytes) {
      current_ = next;
      data_ = blocks_[current_].data;
      capacity_ = blocks_[current_].capacity;
    } else {
      std::size_t cap = blocks_.empty() ? std::size_t(1) << 17 : 2 * blocks_.back().capacity;
      if (cap < bytes) cap = (bytes + arena_alignment - 1) & ~(arena_alignment - 1);
      blocks_.insert(blocks_.begin() + static_cast<std::ptrdiff_t>(next),
                     Block{static_cast<unsigned char*>(aligned_alloc_bytes(cap)), cap});
      current_ = next;
      data_ = blocks_[current_].data;
      capacity_ = blocks_[current_].capacity;
    }
    offset_ = 0;
  }

  void release() noexcept {
    for (Block& b : blocks_) aligned_free_bytes(b.data, b.capacity);
    blocks_.clear();
    data_ = nullptr;
    capacity_ = 0;
  }

  std::vector<Block> blocks_;
  unsigned char* data_ = nullptr;  // the current block
  std::size_t capacity_ = 0;
  std::size_t current_ = 0;
  std::size_t offset_ = 0;
  std::size_t used_before_ = 0;  // handed out of the blocks before the current one (used() adds offset_)
};

/// A grow-only aligned buffer for scratch space (GEMM packing), reused by every operation.
template <class T>
class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() {
    if (data_) aligned_free_bytes(data_, size_ * sizeof(T));
  }

  T* get(std::size_t n) {
    if (n > size_) {
      if (data_) aligned_free_bytes(data_, size_ * sizeof(T));
      data_ = nullptr;
      size_ = 0;
      data_ = static_cast<T*>(aligned_alloc_bytes(n * sizeof(T)));
      size_ = n;
    }
    return data_;
  }
  /// A note a caller leaves for its next call on the same workspace (`gemm_tn_sum_pack` records
  /// which kernel its packing was for).
  void set_tag(int t) noexcept { tag_ = t; }
  int tag() const noexcept { return tag_; }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
  int tag_ = 0;
};

}  // namespace detail
}  // namespace reparam
