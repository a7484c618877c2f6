// A seeded fuzzer of the public API, bounded in time (it also runs under ASan/UBSan in CI):
//  1. random graphs over random shapes (empty ones included) of every kind of operation and
//     distribution member, checked against central differences;
//  2. random misuse: operands of random shapes (mismatched, empty, huge, negative) given to every
//     shape-checked entry point must either work or throw ShapeError/DomainError/GraphError with a
//     "reparam: " message, never crash or return garbage.
// REPARAM_FUZZ_GRAPHS=N runs N graphs instead of the default (for a longer local run);
// REPARAM_FUZZ_FIRST=K starts at the K-th graph and REPARAM_FUZZ_STEPS=S builds S steps (to
// shrink a failing graph).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "support.hpp"

using namespace reparam;
using test::Gen;
using test::Mat;

namespace {

int graphs_to_run(int fallback) {
  if (const char* s = std::getenv("REPARAM_FUZZ_GRAPHS")) return std::max(1, std::atoi(s));
  return fallback;
}

// A random graph over the inputs. Each step picks an earlier node and an operation; operations
// that need a second operand look for one of a fitting shape (or make one from the first), so
// every shape, empty ones included, reaches every operation. Values are squashed by tanh after
// each step so that central differences stay accurate; domains are respected by construction
// (log of 1.5 + tanh, scales through softplus + 0.1).
struct GraphBuilder {
  Tape& t;
  Gen g;
  std::vector<Var> pool;
  int kinds_seen[64] = {};

  GraphBuilder(Tape& tape, const std::vector<Var>& in, std::uint64_t seed) : t(tape), g(seed), pool(in.begin(), in.end()) {}

  Var pick() { return pool[std::size_t(g.index(0, Index(pool.size()) - 1))]; }

  // An operand that broadcasts against a: same shape, a row, a column or a 1x1 from the pool, or
  // a reduction of a itself.
  Var partner(const Var& a) {
    std::vector<Var> fits;
    for (const Var& v : pool) {
      const bool rows_ok = v.rows() == a.rows() || v.rows() == 1;
      const bool cols_ok = v.cols() == a.cols() || v.cols() == 1;
      if (rows_ok && cols_ok && !(v.rows() == 1 && a.rows() == 0) && !(v.cols() == 1 && a.cols() == 0)) fits.push_back(v);
    }
    if (!fits.empty() && g.index(0, 3) > 0) return fits[std::size_t(g.index(0, Index(fits.size()) - 1))];
    switch (g.index(0, 2)) {
      case 0: return a.rows() > 0 ? sum_cols(a) * 0.5 : a;       // 1xC
      case 1: return a.cols() > 0 ? sum_rows(a) * 0.5 : a;       // Rx1
      default: return tanh(a * 0.7);
    }
  }

  Mat uniforms(Index r, Index c) { return g.matrix(r, c, 0.02, 0.98); }

  Var step() {
    const Var a = pick();
    const Index R = a.rows(), C = a.cols();
    const int kind = int(g.index(0, 44));
    ++kinds_seen[kind];
    if (std::getenv("REPARAM_FUZZ_TRACE")) std::printf("step kind %d on %ldx%ld\n", kind, long(R), long(C));
    switch (kind) {
      case 0: return a + partner(a);
      case 1: return a - partner(a) * 0.5;
      case 2: return a * partner(a);
      case 3: return a / (2.0 + square(partner(a)));
      case 4: return -a;
      case 5: return exp(a * 0.5) - 1.0;
      case 6: return log(1.5 + tanh(a));
      case 7: return log1p(0.5 * tanh(a));
      case 8: return expm1(a * 0.3);
      case 9: return sqrt(1.2 + tanh(a));
      case 10: return pow(1.3 + tanh(a), 1.7);
      case 11: return pow(1.3 + tanh(a), 0.5 + sigmoid(partner(a)));
      case 12: return abs(a + 0.31);
      case 13: return relu(a - 0.17);
      case 14: return sigmoid(a) - 0.5;
      case 15: return log_sigmoid(a) + 0.7;
      case 16: return softplus(a) - 0.7;
      case 17: return clamp(a, -0.6, 0.45);
      case 18: return bce_with_logits(a, sigmoid(partner(a)));
      case 19: return R > 0 && C > 0 ? softmax(a) : a;
      case 20: return R > 0 && C > 0 ? log_softmax(a) * 0.3 : a;
      case 21: return C > 0 ? logsumexp(a) * 0.3 + partner(a) * 0.0 + a : a;
      case 22: return C > 0 ? a + soft_argmax(a) * 0.2 : a;
      case 23: return transpose(a);
      case 24: return reshape(a, C, R);
      case 25: {  // a row block (a view)
        const Index r0 = g.index(0, R), n = g.index(0, R - r0);
        return slice_rows(a, r0, n);
      }
      case 26: {
        const Index c0 = g.index(0, C), n = g.index(0, C - c0);
        return slice_cols(a, c0, n);
      }
      case 27: {
        std::vector<Var> same;
        for (const Var& v : pool)
          if (v.cols() == C) same.push_back(v);
        same.push_back(a);
        return concat_rows({a, same[std::size_t(g.index(0, Index(same.size()) - 1))], tanh(a)});
      }
      case 28: {
        std::vector<Var> same;
        for (const Var& v : pool)
          if (v.rows() == R) same.push_back(v);
        same.push_back(a);
        return concat_cols({same[std::size_t(g.index(0, Index(same.size()) - 1))], a});
      }
      case 29: return matmul(a, transpose(a)) * 0.3;  // RxR
      case 30: {
        const Var w = t.variable(g.matrix(C, 2, -0.5, 0.5));
        const Var b = t.constant(g.matrix(1, 2));
        return linear(a, w, b);
      }
      case 31: return broadcast_to(sum_rows(a) * 0.3, R, C + 1);
      // straight_through(soft, hard): the value of hard, the gradient of soft; consistent when both are 2a
      case 32: return straight_through(a * 2.0, stop_gradient(a) * 2.0);
      case 33: return Normal<double>(a, softplus(partner(a)) + 0.3).log_prob(tanh(a)) * 0.2;
      case 34: return Normal<double>(a, softplus(partner(a)) + 0.3).cdf(tanh(a) + 0.1);
      case 35: return Gumbel<double>(a, softplus(partner(a)) + 0.3).reparameterize(uniforms(R, C)) * 0.3;
      case 36: return Logistic<double>(a, softplus(partner(a)) + 0.3).log_prob(a * 0.5 + 0.2) * 0.3;
      case 37: return Laplace<double>(a, softplus(partner(a)) + 0.3).icdf(sigmoid(a) * 0.8 + 0.1) * 0.3;
      case 38: return R > 0 && C > 0 ? Concrete<double>(a, 0.7).reparameterize(uniforms(R, C)) : a;
      case 39: return R > 0 && C > 0 ? ExpConcrete<double>(a, 1.3).log_prob(log_softmax(tanh(a) * 2.0)) * 0.1 + a * 0.0 : a;
      case 40: return R > 0 && C > 0 ? Categorical<double>(a).entropy() + a * 0.0 : a;
      case 41: return RelaxedBernoulli<double>(a, 0.8).log_prob(sigmoid(tanh(a))) * 0.1;
      case 42: return kl_divergence(Normal<double>(a, softplus(a) + 0.2), Normal<double>(partner(a), 1.1)) * 0.2;
      case 43: return Bernoulli<double>(a).entropy();
      default: return R > 0 && C > 0 ? kl_divergence(Categorical<double>(a), Categorical<double>(tanh(a))) + a * 0.0 : a;
    }
  }

  Var build(int n) {
    for (int k = 0; k < n; ++k) pool.push_back(tanh(step()) * 1.5);
    Var total = t.constant(Mat::Zero(1, 1));
    for (std::size_t k = pool.size() - std::min<std::size_t>(pool.size(), 8); k < pool.size(); ++k)
      total = total + test::weighted_sum(t, pool[k], k);
    return total;
  }
};

int steps() {
  if (const char* s = std::getenv("REPARAM_FUZZ_STEPS")) return std::max(1, std::atoi(s));
  return 24;
}

Index small_dim(Gen& g) { return g.index(0, 9) == 0 ? 0 : g.index(1, 4); }  // empty one time in ten

}  // namespace

TEST_CASE("fuzz: random graphs over random shapes match central differences", "[fuzz][grad]") {
  const int n_graphs = graphs_to_run(120);
  const int first = std::getenv("REPARAM_FUZZ_FIRST") ? std::atoi(std::getenv("REPARAM_FUZZ_FIRST")) : 0;
  int kinds[64] = {};
  for (int s = first; s < first + n_graphs; ++s) {
    const std::uint64_t seed = 7000 + std::uint64_t(s);
    Gen g(seed);
    std::vector<Mat> xs;
    for (int k = 0; k < 3; ++k) xs.push_back(g.matrix(small_dim(g), small_dim(g)));
    INFO("seed " << seed << ", inputs " << xs[0].rows() << "x" << xs[0].cols() << ", " << xs[1].rows() << "x" << xs[1].cols()
                 << ", " << xs[2].rows() << "x" << xs[2].cols());
    {
      Tape probe;
      std::vector<Var> vs;
      for (const Mat& x : xs) vs.push_back(probe.variable(x));
      GraphBuilder b(probe, vs, seed);
      const Var loss = b.build(steps());
      REQUIRE(std::isfinite(loss.item()));
      for (int k = 0; k < 64; ++k) kinds[k] += b.kinds_seen[k];
    }
    test::check_gradients([&](Tape& t, const std::vector<Var>& v) { return GraphBuilder(t, v, seed).build(steps()); }, xs, 2e-5, 2e-7);
  }
  // every kind of step was drawn, many times
  for (int k = 0; k <= 44; ++k) {
    INFO("operation kind " << k);
    CHECK(kinds[k] >= (n_graphs >= 100 ? 20 : 1));
  }
}

TEST_CASE("fuzz: random misuse throws a reparam error or works, never crashes", "[fuzz][adversarial]") {
  Gen g(4242);
  // Shapes: small ones, or a huge dimension beside another huge one (the size overflows or passes
  // the 2^58-element limit), beside 0 (a valid empty shape) or beside -1. Never a huge dimension
  // beside a small one: that is a valid request for gigabytes.
  const Index small[] = {0, 1, 2, 3, 7}, huge[] = {Index(1) << 31, Index(1) << 40, Index(1) << 62, 0x6DB6DB6DB6DB6DB7};
  Index R = 0, C = 0;
  auto shape = [&]() {
    if (g.index(0, 9) < 6) {
      R = small[g.index(0, 4)];
      C = small[g.index(0, 4)];
    } else {
      R = huge[g.index(0, 3)];
      const Index other[] = {0, -1, -3, huge[g.index(0, 3)]};
      C = other[g.index(0, 3)];
      if (g.index(0, 1)) std::swap(R, C);
    }
  };
  int threw = 0, worked = 0;
  for (int n = 0; n < 3000; ++n) {
    Tape t;
    const Index r1 = g.index(0, 3), c1 = g.index(0, 3), r2 = g.index(0, 3), c2 = g.index(0, 3);
    const Var a = t.variable(g.matrix(r1, c1)), b = t.variable(g.matrix(r2, c2));
    shape();
    const Index k0 = g.index(-1, 3), k1 = g.index(-1, 3);
    const int kind = int(g.index(0, 27));
    INFO("case " << n << " kind " << kind << ": a " << r1 << "x" << c1 << ", b " << r2 << "x" << c2 << ", R " << R << ", C " << C);
    try {
      Var y;
      switch (kind) {
        case 0: y = a + b; break;
        case 1: y = a * b; break;
        case 2: y = matmul(a, b); break;
        case 3: y = linear(a, b, a); break;
        case 4: y = reshape(a, R, C); break;
        case 5: y = broadcast_to(a, R, C); break;
        case 6: y = slice_rows(a, k0, k1); break;
        case 7: y = slice_cols(a, k0, k1); break;
        case 8: y = concat_rows({a, b}); break;
        case 9: y = concat_cols({a, b, a}); break;
        case 10: y = Normal<double>(a, softplus(b) + 0.1).log_prob(a); break;
        case 11: {
          Rng rng(1);
          y = Normal<double>(a, 1.0).rsample(rng, R, C);
          break;
        }
        case 12: {
          Rng rng(2);
          y = Gumbel<double>(a, softplus(b) + 0.1).rsample(rng, R, C);
          break;
        }
        case 13: {
          Rng rng(3);
          // a huge row count below the element limit is a valid request for gigabytes: use 2^62
          y = Concrete<double>(a, 0.5).rsample(rng, R > 7 && R < (Index(1) << 58) ? Index(1) << 62 : R);
          break;
        }
        case 14: y = kl_divergence(Normal<double>(a, 1.0), Normal<double>(b, 2.0)); break;
        case 15: y = kl_divergence(Categorical<double>(a), Categorical<double>(b)); break;
        case 16: y = Concrete<double>(a, 0.5).log_prob(softmax(b)); break;
        case 17: y = Categorical<double>(a).log_prob(b); break;
        case 18: y = bce_with_logits(a, b); break;
        case 19: y = straight_through(a, b); break;
        case 20: y = clamp(a, double(k0), double(k1)); break;
        case 21: {
          Rng rng(4);
          const Matrix<double> m = uniform_matrix(rng, R, C);
          y = t.constant(m);
          break;
        }
        case 22: {
          Rng rng(5);
          const Matrix<double> m = normal_matrix(rng, R, C);
          y = t.constant(m);
          break;
        }
        case 23: y = ExpConcrete<double>(a, b).log_prob(a); break;
        case 24: y = Laplace<double>(a, softplus(b) + 0.1).cdf(b); break;
        case 25: y = RelaxedBernoulli<double>(a, b).log_prob(sigmoid(b)); break;
        case 26: y = soft_argmax(a) + sum_rows(b); break;
        default: y = mean(a) + sum(b); break;
      }
      t.backward(sum(y));
      // (Eigen's allFinite walks the columns of a 0 x 2^62 matrix one by one: check sizes first)
      REQUIRE((y.size() == 0 || y.value().allFinite()));
      ++worked;
    } catch (const ShapeError& e) {
      REQUIRE(std::string(e.what()).rfind("reparam: ", 0) == 0);
      ++threw;
    } catch (const DomainError& e) {
      REQUIRE(std::string(e.what()).rfind("reparam: ", 0) == 0);
      ++threw;
    } catch (const GraphError& e) {
      REQUIRE(std::string(e.what()).rfind("reparam: ", 0) == 0);
      ++threw;
    }
  }
  CHECK(threw > 300);
  CHECK(worked > 300);
}
