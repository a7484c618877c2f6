#pragma once
/// \file adam_math.hpp  The arithmetic of one Adam update of one element or one packet
/// (`optim::Adam`'s passes: `optim::detail::adam_update`), with its fused multiply-adds written
/// out, so that the bits depend on neither the compiler nor the code it is inlined into.

#include <cmath>
#include <type_traits>

#include <Eigen/Core>

#include <reparam/detail/math.hpp>

namespace reparam {
namespace detail {

/// One step's constants of Adam's update (torch.optim.Adam's `_single_tensor_adam`):
///   g += wd p;  m = b1 m + c1 g;  v = b2 v + c2 g^2;  p -= step_size m / (sqrt(v) inv_bc2_sqrt + eps),
/// with c1 = 1 - b1, c2 = 1 - b2, step_size = lr / (1 - b1^t), inv_bc2_sqrt = 1 / sqrt(1 - b2^t).
template <class T>
struct AdamStep {
  T b1 = T(0.9), c1 = T(0.1), b2 = T(0.999), c2 = T(0.001), eps = T(1e-8), wd = T(0);
  T step_size = T(0), inv_bc2_sqrt = T(1);
};

/// a b + c in one rounding where the build has fused multiply-adds (EIGEN_VECTORIZE_FMA), else
/// in two; the same in the packet lanes and the scalar tails. Written out, not left to the
/// compiler: GCC contracts a product and a sum into one instruction (-ffp-contract=fast, its
/// default) where it sees fit, which differed between two copies of the same update inlined in
/// different code (the last bit of some elements' moments).
template <class P>
EIGEN_STRONG_INLINE P adam_madd(const P& a, const P& b, const P& c) {
  if constexpr (std::is_floating_point<P>::value) {  // an element (the scalar tails)
#ifdef EIGEN_VECTORIZE_FMA
    return std::fma(a, b, c);
#else
    const volatile P ab = a * b;  // no contraction: the two roundings of Eigen's pmadd here
    return ab + c;
#endif
  } else {
    return Eigen::internal::pmadd(a, b, c);
  }
}

/// The update of one packet (an Eigen packet of T, or T itself for the scalar tails): from the
/// value p, the gradient g (weight decay added here, and g updated to the sum) and the moments
/// m, v (updated), returns the new value:
///   g = wd p + g;  m = c1 g + (b1 m);  v = c2 (g g) + (b2 v);  den = sqrt(v) inv_bc2_sqrt + eps;
///   p - (step_size m) / den,
/// each "x y + z" one `adam_madd`, the square root and the division correctly rounded. The same
/// operations in the same order for every lane, so any split of the elements into packets and
/// tails, and any code the update is inlined into, gives the same bits.
template <class P, class T>
EIGEN_STRONG_INLINE P adam_packet(const AdamStep<T>& s, const P& p, P& g, P& m, P& v) {
  namespace ei = Eigen::internal;
  if (s.wd != T(0)) g = adam_madd(ei::pset1<P>(s.wd), p, g);
  m = adam_madd(ei::pset1<P>(s.c1), g, ei::pmul(ei::pset1<P>(s.b1), m));
  v = adam_madd(ei::pset1<P>(s.c2), ei::pmul(g, g), ei::pmul(ei::pset1<P>(s.b2), v));
  const P den = adam_madd(packet_sqrt(v), ei::pset1<P>(s.inv_bc2_sqrt), ei::pset1<P>(s.eps));
  return ei::psub(p, ei::pdiv(ei::pmul(ei::pset1<P>(s.step_size), m), den));
}

/// The same for one element (the scalar tails).
template <class T>
inline T adam_element(const AdamStep<T>& s, T p, T& g, T& m, T& v) {
  using std::sqrt;
  if (s.wd != T(0)) g = adam_madd(s.wd, p, g);
  m = adam_madd(s.c1, g, s.b1 * m);
  v = adam_madd(s.c2, g * g, s.b2 * v);
  const T den = adam_madd(T(sqrt(v)), s.inv_bc2_sqrt, s.eps);
  return p - s.step_size * m / den;
}

}  // namespace detail
}  // namespace reparam
