#pragma once
/// \file gemm.hpp  C += alpha * op(A) * op(B) through Eigen's GEMM kernel, with its packing
/// buffers taken from a reusable workspace instead of the heap.
///
/// Eigen's product expression allocates its packing buffers on every call once they exceed
/// EIGEN_STACK_ALLOCATION_LIMIT; driving `general_matrix_matrix_product` ourselves with a
/// `level3_blocking` that points into the tape's workspace keeps steady state allocation-free and
/// runs exactly Eigen's kernel. Tiny and vector-shaped products go through Eigen's own expressions,
/// which allocate nothing there; so do scalar types other than float and double.
///
/// Built for AVX-512 or AVX2 with FMA (`reparam::native` on such a CPU), float products of a batch
/// times a weight (C = A B, at most 256 rows) go through a kernel of our own instead,
/// `gemm_nn_inplace`, which reads the weight in place rather than packing it, and so do a batch
/// times a weight's transpose (C = A B^T, the input gradient of a layer: `gemm_nt_inplace`, dot
/// products of rows) and a weight's gradient (C = A^T G: `gemm_tn_inplace`). Their bits depend on
/// the instruction set (8 or 16 lanes), as Eigen's do. `set_inplace_gemm` switches them off;
/// define REPARAM_NO_INPLACE_GEMM to leave them out.
///
/// Optional BLAS backend: compiled with REPARAM_CBLAS defined (CMake: link `reparam::openblas`),
/// the GEMM-sized float and double products call `cblas_sgemm` / `cblas_dgemm` instead (OpenBLAS
/// picks AVX-512 kernels at run time, where a header compiled without -march=native cannot).
/// Call `reparam::set_blas_threads(1)` when your own threads already use every core.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <numeric>
#include <atomic>
#include <type_traits>

#include <Eigen/Core>

#include <reparam/detail/arena.hpp>
#include <reparam/matrix.hpp>

// The in-place kernels are built for AVX-512 (16 lanes) and for AVX2 with FMA (8 lanes: Haswell,
// Zen 1-3 and later); REPARAM_INPLACE_GEMM is the vector width in bits.
#if defined(__AVX512F__) && !defined(REPARAM_NO_INPLACE_GEMM)
#include <immintrin.h>
#define REPARAM_INPLACE_GEMM 512
#elif defined(__AVX2__) && defined(__FMA__) && !defined(REPARAM_NO_INPLACE_GEMM)
#include <immintrin.h>
#define REPARAM_INPLACE_GEMM 256
#endif
#ifdef REPARAM_INPLACE_GEMM
// The in-place kernel's accumulators must stay in registers: its loops over them are unrolled
// whole (left to GCC, they were kept in memory and the kernel ran at half Eigen's speed).
#if defined(__clang__)
#define REPARAM_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define REPARAM_UNROLL _Pragma("GCC unroll 16")
#else
#define REPARAM_UNROLL
#endif
// A tile is a function of its own: inlined into its callers, its loop shared their registers and
// GCC kept the row pointers of A on the stack (two to four reloads per depth step with AVX2).
#if defined(__GNUC__)
#define REPARAM_TILE __attribute__((noinline))
#define REPARAM_LAMBDA_INLINE __attribute__((always_inline))
#else
#define REPARAM_TILE
#define REPARAM_LAMBDA_INLINE
#endif
#endif

#ifdef REPARAM_CBLAS
extern "C" {
void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc);
void cblas_dgemm(int order, int trans_a, int trans_b, int m, int n, int k, double alpha, const double* a, int lda,
                 const double* b, int ldb, double beta, double* c, int ldc);
#ifdef REPARAM_OPENBLAS
void openblas_set_num_threads(int);
#endif
}
#endif

namespace reparam {

/// Threads of the BLAS backend's own parallel products (OpenBLAS); does nothing without it.
inline void set_blas_threads(int n) {
#if defined(REPARAM_CBLAS) && defined(REPARAM_OPENBLAS)
  openblas_set_num_threads(n);
#else
  (void)n;
#endif
}

#ifdef REPARAM_INPLACE_GEMM
namespace detail {
inline std::atomic<bool>& inplace_gemm_flag() noexcept {
  static std::atomic<bool> on{true};
  return on;
}
}  // namespace detail
#endif

/// Whether float products of a batch (at most 256 rows) times a matrix of at least 16 columns (a
/// layer's weight) go through the in-place kernel (`detail::gemm_nn_inplace`, built where the
/// compiler targets AVX-512 or AVX2 with FMA, e.g. `reparam::native`), which reads the weight where
/// it is instead of packing it as Eigen's GEMM does, and a batch times a weight's transpose (the
/// input gradient, depth a multiple of the vector width from 64: `detail::gemm_nt_inplace`) through its twin for rows, and a
/// batch's transpose times a matrix of at least 16 columns (a weight's gradient:
/// `detail::gemm_tn_inplace`). On by default; off gives Eigen's kernel and its bits (for
/// comparisons, `bench/bench_vae`'s packed floor). The setting is global (an atomic, any thread;
/// not to be changed while products run); `inplace_gemm()` is always false where the kernel is
/// not built.
inline void set_inplace_gemm(bool on) noexcept {
#ifdef REPARAM_INPLACE_GEMM
  detail::inplace_gemm_flag().store(on, std::memory_order_relaxed);
#else
  (void)on;
#endif
}
inline bool inplace_gemm() noexcept {
#ifdef REPARAM_INPLACE_GEMM
  return detail::inplace_gemm_flag().load(std::memory_order_relaxed);
#else
  return false;
#endif
}

namespace detail {

template <class T>
class WorkspaceBlocking : public Eigen::internal::level3_blocking<T, T> {
 public:
  // Sizes are those Eigen's gemm_blocking_space computes for a row-major destination of
  // rows x cols (it blocks the transposed, column-major problem).
  WorkspaceBlocking(Index rows, Index cols, Index depth, Workspace<T>& ws) {
    this->m_mc = cols;
    this->m_nc = rows;
    this->m_kc = depth;
    Eigen::internal::computeProductBlockingSizes<T, T, 1, Index>(this->m_kc, this->m_mc, this->m_nc, Index(1));
    const Index size_a = this->m_mc * this->m_kc;
    const Index size_b = this->m_kc * this->m_nc;
    const Index pad = static_cast<Index>(arena_alignment / sizeof(T));
    const Index a_len = (size_a + pad - 1) / pad * pad;
    T* base = ws.get(static_cast<std::size_t>(a_len + size_b));
    this->m_blockA = base;
    this->m_blockB = base + a_len;
  }
};

template <class T, int OrderA, int OrderB>
void gemm_kernel(Index m, Index n, Index k, const T* a, Index lda, const T* b, Index ldb, T* c, Index ldc, T alpha,
                 Workspace<T>& ws) {
  WorkspaceBlocking<T> blocking(m, n, k, ws);
  Eigen::internal::general_matrix_matrix_product<Index, T, OrderA, false, T, OrderB, false, Eigen::RowMajor, 1>::run(
      m, n, k, a, lda, b, ldb, c, 1, ldc, alpha, blocking, nullptr);
}

#ifdef REPARAM_INPLACE_GEMM
/// The vector operations of the in-place kernels, for the instruction set they are built for:
/// `vec` holds `lanes` floats; `mask` selects the first lanes of a vector (a strip's last columns).
namespace simd {
#if REPARAM_INPLACE_GEMM == 512
using vec = __m512;
using mask = __mmask16;
constexpr int lanes = 16;
constexpr int nn_vectors = 3;  // a strip of the broadcast kernels: 6 x 3 accumulators (of 32 registers)
constexpr int nt_cols = 8;     // columns of a dot-product tile: 3 x 8 accumulators
inline vec zero() noexcept { return _mm512_setzero_ps(); }
inline vec load(const float* p) noexcept { return _mm512_loadu_ps(p); }
inline vec load(const float* p, mask m) noexcept { return _mm512_maskz_loadu_ps(m, p); }
inline void store(float* p, vec v) noexcept { _mm512_storeu_ps(p, v); }
inline void store(float* p, mask m, vec v) noexcept { _mm512_mask_storeu_ps(p, m, v); }
inline vec set1(float x) noexcept { return _mm512_set1_ps(x); }
inline vec fmadd(vec a, vec b, vec c) noexcept { return _mm512_fmadd_ps(a, b, c); }
inline vec mul(vec a, vec b) noexcept { return _mm512_mul_ps(a, b); }
/// max(x, 0) with NaN kept (the second operand is returned where either is NaN), like relu.
inline vec relu(vec x) noexcept { return _mm512_max_ps(_mm512_setzero_ps(), x); }
/// The first `count` lanes, 1 to 16.
inline mask first(Index count) noexcept { return mask((1u << count) - 1u); }
/// The lanes of x that are not zero (NaN counts as not zero), as bits.
inline unsigned nonzero(vec x) noexcept { return _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NEQ_UQ); }

/// The lane sums of four vectors, in the four lanes of the result: lane l is added to lane l + 8,
/// then l + 4, l + 2 and l + 1, the same tree for every vector whatever its neighbours, so an
/// element's bits do not depend on which accumulators were reduced together.
inline __m128 sum4(vec x, vec y, vec u, vec w) noexcept {
  // [x0-3 + x8-11, x4-7 + x12-15, the same for y] and for u, w
  const __m512 xy = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x44), _mm512_shuffle_f32x4(x, y, 0xEE));
  const __m512 uw = _mm512_add_ps(_mm512_shuffle_f32x4(u, w, 0x44), _mm512_shuffle_f32x4(u, w, 0xEE));
  // one 128-bit block per vector: its four partial sums
  __m512 r = _mm512_add_ps(_mm512_shuffle_f32x4(xy, uw, 0x88), _mm512_shuffle_f32x4(xy, uw, 0xDD));
  r = _mm512_add_ps(r, _mm512_permute_ps(r, 0x4E));  // l + 2
  r = _mm512_add_ps(r, _mm512_permute_ps(r, 0xB1));  // l + 1
  return _mm512_castps512_ps128(_mm512_maskz_compress_ps(__mmask16(0x1111), r));
}
#else
using vec = __m256;
using mask = __m256i;
constexpr int lanes = 8;
constexpr int nn_vectors = 2;  // 6 x 2 accumulators, 2 rows of B and a broadcast: 15 of 16 registers
constexpr int nt_cols = 4;     // 3 x 4 accumulators and 3 + 1 rows' vectors: 16 registers
inline vec zero() noexcept { return _mm256_setzero_ps(); }
inline vec load(const float* p) noexcept { return _mm256_loadu_ps(p); }
inline vec load(const float* p, mask m) noexcept { return _mm256_maskload_ps(p, m); }
inline void store(float* p, vec v) noexcept { _mm256_storeu_ps(p, v); }
inline void store(float* p, mask m, vec v) noexcept { _mm256_maskstore_ps(p, m, v); }
inline vec set1(float x) noexcept { return _mm256_set1_ps(x); }
inline vec fmadd(vec a, vec b, vec c) noexcept { return _mm256_fmadd_ps(a, b, c); }
inline vec mul(vec a, vec b) noexcept { return _mm256_mul_ps(a, b); }
/// max(x, 0) with NaN kept (the second operand is returned where either is NaN), like relu.
inline vec relu(vec x) noexcept { return _mm256_max_ps(_mm256_setzero_ps(), x); }
/// The lanes of x that are not zero (NaN counts as not zero), as bits.
inline unsigned nonzero(vec x) noexcept {
  return unsigned(_mm256_movemask_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NEQ_UQ)));
}
/// The first `count` lanes, 1 to 8.
inline mask first(Index count) noexcept {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/// The lane sums of four vectors, in the four lanes of the result: lane l is added to lane l + 4,
/// then l + 1 (l even), then the two pairs, the same tree for every vector whatever its
/// neighbours, so an element's bits do not depend on which accumulators were reduced together.
inline __m128 sum4(vec x, vec y, vec u, vec w) noexcept {
  // [x0 + x4 .. x3 + x7 | y0 + y4 .. y3 + y7] and the same for u, w
  const __m256 xy = _mm256_add_ps(_mm256_permute2f128_ps(x, y, 0x20), _mm256_permute2f128_ps(x, y, 0x31));
  const __m256 uw = _mm256_add_ps(_mm256_permute2f128_ps(u, w, 0x20), _mm256_permute2f128_ps(u, w, 0x31));
  // [x01, x23, u01, u23 | y01, y23, w01, w23]: pairs of the four partial sums
  const __m256 r = _mm256_add_ps(_mm256_shuffle_ps(xy, uw, 0x88), _mm256_shuffle_ps(xy, uw, 0xDD));
  // [x, u, x, u | y, w, y, w]
  const __m256 t = _mm256_add_ps(_mm256_shuffle_ps(r, r, 0x88), _mm256_shuffle_ps(r, r, 0xDD));
  return _mm_unpacklo_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));  // [x, y, u, w]
}
#endif
}  // namespace simd

/// Whether C (m x n) = A (m x k) B (k x n), row-major float, goes through `gemm_nn_inplace`: a
/// batch of at most 256 rows times a matrix of at least 16 columns.
inline bool gemm_nn_inplace_applies(Index m, Index n, Index k) noexcept {
  return m >= 1 && m <= 256 && n >= 16 && k >= 1;
}

/// Rows a broadcast tile prefetches as it goes: at depth step p < rows, the line(s) of a strip at
/// at + p * ld (none by default).
struct Prefetch {
  const float* at = nullptr;
  Index ld = 0;
  Index rows = 0;
};
/// How the tiles of a strip share its prefetching: `ahead` rows ahead of B's rows in the first
/// tile (a strip read where it is), or the whole of the next strip (`next`, `rows` rows `ld`
/// apart) split between the tiles in slices of `slice` rows (a strip read from its copy: the
/// next copy then reads from cache, instead of waiting on L3 a row at a time).
struct StripPrefetch {
  const float* b = nullptr;  // the strip read where it is: its rows, ld apart
  Index ahead = 0;
  const float* next = nullptr;  // or the next strip to copy
  Index ld = 0, rows = 0, slice = 0;
  Prefetch tile(Index t) const noexcept {
    if (next != nullptr) {
      const Index first = t * slice;
      return first < rows ? Prefetch{next + first * ld, ld, std::min(slice, rows - first)} : Prefetch{};
    }
    return t == 0 && ahead > 0 && rows > ahead ? Prefetch{b + ahead * ld, ld, rows - ahead} : Prefetch{};
  }
};

/// What a broadcast tile does with its sums s = alpha (A B) of a block of C: stores s, adds it to
/// C (`accumulate`), or stores s + bias (a row vector, one element per column of C: the layer
/// `linear`, in the one rounding of C = bias then C += s), then max(., 0) with `relu` (NaN kept).
struct Epilogue {
  bool accumulate = false;
  const float* bias = nullptr;
  bool relu = false;
  Epilogue(bool acc = false, const float* b = nullptr, bool r = false) noexcept : accumulate(acc), bias(b), relu(r) {}
  /// The same for the block of C starting `j` columns further.
  Epilogue at(Index j) const noexcept { return Epilogue(accumulate, bias ? bias + j : nullptr, relu); }
};

/// Rows [0, MR) of a strip of `simd::lanes` * NV columns of C = alpha A B (+ C with
/// `accumulate`): the MR x NV accumulators stay in registers over the whole depth, B's rows are
/// read where they are (a row-major weight's rows are contiguous), A's elements are broadcast.
/// Unless `Full`, `mask` selects the columns of the strip's last vector. With `pf` > 0 (the
/// strip's first tile, which brings B's rows in) the row pf ahead is prefetched. With TA, A is
/// stored transposed (element (i, p) at a[p * lda + i]: `gemm_tn_inplace`).
template <int MR, int NV, bool TA, bool Full>
REPARAM_TILE void gemm_nn_tile(const float* a, Index lda, const float* b, Index ldb, float* c, Index ldc, Index k, float alpha,
                         simd::mask mask, Epilogue out, Prefetch pf, const int* steps) noexcept {
  constexpr int W = simd::lanes;
  simd::vec acc[MR][NV];
  REPARAM_UNROLL
  for (int i = 0; i < MR; ++i) {
    REPARAM_UNROLL
    for (int v = 0; v < NV; ++v) acc[i][v] = simd::zero();
  }
  // A's elements of depth p: ap[i * as] with ap = a + p * ad (a row-major A: its rows, lda apart;
  // a transposed one: the row p of A^T, contiguous)
  const Index as = TA ? 1 : lda, ad = TA ? lda : 1;
  // one depth step p: B's row p times A's elements of depth p
  const auto step = [&](Index p) REPARAM_LAMBDA_INLINE {
    const float* ap = a + p * ad;
    const float* bp = b + p * ldb;
    if (p < pf.rows) {
      const char* q = reinterpret_cast<const char*>(pf.at + p * pf.ld);
      REPARAM_UNROLL
      for (int v = 0; v * 64 <= NV * W * 4; ++v) _mm_prefetch(q + 64 * v, _MM_HINT_T0);
    }
    simd::vec bv[NV];
    REPARAM_UNROLL
    for (int v = 0; v + 1 < NV; ++v) bv[v] = simd::load(bp + W * v);
    bv[NV - 1] = Full ? simd::load(bp + W * (NV - 1)) : simd::load(bp + W * (NV - 1), mask);
    REPARAM_UNROLL
    for (int i = 0; i < MR; ++i) {
      const simd::vec x = simd::set1(ap[i * as]);
      REPARAM_UNROLL
      for (int v = 0; v < NV; ++v) acc[i][v] = simd::fmadd(x, bv[v], acc[i][v]);
    }
  };
  if (steps == nullptr) {
    for (Index p = 0; p < k; ++p) step(p);
  } else {  // only the depth steps listed (`gemm_skip_plan`), k of them
    for (Index q = 0; q < k; ++q) step(steps[q]);
  }
  const simd::vec al = simd::set1(alpha);
  if (out.bias != nullptr) {  // C = act(s + bias): the bias vectors once for the tile's rows
    simd::vec bv[NV];
    REPARAM_UNROLL
    for (int v = 0; v < NV; ++v) bv[v] = Full || v + 1 < NV ? simd::load(out.bias + W * v) : simd::load(out.bias + W * v, mask);
    REPARAM_UNROLL
    for (int i = 0; i < MR; ++i) {
      REPARAM_UNROLL
      for (int v = 0; v < NV; ++v) {
        float* ci = c + i * ldc + W * v;
        simd::vec r = simd::fmadd(al, acc[i][v], bv[v]);
        if (out.relu) r = simd::relu(r);
        if (Full || v + 1 < NV)
          simd::store(ci, r);
        else
          simd::store(ci, mask, r);
      }
    }
    return;
  }
  REPARAM_UNROLL
  for (int i = 0; i < MR; ++i) {
    REPARAM_UNROLL
    for (int v = 0; v < NV; ++v) {
      float* ci = c + i * ldc + W * v;
      if (Full || v + 1 < NV) {
        simd::store(ci, out.accumulate ? simd::fmadd(al, acc[i][v], simd::load(ci)) : simd::mul(al, acc[i][v]));
      } else {
        simd::store(ci, mask, out.accumulate ? simd::fmadd(al, acc[i][v], simd::load(ci, mask)) : simd::mul(al, acc[i][v]));
      }
    }
  }
}

/// The index of x's lowest set bit (x not 0).
inline int lowest_bit(unsigned x) noexcept {
#if defined(__GNUC__)
  return __builtin_ctz(x);
#else
  int i = 0;
  while (!(x & 1u)) x >>= 1, ++i;
  return i;
#endif
}

/// The depth steps each tile of 6 rows of op(A) takes (`gemm_skip_plan`): tile t's are
/// steps[t * stride, t * stride + depth[t]); without a plan (`steps` null) every step.
struct SkipPlan {
  const int* steps = nullptr;
  const int* depth = nullptr;
  Index stride = 0;
  const int* tile(Index t) const noexcept { return steps ? steps + t * stride : nullptr; }
  Index tile_depth(Index t, Index k) const noexcept { return steps ? Index(depth[t]) : k; }
};

/// The depth steps p at which some element of the tile's rows of op(A) is not zero (NaN and
/// infinities count as not zero), for the tiles of 6 rows of an m x k op(A) (A^T with TA: A's
/// element (i, p) at a[p * lda + i]). Where all a tile's elements of depth p are zero, each of its
/// accumulators would gain fma(0, b, s) = s (b finite; the sign of a zero s aside), so the tile
/// can leave the step out and its elements keep their bits: binarized images are 70-80% zeros,
/// and a tile of 6 neighbouring pixels of Fashion-MNIST (a weight gradient's rows) has all six
/// zero in half of the images. Null (no plan, every step taken) where fewer than 1 in 8 steps
/// would be left out (judged on the first 4 tiles, or the first 16 steps with TA, first), or
/// where the plan would pass 2^18 entries. Where B holds an infinity or NaN at a step left out,
/// the element does not become NaN (0 x inf), as it would in a dense GEMM.
template <bool TA>
inline SkipPlan gemm_skip_plan(Index m, Index k, const float* a, Index lda) noexcept {
  constexpr int W = simd::lanes;
  const Index tiles = (m + 5) / 6;
  if (tiles * k > (Index(1) << 18) || k < 1 || m < 1) return {};
  thread_local Workspace<int> ws;
  thread_local Workspace<unsigned char> bits_ws;
  const Index bytes = TA ? (m + W - 1) / W * (W / 8) : 0;  // one depth step's row of A as bits (TA)
  int* steps = nullptr;
  unsigned char* row_bits = nullptr;
  try {  // out of memory: no plan (every step taken), not an exception from the product
    steps = ws.get(static_cast<std::size_t>(tiles * (k + 1)));
    if (TA) row_bits = bits_ws.get(static_cast<std::size_t>(bytes + 8));  // +8: the last tile's 8-byte read
  } catch (const std::bad_alloc&) {
    return {};
  }
  int* const depth = steps + tiles * k;
  Index kept = 0;
  // A plan whose first part (16 depth steps of every tile, or the first 4 tiles) would leave out
  // fewer than 1 in 8 steps is not finished: dense operands (a layer's activations) cost little.
  const auto dense = [&](Index done) { return 8 * kept > 7 * done; };
  if (TA) {  // depth step p: A's row p holds element p of every tile, 6 consecutive floats each
    std::fill(depth, depth + tiles, 0);
    std::fill(row_bits, row_bits + bytes + 8, static_cast<unsigned char>(0));
    for (Index p = 0; p < k; ++p) {
      const float* row = a + p * lda;
      for (Index i = 0; i < m; i += W) {  // the row's nonzero lanes, W bits at a time (little-endian bytes)
        const unsigned b = simd::nonzero(i + W <= m ? simd::load(row + i) : simd::load(row + i, simd::first(m - i)));
        for (int q = 0; q < W / 8; ++q) row_bits[i / 8 + q] = static_cast<unsigned char>(b >> (8 * q));
      }
      for (Index t = 0; t < tiles; ++t) {  // tile t: bits [6t, 6t + 6)
        std::uint64_t word;
        std::memcpy(&word, row_bits + (6 * t) / 8, sizeof word);
        const bool any = ((word >> ((6 * t) % 8)) & 63u) != 0;
        steps[t * k + depth[t]] = int(p);
        depth[t] += any;
        kept += any;
      }
      if (p + 1 == std::min<Index>(k, 16) && p + 1 < k && dense(tiles * (p + 1))) return {};
    }
  } else {  // a tile's rows of A, W steps at a time, their nonzero lanes or-ed
    for (Index t = 0; t < tiles; ++t) {
      const Index i0 = 6 * t, rows = std::min<Index>(6, m - i0);
      int* out = steps + t * k;
      int n = 0;
      for (Index p = 0; p < k; p += W) {
        const Index w = std::min<Index>(W, k - p);
        unsigned bits = 0;
        for (Index i = 0; i < rows; ++i)
          bits |= simd::nonzero(w == W ? simd::load(a + (i0 + i) * lda + p) : simd::load(a + (i0 + i) * lda + p, simd::first(w)));
        while (bits != 0) {
          out[n++] = int(p) + lowest_bit(bits);
          bits &= bits - 1;
        }
      }
      depth[t] = n;
      kept += n;
      if (t + 1 == 4 && t + 1 < tiles && dense(4 * k)) return {};
    }
  }
  if (dense(tiles * k)) return {};
  return SkipPlan{steps, depth, k};
}

template <int NV, bool TA, bool Full>
inline void gemm_nn_strip(Index m, const float* a, Index lda, const float* b, Index ldb, float* c, Index ldc, Index k,
                          float alpha, simd::mask mask, Epilogue out, const StripPrefetch& pf, const SkipPlan& plan) noexcept {
  const Index step = TA ? 1 : lda;  // from one row of A to the next
  Index i = 0;
  for (; i + 6 <= m; i += 6)
    gemm_nn_tile<6, NV, TA, Full>(a + i * step, lda, b, ldb, c + i * ldc, ldc, plan.tile_depth(i / 6, k), alpha, mask, out,
                                  pf.tile(i / 6), plan.tile(i / 6));
  const float* ai = a + i * step;
  float* ci = c + i * ldc;
  const Prefetch p0 = pf.tile(i / 6);
  const Index kt = plan.tile_depth(i / 6, k);
  const int* st = plan.tile(i / 6);
  switch (m - i) {
    case 5: gemm_nn_tile<5, NV, TA, Full>(ai, lda, b, ldb, ci, ldc, kt, alpha, mask, out, p0, st); break;
    case 4: gemm_nn_tile<4, NV, TA, Full>(ai, lda, b, ldb, ci, ldc, kt, alpha, mask, out, p0, st); break;
    case 3: gemm_nn_tile<3, NV, TA, Full>(ai, lda, b, ldb, ci, ldc, kt, alpha, mask, out, p0, st); break;
    case 2: gemm_nn_tile<2, NV, TA, Full>(ai, lda, b, ldb, ci, ldc, kt, alpha, mask, out, p0, st); break;
    case 1: gemm_nn_tile<1, NV, TA, Full>(ai, lda, b, ldb, ci, ldc, kt, alpha, mask, out, p0, st); break;
    default: break;
  }
}

/// The column strips of C = alpha op(A) B (+ C), `simd::nn_vectors` vectors at a time (48
/// columns with AVX-512, 16 with AVX2), then the rest, its last vector masked.
template <bool TA>
inline void gemm_bcast_strips(Index m, Index n, Index k, const float* a, Index lda, const float* b, Index ldb, float* c,
                              Index ldc, float alpha, Epilogue out, Index pf, const float* packed = nullptr,
                              Index packed_stride = 0) noexcept {
  constexpr int W = simd::lanes, NV = simd::nn_vectors;
  const simd::mask all = simd::first(W);
  // the steps each tile may leave out, found once for all the strips (a product of at least two)
  const SkipPlan plan = n >= 2 * NV * W ? gemm_skip_plan<TA>(m, k, a, lda) : SkipPlan{};
  Index j = 0;
  if (packed != nullptr) {  // B's whole strips, copied already (`gemm_tn_pack_strips`): strip s at packed + s * packed_stride
    for (; j + NV * W <= n; j += NV * W)
      gemm_nn_strip<NV, TA, true>(m, a, lda, packed + j / (NV * W) * packed_stride, NV * W, c + j, ldc, k, alpha, all, out.at(j),
                                  StripPrefetch{}, plan);
  }
#if REPARAM_INPLACE_GEMM == 256
  // With AVX2 a strip is 64 bytes of each of B's rows, and every tile of 6 rows reads it all.
  // Rows a multiple of 256 bytes apart (widths 256, 512, ...) put a strip in a few sets of the L1
  // and L2, which then hold a small part of it: each tile read it again from L3 (60-70 GFLOP/s
  // against 80-90 at width 400 on a Zen 3 VM). Other widths lose less to the stride. So a strip
  // read by more than one tile is first copied to a contiguous buffer (the same values: the bits
  // do not change), once for all the tiles: the 512-wide layers' products 30-45% faster, and the
  // Gaussian VAE's (400 and 784 wide) faster in six of eight rounds of the configure probe's
  // sequence. (Up to a depth of 4096: a buffer of 256 KB.)
  if (packed == nullptr && m > 6 && k <= 4096) {
    thread_local Workspace<float> strip_ws;
    float* const buf = strip_ws.get(static_cast<std::size_t>(k * NV * W));
    for (; j + NV * W <= n; j += NV * W) {
      for (Index p = 0; p < k; ++p) {
        if (j == 0 && pf > 0 && p + 2 * pf < k) {  // the first strip: rows 2 pf ahead (the others came in already)
          const char* q = reinterpret_cast<const char*>(b + (p + 2 * pf) * ldb);
          _mm_prefetch(q, _MM_HINT_T0);
          _mm_prefetch(q + 64, _MM_HINT_T0);
        }
        REPARAM_UNROLL
        for (int v = 0; v < NV; ++v) simd::store(buf + p * NV * W + v * W, simd::load(b + p * ldb + j + v * W));
      }
      // while its tiles run, the next strip's rows come in (each tile a slice of them)
      StripPrefetch next;
      if (pf > 0 && j + NV * W < n) {
        const Index tiles = (m + 5) / 6;
        next = StripPrefetch{nullptr, 0, b + j + NV * W, ldb, k, (k + tiles - 1) / tiles};
      }
      gemm_nn_strip<NV, TA, true>(m, a, lda, buf, NV * W, c + j, ldc, k, alpha, all, out.at(j), next, plan);
    }
  }
#endif
  for (; j + NV * W <= n; j += NV * W)
    gemm_nn_strip<NV, TA, true>(m, a, lda, b + j, ldb, c + j, ldc, k, alpha, all, out.at(j), StripPrefetch{b + j, pf, nullptr, ldb, k, 0}, plan);
  const Index rest = n - j;
  if (rest == 0) return;
  const StripPrefetch last{b + j, pf, nullptr, ldb, k, 0};
  const simd::mask mask = simd::first(rest - (rest - 1) / W * W);  // columns in the last vector, 1..W
  if (NV == 3 && rest > 2 * W)
    gemm_nn_strip<NV, TA, false>(m, a, lda, b + j, ldb, c + j, ldc, k, alpha, mask, out.at(j), last, plan);
  else if (rest > W)
    gemm_nn_strip<2, TA, false>(m, a, lda, b + j, ldb, c + j, ldc, k, alpha, mask, out.at(j), last, plan);
  else
    gemm_nn_strip<1, TA, false>(m, a, lda, b + j, ldb, c + j, ldc, k, alpha, mask, out.at(j), last, plan);
}

/// C (m x n) = alpha A B, or C += alpha A B with `accumulate` (row-major, leading dimensions lda,
/// ldb, ldc), for a batch A times a wide weight B, without packing B. Eigen's GEMM packs the whole
/// weight on every call, which at 50-100 rows is a large part of the product; here blocks of 6
/// rows by a strip of C (48 columns with AVX-512, 16 with AVX2) stay in registers while B's rows
/// stream past. Measured on the VAE layers (README, "VAE programs"): 28-34% faster than Eigen's
/// GEMM in cache with AVX-512, the training steps 6-17% faster. Each element of C is one chain of
/// fused multiply-adds over the depth in order, so its bits depend on neither m nor the other
/// rows: a batch split between threads gives the whole batch's bits. Depth steps at which all of a
/// tile's elements of A are zero are left out (`gemm_skip_plan`: the same bits, the sign of a zero aside).
inline void gemm_nn_inplace(Index m, Index n, Index k, const float* a, Index lda, const float* b, Index ldb, float* c,
                            Index ldc, float alpha, Epilogue out) noexcept {
  constexpr Index pf = 8;  // rows of B ahead (measured: 0, 8 and 16 within noise of each other; 8 kept)
  gemm_bcast_strips<false>(m, n, k, a, lda, b, ldb, c, ldc, alpha, out, pf);
}

/// Whether C (m x n) = A^T G, A (k x m) and G (k x n) row-major float, goes through
/// `gemm_tn_inplace`: a weight's gradient, the layer's input (a batch) times the gradient of its
/// output, for outputs of at least 16 columns. The depth does not matter (any k >= 1), so every
/// term of a sum over threads' batches takes the same path.
inline bool gemm_tn_inplace_applies(Index m, Index n, Index k) noexcept { return m >= 1 && n >= 16 && k >= 1; }

/// Depth per pass of `gemm_tn_inplace`: 256 rows of a 48-column strip of G are 48 KB, an L1.
constexpr Index gemm_tn_depth_block = 256;

/// C (m x n) = alpha A^T G, or C += alpha A^T G with `accumulate` (row-major; A is k x m, G is k x
/// n): a weight's gradient from a batch, without packing either operand (Eigen's GEMM packs G^T
/// and panels of A on every call). The tiles of `gemm_nn_inplace` with A read down its columns:
/// blocks of 6 rows of C in registers while strips of G's rows pass. Measured on the VAE's
/// weight gradients (100 rows, AVX-512): 30% faster than Eigen's GEMM. Depths beyond 256 run in
/// passes of 256, each pass one chain of fused multiply-adds per element, added into C. Each
/// element is computed the same way whatever m and whatever rows or columns it is computed with,
/// so rows of C computed apart (blocks of rows handed to an optimizer, threads' shares) have the
/// whole product's bits (the sign of a zero aside: depth steps at which all of a tile's elements
/// of A are zero are left out, `gemm_skip_plan`).
inline void gemm_tn_inplace(Index m, Index n, Index k, const float* a, Index lda, const float* g, Index ldg, float* c,
                            Index ldc, float alpha, bool accumulate, const float* g_strips = nullptr) noexcept {
  constexpr Index sw = simd::nn_vectors * simd::lanes;
  for (Index p = 0; p < k; p += gemm_tn_depth_block)
    gemm_bcast_strips<true>(m, n, std::min(gemm_tn_depth_block, k - p), a + p * lda, lda, g + p * ldg, ldg, c, ldc, alpha,
                            accumulate || p > 0, 0, g_strips ? g_strips + p * sw : nullptr, k * sw);
}

/// Floats of `gemm_tn_pack_strips`'s copy of a k x n G: its whole strips (with AVX2, where the
/// broadcast kernel copies strips), else nothing.
inline Index gemm_tn_strips_size(Index k, Index n) noexcept {
#if REPARAM_INPLACE_GEMM == 256
  constexpr Index sw = simd::nn_vectors * simd::lanes;
  return (n / sw) * sw * std::max(k, Index(0));
#else
  (void)k, (void)n;
  return 0;
#endif
}

/// G's (k x n, rows ldg apart) whole strips, each copied to k contiguous rows of the strip's
/// width, strip after strip: what `gemm_tn_inplace` would copy for every block of C's rows it
/// is called on, copied once for all of them (`g_strips`; the same values, so the same bits).
inline void gemm_tn_pack_strips(Index k, Index n, const float* g, Index ldg, float* out) noexcept {
  constexpr Index sw = simd::nn_vectors * simd::lanes;
  for (Index j = 0; j + sw <= n; j += sw, out += k * sw)
    for (Index p = 0; p < k; ++p) {
      REPARAM_UNROLL
      for (int v = 0; v < simd::nn_vectors; ++v) simd::store(out + p * sw + v * simd::lanes, simd::load(g + p * ldg + j + v * simd::lanes));
    }
}

/// Whether C (m x n) = A (m x k) B^T, B (n x k), row-major float, goes through `gemm_nt_inplace`: a
/// batch of at most 256 rows times the transpose of a weight (the input gradient g W^T of a layer
/// x W), A at most 1 MB, with a depth of at least 64 that is a multiple of the vector width (16
/// floats with AVX-512, 8 with AVX2: every row then starts where a vector load does not split a
/// cache line). Measured against Eigen's GEMM on 100-row batches (AVX-512): at depths 128-784 that
/// are multiples of 16 it is 5-20% faster in cache and 20-40% with the weight out of cache; at other
/// depths (100, 200, 300, 1000) every other row starts inside a cache line, the loads split, and
/// it was 10-70% slower; at depth 40 the lane sums cost more than the products.
inline bool gemm_nt_inplace_applies(Index m, Index n, Index k) noexcept {
  return m >= 1 && m <= 256 && n >= 1 && k >= 64 && k % simd::lanes == 0 && m * k <= (Index(1) << 18);
}

/// The first `count` of four sums to their places of C: alpha s, or fma(alpha, s, c) with
/// `accumulate` (explicit, so no tile's stores round differently from another's).
inline void gemm_nt_put(__m128 s, float alpha, bool accumulate, float* const* dst, int count) noexcept {
  alignas(16) float v[4];
  _mm_store_ps(v, s);
  for (int q = 0; q < count; ++q) *dst[q] = accumulate ? std::fma(alpha, v[q], *dst[q]) : alpha * v[q];
}

/// C[0..MR) x [0..NR) = alpha A B^T (+ C with `accumulate`) for MR rows of A and NR rows of B: each
/// element is a dot product of two contiguous rows, kept as `simd::lanes` partial sums in a
/// register over the depth (one chain of fused multiply-adds per lane; the depth is a multiple of
/// the width) and summed across the lanes at the end by one fixed tree (`simd::sum4`), so its bits depend
/// on neither the tile nor m. MR is 1 to 3, NR `simd::nt_cols` (8 with AVX-512, 4 with AVX2) or 1:
/// 3 x 8 tiles read 3 rows of A (from L2, while B's 8 rows stay in L1) per 24 products; 2-5%
/// faster than the 4 x 6 tiles before them, same bits.
template <int MR, int NR>
REPARAM_TILE void gemm_nt_tile(const float* a, Index lda, const float* b, Index ldb, float* c, Index ldc, Index k, float alpha,
                         bool accumulate) noexcept {
  static_assert(MR >= 1 && MR <= 3 && (NR == simd::nt_cols || NR == 1), "gemm_nt_tile: tiles are 1 to 3 by nt_cols or 1");
  constexpr int W = simd::lanes;
  simd::vec acc[MR][NR];
  REPARAM_UNROLL
  for (int i = 0; i < MR; ++i) {
    REPARAM_UNROLL
    for (int j = 0; j < NR; ++j) acc[i][j] = simd::zero();
  }
  for (Index p = 0; p < k; p += W) {  // k is a multiple of W (gemm_nt_inplace_applies)
    simd::vec av[MR];
    REPARAM_UNROLL
    for (int i = 0; i < MR; ++i) {
      av[i] = simd::load(a + i * lda + p);
#if REPARAM_INPLACE_GEMM == 256 && defined(__GNUC__)
      // each vector loaded once into a register: GCC otherwise folds the loads into every
      // multiply-add using them, and with AVX2's 16 registers the tile was bound by loads
      __asm__("" : "+x"(av[i]));
#endif
    }
    REPARAM_UNROLL
    for (int j = 0; j < NR; ++j) {
      simd::vec bv = simd::load(b + j * ldb + p);
#if REPARAM_INPLACE_GEMM == 256 && defined(__GNUC__)
      __asm__("" : "+x"(bv));
#endif
      REPARAM_UNROLL
      for (int i = 0; i < MR; ++i) acc[i][j] = simd::fmadd(av[i], bv, acc[i][j]);
    }
  }
  if constexpr (NR == simd::nt_cols) {
    const __m128 al = _mm_set1_ps(alpha);
    REPARAM_UNROLL
    for (int i = 0; i < MR; ++i) {  // four neighbours in a row: one vector store
      REPARAM_UNROLL
      for (int j = 0; j < NR; j += 4) {
        float* ci = c + i * ldc + j;
        const __m128 s = simd::sum4(acc[i][j], acc[i][j + 1], acc[i][j + 2], acc[i][j + 3]);
        _mm_storeu_ps(ci, accumulate ? _mm_fmadd_ps(al, s, _mm_loadu_ps(ci)) : _mm_mul_ps(al, s));
      }
    }
  } else {  // one column: the rows' sums side by side
    float* dst[MR];
    REPARAM_UNROLL
    for (int i = 0; i < MR; ++i) dst[i] = c + i * ldc;
    constexpr int i1 = MR > 1 ? 1 : 0, i2 = MR > 2 ? 2 : MR - 1;
    gemm_nt_put(simd::sum4(acc[0][0], acc[i1][0], acc[i2][0], acc[MR - 1][0]), alpha, accumulate, dst, MR);
  }
}

/// One column strip of `gemm_nt_inplace` (NR rows of B): the rows of A by 3, the last one to
/// four by 2 or 1 (a row of 1-row tiles reads as much as a row of 3-row tiles).
template <int NR>
inline void gemm_nt_strip(Index m, Index k, const float* a, Index lda, const float* b, Index ldb, float* c, Index ldc, float alpha,
                          bool accumulate) noexcept {
  const Index r = m % 3, full = m < 3 ? 0 : r == 1 ? m - 4 : m - r;  // rows in 3-row tiles
  Index i = 0;
  for (; i < full; i += 3) gemm_nt_tile<3, NR>(a + i * lda, lda, b, ldb, c + i * ldc, ldc, k, alpha, accumulate);
  for (; i + 2 <= m; i += 2) gemm_nt_tile<2, NR>(a + i * lda, lda, b, ldb, c + i * ldc, ldc, k, alpha, accumulate);
  if (i < m) gemm_nt_tile<1, NR>(a + i * lda, lda, b, ldb, c + i * ldc, ldc, k, alpha, accumulate);
}

/// C (m x n) = alpha A B^T, or C += alpha A B^T with `accumulate` (row-major; A is m x k, B is n x
/// k, k a multiple of `simd::lanes`), for a batch A times a weight's transpose, without packing B: Eigen's
/// GEMM packs the whole weight on every call, a large part of a product with 50 or 100 rows.
/// Tiles of 3 rows of A by `simd::nt_cols` rows of B (dot products in registers); the rows of B
/// (at most 25 KB at depth 784) stay in L1 while every row of A passes. Each element is its own
/// dot product of a row of A and a row of B (`gemm_nt_tile`), so a batch split between threads
/// gives the whole batch's bits.
inline void gemm_nt_inplace(Index m, Index n, Index k, const float* a, Index lda, const float* b, Index ldb, float* c,
                            Index ldc, float alpha, bool accumulate) noexcept {
  constexpr int NR = simd::nt_cols;
  Index j = 0;
  for (; j + NR <= n; j += NR) gemm_nt_strip<NR>(m, k, a, lda, b + j * ldb, ldb, c + j, ldc, alpha, accumulate);
  for (; j < n; ++j) gemm_nt_strip<1>(m, k, a, lda, b + j * ldb, ldb, c + j, ldc, alpha, accumulate);
}
#endif

template <class T>
void gemm_acc(Eigen::Map<Matrix<T>>& C, const Eigen::Map<const Matrix<T>>& A, bool trans_a,
              const Eigen::Map<const Matrix<T>>& B, bool trans_b, T alpha, Workspace<T>& ws, bool assign = false);

/// The product of dual matrices as three real ones: (Av + e Ad)(Bv + e Bd) = Av Bv + e (Av Bd + Ad Bv),
/// through the real kernel (Eigen's blocked GEMM or the BLAS backend) instead of Eigen's scalar
/// loops over duals. The value and tangent planes live in per-thread grow-only workspaces.
template <class T>
void gemm_dual(Eigen::Map<Matrix<T>>& C, const Eigen::Map<const Matrix<T>>& A, bool trans_a,
               const Eigen::Map<const Matrix<T>>& B, bool trans_b, real_t<T> alpha, bool assign) {
  using R = real_t<T>;
  using RMap = Eigen::Map<Matrix<R>>;
  using RCMap = Eigen::Map<const Matrix<R>>;
  thread_local Workspace<R> planes, pack;
  const Index na = A.size(), nb = B.size(), nc = C.size();
  R* buf = planes.get(static_cast<std::size_t>(2 * (na + nb + nc)));
  R *av = buf, *ad = av + na, *bv = ad + na, *bd = bv + nb, *cv = bd + nb, *cd = cv + nc;
  // A tangent plane that is all zeros (data, a constant weight: the first layer's input) drops
  // its product, a third of the work there; found while the planes are split (no extra pass).
  bool a_moves = false, b_moves = false;
  for (Index i = 0; i < na; ++i) {
    av[i] = A.data()[i].v;
    ad[i] = A.data()[i].d;
    a_moves |= ad[i] != R(0);
  }
  for (Index i = 0; i < nb; ++i) {
    bv[i] = B.data()[i].v;
    bd[i] = B.data()[i].d;
    b_moves |= bd[i] != R(0);
  }
  const RCMap Av(av, A.rows(), A.cols()), Ad(ad, A.rows(), A.cols()), Bv(bv, B.rows(), B.cols()), Bd(bd, B.rows(), B.cols());
  RMap Cv(cv, C.rows(), C.cols()), Cd(cd, C.rows(), C.cols());
  gemm_acc<R>(Cv, Av, trans_a, Bv, trans_b, alpha, pack, true);
  if (b_moves) gemm_acc<R>(Cd, Av, trans_a, Bd, trans_b, alpha, pack, true);
  if (a_moves) gemm_acc<R>(Cd, Ad, trans_a, Bv, trans_b, alpha, pack, !b_moves);
  if (!a_moves && !b_moves) Cd.setZero();
  T* c = C.data();
  if (assign) {
    for (Index i = 0; i < nc; ++i) c[i] = T(cv[i], cd[i]);
  } else {
    for (Index i = 0; i < nc; ++i) c[i] = T(c[i].v + cv[i], c[i].d + cd[i]);
  }
}

/// Whether gemm_acc hands an m x n x k product to the BLAS backend (where it is built): float and
/// double products that are neither tiny (Eigen's lazy threshold) nor vectors, in int range.
template <class T>
bool gemm_to_blas(Index m, Index n, Index k) noexcept {
#ifdef REPARAM_CBLAS
  constexpr bool blas_scalar = std::is_same<T, float>::value || std::is_same<T, double>::value;
  return blas_scalar && m + n + k >= 20 && m != 1 && n != 1 && m < (Index(1) << 31) && n < (Index(1) << 31) &&
         k < (Index(1) << 31);
#else
  (void)m, (void)n, (void)k;
  return false;
#endif
}

/// C (m x n, row-major) += alpha * op(A) * op(B); op(X) is X or its transpose. A and B are
/// row-major maps; C must not alias them. With `assign`, C = alpha * op(A) * op(B) instead, C's
/// old contents never read (they may be garbage): the BLAS backend's beta = 0, no zeroing pass.
/// Dual scalars (Hessian-vector products) run as three products of real matrices.
template <class T>
void gemm_acc(Eigen::Map<Matrix<T>>& C, const Eigen::Map<const Matrix<T>>& A, bool trans_a,
              const Eigen::Map<const Matrix<T>>& B, bool trans_b, T alpha, Workspace<T>& ws, bool assign) {
  const Index m = C.rows(), n = C.cols();
  const Index k = trans_a ? A.rows() : A.cols();
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (assign) C.setZero();
    return;
  }
  if constexpr (is_dual_scalar<T>::value) {
    if (m + n + k >= 20 && alpha.d == real_t<T>(0)) {
      gemm_dual(C, A, trans_a, B, trans_b, alpha.v, assign);
      return;
    }
  }
  constexpr bool blas_scalar = std::is_same<T, float>::value || std::is_same<T, double>::value;
  const bool tiny = m + n + k < 20;  // Eigen's own threshold for coefficient-based products
  const bool to_blas = gemm_to_blas<T>(m, n, k);
#ifdef REPARAM_INPLACE_GEMM
  if constexpr (std::is_same<T, float>::value) {
    if (!to_blas && !trans_a && !trans_b && gemm_nn_inplace_applies(m, n, k) && inplace_gemm()) {
      gemm_nn_inplace(m, n, k, A.data(), A.cols(), B.data(), B.cols(), C.data(), C.cols(), alpha, !assign);
      return;
    }
    if (!to_blas && trans_a && !trans_b && gemm_tn_inplace_applies(m, n, k) && inplace_gemm()) {
      gemm_tn_inplace(m, n, k, A.data(), A.cols(), B.data(), B.cols(), C.data(), C.cols(), alpha, !assign);
      return;
    }
    if (!to_blas && !trans_a && trans_b && gemm_nt_inplace_applies(m, n, k) && inplace_gemm()) {
      gemm_nt_inplace(m, n, k, A.data(), A.cols(), B.data(), B.cols(), C.data(), C.cols(), alpha, !assign);
      return;
    }
  }
#endif
  if (assign && !to_blas) C.setZero();  // Eigen's kernel only accumulates
  if (!blas_scalar || tiny || m == 1 || n == 1) {
    // Eigen evaluates these lazily or through GEMV without heap allocation.
    if (tiny || !blas_scalar) {
      if (!trans_a && !trans_b) C.noalias() += alpha * A.lazyProduct(B);
      else if (trans_a && !trans_b) C.noalias() += alpha * A.transpose().lazyProduct(B);
      else if (!trans_a && trans_b) C.noalias() += alpha * A.lazyProduct(B.transpose());
      else C.noalias() += alpha * A.transpose().lazyProduct(B.transpose());
    } else {
      if (!trans_a && !trans_b) C.noalias() += alpha * A * B;
      else if (trans_a && !trans_b) C.noalias() += alpha * A.transpose() * B;
      else if (!trans_a && trans_b) C.noalias() += alpha * A * B.transpose();
      else C.noalias() += alpha * A.transpose() * B.transpose();
    }
    return;
  }
  if constexpr (blas_scalar) {
#ifdef REPARAM_CBLAS
    if (to_blas) {
      // CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112; beta = 1 accumulates, 0 assigns
      const int ta = trans_a ? 112 : 111, tb = trans_b ? 112 : 111;
      const T beta = assign ? T(0) : T(1);
      if constexpr (std::is_same<T, float>::value)
        cblas_sgemm(101, ta, tb, int(m), int(n), int(k), alpha, A.data(), int(A.cols()), B.data(), int(B.cols()), beta,
                    C.data(), int(C.cols()));
      else
        cblas_dgemm(101, ta, tb, int(m), int(n), int(k), alpha, A.data(), int(A.cols()), B.data(), int(B.cols()), beta,
                    C.data(), int(C.cols()));
      return;
    }
#endif
    // A row-major X is a column-major X^T with the same leading dimension.
    const Index lda = A.cols(), ldb = B.cols(), ldc = C.cols();
    if (!trans_a && !trans_b)
      gemm_kernel<T, Eigen::RowMajor, Eigen::RowMajor>(m, n, k, A.data(), lda, B.data(), ldb, C.data(), ldc, alpha, ws);
    else if (trans_a && !trans_b)
      gemm_kernel<T, Eigen::ColMajor, Eigen::RowMajor>(m, n, k, A.data(), lda, B.data(), ldb, C.data(), ldc, alpha, ws);
    else if (!trans_a && trans_b)
      gemm_kernel<T, Eigen::RowMajor, Eigen::ColMajor>(m, n, k, A.data(), lda, B.data(), ldb, C.data(), ldc, alpha, ws);
    else
      gemm_kernel<T, Eigen::ColMajor, Eigen::ColMajor>(m, n, k, A.data(), lda, B.data(), ldb, C.data(), ldc, alpha, ws);
  }
}

/// C (m x n) = A B + bias, `bias` a row of n added to every row, then max(C, 0) where `relu`: the
/// forward of `linear` and `linear_relu`. Where gemm_acc would take the in-place kernel, the bias
/// and the activation are applied in its stores, C in registers (no passes of their own); else
/// C = bias, C += A B (gemm_acc), C = max(C, 0). The same bits either way: each element is the
/// product's sum plus the bias in one rounding, then relu's max (NaN kept).
template <class T>
void gemm_bias(Eigen::Map<Matrix<T>>& C, const Eigen::Map<const Matrix<T>>& A, const Eigen::Map<const Matrix<T>>& B,
               const T* bias, bool relu, Workspace<T>& ws) {
#ifdef REPARAM_INPLACE_GEMM
  if constexpr (std::is_same<T, float>::value) {
    const Index m = C.rows(), n = C.cols(), k = A.cols();
    if (!gemm_to_blas<T>(m, n, k) && gemm_nn_inplace_applies(m, n, k) && inplace_gemm()) {
      gemm_nn_inplace(m, n, k, A.data(), A.cols(), B.data(), B.cols(), C.data(), C.cols(), T(1), Epilogue(false, bias, relu));
      return;
    }
  }
#endif
  C.rowwise() = Eigen::Map<const Matrix<T>>(bias, 1, C.cols()).row(0);
  gemm_acc(C, A, false, B, false, T(1), ws);
  if (relu) C = C.array().max(T(0)).matrix();
}

/// Whether the blocked A^T G below runs here: Eigen's kernel on float or double (not the BLAS
/// backend, whose GEMM has no blocks to hand out).
template <class T>
constexpr bool tn_rows_kernel() noexcept {
#ifdef REPARAM_CBLAS
  return false;
#else
  return std::is_same<T, float>::value || std::is_same<T, double>::value;
#endif
}

/// Whether C (m x n) = A^T G of depth k goes through the blocked kernel (`gemm_tn_rows`,
/// `gemm_tn_sum_rows`): not for tiny or vector shapes, which Eigen evaluates otherwise.
template <class T>
bool gemm_tn_rows_applies(Index m, Index n, Index k) noexcept {
  return tn_rows_kernel<T>() && m > 1 && n > 1 && k > 0 && m + n + k >= 20;
}

/// Rows of C (m x n) per block of `gemm_tn_rows` and `gemm_tn_sum_rows`: about 128 KB of C, which
/// stays in L2 until the callee has read it (smaller blocks stream the packed G^T through the
/// kernel too often: 32 KB was slower than no blocking on the VAE layers), a multiple of the
/// kernel's column step. Eigen's kernel groups columns of its problem (rows of C) from the start
/// of each call in ways that can change the last bits, so row ranges computed apart give the
/// bits of the whole product when they start at multiples of this. For float where the in-place
/// kernel is built the step is also a multiple of its tiles' 6 rows (12 with Eigen's 4): a block
/// of 80 rows ran 13 tiles and a 2-row one, which loads as much of G as a full tile for a third
/// of its work; blocks of 72 and 36 rows ran the VAE's 784 x 400 and 400 x 784 weight gradients
/// 1.3% and 3.6% faster (medians of 200 alternating rounds, stop 39). The bits do not change.
template <class T>
Index gemm_tn_block_rows(Index m, Index n) noexcept {
  if constexpr (tn_rows_kernel<T>()) {
#ifdef REPARAM_INPLACE_GEMM
    constexpr Index tile = std::is_same<T, float>::value ? 6 : 1;
#else
    constexpr Index tile = 1;
#endif
    constexpr Index nr = Eigen::internal::gebp_traits<T, T>::nr;
    constexpr Index step = nr / std::gcd(nr, tile) * tile;  // the least common multiple
    return std::max(Index(1), std::min(m, std::max(step, (Index(131072 / sizeof(T)) / std::max(n, Index(1))) / step * step)));
  } else {
    return std::max(Index(1), m);
  }
}

/// One term of a sum of products for `gemm_tn_sum_rows`: alpha a^T g, a (depth x m) and g
/// (depth x n) row-major; or, with `dense` set, an m x n row-major matrix added as it is.
template <class T>
struct TnTerm {
  const T* a = nullptr;
  const T* g = nullptr;
  Index depth = 0;
  T alpha = T(1);
  const T* dense = nullptr;
};

namespace tn {
// Eigen's column-major problem C^T (n x m) = G^T A: lhs G^T (column-major, stride n), rhs A
// (row-major, stride m); a column block of C^T is a block of whole rows of C.
template <class T>
using Traits = Eigen::internal::gebp_traits<T, T>;
template <class T>
using LhsMapper = Eigen::internal::const_blas_data_mapper<T, Index, Eigen::ColMajor>;
template <class T>
using RhsMapper = Eigen::internal::const_blas_data_mapper<T, Index, Eigen::RowMajor>;
template <class T>
using ResMapper = Eigen::internal::blas_data_mapper<T, Index, Eigen::ColMajor, Eigen::Unaligned, 1>;

/// The depth blocking of gemm_kernel for the whole product (same panels, so the same sums in
/// the same order).
template <class T>
Index depth_block(Index m, Index n, Index k) {
  Index kc = k, mc = n, nc = m;
  Eigen::internal::computeProductBlockingSizes<T, T, 1, Index>(kc, mc, nc, Index(1));
  return kc;
}
constexpr Index padded(Index size, Index pad) { return (size + pad - 1) / pad * pad; }

/// Where the pieces of a sum of products live in its workspace: every G^T packed (size_a), the
/// packed panel of A (size_b), then a scratch block of C (rows x n).
struct Layout {
  Index size_a = 0, size_b = 0, rows = 0;
};
/// For product terms of depths depth(0), ..., depth(count - 1) (0: a term that packs nothing).
template <class T, class Depth>
Layout layout(int count, Index m, Index n, Depth&& depth) {
  constexpr Index pad = static_cast<Index>(arena_alignment / sizeof(T));  // each buffer on a cache line
  Layout l;
  l.rows = gemm_tn_block_rows<T>(m, n);
  for (int u = 0; u < count; ++u) {
    const Index d = depth(u);
    if (d == 0) continue;
    l.size_a += padded(n * d, pad);
    l.size_b = std::max(l.size_b, padded(depth_block<T>(m, n, d) * l.rows, pad));
  }
  return l;
}
template <class T>
Layout layout(const TnTerm<T>* terms, int count, Index m, Index n) {
  return layout<T>(count, m, n, [terms](int u) { return terms[u].dense == nullptr ? terms[u].depth : Index(0); });
}
}  // namespace tn

/// Whether the sums of `gemm_tn_sum_rows` for an m x n result run on the in-place kernel
/// (`gemm_tn_inplace`, float where it is built and switched on) rather than Eigen's packed one:
/// the same choice `gemm_acc` makes for every product of that shape, so a gradient streamed,
/// stored or summed over threads is computed the same way.
template <class T>
bool tn_sum_inplace(Index m, Index n) noexcept {
#ifdef REPARAM_INPLACE_GEMM
  if constexpr (std::is_same<T, float>::value) return gemm_tn_inplace_applies(m, n, 1) && inplace_gemm();
#endif
  (void)m, (void)n;
  return false;
}
constexpr int tn_tag_packed = 1, tn_tag_inplace = 2;  // what gemm_tn_sum_pack left in its workspace

/// Floats of the strips `gemm_tn_sum_pack` copies for the in-place kernel for one product term of
/// depth `depth` (0 where the kernel reads G in place), rounded up to a cache line.
template <class T>
Index tn_term_strips_size(Index depth, Index n) noexcept {
#ifdef REPARAM_INPLACE_GEMM
  if constexpr (std::is_same<T, float>::value)
    return tn::padded(gemm_tn_strips_size(depth, n), static_cast<Index>(arena_alignment / sizeof(T)));
#endif
  (void)depth, (void)n;
  return 0;
}
/// The same for product terms of depths depth(0), ..., depth(count - 1) (0: a term that copies
/// nothing), one after the other.
template <class T, class Depth>
Index tn_inplace_strips_size(int count, Index n, Depth&& depth) noexcept {
  Index size = 0;
  for (int u = 0; u < count; ++u) size += tn_term_strips_size<T>(depth(u), n);
  return size;
}

/// The in-place kernel's copies of every product term's strips of G, term after term, at the
/// start of `ws` (`tn_inplace_strips_size`), followed by room for a block of C.
template <class T>
void tn_inplace_pack(const TnTerm<T>* terms, int count, Index m, Index n, Workspace<T>& ws) {
  const Index size = tn_inplace_strips_size<T>(count, n, [terms](int u) { return terms[u].dense ? Index(0) : terms[u].depth; });
  T* out = ws.get(static_cast<std::size_t>(size + gemm_tn_block_rows<T>(m, n) * n));
#ifdef REPARAM_INPLACE_GEMM
  if constexpr (std::is_same<T, float>::value) {
    for (int u = 0; u < count && size > 0; ++u) {
      if (terms[u].dense != nullptr) continue;
      gemm_tn_pack_strips(terms[u].depth, n, terms[u].g, n, out);
      out += tn_term_strips_size<T>(terms[u].depth, n);
    }
  }
#endif
  (void)out;
}

/// The first half of `gemm_tn_sum_rows`, for callers that compute a sum's rows in several calls
/// (`nn::DataParallel`'s threads taking blocks as they come): every product term's G^T packed
/// into `ws`, once. `gemm_tn_sum_rows_packed` then computes any rows from it, as long as `ws`
/// is not used for anything else in between. Returns false where a product term fails
/// `gemm_tn_rows_applies` (nothing packed).
template <class T>
bool gemm_tn_sum_pack(const TnTerm<T>* terms, int count, Index m, Index n, Workspace<T>& ws) {
  if constexpr (!tn_rows_kernel<T>()) {
    (void)terms, (void)count, (void)m, (void)n, (void)ws;
    return false;
  } else {
    for (int u = 0; u < count; ++u)
      if (terms[u].dense == nullptr && !gemm_tn_rows_applies<T>(m, n, terms[u].depth)) return false;
    ws.set_tag(tn_sum_inplace<T>(m, n) ? tn_tag_inplace : tn_tag_packed);
    if (n == 0) return true;
    if (ws.tag() == tn_tag_inplace) {  // the in-place kernel reads G where it is, or (AVX2) its strips copied once here
      tn_inplace_pack(terms, count, m, n, ws);
      return true;
    }
    constexpr Index pad = static_cast<Index>(arena_alignment / sizeof(T));
    const tn::Layout l = tn::layout(terms, count, m, n);
    T* packed = ws.get(static_cast<std::size_t>(l.size_a + l.size_b + l.rows * n));
    Eigen::internal::gemm_pack_lhs<T, Index, tn::LhsMapper<T>, tn::Traits<T>::mr, tn::Traits<T>::LhsProgress,
                                   typename tn::Traits<T>::LhsPacket4Packing, Eigen::ColMajor>
        pack_lhs;
    for (int u = 0; u < count; ++u) {  // panel after panel
      const TnTerm<T>& t = terms[u];
      if (t.dense != nullptr) continue;
      const Index kc = tn::depth_block<T>(m, n, t.depth);
      const tn::LhsMapper<T> lhs(t.g, n);
      for (Index k2 = 0; k2 < t.depth; k2 += kc) pack_lhs(packed + n * k2, lhs.getSubMapper(0, k2), std::min(kc, t.depth - k2), n);
      packed += tn::padded(n * t.depth, pad);
    }
    return true;
  }
}

/// Grows `ws` to what `gemm_tn_sum_pack` needs for `count` product terms of the given depths and
/// an m x n sum, so that packing any of them later allocates nothing.
template <class T>
void gemm_tn_sum_reserve(const Index* depths, int count, Index m, Index n, Workspace<T>& ws) {
  if constexpr (tn_rows_kernel<T>()) {
    if (n == 0 || m == 0) return;
    const auto depth = [depths](int u) { return std::max(depths[u], Index(0)); };
    const tn::Layout l = tn::layout<T>(count, m, n, depth);
    ws.get(static_cast<std::size_t>(std::max(l.size_a + l.size_b, tn_inplace_strips_size<T>(count, n, depth)) + l.rows * n));
  } else {
    (void)depths, (void)count, (void)m, (void)n, (void)ws;
  }
}

/// `gemm_tn_inplace` where it is built, for the sums below (a workspace tagged in-place exists
/// only then).
template <class T>
void tn_inplace_product(Index m, Index n, Index k, const T* a, Index lda, const T* g, Index ldg, T* c, Index ldc, T alpha,
                        bool accumulate, const T* g_strips = nullptr) noexcept {
#ifdef REPARAM_INPLACE_GEMM
  if constexpr (std::is_same<T, float>::value) {
    gemm_tn_inplace(m, n, k, a, lda, g, ldg, c, ldc, alpha, accumulate, g_strips);
    return;
  }
#endif
  (void)m, (void)n, (void)k, (void)a, (void)lda, (void)g, (void)ldg, (void)c, (void)ldc, (void)alpha, (void)accumulate, (void)g_strips;
}

/// The second half: rows [first, last) of the sum (see `gemm_tn_sum_rows`) from the G^T that
/// `gemm_tn_sum_pack` put in `ws` for the same terms and shape.
template <class T, class Emit>
void gemm_tn_sum_rows_packed(const TnTerm<T>* terms, int count, Index m, Index n, Index first, Index last, Workspace<T>& ws,
                             Emit&& emit, T* out = nullptr, bool accumulate = false) {
  if constexpr (!tn_rows_kernel<T>()) {
    (void)terms, (void)count, (void)m, (void)n, (void)first, (void)last, (void)ws, (void)emit, (void)out, (void)accumulate;
  } else {
    if (first >= last || n == 0) return;
    using Array = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
    using ConstArray = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
    constexpr Index pad = static_cast<Index>(arena_alignment / sizeof(T));
    const tn::Layout l = tn::layout(terms, count, m, n);
    const bool inplace = ws.tag() == tn_tag_inplace;  // gemm_tn_sum_pack chose the in-place kernel: nothing packed
    Eigen::internal::gemm_pack_rhs<T, Index, tn::RhsMapper<T>, tn::Traits<T>::nr, Eigen::RowMajor> pack_rhs;
    Eigen::internal::gebp_kernel<T, T, Index, tn::ResMapper<T>, tn::Traits<T>::mr, tn::Traits<T>::nr, false, false> gebp;
    T* const block_a = inplace ? nullptr : ws.get(static_cast<std::size_t>(l.size_a + l.size_b + l.rows * n));
    T* const block_b = inplace ? nullptr : block_a + l.size_a;
    // in place: the strips tn_inplace_pack copied, then the scratch block
    const Index strips = inplace ? tn_inplace_strips_size<T>(count, n, [terms](int u) { return terms[u].dense ? Index(0) : terms[u].depth; }) : 0;
    T* const copied = inplace ? ws.get(static_cast<std::size_t>(strips + l.rows * n)) : nullptr;
    T* const scratch = out ? nullptr : inplace ? copied + strips : block_b + l.size_b;
    for (Index j = first; j < last; j += l.rows) {
      const Index cnt = std::min(l.rows, last - j);
      T* const c = out ? out + j * n : scratch;
      const tn::ResMapper<T> res(c, n);
      bool started = out != nullptr && accumulate;  // c holds a sum to add to
      const T* packed = block_a;
      const T* g_strips = copied;
      for (int u = 0; u < count; ++u) {
        const TnTerm<T>& t = terms[u];
        if (t.dense != nullptr) {
          if (started)
            Array(c, cnt * n) += ConstArray(t.dense + j * n, cnt * n);
          else
            Array(c, cnt * n) = ConstArray(t.dense + j * n, cnt * n);
          started = true;
          continue;
        }
        if (inplace) {  // C = or += alpha A^T G over the block's columns of A
          const Index size = strips > 0 ? tn_term_strips_size<T>(t.depth, n) : 0;
          tn_inplace_product(cnt, n, t.depth, t.a + j, m, t.g, n, c, n, t.alpha, started, size > 0 ? g_strips : nullptr);
          g_strips += size;
          started = true;
          continue;
        }
        if (!started) std::fill(c, c + cnt * n, T(0));  // the kernel accumulates; the block is in cache after
        started = true;
        const Index kc = tn::depth_block<T>(m, n, t.depth);
        const tn::RhsMapper<T> rhs(t.a, m);
        for (Index k2 = 0; k2 < t.depth; k2 += kc) {
          const Index depth = std::min(kc, t.depth - k2);
          pack_rhs(block_b, rhs.getSubMapper(k2, j), depth, cnt);
          gebp(res, packed + n * k2, block_b, n, depth, cnt, t.alpha);
        }
        packed += tn::padded(n * t.depth, pad);
      }
      if (!started) std::fill(c, c + cnt * n, T(0));  // no terms: C is zero
      emit(j, cnt, c);
    }
  }
}

/// Rows [first, last) of C (m x n, row-major) = the sum of the terms in their order, computed
/// block by block: emit(row, count, block) is called once per block of `count` whole rows from
/// `row`, in order, with the block's final values (row-major, contiguous). Each element is summed
/// term after term (a product term accumulated by the kernel into the sum so far), so a sum of
/// products kept in buffers and added afterwards gives the same bits (sign of zero aside: a first
/// term is added to nothing rather than to +0). With `out` null the blocks are in a scratch
/// buffer the callee may overwrite; with `out` (C's storage) each block is computed there, added
/// to its contents when `accumulate`. `first` must be a multiple of `gemm_tn_block_rows<T>(m, n)`
/// for the bits of the whole product; every product term must pass `gemm_tn_rows_applies` (else
/// this returns false and emits nothing). `gemm_tn_sum_pack` and `gemm_tn_sum_rows_packed` are
/// its two halves.
template <class T, class Emit>
bool gemm_tn_sum_rows(const TnTerm<T>* terms, int count, Index m, Index n, Index first, Index last, Workspace<T>& ws,
                      Emit&& emit, T* out = nullptr, bool accumulate = false) {
  if (!tn_rows_kernel<T>()) return false;
  if (first >= last || n == 0) return true;
  if (!gemm_tn_sum_pack(terms, count, m, n, ws)) return false;
  gemm_tn_sum_rows_packed(terms, count, m, n, first, last, ws, emit, out, accumulate);
  return true;
}

/// Rows of C (A.cols() x G.cols(), row-major) = alpha * A^T G, computed block by block: emit(first,
/// count, block) is called once per block of `count` whole rows starting at row `first`, in order,
/// with the block's final values (row-major, contiguous). With `out` null the blocks are in a
/// scratch buffer the callee may overwrite: for a weight's gradient (A the layer's input, G the
/// gradient of its output) an optimizer can update each block while it is still in cache, so the
/// gradient never goes to memory. With `out` (C's storage, m x n row-major) each block is
/// computed there, zeroed just before the kernel accumulates into it unless `accumulate`: C =
/// or += alpha A^T G without a zeroing pass over C of its own. The kernel `gemm_acc` picks for
/// the shape (`gemm_tn_inplace` where it is built and applies, else Eigen's own packing and kernel
/// with the blocking `gemm_kernel` uses): the same bits as `gemm_acc(C, A, true, G, false, alpha,
/// ws, !accumulate)`. Returns false, emitting nothing, where that path does not apply (tiny or
/// vector shapes, non-BLAS scalars, the BLAS backend); the caller then computes C whole.
template <class T, class Emit>
bool gemm_tn_rows(const Eigen::Map<const Matrix<T>>& A, const Eigen::Map<const Matrix<T>>& G, T alpha, Workspace<T>& ws,
                  Emit&& emit, T* out = nullptr, bool accumulate = false) {
  const Index m = A.cols(), n = G.cols(), k = A.rows();  // C is m x n
  if (!tn_rows_kernel<T>()) return false;
  if (m == 0 || n == 0) return true;  // C is empty: nothing to compute or emit
  if (!gemm_tn_rows_applies<T>(m, n, k)) return false;
  const TnTerm<T> term{A.data(), G.data(), k, alpha, nullptr};
  return gemm_tn_sum_rows(&term, 1, m, n, Index(0), m, ws, emit, out, accumulate);
}

}  // namespace detail
}  // namespace reparam
