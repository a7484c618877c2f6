#pragma once
/// \file common.hpp  What the distributions share: parameter checks, `broadcast_to`, the fused
/// "location + scale * noise" sample node, and the temperature schedule.

#include <cmath>
#include <string>

#include <reparam/ops.hpp>
#include <reparam/random.hpp>

namespace reparam {
namespace detail {

// ---- broadcast_to: y = a repeated to R x C; da += g summed back -------------------------------

template <class T>
void broadcast_to_backward(BasicTape<T>& t, const Node<T>& n) {
  const Index R = n.rows, C = n.cols;
  bool assign;
  MMap<T> ga = target(t, n.in[0], R, C, assign);
  const CMap<T> src = t.value(n.in[0]);
  const Index nb = block_rows(src, R, C);
  if (n.grad_const) {
    const T g0 = n.grad[0];
    for (Index i0 = 0; i0 < R; i0 += nb) sink(t, n.in[0], ga, assign, i0, nb, R, C, RowArray<T>::Constant(nb, C, g0));
  } else {
    const CMap<T> g = t.grad_in(n);
    for (Index i0 = 0; i0 < R; i0 += nb) sink(t, n.in[0], ga, assign, i0, nb, R, C, g.middleRows(i0, nb).array());
  }
}

/// A Var holding the Eigen matrix m on the tape of `like` (a constant).
template <class T, class D>
BasicVar<T> on_tape(const BasicVar<T>& like, const Eigen::DenseBase<D>& m) {
  return like.tape().constant(m.derived().template cast<T>());
}

/// "reparam: <op>: <a> and <b> do not broadcast (AxB and CxD)".
inline void broadcast_params(const char* op, const char* an, Index ar, Index ac, const char* bn, Index br, Index bc,
                             Index& r, Index& c) {
  try {
    broadcast_shape(op, ar, ac, br, bc, r, c);
  } catch (const ShapeError&) {
    throw_shape(op, std::string(an) + " and " + bn + " do not broadcast (" + shape_str(ar, ac) + " and " +
                        shape_str(br, bc) + ")");
  }
}

template <class T>
bool finite(T v) {
  return v == v && !is_inf(v);
}

/// DomainError unless every element of parameter `what` is finite.
template <class T>
void check_finite_param(const char* op, const char* what, const BasicVar<T>& v) {
  check_var(v, op);
  if constexpr (std::is_floating_point<T>::value) {
    if (!validation_enabled()) return;
    check_elements(op, (std::string(what) + " must be finite").c_str(), v.value(), [](T x) { return finite(x); });
  }
}
/// DomainError unless every element of parameter `what` is finite and > 0.
template <class T>
void check_positive_param(const char* op, const char* what, const BasicVar<T>& v) {
  check_var(v, op);
  if constexpr (std::is_floating_point<T>::value) {
    if (!validation_enabled()) return;
    check_elements(op, (std::string(what) + " must be > 0 and finite").c_str(), v.value(),
                   [](T x) { return x > T(0) && finite(x); });
  }
}
/// DomainError unless every element of a value passed to `op` satisfies ok.
template <class T, class Pred>
void check_value(const char* op, const char* what, const BasicVar<T>& v, Pred ok) {
  if constexpr (std::is_floating_point<T>::value) {
    if (!validation_enabled()) return;
    check_elements(op, what, v.value(), ok);
  }
}

/// ShapeError unless the value x (an argument of op) broadcasts with the batch shape R x C.
template <class T>
void check_value_shape(const char* op, const BasicVar<T>& x, Index R, Index C) {
  Index r, c;
  broadcast_params(op, "value", x.rows(), x.cols(), "the batch shape", R, C, r, c);
}

/// Shape of a sample: (rows, cols) must contain the batch shape R x C by broadcasting.
inline void check_sample_shape(const char* op, Index rows, Index cols, Index R, Index C) {
  Index r, c;
  if (rows < 0 || cols < 0)
    throw_shape(op, "sample shape must not be negative (got " + shape_str(rows, cols) + ")");
  broadcast_params(op, "sample shape", rows, cols, "batch shape", R, C, r, c);
  if (r != rows || c != cols)
    throw_shape(op, "sample shape " + shape_str(rows, cols) + " does not contain the batch shape " + shape_str(R, C));
}

// ---- clamp of user-given uniforms into the generators' range -----------------------------------

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
    return (x >= unit_lo<T>() && x <= unit_hi<T>()).select(g, T(0));
  }
};

/// Uniforms given by users: NaN or values outside [0, 1] are errors; 0 and 1 move inside.
template <class T, class D>
void check_uniforms(const char* op, const Eigen::DenseBase<D>& u) {
  if constexpr (std::is_floating_point<T>::value) {
    if (!validation_enabled()) return;
    check_elements(op, "uniforms must lie in [0, 1]", u, [](T v) { return v >= T(0) && v <= T(1); });
  }
}

// ---- the fused sample node y = loc + scale * noise ---------------------------------------------
// The noise (R x C) lives in the node's extra storage; backward: dloc += g, dscale += g * noise,
// each summed back over broadcast dimensions.

template <class T>
void affine_noise_backward(BasicTape<T>& t, const Node<T>& n) {
  const Index R = n.rows, C = n.cols;
  if (R * C == 0) return;
  const CMap<T> noise(BasicTape<T>::aux(n), R, C);
  const bool dl = t.needs_grad(n.in[0]), ds = t.needs_grad(n.in[1]);
  const CMap<T> loc = t.value(n.in[0]);
  const CMap<T> scale = t.value(n.in[1]);
  bool assign_l = false, assign_s = false;
  MMap<T> gl = dl ? target(t, n.in[0], R, C, assign_l) : MMap<T>(nullptr, 0, 0);
  const bool gconst = n.grad_const;
  if (dl) {  // dloc += g
    const Index nb = block_rows(loc, R, C);
    if (gconst) {
      for (Index i0 = 0; i0 < R; i0 += nb) sink(t, n.in[0], gl, assign_l, i0, nb, R, C, RowArray<T>::Constant(nb, C, n.grad[0]));
    } else {
      const CMap<T> g = t.grad_in(n);
      for (Index i0 = 0; i0 < R; i0 += nb) sink(t, n.in[0], gl, assign_l, i0, nb, R, C, g.middleRows(i0, nb).array());
    }
  }
  if (ds) {  // dscale += g * noise
    MMap<T> gs = target(t, n.in[1], R, C, assign_s);
    const Index nb = block_rows(scale, R, C);
    if (gconst) {
      const T g0 = n.grad[0];
      for (Index i0 = 0; i0 < R; i0 += nb) sink(t, n.in[1], gs, assign_s, i0, nb, R, C, noise.middleRows(i0, nb).array() * g0);
    } else {
      const CMap<T> g = t.grad_in(n);
      for (Index i0 = 0; i0 < R; i0 += nb)
        sink(t, n.in[1], gs, assign_s, i0, nb, R, C, g.middleRows(i0, nb).array() * noise.middleRows(i0, nb).array());
    }
  }
}

/// Records y = loc + scale * noise of shape R x C; `fill(noise_ptr)` writes the R x C noise.
template <class T, class Fill>
BasicVar<T> affine_noise(const BasicVar<T>& loc, const BasicVar<T>& scale, Index R, Index C, Fill&& fill) {
  BasicTape<T>& t = loc.tape();
  const bool rg = loc.requires_grad() || scale.requires_grad();
  const std::size_t n = static_cast<std::size_t>(R * C);
  const BasicVar<T> y = t.push(R, C, &affine_noise_backward<T>, loc.index(), scale.index(), T(0), rg, n);
  const Node<T>& node = t.node(y.index());
  T* noise = BasicTape<T>::aux(node);
  if (n == 0) return y;
  fill(noise);
  const CMap<T> l = t.value(loc.index());
  const CMap<T> s = t.value(scale.index());
  const CMap<T> e(noise, R, C);
  MMap<T> out = t.value_mut(y.index());
  const Index nb = block_rows(l, s, R, C);
  for (Index i0 = 0; i0 < R; i0 += nb)
    with_block(l, i0, nb, R, C, [&](const auto& L) {
      with_block(s, i0, nb, R, C, [&](const auto& S) { out.middleRows(i0, nb).array() = L + S * e.middleRows(i0, nb).array(); });
    });
  return y;
}

/// The forms every distribution offers beside its `Var` members: values given as Eigen matrices
/// (put on the tape as constants) and `prob = exp(log_prob)`. D has `anchor()` (a Var of its tape)
/// and brings these in with `using`.
template <class D, class T>
class ValueOverloads {
 public:
  template <class X>
  BasicVar<T> log_prob(const Eigen::DenseBase<X>& x) const {
    return self().log_prob(on_tape(self().anchor(), x));
  }
  /// exp(log_prob(x)).
  template <class X>
  BasicVar<T> prob(const X& x) const {
    return exp(self().log_prob(x));
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
    return this->self().cdf(on_tape(this->self().anchor(), x));
  }
  template <class X>
  BasicVar<T> icdf(const Eigen::DenseBase<X>& p) const {
    return this->self().icdf(on_tape(this->self().anchor(), p));
  }
};

/// m (a 1x1, row, column or full matrix) repeated to R x C, as a plain matrix.
template <class T, class D>
Matrix<T> expand(const Eigen::MatrixBase<D>& m, Index R, Index C) {
  if (m.rows() == R && m.cols() == C) return m;
  Matrix<T> out(R, C);
  for (Index i = 0; i < R; ++i)
    for (Index j = 0; j < C; ++j) out(i, j) = m(m.rows() == 1 ? 0 : i, m.cols() == 1 ? 0 : j);
  return out;
}

}  // namespace detail

/// a repeated to rows x cols by broadcasting (a is 1x1, 1xcols, rowsx1 or rows x cols); the
/// gradient is summed back to a's shape.
template <class T>
BasicVar<T> broadcast_to(const BasicVar<T>& a, Index rows, Index cols) {
  detail::check_var(a, "broadcast_to");
  Index r, c;
  detail::broadcast_shape("broadcast_to", a.rows(), a.cols(), rows, cols, r, c);
  if (r != rows || c != cols)
    detail::throw_shape("broadcast_to", "cannot broadcast " + detail::shape_str(a.rows(), a.cols()) + " to " +
                                            detail::shape_str(rows, cols));
  BasicTape<T>& t = a.tape();
  if (a.rows() == rows && a.cols() == cols) return a;
  const BasicVar<T> y = t.push(rows, cols, &detail::broadcast_to_backward<T>, a.index(), a.index(), T(0), a.requires_grad());
  t.value_mut(y.index()) = detail::expand<T>(a.value(), rows, cols);
  return y;
}

/// Temperature annealing as Jang et al. (2017) use it: tau = max(tau_min, tau0 * exp(-rate * step)).
///     reparam::TemperatureSchedule sched{1.0, 3e-5, 0.5};   double tau = sched(step);
template <class T = double>
struct TemperatureSchedule {
  T tau0 = T(1);
  T rate = T(3e-5);
  T tau_min = T(0.5);
  /// Optional: update only every `every` steps (Jang et al. update every 1000 steps).
  long long every = 1;

  T operator()(long long step) const {
    using std::exp;
    const long long s = every > 1 ? (step / every) * every : step;
    const T tau = tau0 * exp(-rate * T(s));
    return tau < tau_min ? tau_min : tau;
  }
};

/// The same schedule as a function: max(tau_min, tau0 * exp(-rate * step)).
template <class T>
T anneal_temperature(T tau0, T rate, long long step, T tau_min) {
  return TemperatureSchedule<T>{tau0, rate, tau_min, 1}(step);
}

}  // namespace reparam
