// The float kernels of bce_with_logits (e^-|x| and log1p on [0, 1]) against double libm over
// their whole range, subnormal results included, at every packet width: built twice, portable and
// with -march=native (16-wide AVX-512 packets against the 4-wide code of a 1x1 node).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "support.hpp"

using namespace reparam;

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"  // packet types as template arguments
#endif

namespace {

namespace kin = Eigen::internal;
using Wide = kin::packet_traits<float>::type;
using Narrow = detail::SmallestPacket<Wide>::type;

struct ExpSweep {
  double worst = 0;  // ulps of the float nearest e^x
  long lane_diffs = 0, count = 0;
};

// bce's e^-|x| on every `stride`-th float from -0 down to -110 against double libm, at the widest
// and the narrowest packet, and at +x
ExpSweep sweep_bce_exp(std::uint32_t stride) {
  ExpSweep r;
  const float lowest = -110.f;
  std::uint32_t end;
  std::memcpy(&end, &lowest, 4);
  for (std::uint32_t bits = 0x80000000u; bits <= end; bits += stride, ++r.count) {
    float x;
    std::memcpy(&x, &bits, 4);
    const float e = kin::pfirst(detail::bce_exp<float>(kin::pset1<Wide>(x)));
    r.lane_diffs += e != kin::pfirst(detail::bce_exp<float>(kin::pset1<Narrow>(x)));
    r.lane_diffs += e != kin::pfirst(detail::bce_exp<float>(kin::pset1<Wide>(-x)));  // e^-|x|: even
    const double exact = std::exp(double(x));
    const float ref = float(exact);
    const double ulp = ref == 0.f ? double(std::numeric_limits<float>::denorm_min()) : std::nextafter(ref, INFINITY) - double(ref);
    r.worst = std::max(r.worst, std::abs(double(e) - exact) / ulp);
  }
  return r;
}

}  // namespace

TEST_CASE("bce_with_logits: float e^-|x| within 1.01 ulps down through the subnormals, NaN stays NaN", "[ops][binary][extreme]") {
  // The float kernel's exponential, compared with double libm rounded to float, on every 997th
  // float in [-110, 0] (1.16 million, results below 2^-126 down to 0 among them), at both
  // packet widths. Every float of that range: the hidden test below, tagged [.sweep].
  const ExpSweep r = sweep_bce_exp(997);
  CHECK(r.count > 1000000);
  CHECK(r.worst <= 1.02);  // measured 1.010
  CHECK(r.lane_diffs == 0);
  CHECK(kin::pfirst(detail::bce_exp<float>(kin::pset1<Wide>(0.f))) == 1.f);
  CHECK(kin::pfirst(detail::bce_exp<float>(kin::pset1<Wide>(-104.5f))) == 0.f);
  CHECK(kin::pfirst(detail::bce_exp<float>(kin::pset1<Wide>(INFINITY))) == 0.f);
  CHECK(kin::pfirst(detail::bce_exp<float>(kin::pset1<Wide>(-INFINITY))) == 0.f);
  CHECK(std::isnan(kin::pfirst(detail::bce_exp<float>(kin::pset1<Wide>(NAN)))));
  // through the op: a logit whose loss is subnormal (t = 0, x = -100: log1p(e^-100) = 3.72e-44)
  TapeF tape;
  Matrix<float> x(1, 3), t = Matrix<float>::Zero(1, 3);
  x << -100.f, -103.f, std::numeric_limits<float>::quiet_NaN();
  const VarF l = bce_with_logits(tape.variable(x), t);
  for (int i = 0; i < 2; ++i) {
    const float ref = float(std::log1p(std::exp(double(x(0, i)))));
    CHECK(std::abs(l.value()(0, i) - ref) <= std::numeric_limits<float>::denorm_min());
  }
  CHECK(std::isnan(l.value()(0, 2)));
}

TEST_CASE("bce_with_logits: a fused node over packets and 1x1 nodes give the same float bits", "[ops][binary][paths]") {
  Rng rng(21);
  Matrix<float> x = (uniform_matrix<float>(rng, 3, 67).array() - 0.5f) * 240.f;  // tails below -87 too
  x(0, 0) = -100.f; x(0, 1) = 0.f; x(0, 2) = -std::numeric_limits<float>::denorm_min();
  const Matrix<float> t = (uniform_matrix<float>(rng, 3, 67).array() > 0.5f).cast<float>();
  TapeF tape;
  const VarF xv = tape.variable(x);
  const VarF l = bce_with_logits(xv, t);
  tape.backward(sum(l));
  int diffs = 0;
  for (Index i = 0; i < x.size(); ++i) {
    TapeF one;
    const VarF a = one.variable(x.data()[i]);
    const VarF s = bce_with_logits(a, one.constant(t.data()[i]));
    one.backward(s);
    diffs += s.item() != l.value().data()[i];
    diffs += a.grad()(0, 0) != xv.grad().data()[i];
  }
  CHECK(diffs == 0);
}

// Counts the elements of C = alpha op(A) op(B) (assigned over NaN, which must not reach the
// result; alpha 1) and C += alpha op(A) op(B) (alpha 1/2) outside the float rounding bound of the
// product in double, (k + 2) u sum |a||b| + 2 u |c|, for every shape m x n taken from the
// top-left corners of one draw: A (k columns; with `trans_a`, k rows), B (k rows; with `trans_b`,
// k columns), C0 (what C += adds to).
// One product in double per draw: five times less work than one per shape, which made these
// the slowest tests under the sanitizers at -O0.
struct BoundCount {
  long bad = 0, checked = 0;
};
// Elements count_outside_bound checks over `depths` draws: C = and C += at every m x n.
template <std::size_t M, std::size_t N>
long elements_checked(const Index (&ms)[M], const Index (&ns)[N], long depths) {
  Index sm = 0, sn = 0;
  for (Index m : ms) sm += m;
  for (Index n : ns) sn += n;
  return 2L * depths * long(sm) * long(sn);
}
template <std::size_t M, std::size_t N>
void count_outside_bound(const Matrix<float>& a_all, const Matrix<float>& b_all, bool trans_b, const Matrix<float>& c_all,
                         const Index (&ms)[M], const Index (&ns)[N], detail::Workspace<float>& ws, BoundCount& r,
                         bool trans_a = false) {
  const Index k = trans_a ? a_all.rows() : a_all.cols();
  const Index m_max = *std::max_element(ms, ms + M), n_max = *std::max_element(ns, ns + N);  // the corner any shape reads
  const Eigen::MatrixXd ad = trans_a ? Eigen::MatrixXd(a_all.leftCols(m_max).cast<double>().transpose())
                                     : Eigen::MatrixXd(a_all.topRows(m_max).cast<double>());
  const Eigen::MatrixXd bd = trans_b ? Eigen::MatrixXd(b_all.topRows(n_max).cast<double>().transpose())
                                     : Eigen::MatrixXd(b_all.leftCols(n_max).cast<double>());
  const Eigen::MatrixXd ref = ad * bd;
  const Eigen::MatrixXd mag = ad.cwiseAbs() * bd.cwiseAbs();
  const double u = std::numeric_limits<float>::epsilon() / 2;
  for (Index m : ms)
    for (Index n : ns) {
      const Matrix<float> a = trans_a ? Matrix<float>(a_all.leftCols(m)) : Matrix<float>(a_all.topRows(m));
      const Matrix<float> b = trans_b ? Matrix<float>(b_all.topRows(n)) : Matrix<float>(b_all.leftCols(n));
      const Matrix<float> c0 = c_all.topLeftCorner(m, n);
      for (int accumulate = 0; accumulate < 2; ++accumulate) {
        const float alpha = accumulate ? 0.5f : 1.f;
        Matrix<float> c = accumulate ? c0 : Matrix<float>::Constant(m, n, std::numeric_limits<float>::quiet_NaN());
        Eigen::Map<Matrix<float>> cm(c.data(), m, n);
        const Eigen::Map<const Matrix<float>> am(a.data(), a.rows(), a.cols()), bm(b.data(), b.rows(), b.cols());
        detail::gemm_acc(cm, am, trans_a, bm, trans_b, alpha, ws, !accumulate);
        for (Index i = 0; i < m; ++i)
          for (Index j = 0; j < n; ++j) {
            const double want = (accumulate ? double(c0(i, j)) : 0.0) + alpha * ref(i, j);
            const double bound = (double(k) + 2) * u * alpha * mag(i, j) + 2 * u * std::abs(want) + 1e-30;
            r.bad += !(std::abs(double(c(i, j)) - want) <= bound);
            ++r.checked;
          }
      }
    }
}

// C = alpha A B and C += alpha A B for float batches times weights (built with -march=native on
// AVX-512: gemm_nn_inplace, the weight read in place, its masked last columns and short last rows
// included; portable: Eigen's kernel), every element within its rounding bound.
TEST_CASE("gemm_acc: float batch-times-weight products within their rounding bound at every shape", "[ops][linalg][paths]") {
  Rng rng(31);
  detail::Workspace<float> ws;
#ifdef REPARAM_INPLACE_GEMM
  const Index ms[] = {1, 2, 5, 6, 7, 13, 50, 100, 256, 257};
  const Index ns[] = {16, 17, 31, 33, 47, 48, 49, 100, 400};
#else  // Eigen's kernel: a few shapes (the full grid, for the in-place kernel, took 24 s under the sanitizers)
  const Index ms[] = {1, 7, 50};
  const Index ns[] = {16, 33, 100};
#endif
  BoundCount r;
  for (Index k : {1, 3, 20, 784}) {
    const Matrix<float> a_all = uniform_matrix<float>(rng, 257, k).array() - 0.5f;
    const Matrix<float> b_all = uniform_matrix<float>(rng, k, 400).array() - 0.5f;
    const Matrix<float> c_all = uniform_matrix<float>(rng, 257, 400).array() - 0.5f;
    count_outside_bound(a_all, b_all, false, c_all, ms, ns, ws, r);
  }
  CHECK(r.checked == elements_checked(ms, ns, 4));
  CHECK(r.bad == 0);
}

// C = alpha A B^T and C += alpha A B^T (a batch times a weight's transpose: the input gradient of a
// layer) at every tile edge of gemm_nt_inplace (3 x 8 tiles, the last rows by 2 or 1, the last
// columns by 1; depths 64 and 784) and at depths it
// leaves to Eigen's kernel (40, 200): every element within its rounding bound. Portable builds
// run Eigen's kernel throughout.
TEST_CASE("gemm_acc: float batch-times-transposed-weight products within their rounding bound at every shape",
          "[ops][linalg][paths]") {
  Rng rng(33);
  detail::Workspace<float> ws;
#ifdef REPARAM_INPLACE_GEMM
  const Index ms[] = {1, 2, 3, 4, 5, 7, 8, 50, 101, 256};
  const Index ns[] = {1, 5, 7, 8, 9, 13, 20, 400};
#else  // Eigen's kernel: a few shapes
  const Index ms[] = {1, 5, 50};
  const Index ns[] = {1, 9, 100};
#endif
  BoundCount r;
  for (Index k : {40, 64, 200, 784}) {
    const Matrix<float> a_all = uniform_matrix<float>(rng, 256, k).array() - 0.5f;
    const Matrix<float> b_all = uniform_matrix<float>(rng, 400, k).array() - 0.5f;  // rows of the weight
    const Matrix<float> c_all = uniform_matrix<float>(rng, 256, 400).array() - 0.5f;
    count_outside_bound(a_all, b_all, true, c_all, ms, ns, ws, r);
  }
  CHECK(r.checked == elements_checked(ms, ns, 4));
  CHECK(r.bad == 0);
}

// C = alpha A^T G and C += alpha A^T G (a layer's input times the gradient of its output: a
// weight's gradient) at every tile edge of gemm_tn_inplace (6 x 48 tiles, masked last columns,
// short last rows), at depths of one pass and of two (300: 256 + 44), and at widths it leaves to
// Eigen's kernel (n < 16): every element within its rounding bound. Portable builds run Eigen's
// kernel throughout.
TEST_CASE("gemm_acc: float weight-gradient products within their rounding bound at every shape", "[ops][linalg][paths]") {
  Rng rng(35);
  detail::Workspace<float> ws;
#ifdef REPARAM_INPLACE_GEMM
  const Index ms[] = {1, 2, 5, 6, 7, 13, 20, 400};
  const Index ns[] = {1, 15, 16, 17, 20, 48, 49, 100, 400};
#else  // Eigen's kernel: a few shapes
  const Index ms[] = {1, 7, 50};
  const Index ns[] = {1, 17, 100};
#endif
  BoundCount r;
  for (Index k : {1, 3, 100, 300}) {
    const Matrix<float> a_all = uniform_matrix<float>(rng, k, 400).array() - 0.5f;  // the batch: k rows
    const Matrix<float> g_all = uniform_matrix<float>(rng, k, 400).array() - 0.5f;
    const Matrix<float> c_all = uniform_matrix<float>(rng, 400, 400).array() - 0.5f;
    count_outside_bound(a_all, g_all, false, c_all, ms, ns, ws, r, true);
  }
  CHECK(r.checked == elements_checked(ms, ns, 4));
  CHECK(r.bad == 0);
}

#ifdef REPARAM_INPLACE_GEMM
// A batch of 100 rows and a 784 x 400 weight (stored as the layer's x W takes it, or with
// `weight_rows` as W^T's rows), and the check that switching the in-place kernels off gives
// Eigen's kernel: other last bits somewhere, within twice the rounding bound.
struct KernelCase {
  static constexpr Index n = 400, k = 784;
  detail::Workspace<float> ws;
  Matrix<float> a, b;
  KernelCase(std::uint64_t seed, bool weight_rows) {
    Rng rng(seed);
    a = uniform_matrix<float>(rng, 100, k).array() - 0.5f;
    b = weight_rows ? Matrix<float>(uniform_matrix<float>(rng, n, k).array() - 0.5f)
                    : Matrix<float>(uniform_matrix<float>(rng, k, n).array() - 0.5f);
  }
  template <class Product>
  void check_switch(const Matrix<float>& whole, Product&& product_whole) {
    set_inplace_gemm(false);
    const Matrix<float> packed = product_whole();
    set_inplace_gemm(true);
    CHECK(!(packed.array() == whole.array()).all());
    const double u = std::numeric_limits<float>::epsilon() / 2;
    const Eigen::MatrixXd bd = b.rows() == k ? Eigen::MatrixXd(b.cast<double>()) : Eigen::MatrixXd(b.cast<double>().transpose());
    const Eigen::MatrixXd mag = a.cast<double>().cwiseAbs() * bd.cwiseAbs();
    CHECK(((packed.cast<double>() - whole.cast<double>()).cwiseAbs().array() <= 2 * (k + 2) * u * mag.array()).all());
  }
};

// The in-place kernel computes each element as one chain over the depth: a row's bits do not
// depend on the batch it is in (data-parallel threads get the whole batch's bits).
TEST_CASE("gemm_nn_inplace: a row's bits do not depend on the batch it is in, set_inplace_gemm switches it", "[ops][linalg][paths]") {
  KernelCase kc(32, false);
  const Index n = KernelCase::n, k = KernelCase::k;
  const Eigen::Map<const Matrix<float>> bm(kc.b.data(), k, n);
  auto product = [&](Index first, Index count) {
    Matrix<float> c(count, n);
    Eigen::Map<Matrix<float>> cm(c.data(), count, n);
    detail::gemm_acc(cm, Eigen::Map<const Matrix<float>>(kc.a.data() + first * k, count, k), false, bm, false, 1.f, kc.ws, true);
    return c;
  };
  REQUIRE(inplace_gemm());
  const Matrix<float> whole = product(0, 100);
  int diffs = 0;
  for (Index first : {Index(0), Index(1), Index(37), Index(50), Index(99)})
    for (Index count : {Index(1), Index(7), Index(50)}) {
      if (first + count > 100) continue;
      diffs += int((product(first, count).array() != whole.middleRows(first, count).array()).count());
    }
  CHECK(diffs == 0);
  kc.check_switch(whole, [&] { return product(0, 100); });
}

// The same for the kernel of a batch times a weight's transpose (each element one dot product of
// two rows, its lanes summed by one tree): a row's bits do not depend on the batch it is in, nor a
// column's on the columns beside it.
TEST_CASE("gemm_nt_inplace: an element's bits do not depend on the batch or the columns beside it", "[ops][linalg][paths]") {
  KernelCase kc(34, true);
  const Index n = KernelCase::n, k = KernelCase::k;
  auto product = [&](Index first, Index count, Index col, Index cols) {
    Matrix<float> c(count, cols);
    Eigen::Map<Matrix<float>> cm(c.data(), count, cols);
    detail::gemm_acc(cm, Eigen::Map<const Matrix<float>>(kc.a.data() + first * k, count, k), false,
                     Eigen::Map<const Matrix<float>>(kc.b.data() + col * k, cols, k), true, 1.f, kc.ws, true);
    return c;
  };
  REQUIRE(inplace_gemm());
  REQUIRE(detail::gemm_nt_inplace_applies(100, n, k));
  const Matrix<float> whole = product(0, 100, 0, n);
  int diffs = 0;
  for (Index first : {Index(0), Index(1), Index(37), Index(50), Index(99)})
    for (Index count : {Index(1), Index(3), Index(4), Index(7), Index(50)}) {
      if (first + count > 100) continue;
      diffs += int((product(first, count, 0, n).array() != whole.middleRows(first, count).array()).count());
    }
  for (Index col : {Index(0), Index(1), Index(5), Index(397)})  // other column tiles: 1-column edges
    for (Index cols : {Index(1), Index(3)})
      diffs += int((product(0, 100, col, cols).array() != whole.middleCols(col, cols).array()).count());
  CHECK(diffs == 0);
  kc.check_switch(whole, [&] { return product(0, 100, 0, n); });
}

// With AVX2 a strip of a weight that more than one tile of 6 rows reads is first copied to a
// contiguous buffer (for weights whose rows are a multiple of 256 bytes apart, widths 256 and 512,
// the strips read in place thrash the caches): a row or six rows computed alone (read in place)
// have the bits of the whole product (read from the copy), for a batch times the weight and for a
// weight's gradient, and within the rounding bound.
TEST_CASE("in-place kernels: copied strips of power-of-two widths give the bits of strips read in place", "[ops][linalg][paths]") {
  Rng rng(38);
  detail::Workspace<float> ws;
  using CMap = Eigen::Map<const Matrix<float>>;
  for (Index n : {Index(256), Index(512), Index(520)}) {
    const Index k = 300, m = 100;
    const Matrix<float> a = uniform_matrix<float>(rng, m, k).array() - 0.5f, b = uniform_matrix<float>(rng, k, n).array() - 0.5f;
    auto nn = [&](Index first, Index rows) {
      Matrix<float> c(rows, n);
      Eigen::Map<Matrix<float>> cm(c.data(), rows, n);
      detail::gemm_acc(cm, CMap(a.data() + first * k, rows, k), false, CMap(b.data(), k, n), false, 1.f, ws, true);
      return c;
    };
    REQUIRE(inplace_gemm());
    const Matrix<float> whole = nn(0, m);
    int diffs = 0;
    for (Index first : {Index(0), Index(6), Index(61), Index(99)}) diffs += int((nn(first, 1).array() != whole.middleRows(first, 1).array()).count());
    diffs += int((nn(12, 6).array() != whole.middleRows(12, 6).array()).count());
    // the weight's gradient a^T g: columns of a (rows of the result) alone or six at a time
    const Matrix<float> g = uniform_matrix<float>(rng, m, n).array() - 0.5f;
    auto tn = [&](Index first, Index rows) {
      const Matrix<float> ac = a.middleCols(first, rows);
      Matrix<float> c(rows, n);
      Eigen::Map<Matrix<float>> cm(c.data(), rows, n);
      detail::gemm_acc(cm, CMap(ac.data(), m, rows), true, CMap(g.data(), m, n), false, 1.f, ws, true);
      return c;
    };
    const Matrix<float> grad = tn(0, k);
    for (Index first : {Index(0), Index(7), Index(299)}) diffs += int((tn(first, 1).array() != grad.middleRows(first, 1).array()).count());
    diffs += int((tn(30, 6).array() != grad.middleRows(30, 6).array()).count());
    CHECK(diffs == 0);
    const double u = std::numeric_limits<float>::epsilon() / 2;
    const Eigen::MatrixXd exact = a.cast<double>() * b.cast<double>(), mag = a.cast<double>().cwiseAbs() * b.cast<double>().cwiseAbs();
    CHECK(((whole.cast<double>() - exact).cwiseAbs().array() <= (k + 1) * u * mag.array()).all());
  }
}

// With AVX2 the broadcast kernel copies each strip of G before its tiles read it. A weight's
// gradient computed block by block (gemm_tn_sum_rows: streamed to an optimizer, or summed over
// threads' batches) has G's strips copied once for all the blocks, in the workspace: every block
// has the bits of the kernel copying them itself on one call for the whole product, at widths with
// and without a last partial strip, at depths of one pass and of two, for sums of terms; and
// packing grows no workspace that gemm_tn_sum_reserve sized.
TEST_CASE("gemm_tn_sum_rows: G's strips copied once for every block give the bits of the kernel copying them", "[ops][linalg][paths]") {
  Rng rng(39);
  using CMap = Eigen::Map<const Matrix<float>>;
  REQUIRE(inplace_gemm());
  int diffs = 0;
  for (Index n : {Index(16), Index(40), Index(256), Index(400), Index(520)}) {
    const Index m = 150, k0 = 50, k1 = 300;
    const Matrix<float> a0 = uniform_matrix<float>(rng, k0, m).array() - 0.5f, g0 = uniform_matrix<float>(rng, k0, n).array() - 0.5f;
    const Matrix<float> a1 = uniform_matrix<float>(rng, k1, m).array() - 0.5f, g1 = uniform_matrix<float>(rng, k1, n).array() - 0.5f;
    const Matrix<float> dense = uniform_matrix<float>(rng, m, n);
    // the reference: the kernel on the whole product, copying strips itself, term after term
    Matrix<float> ref(m, n);
    detail::gemm_tn_inplace(m, n, k0, a0.data(), m, g0.data(), n, ref.data(), n, 1.f, false);
    ref.array() += dense.array();
    detail::gemm_tn_inplace(m, n, k1, a1.data(), m, g1.data(), n, ref.data(), n, 0.5f, true);
    const detail::TnTerm<float> terms[3] = {{a0.data(), g0.data(), k0, 1.f, nullptr},
                                            {nullptr, nullptr, 0, 1.f, dense.data()},
                                            {a1.data(), g1.data(), k1, 0.5f, nullptr}};
    detail::Workspace<float> ws;
    const Index depths[3] = {k0, 0, k1};
    detail::gemm_tn_sum_reserve(depths, 3, m, n, ws);
    const float* reserved = ws.get(0);
    Matrix<float> c = Matrix<float>::Constant(m, n, std::numeric_limits<float>::quiet_NaN());
    const Index step = detail::gemm_tn_block_rows<float>(m, n);
    for (Index first = 0; first < m; first += 2 * step) {  // two blocks at a time, as a thread's share
      const Index last = std::min(m, first + 2 * step);
      REQUIRE(detail::gemm_tn_sum_rows<float>(terms, 3, m, n, first, last, ws, [&](Index row, Index count, float* block) {
        c.middleRows(row, count) = CMap(block, count, n);
      }));
    }
    INFO("n " << n);
    CHECK(ws.get(0) == reserved);
    diffs += int((c.array() != ref.array()).count());
    // and into C's storage (the stored-gradient path), one term
    Matrix<float> d(m, n), ref1(m, n);
    detail::gemm_tn_inplace(m, n, k1, a1.data(), m, g1.data(), n, ref1.data(), n, 0.5f, false);
    REQUIRE(detail::gemm_tn_sum_rows<float>(terms + 2, 1, m, n, 0, m, ws, [](Index, Index, float*) {}, d.data()));
    diffs += int((d.array() != ref1.array()).count());
    const double u = std::numeric_limits<float>::epsilon() / 2;
    const Eigen::MatrixXd exact = 0.5 * a1.cast<double>().transpose() * g1.cast<double>();
    const Eigen::MatrixXd mag = 0.5 * a1.cast<double>().cwiseAbs().transpose() * g1.cast<double>().cwiseAbs();
    CHECK(((d.cast<double>() - exact).cwiseAbs().array() <= (k1 + 2) * u * mag.array()).all());
  }
  CHECK(diffs == 0);
}

// The weight-gradient kernel (A^T G, each element one chain over the depth per pass of 256):
// rows of the gradient computed block by block for an optimizer (gemm_tn_rows), any row range
// of a sum over threads' batches (gemm_tn_sum_rows: what nn::DataParallel hands out), a single
// row or 16 columns, all have the bits of the whole product through gemm_acc; a sum of two batches'
// products has the bits of the two products added; switching the kernel off gives Eigen's.
TEST_CASE("gemm_tn_inplace: an element's bits do not depend on the rows, columns or blocks it is computed with", "[ops][linalg][paths]") {
  Rng rng(36);
  const Index m = 784, n = 400;
  detail::Workspace<float> ws, ws2;
  long switched = 0;  // elements whose bits the switch changed (at depth 100 Eigen's AVX2 kernel
                      // runs the same single chain per element; at 300 the passes differ)
  for (Index k : {Index(100), Index(300)}) {
    const Matrix<float> a = uniform_matrix<float>(rng, k, m).array() - 0.5f, g = uniform_matrix<float>(rng, k, n).array() - 0.5f;
    using CMap = Eigen::Map<const Matrix<float>>;
    auto product = [&](const float* ap, const float* gp, Index rows, Index cols, Index depth, Index lda, Index ldg) {
      Matrix<float> c(rows, cols);
      Eigen::Map<Matrix<float>> cm(c.data(), rows, cols);
      // maps of a column block: copy it to a contiguous matrix first
      Matrix<float> ab(depth, rows), gb(depth, cols);
      for (Index p = 0; p < depth; ++p) {
        for (Index i = 0; i < rows; ++i) ab(p, i) = ap[p * lda + i];
        for (Index j = 0; j < cols; ++j) gb(p, j) = gp[p * ldg + j];
      }
      detail::gemm_acc(cm, CMap(ab.data(), depth, rows), true, CMap(gb.data(), depth, cols), false, 1.f, ws, true);
      return c;
    };
    REQUIRE(inplace_gemm());
    REQUIRE(detail::gemm_tn_inplace_applies(m, n, k));
    const Matrix<float> whole = product(a.data(), g.data(), m, n, k, m, n);
    int diffs = 0;
    for (Index first : {Index(0), Index(1), Index(5), Index(6), Index(383), Index(783)})
      for (Index count : {Index(1), Index(4), Index(7)})
        if (first + count <= m) diffs += int((product(a.data() + first, g.data(), count, n, k, m, n).array() != whole.middleRows(first, count).array()).count());
    for (Index col : {Index(0), Index(17), Index(384)})  // 16 columns: the narrowest the kernel takes
      diffs += int((product(a.data(), g.data() + col, m, 16, k, m, n).array() != whole.middleCols(col, 16).array()).count());
    // block by block, as a streamed gradient
    Matrix<float> streamed = Matrix<float>::Constant(m, n, std::numeric_limits<float>::quiet_NaN());
    long emitted = 0;
    REQUIRE(detail::gemm_tn_rows<float>(CMap(a.data(), k, m), CMap(g.data(), k, n), 1.f, ws2, [&](Index r0, Index rows, float* block) {
      streamed.middleRows(r0, rows) = Eigen::Map<Matrix<float>>(block, rows, n);
      emitted += rows;
    }));
    CHECK(emitted == m);
    diffs += int((streamed.array() != whole.array()).count());
    // two halves of the batch as terms of one sum, any rows of it
    const Index h = k / 2;
    Matrix<float> c1 = product(a.data(), g.data(), m, n, h, m, n), c2 = product(a.data() + h * m, g.data() + h * n, m, n, k - h, m, n);
    const Matrix<float> added = c1 + c2;
    const detail::TnTerm<float> terms[2] = {{a.data(), g.data(), h, 1.f, nullptr}, {a.data() + h * m, g.data() + h * n, k - h, 1.f, nullptr}};
    Matrix<float> summed = Matrix<float>::Constant(m, n, std::numeric_limits<float>::quiet_NaN());
    for (Index first : {Index(0), Index(160), Index(161), Index(500)})
      REQUIRE(detail::gemm_tn_sum_rows(terms, 2, m, n, first, std::min(m, first + 160), ws2, [&](Index r0, Index rows, float* block) {
        summed.middleRows(r0, rows) = Eigen::Map<Matrix<float>>(block, rows, n);
      }));
    diffs += int((summed.topRows(321).array() != added.topRows(321).array()).count());
    diffs += int((summed.middleRows(500, 160).array() != added.middleRows(500, 160).array()).count());
    CHECK(diffs == 0);
    // Eigen's kernel: other last bits somewhere, within twice the rounding bound
    set_inplace_gemm(false);
    const Matrix<float> packed = product(a.data(), g.data(), m, n, k, m, n);
    set_inplace_gemm(true);
    switched += (packed.array() != whole.array()).count();
    const double u = std::numeric_limits<float>::epsilon() / 2;
    const Eigen::MatrixXd mag = a.cast<double>().cwiseAbs().transpose() * g.cast<double>().cwiseAbs();
    CHECK(((packed.cast<double>() - whole.cast<double>()).cwiseAbs().array() <= 2 * (k + 2) * u * mag.array()).all());
  }
  CHECK(switched > 0);
}

// Images-like operands: zero in whole runs of depth (a binarized image's background), some rows
// with values that are neither 0 nor 1, signed zeros, and one NaN and one infinity in columns that
// are otherwise zero (those steps must not be left out).
Matrix<float> sparse_operand(Rng& rng, Index rows, Index cols, bool by_column) {
  Matrix<float> x = uniform_matrix<float>(rng, rows, cols);
  for (Index i = 0; i < rows; ++i)
    for (Index j = 0; j < cols; ++j) {
      const Index d = by_column ? j : i;  // the depth index of element (i, j)
      const float u = x(i, j);
      const float density = d % 97 < 40 ? 0.f : (d % 97 < 70 ? 0.25f : 0.7f);
      x(i, j) = u < density ? ((i + j) % 5 == 0 ? 0.5f + u : 1.f) : ((i + j) % 3 == 0 ? -0.f : 0.f);
    }
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  (by_column ? x(1, 5) : x(5, 3)) = nan;     // depth 5 is otherwise all zero
  (by_column ? x(2, 20) : x(20, 11)) = inf;  // and depth 20
  return x;
}
// Each element of the in-place kernels' products is one chain of fused multiply-adds over the depth
// in order (and C += the pass's chain for depths beyond a pass): the same, one element at a time.
float fma_chain(const Matrix<float>& a, bool trans_a, const Matrix<float>& b, Index i, Index j, Index p0, Index p1) {
  float acc = 0.f;
  for (Index p = p0; p < p1; ++p) acc = std::fma(trans_a ? a(p, i) : a(i, p), b(p, j), acc);
  return acc;
}
Index mismatches(const Matrix<float>& got, const Matrix<float>& want) {
  Index bad = 0;
  for (Index i = 0; i < got.rows(); ++i)
    for (Index j = 0; j < got.cols(); ++j)
      bad += std::isnan(want(i, j)) ? !std::isnan(got(i, j)) : !(got(i, j) == want(i, j));  // == : the sign of zero aside
  return bad;
}

// Depth steps at which all of a tile's elements of A are zero are left out (`gemm_skip_plan`): on
// binarized images half the steps of the first layer's products. fma(0, b, s) = s for finite b, so
// every element keeps the bits of its whole chain (the sign of a zero aside); NaN and infinities
// in A are steps taken.
TEST_CASE("in-place kernels: depth steps whose elements of A are all zero are left out, every element keeps its chain's bits",
          "[ops][linalg][paths]") {
  Rng rng(38);
  detail::Workspace<float> ws;
  using CMap = Eigen::Map<const Matrix<float>>;
  REQUIRE(inplace_gemm());
  SECTION("a batch times a weight (the first layer's forward product)") {
    for (Index m : {Index(100), Index(7), Index(50)}) {
      const Index k = 784, n = 400;
      const Matrix<float> a = sparse_operand(rng, m, k, true), b = uniform_matrix<float>(rng, k, n).array() - 0.5f;
      const detail::SkipPlan plan = detail::gemm_skip_plan<false>(m, k, a.data(), k);
      REQUIRE(plan.steps != nullptr);
      Index taken = 0;
      for (Index t = 0; t < (m + 5) / 6; ++t) taken += plan.tile_depth(t, k);
      CHECK(taken < (m + 5) / 6 * k * 3 / 4);  // at least a quarter left out
      Matrix<float> want(m, n);
      for (Index i = 0; i < m; ++i)
        for (Index j = 0; j < n; ++j) want(i, j) = fma_chain(a, false, b, i, j, 0, k);
      Matrix<float> c(m, n);
      Eigen::Map<Matrix<float>> cm(c.data(), m, n);
      detail::gemm_acc(cm, CMap(a.data(), m, k), false, CMap(b.data(), k, n), false, 1.f, ws, true);
      CHECK(mismatches(c, want) == 0);
      CHECK(c.row(1).array().isNaN().all());  // the NaN's step was taken
      CHECK(c.row(2).array().isInf().count() + c.row(2).array().isNaN().count() == n);
    }
  }
  SECTION("a weight's gradient, whole and block by block (the first layer's)") {
    for (Index k : {Index(100), Index(300)}) {  // 300: two passes of depth
      const Index m = 784, n = 400;
      const Matrix<float> a = sparse_operand(rng, k, m, false), g = uniform_matrix<float>(rng, k, n).array() - 0.5f;
      const detail::SkipPlan plan = detail::gemm_skip_plan<true>(m, std::min(k, detail::gemm_tn_depth_block), a.data(), m);
      REQUIRE(plan.steps != nullptr);
      Matrix<float> want(m, n);
      for (Index i = 0; i < m; ++i)
        for (Index j = 0; j < n; ++j) {
          want(i, j) = fma_chain(a, true, g, i, j, 0, std::min(k, detail::gemm_tn_depth_block));
          if (k > detail::gemm_tn_depth_block)
            want(i, j) = std::fma(1.f, fma_chain(a, true, g, i, j, detail::gemm_tn_depth_block, k), want(i, j));
        }
      Matrix<float> c(m, n);
      Eigen::Map<Matrix<float>> cm(c.data(), m, n);
      detail::gemm_acc(cm, CMap(a.data(), k, m), true, CMap(g.data(), k, n), false, 1.f, ws, true);
      CHECK(mismatches(c, want) == 0);
      CHECK(c.row(3).array().isNaN().all());
      CHECK(c.row(11).array().isInf().count() + c.row(11).array().isNaN().count() == n);
      Matrix<float> streamed = Matrix<float>::Constant(m, n, 7.f);
      REQUIRE(detail::gemm_tn_rows<float>(CMap(a.data(), k, m), CMap(g.data(), k, n), 1.f, ws, [&](Index r0, Index rows, float* block) {
        streamed.middleRows(r0, rows) = Eigen::Map<Matrix<float>>(block, rows, n);
      }));
      CHECK(mismatches(streamed, want) == 0);
    }
  }
  SECTION("no plan where too few steps would be left out") {
    const Matrix<float> dense = uniform_matrix<float>(rng, 100, 784);
    CHECK(detail::gemm_skip_plan<false>(100, 784, dense.data(), 784).steps == nullptr);
    CHECK(detail::gemm_skip_plan<true>(784, 100, dense.data(), 784).steps == nullptr);
  }
}
#endif


TEST_CASE("bce_with_logits: float e^-|x| on every float in [-110, 0]", "[.sweep]") {
  const ExpSweep r = sweep_bce_exp(1);  // 1.1 billion floats, about half a minute
  CHECK(r.worst <= 1.02);  // measured 1.010
  CHECK(r.lane_diffs == 0);
}

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
