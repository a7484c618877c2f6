#pragma once
/// \file loss.hpp  `bce_with_logits`.

#include <algorithm>
#include <type_traits>

#include <reparam/detail/math.hpp>
#include <reparam/ops/arithmetic.hpp>

namespace reparam {
namespace detail {

/// log(1 + e) for e in [0, 1] (the softplus tail log1p(e^-|x|)). float: 2 atanh(s) with
/// s = e / (2 + e) in [0, 1/3], by its series 2 s (1 + s^2/3 + ... + s^14/15) (truncated below
/// 2e-9 relative, under 0.03 ulp: the error is that of s, about an ulp), a third of the cost of a
/// log kernel and no frexp. 2s is taken as 2e / (2 + e), the same bits as doubling s but one
/// rounding where e is subnormal (then the result is e). Other types: the general log1p.
template <class T, class Packet>
EIGEN_STRONG_INLINE Packet log1p_unit(const Packet& e) {
  namespace in = Eigen::internal;
  if constexpr (std::is_same<T, float>::value) {
    const Packet s2 = in::pdiv(in::padd(e, e), in::padd(e, in::pset1<Packet>(2.0f)));
    const Packet z = in::pmul(in::pmul(s2, s2), in::pset1<Packet>(0.25f));  // s^2, exactly as s * s
    Packet p = in::pset1<Packet>(1.0f / 15);
    p = in::pmadd(p, z, in::pset1<Packet>(1.0f / 13));
    p = in::pmadd(p, z, in::pset1<Packet>(1.0f / 11));
    p = in::pmadd(p, z, in::pset1<Packet>(1.0f / 9));
    p = in::pmadd(p, z, in::pset1<Packet>(1.0f / 7));
    p = in::pmadd(p, z, in::pset1<Packet>(1.0f / 5));
    p = in::pmadd(p, z, in::pset1<Packet>(1.0f / 3));
    return in::pmadd(in::pmul(s2, z), p, s2);  // 2s + 2s z P(z)
  } else {
    return Log1pFunctor<T>().packetOp(e);
  }
}

/// e^-|x| for float: Cody-Waite reduction -|x| = k ln2 + r (|r| <= ln2 / 2, k rounded by adding
/// 1.5 2^23, which leaves k in the low bits), Cephes' degree-5 polynomial for e^r, then 2^k in
/// two exact power-of-two factors read off those bits: 2^max(k, -125) added to the exponent
/// field, and 2^(k - max(k, -125)) (>= 2^-25) as a multiplication, whose one rounding takes the
/// result through the subnormals to 0 as the true value goes (arguments below -104 are -104:
/// e^-104 rounds to 0 already). Within 1.01 ulps for every float: every argument in [-110, 0]
/// is checked against double libm, subnormal results included (tests/test_kernels.cpp, its
/// hidden [.sweep] test), and below -110 the result is 0, as the rounding of the true value is.
/// No compare or select: half the instructions of Eigen's pexp with the library's
/// subnormal-safe wrapper. NaN propagates (max keeps its
/// first operand's NaN, and NaN times the scale is NaN). Other types: the library's exp.
template <class T, class Packet>
EIGEN_STRONG_INLINE Packet bce_exp(const Packet& x) {
  namespace in = Eigen::internal;
  const Packet a = in::pnegate(in::pabs(x));
  if constexpr (std::is_same<T, float>::value) {
    using PacketI = typename in::unpacket_traits<Packet>::integer_packet;
    constexpr float magic = 12582912.0f;  // 1.5 2^23
    const Packet h = in::pmax(a, in::pset1<Packet>(-104.0f));
    const Packet kf = in::pmadd(h, in::pset1<Packet>(1.44269504088896341f), in::pset1<Packet>(magic));
    const Packet k = in::psub(kf, in::pset1<Packet>(magic));
    Packet r = in::pmadd(k, in::pset1<Packet>(-0.693359375f), h);  // ln 2 = C1 - C2, k C1 exact
    r = in::pmadd(k, in::pset1<Packet>(2.12194440e-4f), r);
    Packet p = in::pset1<Packet>(1.9875691500e-4f);
    p = in::pmadd(p, r, in::pset1<Packet>(1.3981999507e-3f));
    p = in::pmadd(p, r, in::pset1<Packet>(8.3334519073e-3f));
    p = in::pmadd(p, r, in::pset1<Packet>(4.1665795894e-2f));
    p = in::pmadd(p, r, in::pset1<Packet>(1.6666665459e-1f));
    p = in::pmadd(p, r, in::pset1<Packet>(5.0000001201e-1f));
    p = in::padd(in::pmadd(p, in::pmul(r, r), r), in::pset1<Packet>(1.0f));  // e^r in [0.7, 1.42]
    const Packet kf1 = in::pmax(kf, in::pset1<Packet>(magic - 125.0f));
    const Packet kf2 = in::padd(in::psub(kf, kf1), in::pset1<Packet>(magic + 127.0f));  // bits: k - k1 + 127
    const Packet big = in::preinterpret<Packet>(
        in::padd(in::preinterpret<PacketI>(p), in::plogical_shift_left<23>(in::preinterpret<PacketI>(kf1))));
    return in::pmul(big, in::preinterpret<Packet>(in::plogical_shift_left<23>(in::preinterpret<PacketI>(kf2))));
  } else {
    return SafeExpFunctor<T>().packetOp(a);
  }
}
/// The loss and the gradient factor of one packet of logits x and targets t, from e = e^-|x|:
///   loss = max(x, 0) - x t + log1p(e)                     finite for any x
///   grad = (1 - t) s(x) - t s(-x)  (= s(x) - t)           exact for t = 0 or 1 at any x
/// with s(|x|) = 1 / (1 + e) and s(-|x|) = e / (1 + e) (1 - s(20) would cancel).
template <class T, class Packet>
EIGEN_STRONG_INLINE Packet bce_loss(const Packet& x, const Packet& t, const Packet& e) {
  namespace in = Eigen::internal;
  return in::padd(in::psub(in::pmax(x, in::pzero(x)), in::pmul(x, t)), log1p_unit<T>(e));
}
template <class T, class Packet>
EIGEN_STRONG_INLINE Packet bce_grad(const Packet& x, const Packet& t, const Packet& e) {
  namespace in = Eigen::internal;
  const Packet one = in::pset1<Packet>(T(1));
  const Packet d = in::padd(one, e);
  const Packet big = in::pdiv(one, d), small = in::pdiv(e, d);
  const Packet neg = in::pcmp_lt(x, in::pzero(x));
  const Packet s_pos = in::pselect(neg, small, big), s_neg = in::pselect(neg, big, small);
  return in::psub(in::pmul(in::psub(one, t), s_pos), in::pmul(t, s_neg));
}

/// Elementwise loss; the scalar call runs the packet code on one lane (same bits at every shape).
template <class T>
struct BceLossFunctor {
  T operator()(const T& x, const T& t) const { return on_one_lane(*this, x, t); }
  template <class Packet>
  Packet packetOp(const Packet& x, const Packet& t) const {
    return bce_loss<T>(x, t, bce_exp<T>(x));
  }
};
/// Elementwise gradient factor, likewise.
template <class T>
struct BceGradFunctor {
  T operator()(const T& x, const T& t) const {
    if constexpr (lane_path<T>) {
      return on_one_lane(*this, x, t);
    } else {
      using std::abs;
      using std::exp;
      const T e = exp(-abs(x)), big = T(1) / (T(1) + e), small = e / (T(1) + e);
      return x < T(0) ? (T(1) - t) * small - t * big : (T(1) - t) * big - t * small;
    }
  }
  template <class Packet>
  Packet packetOp(const Packet& x, const Packet& t) const {
    return bce_grad<T>(x, t, bce_exp<T>(x));
  }
};

struct BceWithLogitsOp {
  static constexpr const char* name = "bce_with_logits";
  // -[t log s(x) + (1-t) log(1 - s(x))] = max(x, 0) - x t + log1p(e^-|x|): finite for any x
  template <class X, class Z> static auto forward(const X& x, const Z& t) {
    using T = typename X::Scalar;
    if constexpr (lane_path<T>)
      return x.binaryExpr(t, BceLossFunctor<T>());
    else
      return x.max(T(0)) - x * t + safe_log1p(safe_exp(-x.abs()));
  }
  // s(x) - t, written (1 - t) s(x) - t s(-x): exact for t = 0 or 1 at any x
  template <class G, class X, class Z, class Y> static auto da(const G& g, const X& x, const Z& t, const Y&) {
    using T = typename G::Scalar;
    return g * x.binaryExpr(t, BceGradFunctor<T>());
  }
  template <class G, class X, class Z, class Y> static auto db(const G& g, const X& x, const Z&, const Y&) { return -g * x; }  // -x
};

/// Logits and targets of one shape (the usual case, a decoder's output against its data): one
/// pass computes the loss and, when the logits need a gradient, keeps the factor s(x) - t for
/// the backward rule (the exponential is taken once, not again in the sweep). The same packet
/// code as the broadcasting path, so both give the same bits.
template <class T>
BasicVar<T> bce_same_shape(Operation<T>& op) {
  const CMap<T> x = op.input(0), t = op.input(1);
  const Index n = x.size();
  T* keep = op.needs(0) ? op.state(static_cast<std::size_t>(n)) : nullptr;
  return op.record(
      x.rows(), x.cols(),
      [&](MMap<T> y) {
        namespace in = Eigen::internal;
        using P = typename in::packet_traits<T>::type;
        constexpr Index L = in::packet_traits<T>::size;
        const T *xs = x.data(), *ts = t.data();
        T* ys = y.data();
        // In blocks of 256: the exponentials first, then the loss and the factor from them. One
        // pass per packet made a chain of about 50 dependent operations (the exponential, the
        // division and series of the log1p), more than the core keeps in flight; two shorter
        // passes take 22% less time (a float loop on this machine: 10.5 -> 8.2 ns per packet
        // of 8). The same operations on each element, so the same bits.
        constexpr Index block = 256;
        alignas(64) T eb[block];
        Index i = 0;
        for (; i + L <= n; i += block) {
          const Index m = std::min(block, (n - i) / L * L);
          for (Index j = 0; j < m; j += L) in::pstoreu(eb + j, bce_exp<T>(in::ploadu<P>(xs + i + j)));
          for (Index j = 0; j < m; j += L) {
            const P xp = in::ploadu<P>(xs + i + j), tp = in::ploadu<P>(ts + i + j), e = in::ploadu<P>(eb + j);
            in::pstoreu(ys + i + j, bce_loss<T>(xp, tp, e));
            if (keep) in::pstoreu(keep + i + j, bce_grad<T>(xp, tp, e));
          }
          if (m < block) {
            i += m;
            break;
          }
        }
        for (; i < n; ++i) {  // the functors' scalar calls: the same packet code on one lane
          ys[i] = BceLossFunctor<T>()(xs[i], ts[i]);
          if (keep) keep[i] = BceGradFunctor<T>()(xs[i], ts[i]);
        }
      },
      // dx += g (s(x) - t) from the kept factor;  dt += -g x
      [keep](Backward<T>& bw) {
        const CMap<T> xv = bw.input(0);
        bw.with_grad([&](const auto& g) {
          if (keep) bw.add(0, g * CMap<T>(keep, xv.rows(), xv.cols()).array());
          if (bw.needs(1)) bw.add(1, -g * xv.array());
        });
      });
}

}  // namespace detail
}  // namespace reparam

namespace Eigen {
namespace internal {
template <class T>
struct functor_traits<reparam::detail::BceGradFunctor<T>> {
  enum { Cost = functor_traits<scalar_exp_op<T>>::Cost + 16, PacketAccess = packet_traits<T>::HasExp && packet_traits<T>::HasDiv };
};
template <class T>
struct functor_traits<reparam::detail::BceLossFunctor<T>> {
  enum { Cost = functor_traits<scalar_exp_op<T>>::Cost + 24, PacketAccess = packet_traits<T>::HasExp && packet_traits<T>::HasDiv };
};
}  // namespace internal
}  // namespace Eigen

namespace reparam {

/// Elementwise binary cross-entropy of `targets` under Bernoulli(sigmoid(logits)), with
/// broadcasting; exact and finite for any logit. Differentiable in both arguments.
template <class T> BasicVar<T> bce_with_logits(const BasicVar<T>& logits, const BasicVar<T>& targets) {
  if constexpr (detail::lane_path<T>) {
    Operation<T> op(detail::BceWithLogitsOp::name, {logits, targets});  // checks the Vars; records nothing yet
    if (op.rows(0) == op.rows(1) && op.cols(0) == op.cols(1) && op.rows(0) * op.cols(0) > 1) return detail::bce_same_shape(op);
  }
  return detail::binary<detail::BceWithLogitsOp>(logits, targets);
}
template <class T, class D> BasicVar<T> bce_with_logits(const BasicVar<T>& logits, const Eigen::DenseBase<D>& targets) {
  return bce_with_logits(logits, detail::as_constant(logits, targets, "bce_with_logits"));
}

}  // namespace reparam
