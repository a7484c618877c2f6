#pragma once
/// \file linalg.hpp  `matmul`, the fused layer `linear(x, W, b)`, `transpose`.

#include <string>

#include <reparam/detail/gemm.hpp>
#include <reparam/ops/arithmetic.hpp>

namespace reparam {
namespace detail {

inline void check_inner(OpName op, Index ar, Index ac, Index br, Index bc) {
  if (ac != br)
    throw_shape(op, "inner dimensions differ (" + shape_str(ar, ac) + " and " + shape_str(br, bc) + ")");
}

/// grad(operand k) += x^T g, the right operand's gradient of x W: handed to the operand's sink as
/// the factors x and g where it takes them (`GradientSink::factors`: nn::DataParallel computes
/// the product after the threads' sweeps, summed over threads block by block), else block by block while each block is in cache when the tape streams it (`stream_gradient`: an
/// optimizer updating the weight in the sweep), else computed into the gradient buffer block by
/// block (each block zeroed just before the kernel adds into it, where nothing flowed yet: no
/// zeroing pass over the buffer of its own).
template <class T>
void add_weight_gradient(Backward<T>& bw, std::size_t k, const CMap<T>& x, const CMap<T>& g) {
  const Index n = g.cols();
  if (bw.defer(k, x, g, T(1))) return;  // handed over as factors (nn::DataParallel)
  if (bw.streams(k) &&
      gemm_tn_rows(x, g, T(1), bw.workspace(), [&](Index first, Index rows, T* block) { bw.stream(k, first * n, rows * n, block); }))
    return;
  bool assign = false;
  MMap<T> gw = bw.target(k, true, assign);
  if (!gemm_tn_rows(x, g, T(1), bw.workspace(), [](Index, Index, T*) {}, gw.data(), !assign))
    gemm_acc(gw, x, true, g, false, T(1), bw.workspace(), assign);
}

}  // namespace detail

/// Matrix product (M x K)(K x N) -> M x N, through Eigen's GEMM with packing buffers from the tape.
template <class T>
BasicVar<T> matmul(const BasicVar<T>& a, const BasicVar<T>& b) {
  Operation<T> op("matmul", {a, b});
  detail::check_inner("matmul", op.rows(0), op.cols(0), op.rows(1), op.cols(1));
  return op.record(
      op.rows(0), op.cols(1),
      [&](detail::MMap<T> y) { detail::gemm_acc(y, op.input(0), false, op.input(1), false, T(1), op.workspace(), true); },
      // da += g b^T,  db += a^T g: the GEMM accumulates in place, or assigns (BLAS beta = 0) where
      // nothing flowed into the operand yet; no temporaries, no zeroing pass
      [](Backward<T>& bw) {
        const detail::CMap<T> g = bw.grad();
        detail::Workspace<T>& ws = bw.workspace();
        bool assign = false;
        if (bw.needs(0)) {
          detail::MMap<T> ga = bw.target(0, true, assign);
          detail::gemm_acc(ga, g, false, bw.input(1), true, T(1), ws, assign);
        }
        if (bw.needs(1)) detail::add_weight_gradient(bw, 1, bw.input(0), g);  // after da: it reads b
      });
}
template <class T, class D>
BasicVar<T> matmul(const BasicVar<T>& a, const Eigen::DenseBase<D>& m) {
  return matmul(a, detail::as_constant(a, m, "matmul"));
}
template <class T, class D>
BasicVar<T> matmul(const Eigen::DenseBase<D>& m, const BasicVar<T>& b) {
  return matmul(detail::as_constant(b, m, "matmul"), b);
}

namespace detail {
/// The layer x W + b, then relu where `relu`, as one node (`linear`, `linear_relu`).
template <class T>
BasicVar<T> linear_node(const char* name, const BasicVar<T>& x, const BasicVar<T>& w, const BasicVar<T>& b, bool relu) {
  Operation<T> op(name, {x, w, b});
  check_inner(name, op.rows(0), op.cols(0), op.rows(1), op.cols(1));
  if (op.rows(2) != 1 || op.cols(2) != op.cols(1))
    throw_shape(name, "bias must be 1x" + std::to_string(op.cols(1)) + " (got " + shape_str(op.rows(2), op.cols(2)) + ")");
  // with relu, room for the gradient through it, g where y > 0 (else 0), which the products read
  T* masked = relu && op.requires_grad() ? op.state(op.rows(0), op.cols(1)).data() : nullptr;
  return op.record(
      op.rows(0), op.cols(1),
      [&](MMap<T> y) { gemm_bias(y, op.input(0), op.input(1), op.input(2).data(), relu, op.workspace()); },
      // dx += g W^T,  dW += x^T g,  db += sum of g's rows (each assigned where nothing flowed yet)
      [masked](Backward<T>& bw) {
        Workspace<T>& ws = bw.workspace();
        auto products = [&](const CMap<T>& g) {
          bool assign = false;
          if (bw.needs(0)) {
            MMap<T> gx = bw.target(0, true, assign);
            gemm_acc(gx, g, false, bw.input(1), true, T(1), ws, assign);
          }
          if (bw.needs(1)) add_weight_gradient(bw, 1, bw.input(0), g);  // after dx: it reads W
          if (bw.needs(2)) {
            MMap<T> gb = bw.target(2, true, assign);
            Index i = 0;
            if (assign) {
              if (g.rows() == 0) gb.setZero(); else gb = g.row(i++);
            }
            for (; i < g.rows(); ++i) gb += g.row(i);  // contiguous rows: vectorizes
          }
        };
        if (masked == nullptr) {
          products(bw.grad());
          return;
        }
        const CMap<T> y = bw.value();
        MMap<T> gm(masked, y.rows(), y.cols());
        // relu's rule, where y > 0 exactly where x W + b > 0
        bw.with_grad([&](const auto& g) { gm.array() = where(IsPositive{}, y.array(), g, T(0)); });
        products(CMap<T>(masked, y.rows(), y.cols()));
      });
}
}  // namespace detail

/// The fused layer x W + b in one node: x (M x K), W (K x N), b (1 x N, added to every row).
template <class T>
BasicVar<T> linear(const BasicVar<T>& x, const BasicVar<T>& w, const BasicVar<T>& b) {
  return detail::linear_node("linear", x, w, b, false);
}
/// relu(x W + b) in one node, the same values and gradients as `relu(linear(x, W, b))`: where the
/// in-place kernel runs, the bias and the max are applied as each block of the product leaves the
/// registers (no passes over the result of their own). `nn::Mlp` takes it for relu layers.
template <class T>
BasicVar<T> linear_relu(const BasicVar<T>& x, const BasicVar<T>& w, const BasicVar<T>& b) {
  return detail::linear_node("linear_relu", x, w, b, true);
}
/// x W without a bias, as one node (the same as matmul).
template <class T>
BasicVar<T> linear(const BasicVar<T>& x, const BasicVar<T>& w) {
  return matmul(x, w);
}

/// The transpose (N x M).
template <class T>
BasicVar<T> transpose(const BasicVar<T>& a) {
  Operation<T> op("transpose", {a});
  return op.record(
      op.cols(0), op.rows(0), [&](auto y) { y = op.input(0).transpose(); },
      [](Backward<T>& bw) { bw.add(0, bw.grad().transpose()); });  // da += g^T
}

}  // namespace reparam
