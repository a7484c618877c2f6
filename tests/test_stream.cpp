// Streamed gradients: a weight's gradient handed to an optimizer block by block as the GEMM
// produces it (BasicTape::stream_gradient, Adam::stream_from, DataParallel::set_stream_updates).
// The blocked product gives the bits of the whole one; a fused Adam step gives the bits of
// backward then step(); a gradient is streamed only where that holds (fresh leaf, one reader),
// and every misuse is refused with its message.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace reparam;
using test::Gen;

#define REQUIRE_ERROR(expr, Type, text) REQUIRE_THROWS_MATCHES(expr, Type, Catch::Matchers::Message(text))

namespace stream_test {  // named: the file is compiled in a unity group

template <class T>
using M = Matrix<T>;

// C = A^T G through gemm_tn_rows, checking that the blocks cover the rows once, in order.
template <class T>
bool blocked(const M<T>& a, const M<T>& g, M<T>& c, Index& blocks) {
  detail::Workspace<T> ws;
  c.setConstant(a.cols(), g.cols(), T(-7));
  Index next = 0;
  blocks = 0;
  const bool done = detail::gemm_tn_rows<T>(detail::CMap<T>(a.data(), a.rows(), a.cols()), detail::CMap<T>(g.data(), g.rows(), g.cols()),
                                            T(1), ws, [&](Index first, Index rows, T* block) {
                                              CHECK(first == next);
                                              CHECK(rows > 0);
                                              c.middleRows(first, rows) = detail::CMap<T>(block, rows, g.cols());
                                              block[0] = T(1e30);  // the callee may overwrite its block
                                              next = first + rows;
                                              ++blocks;
                                            });
  if (done) CHECK(next == a.cols());
  return done;
}

template <class T>
M<T> whole(const M<T>& a, const M<T>& g) {
  detail::Workspace<T> ws;
  M<T> c(a.cols(), g.cols());
  detail::MMap<T> cm(c.data(), c.rows(), c.cols());
  detail::gemm_acc<T>(cm, detail::CMap<T>(a.data(), a.rows(), a.cols()), true, detail::CMap<T>(g.data(), g.rows(), g.cols()), false,
                      T(1), ws, true);
  return c;
}

template <class T>
void check_blocked_product() {
  Gen gen(21);
  // (batch, in, out): the VAE's layers, remainders of the kernel's steps, several blocks, and a
  // depth past Eigen's depth blocking (several panels summed in order)
  const Index shapes[][3] = {{100, 784, 400}, {100, 400, 784}, {13, 37, 9}, {50, 20, 400}, {3000, 129, 17}, {7, 3, 12}};
  for (const auto& s : shapes) {
    const M<T> a = gen.matrix(s[0], s[1]).template cast<T>(), g = gen.matrix(s[0], s[2]).template cast<T>();
    M<T> c;
    Index blocks = 0;
    INFO(s[0] << " x " << s[1] << " x " << s[2]);
    REQUIRE(blocked(a, g, c, blocks));
    const M<T> ref = whole(a, g);
    CHECK(c == ref);  // bit for bit
    if (s[1] * s[2] * Index(sizeof(T)) > 4 * 131072) CHECK(blocks > 1);
    // computed in place: C = A^T G over garbage, and C += A^T G
    detail::Workspace<T> ws;
    const detail::CMap<T> am(a.data(), a.rows(), a.cols()), gm(g.data(), g.rows(), g.cols());
    M<T> d = M<T>::Constant(a.cols(), g.cols(), std::numeric_limits<T>::quiet_NaN());
    REQUIRE(detail::gemm_tn_rows<T>(am, gm, T(1), ws, [](Index, Index, T*) {}, d.data()));
    CHECK(d == ref);
    const M<T> base = gen.matrix(a.cols(), g.cols()).template cast<T>();
    M<T> e = base, f = base;
    REQUIRE(detail::gemm_tn_rows<T>(am, gm, T(0.5), ws, [](Index, Index, T*) {}, e.data(), true));
    detail::MMap<T> fm(f.data(), f.rows(), f.cols());
    detail::gemm_acc<T>(fm, am, true, gm, false, T(0.5), ws, false);
    CHECK(e == f);
  }
  // an empty C is computed (nothing to emit); where the blocked path does not apply it says so
  // and emits nothing
  M<T> c;
  Index blocks = 0;
  for (const auto& s : {std::array<Index, 3>{30, 40, 0}, {30, 0, 40}}) {
    detail::Workspace<T> ws;
    const M<T> a = gen.matrix(s[0], s[1]).template cast<T>(), g = gen.matrix(s[0], s[2]).template cast<T>();
    CHECK(detail::gemm_tn_rows<T>(detail::CMap<T>(a.data(), a.rows(), a.cols()), detail::CMap<T>(g.data(), g.rows(), g.cols()), T(1),
                                  ws, [&](Index, Index, T*) { ++blocks; }));
  }
  CHECK_FALSE(blocked<T>(gen.matrix(3, 1, -1, 1).template cast<T>(), gen.matrix(3, 50).template cast<T>(), c, blocks));  // one row of C
  CHECK_FALSE(blocked<T>(gen.matrix(2, 3).template cast<T>(), gen.matrix(2, 4).template cast<T>(), c, blocks));          // tiny
  CHECK(blocks == 0);
}

// Sums of products over row ranges (gemm_tn_sum_rows): the bits of the products stored whole
// and added afterwards in the same order, dense terms added as they are.
template <class T>
void check_summed_products() {
  Gen gen(23);
  // (m, n, depths of three terms): the VAE's first layer split over two threads plus a stored
  // third, a remainder of the kernel's step, a depth past Eigen's depth blocking
  const Index shapes[][5] = {{784, 400, 50, 50, 50}, {37, 9, 13, 7, 5}, {129, 17, 3000, 20, 1}, {1500, 70, 9, 5, 3}};
  for (const auto& s : shapes) {
    const Index m = s[0], n = s[1];
    INFO(m << " x " << n);
    std::vector<M<T>> a, g;
    for (int u = 0; u < 3; ++u) {
      a.push_back(gen.matrix(s[2 + u], m).template cast<T>());
      g.push_back(gen.matrix(s[2 + u], n).template cast<T>());
    }
    const M<T> stored = gen.matrix(m, n).template cast<T>();
    // the reference: each product whole (as a thread's sweep stores it), then added in order
    M<T> ref = whole(a[0], g[0]);
    ref.array() += stored.array();
    ref.array() += (T(0.5) * whole(a[2], g[2])).array();  // alpha 0.5: whole(...) then scaled is exact
    const detail::TnTerm<T> terms[3] = {{a[0].data(), g[0].data(), s[2], T(1), nullptr},
                                        {nullptr, nullptr, 0, T(1), stored.data()},
                                        {a[2].data(), g[2].data(), s[4], T(0.5), nullptr}};
    // three threads' shares of the rows, each whole blocks of the product's grid
    M<T> c = M<T>::Constant(m, n, std::numeric_limits<T>::quiet_NaN());
    detail::Workspace<T> ws;
    const Index step = detail::gemm_tn_block_rows<T>(m, n);
    const Index units = (m + step - 1) / step;
    for (int t = 0; t < 3; ++t) {
      const auto sh = ThreadPool::shard(units, t, 3);
      const Index first = sh.first * step, last = std::min(m, (sh.first + sh.second) * step);
      Index next = first;
      REQUIRE(detail::gemm_tn_sum_rows<T>(terms, 3, m, n, first, last, ws, [&](Index row, Index count, T* block) {
        CHECK(row == next);
        c.middleRows(row, count) = detail::CMap<T>(block, count, n);
        next = row + count;
      }));
      CHECK(next == std::max(first, last));
    }
    CHECK(c == ref);
    // a dense term first: copied, not added to zero; no terms: zeros
    M<T> d(m, n);
    REQUIRE(detail::gemm_tn_sum_rows<T>(terms + 1, 2, m, n, 0, m, ws, [](Index, Index, T*) {}, d.data()));
    M<T> ref2 = stored;
    ref2.array() += (T(0.5) * whole(a[2], g[2])).array();
    CHECK(d == ref2);
    REQUIRE(detail::gemm_tn_sum_rows<T>(terms, 0, m, n, 0, m, ws, [](Index, Index, T*) {}, d.data()));
    CHECK(d.isZero(0));
  }
  // a product the blocked kernel does not take: refused, nothing emitted
  const M<T> a = gen.matrix(3, 1).template cast<T>(), g = gen.matrix(3, 50).template cast<T>();
  const detail::TnTerm<T> one{a.data(), g.data(), 3, T(1), nullptr};
  detail::Workspace<T> ws;
  int emitted = 0;
  CHECK_FALSE(detail::gemm_tn_sum_rows<T>(&one, 1, 1, 50, 0, 1, ws, [&](Index, Index, T*) { ++emitted; }));
  CHECK(emitted == 0);
}

// A network whose weights take the blocked path (batch 13, 30 -> 70 -> 40 -> 3).
template <class T>
struct Net {
  Rng rng{5};
  nn::Mlp<T> mlp{{30, 70, 40, 3}, nn::Activation::tanh, rng};
  nn::ParameterList<T> params;
  M<T> x = Gen(6).matrix(13, 30).template cast<T>(), y = Gen(7).matrix(13, 3).template cast<T>();
  Net() { mlp.collect(params, "net"); }
  BasicVar<T> loss(BasicTape<T>& tape) { return sum(square(mlp(tape.constant(x)) - tape.constant(y))) / T(13); }
};

template <class T>
void check_fused_adam(T wd) {
  Net<T> a, b;
  optim::Adam<T> oa(a.params.pointers(), {T(0.01), T(0.9), T(0.999), T(1e-8), wd});
  optim::Adam<T> ob(b.params.pointers(), {T(0.01), T(0.9), T(0.999), T(1e-8), wd});
  BasicTape<T> ta, tb;
  ob.stream_from(tb);
  for (int step = 0; step < 4; ++step) {
    ta.clear();
    a.params.zero_grad();
    ta.backward(a.loss(ta));
    oa.step();

    for (std::size_t i = 0; i < b.params.size(); ++i) b.params[i].grad.setConstant(T(42));  // sentinel
    tb.clear();
    tb.overwrite_gradients();
    const BasicVar<T> l = b.loss(tb);
    ob.begin_step();
    tb.backward(l);
    ob.finish_step();
    for (std::size_t i = 0; i < a.params.size(); ++i) {
      INFO("step " << step << ", " << a.params.name(i) << ", weight decay " << wd);
      CHECK(a.params[i].value == b.params[i].value);
      CHECK(oa.exp_avg(i) == ob.exp_avg(i));
      CHECK(oa.exp_avg_sq(i) == ob.exp_avg_sq(i));
      const bool weight = i % 2 == 0;  // weights are streamed (never written), biases stored
      if (weight)
        CHECK((b.params[i].grad.array() == T(42)).all());
      else
        CHECK(b.params[i].grad == a.params[i].grad);
    }
  }
  CHECK(ob.steps() == 4);
}

}  // namespace stream_test

using stream_test::Net;

TEST_CASE("gemm_tn_rows: the blocks of A^T G are the bits of the whole product", "[stream]") {
  stream_test::check_blocked_product<float>();
  stream_test::check_blocked_product<double>();
}

TEST_CASE("gemm_tn_sum_rows: products summed over row ranges are the bits of stored products added", "[stream]") {
  stream_test::check_summed_products<float>();
  stream_test::check_summed_products<double>();
}

TEST_CASE("Adam fused into the sweep: the bits of backward then step(), weights never stored", "[stream]") {
  stream_test::check_fused_adam<float>(0.0f);
  stream_test::check_fused_adam<float>(0.01f);
  stream_test::check_fused_adam<double>(0.0);
}

TEST_CASE("streaming happens only where it gives the stored result", "[stream]") {
  // Each case runs the fused step beside backward + step() and compares; `streamed` says whether
  // the first weight should have been streamed (its gradient then keeps the sentinel).
  auto run = [](auto build, bool overwrite, bool streamed) {
    Net<double> a, b;
    optim::Adam<double> oa(a.params.pointers(), {0.01}), ob(b.params.pointers(), {0.01});
    Tape ta, tb;
    ob.stream_from(tb);
    for (int step = 0; step < 2; ++step) {
      ta.clear();
      a.params.zero_grad();
      ta.backward(build(a, ta));
      oa.step();
      tb.clear();
      b.params.zero_grad();
      if (overwrite) {  // the buffer's contents are then never read: a sentinel shows whether it was written
        b.params[0].grad.setConstant(42);
        tb.overwrite_gradients();
      }
      const Var l = build(b, tb);
      ob.begin_step();
      tb.backward(l);
      ob.finish_step();
      for (std::size_t i = 0; i < a.params.size(); ++i) CHECK(a.params[i].value == b.params[i].value);
      CHECK((b.params[0].grad.array() == 42.0).all() == streamed);
    }
  };
  auto plain = [](Net<double>& n, Tape& t) { return n.loss(t); };
  SECTION("the plain network streams") { run(plain, true, true); }
  SECTION("without overwrite_gradients the buffer may hold a sum to add to: stored") { run(plain, false, false); }
  SECTION("a weight read by two operations is stored") {
    run([](Net<double>& n, Tape& t) {
      const Var w = t.parameter(n.mlp[0].weight);
      return n.loss(t) + sum(matmul(t.constant(n.x), w)) * 1e-3;
    }, true, false);
  }
  SECTION("a weight also read as a constant is stored") {
    run([](Net<double>& n, Tape& t) { return n.loss(t) + sum(t.constant(n.mlp[0].weight)) * 1e-3; }, true, false);
  }
  SECTION("matmul streams its right operand too") {
    run([](Net<double>& n, Tape& t) {
      const Var h = tanh(matmul(t.constant(n.x), t.parameter(n.mlp[0].weight)) + t.parameter(n.mlp[0].bias));
      return sum(square(n.mlp[2](tanh(n.mlp[1](h))) - t.constant(n.y))) / 13.0;
    }, true, true);
  }
}

TEST_CASE("DataParallel.set_stream_updates: the same bits on one thread (Adam in the sweep) and on more (no sum kept)", "[stream][threads]") {
  for (int threads : {1, 2, 3}) {
    Net<float> a, b;
    // weight decay: the gradient Adam uses differs from the one the sweep made (kept or not)
    optim::Adam<float> oa(a.params.pointers(), {0.01f, 0.9f, 0.999f, 1e-8f, 0.01f}), ob(b.params.pointers(), {0.01f, 0.9f, 0.999f, 1e-8f, 0.01f});
    nn::DataParallel<float> da(a.params, threads), db(b.params, threads);
    db.set_stream_updates(true);
    CHECK(db.stream_updates());
    db.set_evict_shared(threads == 3);  // moves cache lines, never values
    CHECK(db.evict_shared() == (threads == 3));
    auto f = [](Net<float>& n) {
      return [&n](TapeF& t, Index first, Index count, int) {
        t.backward(sum(square(n.mlp(t.constant(n.x.middleRows(first, count))) - t.constant(n.y.middleRows(first, count)))) / 13.0f);
      };
    };
    for (int s = 0; s < 3; ++s) {
      for (std::size_t i = 0; i < b.params.size(); ++i) b.params[i].grad.setConstant(42.0f);  // sentinel
      da.step(13, f(a), oa);
      db.step(13, f(b), ob);
      for (std::size_t i = 0; i < a.params.size(); ++i) {
        INFO(threads << " threads, step " << s << ", " << a.params.name(i));
        CHECK(a.params[i].value == b.params[i].value);
        CHECK(oa.exp_avg(i) == ob.exp_avg(i));
        CHECK(oa.exp_avg_sq(i) == ob.exp_avg_sq(i));
        // weights: streamed (one thread) or handed over as factors (more), never stored
        if (i % 2 == 0) CHECK((b.params[i].grad.array() == 42.0f).all());
      }
    }
  }
  // more threads than rows: the threads without rows add zeros as before
  {
    Net<float> a, b;
    optim::Adam<float> oa(a.params.pointers(), {0.01f}), ob(b.params.pointers(), {0.01f});
    nn::DataParallel<float> da(a.params, 3), db(b.params, 3);
    db.set_stream_updates(true);
    auto f = [](Net<float>& n) {
      return [&n](TapeF& t, Index first, Index count, int) {
        t.backward(sum(square(n.mlp(t.constant(n.x.middleRows(first, count))) - t.constant(n.y.middleRows(first, count)))) / 2.0f);
      };
    };
    for (int s = 0; s < 2; ++s) {
      da.step(2, f(a), oa);
      db.step(2, f(b), ob);
    }
    for (std::size_t i = 0; i < a.params.size(); ++i) CHECK(a.params[i].value == b.params[i].value);
  }
  // parameters the optimizer does not step are summed into p.grad; Adam's parameters this object
  // does not hold are stepped from their own p.grad
  {
    Net<float> a, b;
    Parameter<float> extra_a(Matrix<float>::Constant(2, 2, 1.0f)), extra_b = extra_a;
    extra_a.grad.setConstant(0.5f);
    extra_b.grad.setConstant(0.5f);
    std::vector<Parameter<float>*> pa = a.params.pointers(), pb = b.params.pointers();
    pa.erase(pa.begin()), pb.erase(pb.begin());  // the first weight is not stepped
    pa.push_back(&extra_a), pb.push_back(&extra_b);
    optim::Adam<float> oa(pa, {0.01f}), ob(pb, {0.01f});
    nn::DataParallel<float> da(a.params, 2), db(b.params, 2);
    db.set_stream_updates(true);
    auto f = [](Net<float>& n) {
      return [&n](TapeF& t, Index first, Index count, int) {
        t.backward(sum(square(n.mlp(t.constant(n.x.middleRows(first, count))) - t.constant(n.y.middleRows(first, count)))) / 13.0f);
      };
    };
    da.step(13, f(a), oa);
    db.step(13, f(b), ob);
    for (std::size_t i = 0; i < a.params.size(); ++i) CHECK(a.params[i].value == b.params[i].value);
    CHECK(a.params[0].grad == b.params[0].grad);  // the sum over threads, kept
    CHECK(extra_a.value == extra_b.value);
    CHECK(extra_b.value(0, 0) != 1.0f);
  }
  // an exception in the sweep leaves the optimizer ready for the next step
  Net<float> n;
  optim::Adam<float> o(n.params.pointers(), {0.01f});
  nn::DataParallel<float> dp(n.params, 1);
  dp.set_stream_updates(true);
  REQUIRE_THROWS_AS(dp.step(13, [](TapeF&, Index, Index, int) { throw std::runtime_error("boom"); }, o), std::runtime_error);
  dp.step(13, [&n](TapeF& t, Index, Index, int) { t.backward(n.loss(t)); }, o);
  CHECK(o.steps() == 2);
  // on more threads too; and f may not clear its tape there (the factors live in it)
  nn::DataParallel<float> dp2(n.params, 2);
  dp2.set_stream_updates(true);
  REQUIRE_THROWS_AS(dp2.step(13, [](TapeF&, Index, Index, int) { throw std::runtime_error("boom"); }, o), std::runtime_error);
  auto twice = [&n](bool overwrite) {
    return [&n, overwrite](TapeF& t, Index first, Index count, int) {
      auto loss = [&] { return sum(square(n.mlp(t.constant(n.x.middleRows(first, count))))) / 13.0f; };
      t.backward(loss());
      t.clear();
      if (overwrite) t.overwrite_gradients();
      t.backward(loss());
    };
  };
  REQUIRE_ERROR(dp2.step(13, twice(false), o), GraphError,
                "reparam: DataParallel.step: f cleared its tape, which holds the gradients' factors until the update (with "
                "stream_updates, build one graph per step)");
  // clearing is refused at the clear itself (other threads may be reading the factors), so a
  // second graph on the same tape never gets to hand a gradient over twice
  REQUIRE_ERROR(dp2.step(13, twice(true), o), GraphError,
                "reparam: DataParallel.step: f cleared its tape, which holds the gradients' factors until the update (with "
                "stream_updates, build one graph per step)");
  dp2.step(13, [&n](TapeF& t, Index first, Index count, int) {
    t.backward(sum(square(n.mlp(t.constant(n.x.middleRows(first, count))))) / 13.0f);
  }, o);
  CHECK(o.steps() == 6);
}

namespace stream_test {
// An autoencoder 784-100-784 on 24 binary rows whose weights span several blocks each, twice
// (a: stored gradients, run then Adam.step; b: stream_updates), with f(model, hold) building the
// loss, thread `slow` sleeping 300 ms after its backward when `hold` (40 ms until stop 39: in the
// sanitizers' -O0 build a step takes about 100 ms, and the other thread's own share of the update
// sometimes outlasted the hold, so that it had nothing left to take: 3 failures in 40 runs).
template <class T>
struct AePair {
  static constexpr Index rows = 24;
  struct Model {
    Rng rng{9};
    nn::Mlp<T> mlp{{784, 100, 784}, nn::Activation::relu, rng};
    nn::ParameterList<T> params;
    Model() { mlp.collect(params, "ae"); }
  };
  M<T> x;
  Model a, b;
  optim::Adam<T> oa{a.params.pointers(), {T(1e-3)}}, ob{b.params.pointers(), {T(1e-3)}};
  nn::DataParallel<T> da, db;
  int slow = -1;
  AePair(int threads, std::uint64_t seed)
      : x((Gen(seed).matrix(rows, 784, 0, 1).array() > 0.5).template cast<T>().matrix()), da(a.params, threads), db(b.params, threads) {
    db.set_stream_updates(true);
    db.set_evict_shared(true);
  }
  auto f(Model& m, bool hold) {
    return [this, &m, hold](BasicTape<T>& t, Index first, Index count, int th) {
      const BasicVar<T> xv = t.constant(x.middleRows(first, count));
      t.backward(sum(bce_with_logits(m.mlp(xv), xv)) / T(rows));
      if (hold && th == slow) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    };
  }
  void step(bool hold) {
    da.step(rows, f(a, false), oa);
    db.step(rows, f(b, hold), ob);
  }
  void check_same(const std::string& what) {
    for (std::size_t i = 0; i < a.params.size(); ++i) {
      INFO(what << ", " << a.params.name(i));
      CHECK(a.params[i].value == b.params[i].value);
      CHECK(oa.exp_avg(i) == ob.exp_avg(i));
      CHECK(oa.exp_avg_sq(i) == ob.exp_avg_sq(i));
    }
  }
};

// Weights of several blocks each (784 x 100, 100 x 784), split between the threads' updates.
template <class T>
void check_split_weights(int threads) {
  AePair<T> p(threads, 8);
  for (int s = 0; s < 3; ++s) p.step(false);
  p.check_same(std::to_string(threads) + " threads");
}
}  // namespace stream_test

TEST_CASE("DataParallel.tune_evict_shared: trials that time eviction on and off change no bits, then keep one", "[stream][threads]") {
  for (int threads : {1, 2, 3}) {
    Net<float> a, b;
    optim::Adam<float> oa(a.params.pointers(), {0.01f}), ob(b.params.pointers(), {0.01f});
    nn::DataParallel<float> da(a.params, threads), db(b.params, threads);
    da.set_stream_updates(true);  // eviction off, never tried
    db.set_stream_updates(true);
    db.tune_evict_shared(2, 3);  // 2 untimed + 4 timed steps, then a new trial after 3 more
    CHECK(db.evict_tuning());
    auto f = [](Net<float>& n) {
      return [&n](TapeF& t, Index first, Index count, int) {
        t.backward(sum(square(n.mlp(t.constant(n.x.middleRows(first, count))) - t.constant(n.y.middleRows(first, count)))) / 13.0f);
      };
    };
    std::vector<bool> evicting;
    for (int s = 0; s < 11; ++s) {
      da.step(13, f(a), oa);
      db.step(13, f(b), ob);
      INFO(threads << " threads, step " << s);
      evicting.push_back(db.evict_shared());
      // one thread: no trial starts (eviction is a multi-thread matter); more: steps 0-5 are
      // the trial, 6-8 use its choice, the 4th step after it (9) starts the next trial
      CHECK(db.evict_tuning() == (threads == 1 || s < 5 || s >= 9));
      for (std::size_t i = 0; i < a.params.size(); ++i) {
        CHECK(a.params[i].value == b.params[i].value);
        CHECK(oa.exp_avg(i) == ob.exp_avg(i));
        CHECK(oa.exp_avg_sq(i) == ob.exp_avg_sq(i));
      }
    }
    if (threads > 1) {
      // the trial's order: untimed on, off, then on, off, off, on (pairs alternate which goes first)
      CHECK(evicting[0]);
      CHECK(!evicting[1]);
      CHECK(evicting[2]);
      CHECK(!evicting[3]);
      CHECK(!evicting[4]);
      CHECK(evicting[5] == evicting[6]);  // the choice, kept until the next trial
      CHECK(evicting[6] == evicting[7]);
      CHECK(evicting[7] == evicting[8]);
      CHECK(evicting[9]);  // the next trial's first step
    }
    db.set_evict_shared(false);  // a setting by hand ends the trials
    CHECK(!db.evict_tuning());
    db.step(13, f(b), ob);
    CHECK(!db.evict_tuning());
    CHECK(!db.evict_shared());
  }
}

TEST_CASE("DataParallel.tune_evict_shared: the lower median decides, ties keep eviction off, bad counts are refused", "[stream][errors]") {
  // medians 2.5 against 2.75 (the means, 3.75 against 3.5, would choose the other: one slow
  // step of a noisy host does not decide)
  const double fast[] = {1.0, 9.0, 2.0, 3.0}, slow[] = {2.5, 3.0, 0.5, 8.0};
  CHECK(detail::lower_median(fast, slow, 4));
  CHECK(!detail::lower_median(slow, fast, 4));
  CHECK(detail::lower_median(fast, slow, 3));   // 2 against 2.5
  CHECK(!detail::lower_median(slow, fast, 3));
  CHECK(!detail::lower_median(fast, fast, 4));  // equal: the second (no eviction) is kept
  CHECK(detail::lower_median(fast, slow, 1));   // 1 against 2.5: one sample each
  Net<float> n;
  nn::DataParallel<float> dp(n.params, 2);
  REQUIRE_ERROR(dp.tune_evict_shared(0), DomainError, "reparam: DataParallel.tune_evict_shared: steps must be in [1, 32] (got 0)");
  REQUIRE_ERROR(dp.tune_evict_shared(33), DomainError, "reparam: DataParallel.tune_evict_shared: steps must be in [1, 32] (got 33)");
  REQUIRE_ERROR(dp.tune_evict_shared(8, -1), DomainError, "reparam: DataParallel.tune_evict_shared: every must be >= 0 (got -1)");
  CHECK(!dp.evict_tuning());
  // a step that throws inside a trial is not counted: the trial (2 untimed + 2 timed steps)
  // ends after four steps that ran, whichever failed between them
  optim::Adam<float> o(n.params.pointers(), {0.01f});
  dp.set_stream_updates(true);
  dp.tune_evict_shared(1);
  auto loss = [&n](TapeF& t, Index first, Index count, int) {
    t.backward(sum(square(n.mlp(t.constant(n.x.middleRows(first, count))))) / 13.0f);
  };
  dp.step(13, loss, o);
  REQUIRE_THROWS_WITH(dp.step(13, [&](TapeF& t, Index first, Index count, int th) {
    loss(t, first, count, th);
    if (th == 1) throw std::runtime_error("late");
  }, o), "late");
  CHECK(!dp.evict_shared());  // the failed step was the trial's second (untimed, without eviction)
  for (int s = 0; s < 2; ++s) {  // the second again, then the first timed one
    dp.step(13, loss, o);
    CHECK(dp.evict_tuning());
  }
  dp.step(13, loss, o);  // the fourth step that ran
  CHECK(!dp.evict_tuning());
  for (std::size_t i = 0; i < n.params.size(); ++i) CHECK(n.params[i].value.allFinite());
}

TEST_CASE("DataParallel.set_stream_updates: weights of several blocks split between the threads' updates, the same bits", "[stream][threads]") {
  for (int threads : {2, 3}) {
    stream_test::check_split_weights<float>(threads);
    stream_test::check_split_weights<double>(threads);
  }
}

namespace stream_test {
// A thread that finishes its sweep first takes the ready pieces of a slow thread's update: with
// one thread held back after its backward (its gradients handed over, its sweep not finished),
// the others take its weights' blocks, and the parameters get the bits of run then Adam.step.
template <class T>
void check_taken_pieces(int threads, int slow) {
  AePair<T> p(threads, 10);
  p.slow = slow;
  int taken = 0, pieces = 0;
  for (int s = 0; s < 2; ++s) {
    p.step(true);
    for (int t = 0; t < threads; ++t) {
      taken += p.db.update_pieces(t).taken;
      pieces += p.db.update_pieces(t).own + p.db.update_pieces(t).taken;
    }
  }
  // each weight's rows in blocks, each bias one piece; every piece run once per step
  const Index r1 = detail::gemm_tn_block_rows<T>(784, 100), r2 = detail::gemm_tn_block_rows<T>(100, 784);
  CHECK(pieces == 2 * ((784 + r1 - 1) / r1 + (100 + r2 - 1) / r2 + 2));
  CHECK(taken > 0);  // the held thread's weight blocks were ready 300 ms before it finished
  p.check_same(std::to_string(threads) + " threads, thread " + std::to_string(slow) + " held");
}
}  // namespace stream_test

TEST_CASE("DataParallel.set_stream_updates: a thread done first takes a slow thread's ready pieces, the same bits", "[stream][threads]") {
  stream_test::check_taken_pieces<float>(2, 1);
  stream_test::check_taken_pieces<float>(2, 0);
  stream_test::check_taken_pieces<double>(3, 2);
  nn::ParameterList<float> none;
  nn::DataParallel<float> dp(none, 2);
  CHECK(dp.update_pieces(1).own == 0);
  REQUIRE_ERROR(dp.update_pieces(2), ShapeError, "reparam: DataParallel.update_pieces: no thread 2 of 2");
}

TEST_CASE("DataParallel.set_stream_updates: a sweep that fails after its hand-over stops the update, and the next step runs", "[stream][threads][errors]") {
  Net<float> n;
  optim::Adam<float> o(n.params.pointers(), {0.01f});
  nn::DataParallel<float> dp(n.params, 2);
  dp.set_stream_updates(true);
  auto loss = [&n](TapeF& t, Index first, Index count) {
    t.backward(sum(square(n.mlp(t.constant(n.x.middleRows(first, count))))) / 13.0f);
  };
  for (int thrower : {0, 1}) {
    // the factors are handed over, then f throws: the other thread may have updated some pieces
    // (as an exception in a one-thread streamed sweep leaves the blocks updated so far), never hangs
    REQUIRE_THROWS_WITH(dp.step(13, [&](TapeF& t, Index first, Index count, int th) {
      loss(t, first, count);
      if (th == thrower) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        throw std::runtime_error("late");
      }
    }, o), "late");
    // clearing the tape inside f is refused at once: other threads may be reading its factors
    REQUIRE_ERROR(dp.step(13, [&](TapeF& t, Index first, Index count, int th) {
      loss(t, first, count);
      if (th == thrower) t.clear();
    }, o), GraphError, "reparam: DataParallel.step: f cleared its tape, which holds the gradients' factors until the update "
                       "(with stream_updates, build one graph per step)");
  }
  for (std::size_t i = 0; i < n.params.size(); ++i) CHECK(n.params[i].value.allFinite());
  // the guard itself, on a tape of one's own
  TapeF tape;
  tape.guard_clear("test", "held");
  REQUIRE_ERROR(tape.clear(), GraphError, "reparam: test: held");
  tape.guard_clear(nullptr, nullptr);
  tape.clear();
  const long before = o.steps();
  dp.step(13, [&](TapeF& t, Index first, Index count, int) { loss(t, first, count); }, o);
  CHECK(o.steps() == before + 1);
  dp.tape(0).clear();  // the guard ends with the step
  for (std::size_t i = 0; i < n.params.size(); ++i) CHECK(n.params[i].value.allFinite());
}

TEST_CASE("DataParallel.update_rows: whole blocks tiling each weight, the threads' totals within a block", "[stream]") {
  // the categorical VAE's layers: when the shares rotated by parameter position, thread 0 took the
  // extra block of every weight (weights and biases alternate, so every weight sat at an even position)
  // (stop 39: with blocks of 72 rows instead of 80, whole shares of each weight left 3 threads
  // 45,264 elements apart, more than a block; the blocks are now scheduled largest first). The
  // Gaussian VAE's layers too.
  const bool gaussian = GENERATE(false, true);
  nn::ParameterList<float> params;
  Rng rng(5);
  nn::Mlp<float> enc(gaussian ? std::vector<Index>{784, 400, 40} : std::vector<Index>{784, 512, 256, 200}, nn::Activation::relu, rng),
      dec(gaussian ? std::vector<Index>{20, 400, 784} : std::vector<Index>{200, 256, 512, 784}, nn::Activation::relu, rng);
  enc.collect(params, "encoder");
  dec.collect(params, "decoder");
  for (int threads : {2, 3, 4, 5, 7}) {
    nn::DataParallel<float> dp(params, threads);
    std::vector<Index> load(static_cast<std::size_t>(threads), 0);
    Index largest = 0;
    for (std::size_t i = 0; i < params.size(); ++i) {
      const Index m = params[i].rows(), n = params[i].cols(), step = detail::gemm_tn_block_rows<float>(m, n);
      largest = std::max(largest, std::min(m, step) * n);
      std::vector<std::pair<Index, Index>> r;
      for (int t = 0; t < threads; ++t) r.push_back(dp.update_rows(i, t));
      std::sort(r.begin(), r.end());
      Index next = 0;
      for (int t = 0; t < threads; ++t) {
        const auto rt = dp.update_rows(i, t);
        load[static_cast<std::size_t>(t)] += (rt.second - rt.first) * n;
        INFO(threads << " threads, " << params.name(i) << ", thread " << t);
        CHECK(rt.first <= rt.second);
        CHECK((rt.first == rt.second || rt.first % step == 0));
      }
      for (const auto& x : r) {
        if (x.first == x.second) continue;
        CHECK(x.first == next);  // contiguous and disjoint
        next = x.second;
      }
      CHECK(next == m);
    }
    const auto mm = std::minmax_element(load.begin(), load.end());
    INFO((gaussian ? "Gaussian, " : "categorical, ") << threads << " threads: elements per thread from " << *mm.first << " to "
                                                      << *mm.second);
    CHECK(*mm.second - *mm.first <= largest);
  }
  if (gaussian) return;
  nn::DataParallel<float> dp(params, 2);
  REQUIRE_ERROR(dp.update_rows(12, 0), ShapeError, "reparam: DataParallel.update_rows: no parameter 12 of 12 or thread 0 of 2");
  REQUIRE_ERROR(dp.update_rows(0, 2), ShapeError, "reparam: DataParallel.update_rows: no parameter 0 of 12 or thread 2 of 2");
}

TEST_CASE("streamed gradients: misuse is refused with its message", "[stream][errors]") {
  Net<double> n;
  optim::Adam<double> adam(n.params.pointers(), {0.01});
  Tape tape;
  REQUIRE_ERROR(tape.stream_gradient(n.params[0], {}), GraphError, "reparam: stream_gradient: the sink has no function");
  adam.stream_from(tape);
  tape.overwrite_gradients();
  Var l = n.loss(tape);
  REQUIRE_ERROR(tape.backward(l), GraphError, "reparam: Adam: a gradient was streamed outside begin_step() and finish_step()");
  REQUIRE_ERROR(adam.finish_step(), GraphError, "reparam: Adam.finish_step: no step was begun (begin_step)");
  tape.clear();
  tape.overwrite_gradients();
  l = n.loss(tape);
  adam.begin_step();
  REQUIRE_ERROR(adam.begin_step(), GraphError, "reparam: Adam.begin_step: the previous step was not finished (finish_step)");
  REQUIRE_ERROR(adam.step(), GraphError, "reparam: Adam.step: a fused step is under way (finish_step first)");
  tape.backward(l);
  const double g[2] = {0.0, 0.0};
  REQUIRE_ERROR(adam.update_block(99, 0, 1, g), ShapeError, "reparam: Adam: a streamed gradient block names parameter 99 of 6");
  REQUIRE_ERROR(adam.update_block(1, 69, 2, g), ShapeError, "reparam: Adam: a streamed gradient block does not fit parameter 1");
  REQUIRE_ERROR(adam.update_block(1, 0, 1, g, nullptr, 1), ShapeError,
                "reparam: Adam: a streamed gradient block does not fit parameter 1");
  adam.finish_step();
  REQUIRE_ERROR(adam.update_block(1, 0, 1, g), GraphError, "reparam: Adam: a gradient was streamed outside begin_step() and finish_step()");
  REQUIRE_ERROR(tape.backward(l), GraphError,
                "reparam: backward: this graph's last sweep streamed gradients to an optimizer, which moved the parameters it "
                "reads: build the graph again after clear()");
  tape.clear();  // a new graph sweeps again
  tape.unstream_gradients();
  l = n.loss(tape);
  tape.backward(l);
  adam.step();
  CHECK(adam.steps() == 2);
}
