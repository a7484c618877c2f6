#pragma once
/// \file distribution.hpp  What the distributions share: parameter and value checks (messages built
/// only when a check fails), the fused sample node "parameters + base noise", the matrix-argument
/// overloads, and `LocationScale`, the base of Normal, Gumbel, Logistic and Laplace.

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include <reparam/detail/special.hpp>
#include <reparam/ops.hpp>
#include <reparam/random.hpp>

namespace reparam {
namespace detail {

/// A Var holding the Eigen matrix m on the tape of `like` (a constant).
template <class T, class D>
BasicVar<T> on_tape(const BasicVar<T>& like, const Eigen::DenseBase<D>& m) {
  return like.tape().constant(m.derived().template cast<T>());
}

inline bool broadcasts(Index ar, Index ac, Index br, Index bc, Index& r, Index& c) {
  auto dim = [](Index x, Index y, Index& out) {
    out = x == 1 ? y : x;
    return x == y || x == 1 || y == 1;
  };
  return dim(ar, br, r) && dim(ac, bc, c);
}

/// "reparam: <op>: <a> and <b> do not broadcast (AxB and CxD)".
inline void broadcast_params(OpName op, const char* an, Index ar, Index ac, const char* bn, Index br, Index bc,
                             Index& r, Index& c) {
  if (!broadcasts(ar, ac, br, bc, r, c))
    throw_shape(op, std::string(an) + " and " + bn + " do not broadcast (" + shape_str(ar, ac) + " and " +
                        shape_str(br, bc) + ")");
}

template <class T>
bool finite(T v) {
  return v == v && !is_inf(v);
}

/// Whether every element of m is finite, in one vectorized pass (float and double: the sum of
/// x * 0 is 0 exactly when no x is infinite or NaN); false for other scalars, whose callers then
/// check element by element. The checks below take this pass first and look for the offending
/// element only when it fails: element by element, a finiteness check of the categorical VAE's
/// 2000 x 10 logits cost about 20 us a call, the pass 2 us.
template <class Derived>
bool all_finite_fast(const Eigen::DenseBase<Derived>& m) {
  using S = typename Derived::Scalar;
  if constexpr (std::is_floating_point<S>::value)
    return (m.derived() * S(0)).sum() == S(0);
  else
    return false;
}
/// DomainError ("<what><what2> (got x at row i, col j)") unless every element of m is finite.
template <class Derived>
void check_all_finite(OpName op, const char* what, const Eigen::DenseBase<Derived>& m, const char* what2 = "") {
  using S = typename Derived::Scalar;
  if (all_finite_fast(m)) return;
  check_elements(op, what, m, [](const S& x) { return finite(x); }, what2);
}

/// DomainError unless every element of parameter `what` is finite.
template <class T>
void check_finite_param(OpName op, const char* what, const BasicVar<T>& v) {
  check_var(v, op);
  if constexpr (detail::checked_scalar<T>) {
    if (!validation_enabled()) return;
    check_all_finite(op, what, v.value(), " must be finite");
  }
}
/// DomainError unless every element of parameter `what` is finite and > 0.
template <class T>
void check_positive_param(OpName op, const char* what, const BasicVar<T>& v) {
  check_var(v, op);
  if constexpr (detail::checked_scalar<T>) {
    if (!validation_enabled()) return;
    const auto m = v.value();
    if constexpr (std::is_floating_point<T>::value)
      if (all_finite_fast(m) && (m.size() == 0 || m.minCoeff() > T(0))) return;
    check_elements(op, what, m, [](T x) { return x > T(0) && finite(x); }, " must be > 0 and finite");
  }
}

/// The smallest temperature the relaxations accept: sqrt of the smallest normal number
/// (1.5e-154 in double, 1.1e-19 in float), so that 1 / temperature^2 stays finite.
template <class T>
T min_temperature() {
  using std::sqrt;
  return T(sqrt((std::numeric_limits<real_t<T>>::min)()));
}

/// DomainError unless every temperature is finite and >= min_temperature<T>().
template <class T>
void check_temperature_values(OpName op, const BasicVar<T>& tau) {
  check_var(tau, op);
  if constexpr (detail::checked_scalar<T>) {
    if (!validation_enabled()) return;
    const T lo = min_temperature<T>();
    const auto v = tau.value();
    for (Index i = 0; i < v.rows(); ++i)
      for (Index j = 0; j < v.cols(); ++j)
        if (!(v(i, j) >= lo && finite(v(i, j))))
          throw_domain(op, "temperature must be >= " + scalar_str(lo) + " and finite (got " + scalar_str(v(i, j)) +
                               " at row " + std::to_string(i) + ", col " + std::to_string(j) + ")");
  }
}

/// DomainError unless every element of a value passed to `op` satisfies ok.
template <class T, class Pred>
void check_value(OpName op, const char* what, const BasicVar<T>& v, Pred ok) {
  if constexpr (detail::checked_scalar<T>) {
    if (!validation_enabled()) return;
    check_elements(op, what, v.value(), ok);
  }
}

/// ShapeError unless the value x (an argument of op) broadcasts with the batch shape R x C.
template <class T>
void check_value_shape(OpName op, const BasicVar<T>& x, Index R, Index C) {
  Index r, c;
  broadcast_params(op, "value", x.rows(), x.cols(), "the batch shape", R, C, r, c);
}

/// Shape of a sample: (rows, cols) must contain the batch shape R x C by broadcasting.
inline void check_sample_shape(OpName op, Index rows, Index cols, Index R, Index C) {
  shape_size(op, rows, cols);
  Index r, c;
  broadcast_params(op, "sample shape", rows, cols, "batch shape", R, C, r, c);
  if (r != rows || c != cols)
    throw_shape(op, "sample shape does not contain the batch shape (" + shape_str(rows, cols) + " and " +
                        shape_str(R, C) + ")");
}

// ---- uniforms given by users ---------------------------------------------------------------------

template <class T>
T clamp_unit(T u) {
  return u < unit_lo<T>() ? unit_lo<T>() : (u > unit_hi<T>() ? unit_hi<T>() : u);
}

struct ClampUnitOp {
  static constexpr const char* name = "clamp_unit";
  template <class X, class C> static auto forward(const X& x, const C&) {
    using T = typename X::Scalar;
    return x.max(unit_lo<T>()).min(unit_hi<T>());
  }
  template <class G, class X, class Y, class C> static auto backward(const G& g, const X& x, const Y&, const C&) {
    using T = typename G::Scalar;
    return where(InRange<T>{unit_lo<T>(), unit_hi<T>()}, x, g, T(0));
  }
};

/// Uniforms given by users: NaN or values outside [0, 1] are errors; 0 and 1 move inside.
template <class T, class D>
void check_uniforms(OpName op, const Eigen::DenseBase<D>& u) {
  if constexpr (detail::checked_scalar<T>) {
    if (!validation_enabled()) return;
    if constexpr (std::is_floating_point<T>::value)  // vectorized passes first (see all_finite_fast)
      if (u.size() == 0 || (all_finite_fast(u) && u.minCoeff() >= T(0) && u.maxCoeff() <= T(1))) return;
    check_elements(op, "uniforms must lie in [0, 1]", u, [](T v) { return v >= T(0) && v <= T(1); });
  }
}

// ---- the fused sample node: y = Op(a, b, noise) with a, b broadcast to R x C ----------------------
// The noise (R x C) is the node's own state in the arena. Op has forward(A, B, E) and the partial
// derivatives da(G, A, B, E, Y), db(G, A, B, E, Y); the gradients are summed back over broadcast
// dimensions.

struct AffineNoiseOp {  // y = loc + scale * e
  template <class A, class B, class E> static auto forward(const A& a, const B& b, const E& e) { return a + b * e; }
  template <class G, class A, class B, class E, class Y> static auto da(const G& g, const A&, const B&, const E&, const Y&) { return g; }
  template <class G, class A, class B, class E, class Y> static auto db(const G& g, const A&, const B&, const E& e, const Y&) { return g * e; }
};

template <class Op, class T>
void noise_backward(Backward<T>& bw, const T* noise) {
  const CMap<T> e(noise, bw.rows(), bw.cols()), y = bw.value();
  broadcast_backward(
      bw,
      [&](const auto& G, const auto& A, const auto& B, Index i0, Index nb) {
        return Op::da(G, A, B, e.middleRows(i0, nb).array(), y.middleRows(i0, nb).array());
      },
      [&](const auto& G, const auto& A, const auto& B, Index i0, Index nb) {
        return Op::db(G, A, B, e.middleRows(i0, nb).array(), y.middleRows(i0, nb).array());
      });
}

/// Records y = Op(a, b, noise) of shape R x C; `fill(noise)` writes the R x C base noise.
template <class Op, class T, class Fill>
BasicVar<T> noise_node(const char* name, const BasicVar<T>& a, const BasicVar<T>& b, Index R, Index C, Fill&& fill) {
  Operation<T> op(name, {a, b});
  const Index n = shape_size(name, R, C);
  T* noise = op.state(static_cast<std::size_t>(n));
  const CMap<T> av = op.input(0), bv = op.input(1);
  return op.record(
      R, C,
      [&](MMap<T> y) {
        fill(noise);
        const CMap<T> e(noise, R, C);
        const Index nb = block_rows(av, bv, R, C);
        for (Index i0 = 0; i0 < R; i0 += nb)
          with_block(av, i0, nb, R, C, [&](const auto& A) {
            with_block(bv, i0, nb, R, C, [&](const auto& B) {
              y.middleRows(i0, nb).array() = Op::forward(A, B, e.middleRows(i0, nb).array());
            });
          });
      },
      [noise](Backward<T>& bw) { noise_backward<Op>(bw, noise); });
}

/// out = Op(a, b, out) in place, a and b broadcast to out's shape (samples without gradient).
template <class Op, class T>
void apply_noise_inplace(const CMap<T>& a, const CMap<T>& b, Matrix<T>& out) {
  const Index R = out.rows(), C = out.cols();
  const Index nb = block_rows(a, b, R, C);
  for (Index i0 = 0; i0 < R; i0 += nb)
    with_block(a, i0, nb, R, C, [&](const auto& A) {
      with_block(b, i0, nb, R, C, [&](const auto& B) {
        out.middleRows(i0, nb).array() = Op::forward(A, B, out.middleRows(i0, nb).array());
      });
    });
}

}  // namespace detail

/// The forms every distribution offers beside its `Var` members: values given as Eigen matrices
/// (put on the tape as constants) and `prob = exp(log_prob)`. D has `anchor()` (a Var of its tape)
/// and brings these in with `using`.
template <class D, class T>
class ValueOverloads {
 public:
  template <class X>
  BasicVar<T> log_prob(const Eigen::DenseBase<X>& x) const {
    return self().log_prob(detail::on_tape(self().anchor(), x));
  }
  /// exp(log_prob(x)).
  template <class X>
  BasicVar<T> prob(const X& x) const {
    return exp(self().log_prob(x));
  }
  /// A sample without gradient of the batch shape, in a new matrix (`sample(g, out)`, which every
  /// distribution defines, fills a caller's matrix without allocating).
  template <class G>
  Matrix<T> sample(G& g) const {
    Matrix<T> out(self().rows(), self().cols());
    self().sample(g, out);
    return out;
  }
  /// A sample without gradient of shape rows x cols containing the batch shape (e.g. n rows of a
  /// 1 x C batch), for the elementwise families, whose `sample(g, out)` keeps out's shape.
  template <class G>
  Matrix<T> sample(G& g, Index rows, Index cols) const {
    static_assert(D::samples_any_shape, "this distribution samples its batch shape only: use sample(g)");
    detail::check_sample_shape({D::name, "sample"}, rows, cols, self().rows(), self().cols());
    Matrix<T> out(rows, cols);
    self().sample(g, out);
    return out;
  }

 protected:
  const D& self() const { return static_cast<const D&>(*this); }
};

/// The same for distributions with a cdf and a quantile function.
template <class D, class T>
class CdfOverloads : public ValueOverloads<D, T> {
 public:
  template <class X>
  BasicVar<T> cdf(const Eigen::DenseBase<X>& x) const {
    return this->self().cdf(detail::on_tape(this->self().anchor(), x));
  }
  template <class X>
  BasicVar<T> icdf(const Eigen::DenseBase<X>& p) const {
    return this->self().icdf(detail::on_tape(this->self().anchor(), p));
  }
};

/// The base of location-scale families with pathwise samples (Normal, Gumbel, Logistic, Laplace):
/// parameters, checks, shapes, sampling and the checked members. A family D supplies:
///  - `name`; `uniform_noise` (false: the base noise is N(0, 1); true: U(0, 1), mapped in place to
///    the standard variate by `D::transform(e, n)`), and `noise_var(u)` (the same map on a Var);
///  - the formulas, on values already checked: `log_prob_impl(x)`, `cdf_impl(x)`, `icdf_impl(p)`,
///    `entropy_impl()`, `mean_impl()`, `stddev_impl()` (Vars of any shape broadcasting to the batch).
template <class T, class D>
class LocationScale : public CdfOverloads<D, T> {
  friend class ValueOverloads<D, T>;
  friend class CdfOverloads<D, T>;

 public:
  using Scalar = T;
  using Var = BasicVar<T>;
  using CdfOverloads<D, T>::log_prob;
  using CdfOverloads<D, T>::cdf;
  using CdfOverloads<D, T>::icdf;
  using CdfOverloads<D, T>::sample;
  static constexpr bool samples_any_shape = true;

  const Var& loc() const noexcept { return loc_; }
  const Var& scale() const noexcept { return scale_; }
  /// The batch shape: loc and scale broadcast.
  Index rows() const noexcept { return R_; }
  Index cols() const noexcept { return C_; }

  /// A pathwise sample of the batch shape: loc + scale * noise, differentiable in loc and scale.
  template <class G>
  Var rsample(G& g) const {
    return rsample(g, R_, C_);
  }
  /// A pathwise sample of shape rows x cols (which must contain the batch shape, e.g. n rows of a
  /// 1 x N batch).
  template <class G>
  Var rsample(G& g, Index rows, Index cols) const {
    detail::check_sample_shape({D::name, "rsample"}, rows, cols, R_, C_);
    return detail::noise_node<detail::AffineNoiseOp>(D::name, loc_, scale_, rows, cols,
                                                     [&](T* e) { draw(g, e, static_cast<std::size_t>(rows * cols)); });
  }
  /// The same map with the base noise given (see the class for what it is); the sample has the
  /// noise's shape.
  template <class N>
  Var reparameterize(const Eigen::DenseBase<N>& noise) const {
    check_noise_shape(noise.rows(), noise.cols());
    check_base_noise(noise.derived());
    return detail::noise_node<detail::AffineNoiseOp>(D::name, loc_, scale_, noise.rows(), noise.cols(), [&](T* e) {
      detail::MMap<T> out(e, noise.rows(), noise.cols());
      from_base(noise.derived().template cast<T>(), out);
    });
  }
  /// With the base noise as a Var: differentiable in the noise too.
  Var reparameterize(const Var& noise) const {
    detail::check_pair(loc_, noise, {D::name, "reparameterize"});
    check_noise_shape(noise.rows(), noise.cols());
    check_base_noise(noise.value());
    return loc_ + scale_ * D::noise_var(noise);
  }
  /// A sample without gradient into `out`, whose shape (rows x cols, containing the batch shape)
  /// is kept: no allocation.
  template <class G>
  void sample(G& g, Matrix<T>& out) const {
    detail::check_sample_shape({D::name, "sample"}, out.rows(), out.cols(), R_, C_);
    draw(g, out.data(), static_cast<std::size_t>(out.size()));
    detail::apply_noise_inplace<detail::AffineNoiseOp>(loc_.value(), scale_.value(), out);
  }

  /// Elementwise log density at x (x broadcasts with the batch shape); differentiable in x, loc
  /// and scale.
  Var log_prob(const Var& x) const {
    check_x({D::name, "log_prob"}, x);
    detail::check_value({D::name, "log_prob"}, "value must be finite", x, [](T v) { return detail::finite(v); });
    return self().log_prob_impl(x);
  }
  /// P(X <= x), elementwise.
  Var cdf(const Var& x) const {
    check_x({D::name, "cdf"}, x);
    detail::check_value({D::name, "cdf"}, "value must not be NaN", x, [](T v) { return v == v; });
    return self().cdf_impl(x);
  }
  /// The quantile function: the x with cdf(x) = p, for p in [0, 1] (+-inf at the ends).
  Var icdf(const Var& p) const {
    check_x({D::name, "icdf"}, p);
    detail::check_value({D::name, "icdf"}, "probability must lie in [0, 1]", p, [](T v) { return v >= T(0) && v <= T(1); });
    return self().icdf_impl(p);
  }
  /// Differential entropy, of the batch shape.
  Var entropy() const { return broadcast_to(self().entropy_impl(), R_, C_); }
  Var mean() const { return broadcast_to(self().mean_impl(), R_, C_); }
  Var stddev() const { return broadcast_to(self().stddev_impl(), R_, C_); }
  Var variance() const { return square(stddev()); }

 protected:
  LocationScale(const Var& loc, const Var& scale) : loc_(loc), scale_(scale) {
    detail::check_pair(loc, scale, D::name);
    detail::broadcast_params(D::name, "loc", loc.rows(), loc.cols(), "scale", scale.rows(), scale.cols(), R_, C_);
    detail::check_finite_param(D::name, "loc", loc);
    detail::check_positive_param(D::name, "scale", scale);
  }
  /// A plain-number scale becomes a constant of loc's tape (GraphError first if loc is empty).
  static Var scale_on_tape(const Var& loc, T scale) {
    detail::check_var(loc, D::name);
    return loc.tape().constant(scale);
  }

  const D& self() const { return static_cast<const D&>(*this); }
  const Var& anchor() const { return loc_; }

  void check_x(detail::OpName op, const Var& x) const {
    detail::check_pair(loc_, x, op);
    detail::check_value_shape(op, x, R_, C_);
  }

  // The base noise: from a generator, checked when given, and mapped from a given matrix.
  template <class G>
  static void draw(G& g, T* e, std::size_t n) {
    if constexpr (D::uniform_noise) {
      detail::fill_uniform(g, e, n);
      D::transform(e, n);
    } else {
      detail::fill_normal(g, e, n);
    }
  }
  template <class N>
  static void check_base_noise(const N& noise) {
    if constexpr (D::uniform_noise) {
      detail::check_uniforms<T>({D::name, "reparameterize"}, noise);
    } else if constexpr (detail::checked_scalar<T>) {
      if (validation_enabled())
        detail::check_all_finite({D::name, "reparameterize"}, "noise must be finite", noise);
    }
  }
  template <class N, class Out>
  static void from_base(const N& noise, Out& out) {
    if constexpr (D::uniform_noise) {
      const auto clamped = noise.unaryExpr([](T v) { return detail::clamp_unit(v); });
      out = clamped;
      D::transform(out.data(), static_cast<std::size_t>(out.size()));
      // A NaN uniform gets here only with validation switched off (clamp_unit keeps it, and moves
      // +-inf inside), and the float transforms' log, made for the generator's uniforms, would
      // map it to a finite wrong number: subtracting c - c for the clamped c (+0 for every c but
      // NaN, so no bit changes) keeps it NaN.
      if (!validation_enabled()) out.array() -= clamped.array() - clamped.array();
    } else {
      out = noise;
    }
  }

  void check_noise_shape(Index r, Index c) const {
    Index rr, cc;
    detail::broadcast_params({D::name, "reparameterize"}, "noise", r, c, "batch shape", R_, C_, rr, cc);
    if (rr != r || cc != c)
      detail::throw_shape({D::name, "reparameterize"}, "noise does not contain the batch shape (" +
                                                           detail::shape_str(r, c) + " and " + detail::shape_str(R_, C_) + ")");
  }

  Var loc_, scale_;
  Index R_ = 0, C_ = 0;
};

}  // namespace reparam
