#pragma once
/// \file random.hpp  Random numbers: the generator `Rng` (random/generator.hpp), uniforms and the
/// noise transforms (random/noise.hpp), standard normals (random/ziggurat.hpp), and the helpers
/// below.
///
///     reparam::Rng rng(42);                   // seeded; same draws on every platform
///     reparam::Rng worker = rng.split();      // an independent stream for another thread
///     double u = reparam::uniform<double>(rng);
///
/// Every function taking a generator accepts `Rng` or any `std::uniform_random_bit_generator`
/// (e.g. `std::mt19937_64`); the draws then come from that generator's words, with the same
/// algorithms (no `std::*_distribution` anywhere, so no implementation-defined results).

#include <cstddef>

#include <reparam/errors.hpp>
#include <reparam/matrix.hpp>
#include <reparam/random/generator.hpp>
#include <reparam/random/noise.hpp>
#include <reparam/random/ziggurat.hpp>

namespace reparam {

/// One uniform in the open interval (0, 1): (m + 1/2) 2^-52 for double, (m + 1/2) 2^-23 for
/// float, so the extremes are 2^-53 and 1 - 2^-53 (float: 2^-24, 1 - 2^-24).
template <class T = double, class G>
T uniform(G& g) {
  T u;
  detail::fill_uniform(g, &u, 1);
  return u;
}

/// One standard normal draw.
template <class T = double, class G>
T normal(G& g) {
  T x;
  detail::fill_normal(g, &x, 1);
  return x;
}

/// A rows x cols matrix of uniforms in (0, 1). ShapeError for negative or overflowing sizes.
template <class T = double, class G>
Matrix<T> uniform_matrix(G& g, Index rows, Index cols) {
  detail::shape_size("uniform_matrix", rows, cols);
  Matrix<T> m(rows, cols);
  detail::fill_uniform(g, m.data(), static_cast<std::size_t>(m.size()));
  return m;
}

/// A rows x cols matrix of standard normals. ShapeError for negative or overflowing sizes.
template <class T = double, class G>
Matrix<T> normal_matrix(G& g, Index rows, Index cols) {
  detail::shape_size("normal_matrix", rows, cols);
  Matrix<T> m(rows, cols);
  detail::fill_normal(g, m.data(), static_cast<std::size_t>(m.size()));
  return m;
}

/// Fills an existing matrix with uniforms in (0, 1) (no allocation).
template <class T, class G>
void fill_uniform(G& g, Matrix<T>& m) {
  detail::fill_uniform(g, m.data(), static_cast<std::size_t>(m.size()));
}
/// Fills an existing matrix with standard normals (no allocation).
template <class T, class G>
void fill_normal(G& g, Matrix<T>& m) {
  detail::fill_normal(g, m.data(), static_cast<std::size_t>(m.size()));
}

}  // namespace reparam
