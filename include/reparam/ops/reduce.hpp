#pragma once
/// \file reduce.hpp  Reductions (`sum`, `mean`, `sum_rows`, `sum_cols`) and the row-wise
/// `softmax`, `log_softmax`, `logsumexp`.

#include <reparam/detail/math.hpp>
#include <reparam/ops/arithmetic.hpp>

namespace reparam {
namespace detail {

/// x + x == x holds for 0 and +-inf only: an infinity test that needs no std::isinf on T.
template <class T>
bool is_inf(const T& x) {
  return x != T(0) && x + x == x;
}

/// Row max used to shift exponentials; +-inf rows are shifted by 0 (as PyTorch does) so that a
/// row of -inf gives logsumexp -inf and not NaN.
template <class Row>
typename Row::Scalar row_shift(const Row& r) {
  using T = typename Row::Scalar;
  const T m = r.maxCoeff();
  return is_inf(m) ? T(0) : m;
}

template <class T>
void require_nonempty_rows(const Operation<T>& op) {
  if (op.cols(0) == 0)
    throw_shape(op.name(), "rows must not be empty (got " + shape_str(op.rows(0), op.cols(0)) + ")");
}

}  // namespace detail

/// Sum of all elements (1x1).
template <class T>
BasicVar<T> sum(const BasicVar<T>& a) {
  Operation<T> op("sum", {a});
  return op.record(
      1, 1, [&](auto y) { y(0, 0) = op.input(0).sum(); },
      // dx += g everywhere: one number, no pass over memory
      [](Backward<T>& bw) { bw.add_constant(0, bw.grad_constant()); });
}

/// Mean of all elements (1x1); a must not be empty.
template <class T>
BasicVar<T> mean(const BasicVar<T>& a) {
  Operation<T> op("mean", {a});
  const Index n = op.rows(0) * op.cols(0);
  if (n == 0) detail::throw_shape("mean", "input must not be empty (got " + detail::shape_str(op.rows(0), op.cols(0)) + ")");
  return op.record(
      1, 1, [&](auto y) { y(0, 0) = op.input(0).sum() / T(n); },
      [n](Backward<T>& bw) { bw.add_constant(0, bw.grad_constant() / T(n)); });  // dx += g / N
}

/// Sum of each row (Mx1).
template <class T>
BasicVar<T> sum_rows(const BasicVar<T>& a) {
  Operation<T> op("sum_rows", {a});
  return op.record(
      op.rows(0), 1, [&](auto y) { y.col(0) = op.input(0).rowwise().sum(); },
      [](Backward<T>& bw) { detail::add_expanded_grad(bw, 0); });  // dx += g repeated along each row
}

/// Sum of each column (1xN).
template <class T>
BasicVar<T> sum_cols(const BasicVar<T>& a) {
  Operation<T> op("sum_cols", {a});
  return op.record(
      1, op.cols(0),
      [&](auto y) {
        const detail::CMap<T> x = op.input(0);
        y.setZero();
        for (Index i = 0; i < x.rows(); ++i) y += x.row(i);  // contiguous rows: vectorizes
      },
      [](Backward<T>& bw) { detail::add_expanded_grad(bw, 0); });  // dx += g repeated down each column
}

/// Softmax over the columns of each row.
template <class T>
BasicVar<T> softmax(const BasicVar<T>& a) {
  Operation<T> op("softmax", {a});
  detail::require_nonempty_rows(op);
  return op.record(
      op.rows(0), op.cols(0),
      [&](auto y) {
        const detail::CMap<T> x = op.input(0);
        for (Index i = 0; i < x.rows(); ++i) {
          const T m = detail::row_shift(x.row(i));
          y.row(i).array() = detail::safe_exp(x.row(i).array() - m);
          y.row(i) /= detail::row_sum(y.row(i).data(), y.cols());
        }
      },
      // per row: dx += y * (g - <g, y>)
      [](Backward<T>& bw) {
        const detail::CMap<T> g = bw.grad(), y = bw.value();
        bool assign;
        detail::MMap<T> gx = bw.target(0, true, assign);
        for (Index i = 0; i < y.rows(); ++i) {
          const T dot = detail::row_dot(g.row(i).data(), y.row(i).data(), y.cols());
          const Index j = detail::row_argmax(y.row(i).data(), y.cols());
          const T before = assign ? T(0) : gx(i, j);
          if (assign)
            gx.row(i).array() = y.row(i).array() * (g.row(i).array() - dot);
          else
            gx.row(i).array() += y.row(i).array() * (g.row(i).array() - dot);
          // the dominant entry without the cancellation of g_j - dot (see detail::dominant_centered)
          if (y(i, j) > T(0.5)) gx(i, j) = before + y(i, j) * detail::dominant_centered(g.row(i).data(), y.row(i).data(), y.cols(), j);
        }
      });
}

namespace detail {

/// Rows shorter than a few packets: the per-row loops below would take every exponential one
/// lane at a time. The short-row paths take them all in one vectorized pass over the matrix (the
/// same functor on whole packets: the same bits as the lane calls) and keep the per-row sums in
/// the order of the per-row code, so they give the same results, only faster.
template <class T>
bool short_rows(Index K) {
  return lane_path<T> && K < 32;
}

/// log_softmax forward for short rows: y = x - m - log1p(sum_{k != j} e^{x_k - m}) per row, as
/// the per-row code computes it (rows with an infinity, shifted by 0, take log of the plain sum).
template <class T>
void log_softmax_short(const CMap<T>& x, MMap<T> y, Workspace<T>& ws) {
  using std::log;
  const Index R = x.rows(), K = x.cols();
  T* e = ws.get(static_cast<std::size_t>(R * K + 2 * R));  // e^y, one sum per row, each row's argmax
  T* s = e + R * K;
  T* arg = s + R;  // indices below 32: exact as T
  for (Index i = 0; i < R; ++i) {
    const T m = row_shift(x.row(i));
    for (Index k = 0; k < K; ++k) y(i, k) = x(i, k) - m;
  }
  MMap<T>(e, R, K).array() = safe_exp(y.array());
  for (Index i = 0; i < R; ++i) {
    const T* yi = y.data() + i * K;
    const T* ei = e + i * K;
    const Index j = row_argmax(yi, K);
    arg[i] = T(j);
    T a = T(0), b = T(0);  // sum_exp(y, j) + sum_exp(y + j + 1, K - j - 1): below and above j
    for (Index k = 0; k < j; ++k) a += ei[k];
    for (Index k = j + 1; k < K; ++k) b += ei[k];
    s[i] = a + b;
  }
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> sv(s, R);
  sv = sv.unaryExpr(Log1pFunctor<T>());
  for (Index i = 0; i < R; ++i) {
    T* yi = y.data() + i * K;
    const T lse = yi[Index(arg[i])] == T(0) ? s[i] : log(sum_exp(yi, K, T(0)));
    for (Index k = 0; k < K; ++k) yi[k] -= lse;
  }
}

/// log_softmax backward for short rows: gx = g - e^y sum(g), the dominant entry as
/// log_softmax_dominant, as the per-row code computes them.
template <class T>
void log_softmax_short_backward(const CMap<T>& g, const CMap<T>& y, MMap<T> gx, bool assign, Workspace<T>& ws) {
  const Index R = y.rows(), K = y.cols();
  T* e = ws.get(static_cast<std::size_t>(R * K + 2 * R));  // e^y, -expm1 of each row's largest y, its index
  T* q = e + R * K;
  T* arg = q + R;  // indices below 32: exact as T
  MMap<T>(e, R, K).array() = safe_exp(y.array());
  for (Index i = 0; i < R; ++i) {
    const Index j = row_argmax(y.data() + i * K, K);
    arg[i] = T(j);
    q[i] = y(i, j);
  }
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> qv(q, R);
  qv = -qv.unaryExpr(Expm1Functor<T>());
  for (Index i = 0; i < R; ++i) {
    const T* gi = g.data() + i * K;
    const T* ei = e + i * K;
    T* oi = gx.data() + i * K;
    const T s = row_sum(gi, K);
    const Index j = Index(arg[i]);
    const T before = assign ? T(0) : oi[j];
    if (assign)
      for (Index k = 0; k < K; ++k) oi[k] = gi[k] - ei[k] * s;
    else
      for (Index k = 0; k < K; ++k) oi[k] += gi[k] - ei[k] * s;
    T others = T(0);
    for (Index k = 0; k < K; ++k)
      if (k != j) others += gi[k];
    oi[j] = before + (q[i] * gi[j] - ei[j] * others);
  }
}

}  // namespace detail

/// log(softmax(a)) per row, computed as a - logsumexp(a) with the dominant entry exact (see
/// detail::log_sum_exp_shifted): finite wherever a is.
template <class T>
BasicVar<T> log_softmax(const BasicVar<T>& a) {
  Operation<T> op("log_softmax", {a});
  detail::require_nonempty_rows(op);
  return op.record(
      op.rows(0), op.cols(0),
      [&](auto y) {
        using std::log;
        const detail::CMap<T> x = op.input(0);
        if constexpr (detail::lane_path<T>)  // the short-row paths exist for float and double only
          if (detail::short_rows<T>(x.cols())) return detail::log_softmax_short(x, y, op.workspace());
        for (Index i = 0; i < x.rows(); ++i) {
          const T m = detail::row_shift(x.row(i));
          y.row(i).array() = x.row(i).array() - m;
          y.row(i).array() -= detail::log_sum_exp_shifted(y.row(i).data(), y.cols());
        }
      },
      // per row: dx += g - e^y * sum(g)
      [](Backward<T>& bw) {
        const detail::CMap<T> g = bw.grad(), y = bw.value();
        bool assign;
        detail::MMap<T> gx = bw.target(0, true, assign);
        if constexpr (detail::lane_path<T>)
          if (detail::short_rows<T>(y.cols())) return detail::log_softmax_short_backward(g, y, gx, assign, bw.workspace());
        for (Index i = 0; i < y.rows(); ++i) {
          const T s = detail::row_sum(g.row(i).data(), g.cols());
          const Index j = detail::row_argmax(y.row(i).data(), y.cols());
          const T before = assign ? T(0) : gx(i, j);
          if (assign)
            gx.row(i).array() = g.row(i).array() - detail::safe_exp(y.row(i).array()) * s;
          else
            gx.row(i).array() += g.row(i).array() - detail::safe_exp(y.row(i).array()) * s;
          gx(i, j) = before + detail::log_softmax_dominant(g.row(i).data(), y.row(i).data(), y.cols(), j);
        }
      });
}

/// log(sum(exp(a))) of each row (Mx1), shifted by the row max so it never overflows.
template <class T>
BasicVar<T> logsumexp(const BasicVar<T>& a) {
  Operation<T> op("logsumexp", {a});
  detail::require_nonempty_rows(op);
  return op.record(
      op.rows(0), 1,
      [&](auto y) {
        const detail::CMap<T> x = op.input(0);
        for (Index i = 0; i < x.rows(); ++i) {
          const T m = detail::row_shift(x.row(i));
          y(i, 0) = m + detail::log_sum_exp_shifted(x.row(i).data(), x.cols(), m);
        }
      },
      // dx_ij += g_i e^(x_ij - y_i)
      [](Backward<T>& bw) {
        const detail::CMap<T> g = bw.grad(), y = bw.value(), x = bw.input(0);
        bool assign;
        detail::MMap<T> gx = bw.target(0, true, assign);
        for (Index i = 0; i < x.rows(); ++i) {
          if (assign)
            gx.row(i).array() = g(i, 0) * detail::safe_exp(x.row(i).array() - y(i, 0));
          else
            gx.row(i).array() += g(i, 0) * detail::safe_exp(x.row(i).array() - y(i, 0));
        }
      });
}

}  // namespace reparam

namespace reparam {

/// Differentiable stand-in for argmax: sum_k k softmax(a)_k per row (R x 1).
template <class T>
BasicVar<T> soft_argmax(const BasicVar<T>& a) {
  Operation<T> op("soft_argmax", {a});
  detail::require_nonempty_rows(op);
  const Index R = op.rows(0), K = op.cols(0);
  T* p = op.state(static_cast<std::size_t>(R * K));  // the softmax, kept for the backward rule
  return op.record(
      R, 1,
      [&](auto y) {
        const detail::CMap<T> x = op.input(0);
        detail::MMap<T> P(p, R, K);
        for (Index i = 0; i < R; ++i) {
          const T m = detail::row_shift(x.row(i));
          P.row(i).array() = detail::safe_exp(x.row(i).array() - m);
          P.row(i) /= detail::row_sum(P.row(i).data(), K);
          T s = T(0);
          for (Index k = 0; k < K; ++k) s += T(k) * P(i, k);
          y(i, 0) = s;
        }
      },
      // dx_ik += g_i p_ik c_ik with c_ik = k - y_i = sum_m p_im (k - m), which cancels where it is
      // small: at the dominant k of a row with p_ik > 1/2 it is summed over the other m; in a row of
      // nearly equal logits (w = x - max) it is (k E - M + (K k - K (K - 1) / 2)) / Z with
      // E = sum_m expm1(w_m), M = sum_m m expm1(w_m), Z = sum_m e^(w_m), the integer part exact.
      [p](Backward<T>& bw) {
        const detail::CMap<T> g = bw.grad(), y = bw.value(), x = bw.input(0);
        detail::MMap<T> gx = bw.grad_buffer(0);
        const Index K = gx.cols();
        const bool exact_integers = double(K) * double(K) < std::ldexp(1.0, std::numeric_limits<detail::real_t<T>>::digits);
        for (Index i = 0; i < gx.rows(); ++i) {
          const T* pi = p + i * K;
          const Index jd = detail::row_argmax(pi, K);
          if (pi[jd] > T(0.5) || !exact_integers) {
            T cd = T(0);
            for (Index m = 0; m < K; ++m)
              if (m != jd) cd += pi[m] * T(jd - m);
            for (Index k = 0; k < K; ++k) gx(i, k) += g(i, 0) * pi[k] * (k == jd && pi[jd] > T(0.5) ? cd : T(k) - y(i, 0));
          } else {
            const T mx = detail::row_shift(x.row(i));
            T E = T(0), M = T(0), Z = T(0);
            for (Index m = 0; m < K; ++m) {
              const T e = detail::Expm1Functor<T>()(x(i, m) - mx);
              E += e;
              M += T(m) * e;
              Z += detail::safe_exp(Eigen::Array<T, 1, 1>(x(i, m) - mx))(0);
            }
            const T half = T(K) * T(K - 1) / T(2);
            for (Index k = 0; k < K; ++k) gx(i, k) += g(i, 0) * pi[k] * ((T(k) * E - M + (T(K) * T(k) - half)) / Z);
          }
        }
      });
}

/// soft_argmax(a / temperature): sharper as the temperature falls (temperature > 0 and finite).
template <class T>
BasicVar<T> soft_argmax(const BasicVar<T>& a, detail::same_t<T> temperature) {
  if constexpr (detail::checked_scalar<T>)
    if (!(temperature > T(0)) || detail::is_inf(temperature))
      detail::throw_domain("soft_argmax", "temperature must be > 0 and finite (got " + detail::scalar_str(temperature) + ")");
  return soft_argmax(a / temperature);
}

}  // namespace reparam
