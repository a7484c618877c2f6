// Large graphs: a random deep graph of mixed operations checked by central differences, and a
// chain of a million nodes through the iterative reverse sweep.
#include <cmath>

#include "support.hpp"

using namespace reparam;
using test::Gen;
using test::Mat;

namespace {

// Builds a random graph of `n` operations over the inputs. Each step picks one or two earlier
// nodes and an operation that keeps values in a tame range; shapes are 4x3, with 1x3 and 4x1
// reductions broadcast back.
Var random_graph(Tape&, const std::vector<Var>& in, int n, std::uint64_t seed) {
  Gen g(seed);
  std::vector<Var> pool(in.begin(), in.end());
  auto pick = [&]() { return pool[std::size_t(g.index(0, Index(pool.size()) - 1))]; };
  for (int k = 0; k < n; ++k) {
    const Var a = pick(), b = pick();
    Var y;
    switch (g.index(0, 13)) {
      case 0: y = a + b; break;
      case 1: y = a - b * 0.5; break;
      case 2: y = a * tanh(b); break;
      case 3: y = a / (2.0 + square(b)); break;
      case 4: y = tanh(a); break;
      case 5: y = sigmoid(a) - 0.5; break;
      case 6: y = softplus(a) - 0.7; break;
      case 7: y = a * sum_cols(b) * 0.25; break;           // 4x3 * 1x3
      case 8: y = a + sum_rows(b) * 0.3; break;            // 4x3 + 4x1
      case 9: y = softmax(a) * 2.0 - b * 0.1; break;
      case 10: y = log_softmax(a) * 0.2 + 0.5 * b; break;
      case 11: y = matmul(a, transpose(b)) * 0.1; y = matmul(y, b) * 0.3; break;  // 4x4 then 4x3
      case 12: y = exp(a * 0.3) - logsumexp(b) * 0.2; break;
      default: y = sqrt(square(a) + 1.0) - reshape(transpose(b), 4, 3) * 0.2; break;
    }
    // Keep magnitudes bounded so that finite differences stay accurate.
    y = tanh(y) * 1.5;
    pool.push_back(y);
  }
  Var total = sum(pool.back());
  for (std::size_t k = pool.size() - 20; k < pool.size(); ++k) total = total + mean(pool[k]);
  return total;
}

}  // namespace

TEST_CASE("a random deep graph of mixed operations matches central differences", "[graph][grad]") {
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    DYNAMIC_SECTION("seed " << seed) {
      Gen g(seed + 100);
      const std::vector<Mat> xs = {g.matrix(4, 3), g.matrix(4, 3), g.matrix(4, 3)};
      Tape probe;
      std::vector<Var> vs;
      for (const Mat& x : xs) vs.push_back(probe.variable(x));
      random_graph(probe, vs, 300, seed);
      CHECK(probe.size() > 600);  // hundreds of nodes
      test::check_gradients([&](Tape& t, const std::vector<Var>& v) { return random_graph(t, v, 300, seed); }, xs, 1e-5,
                            1e-7);
    }
  }
}

TEST_CASE("a chain of a million nodes runs through backward without recursion", "[graph]") {
  Tape tape;
  const Var x = tape.variable(1.0);
  Var y = x;
  const int n = 1000000;
  const double c = 1.0 + 1e-7;
  for (int i = 0; i < n; ++i) y = y * c;
  REQUIRE(tape.size() == std::size_t(n) + 1);
  tape.backward(y);
  const double want = std::pow(c, n);  // d(x c^n)/dx
  CHECK(test::close(x.grad()(0, 0), want, 1e-9));
  CHECK(test::close(y.item(), want, 1e-9));
}
