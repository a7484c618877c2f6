// Layers and training helpers: nn::Linear / Mlp (initialisation, forward, gradients),
// tape.parameter and NoGrad, ParameterList, ThreadPool and DataParallel (the sum over threads
// equals one tape's gradient, the same bits run after run), checkpoints (round trip, every
// refusal and its message, a refused file changes nothing).
#include <cstdio>
#include <fstream>
#include <iterator>
#include <limits>
#include <numeric>
#include <set>

#include "support.hpp"

using namespace reparam;
using test::Gen;
using test::Mat;

#define REQUIRE_ERROR(expr, Type, text) REQUIRE_THROWS_MATCHES(expr, Type, Catch::Matchers::Message(text))

namespace {

// A seeded model and batch: 6 inputs, 5 and 4 hidden, 3 outputs.
struct Fixture {
  Rng rng{7};
  nn::Mlp<double> net{{6, 5, 4, 3}, nn::Activation::tanh, rng, nn::Activation::none};
  nn::ParameterList<double> params;
  Mat x, y;
  Fixture() {
    net.collect(params, "net");
    Gen g(3);
    x = g.matrix(11, 6);
    y = g.matrix(11, 3);
  }
  // Sum over rows [first, first + count) of the squared error, divided by the full batch.
  Var loss(Tape& tape, Index first, Index count) {
    const Var out = net(tape.constant(x.middleRows(first, count)));
    return sum(square(out - tape.constant(y.middleRows(first, count)))) / double(x.rows());
  }
};

std::vector<Mat> grads(const nn::ParameterList<double>& p) {
  std::vector<Mat> g;
  for (std::size_t i = 0; i < p.size(); ++i) g.push_back(p[i].grad);
  return g;
}

std::string temp_path(const std::string& name) { return "reparam_test_" + name; }

}  // namespace

TEST_CASE("Linear: PyTorch's initialisation U(-1/sqrt(in), 1/sqrt(in)), weight then bias, seeded", "[nn]") {
  Rng a(5), b(5);
  nn::Linear<double> l(400, 300, a);
  REQUIRE(l.weight.rows() == 400);
  REQUIRE(l.weight.cols() == 300);
  REQUIRE(l.bias.rows() == 1);
  REQUIRE(l.bias.cols() == 300);
  const double bound = 1 / std::sqrt(400.0);
  CHECK(l.weight.value.cwiseAbs().maxCoeff() <= bound);
  CHECK(l.bias.value.cwiseAbs().maxCoeff() <= bound);
  // Moments of U(-c, c): mean 0, variance c^2/3; 120000 draws, 5 standard errors.
  const double n = double(l.weight.value.size());
  const double mean = l.weight.value.mean(), var = l.weight.value.array().square().mean();
  CHECK(std::abs(mean) < 5 * bound / std::sqrt(3 * n));
  CHECK(std::abs(var - bound * bound / 3) < 5 * bound * bound * std::sqrt(4.0 / 45 / n));
  // The same generator state gives the same layer; weight first, then bias, row by row.
  Mat w(400, 300), bias(1, 300);
  for (Index i = 0; i < w.size(); ++i) w.data()[i] = (2 * uniform<double>(b) - 1) * bound;
  for (Index i = 0; i < bias.size(); ++i) bias.data()[i] = (2 * uniform<double>(b) - 1) * bound;
  CHECK(l.weight.value == w);
  CHECK(l.bias.value == bias);
  CHECK(l.weight.grad == Mat::Zero(400, 300));
}

TEST_CASE("Linear and Mlp: forward values and finite-difference gradients", "[nn]") {
  Fixture f;
  REQUIRE(f.net.size() == 3);
  CHECK(f.net.in_features() == 6);
  CHECK(f.net.out_features() == 3);
  Tape tape;
  const Var out = f.net(tape.constant(f.x));
  Mat h = f.x;
  for (std::size_t i = 0; i < 3; ++i) {
    h = (h * f.net[i].weight.value).rowwise() + f.net[i].bias.value.row(0);
    if (i < 2) h = h.array().tanh().matrix();
  }
  CHECK((out.value() - h).cwiseAbs().maxCoeff() < 1e-14);
  // d loss / d every weight against central differences
  for (std::size_t k = 0; k < f.params.size(); ++k) {
    f.params.zero_grad();
    tape.clear();
    tape.backward(f.loss(tape, 0, f.x.rows()));
    Parameter<double>& p = f.params[k];
    for (Index i = 0; i < p.value.size(); i += 3) {
      const double h0 = 1e-6, keep = p.value.data()[i];
      Tape t2;
      p.value.data()[i] = keep + h0;
      const double up = f.loss(t2, 0, f.x.rows()).item();
      t2.clear();
      p.value.data()[i] = keep - h0;
      const double down = f.loss(t2, 0, f.x.rows()).item();
      p.value.data()[i] = keep;
      INFO(f.params.name(k) << " element " << i);
      CHECK(std::abs(p.grad.data()[i] - (up - down) / (2 * h0)) < 1e-8);
    }
  }
}

TEST_CASE("Activation: each one on a Var", "[nn]") {
  Tape tape;
  const Mat m = (Mat(1, 3) << -2, 0.5, 3).finished();
  const Var x = tape.constant(m);
  CHECK(nn::activate(nn::Activation::relu, x).value()(0, 0) == 0);
  CHECK(nn::activate(nn::Activation::tanh, x).value()(0, 1) == std::tanh(0.5));
  CHECK(test::close(nn::activate(nn::Activation::sigmoid, x).value()(0, 2), 1 / (1 + std::exp(-3.0)), 1e-15));
  CHECK(test::close(nn::activate(nn::Activation::softplus, x).value()(0, 0), std::log1p(std::exp(-2.0)), 1e-15));
  CHECK(nn::activate(nn::Activation::none, x).value() == m);
}

TEST_CASE("Linear and Mlp: errors", "[nn][errors]") {
  Rng rng(1);
  REQUIRE_ERROR(nn::Linear<double>(0, 3, rng), ShapeError, "reparam: Linear: sizes must be positive (got in 0, out 3)");
  REQUIRE_ERROR(nn::Linear<double>(Index(1) << 40, Index(1) << 40, rng), ShapeError,
                "reparam: Linear: size overflows (1099511627776x1099511627776)");
  REQUIRE_ERROR(nn::Mlp<double>({4}, nn::Activation::relu, rng), ShapeError,
                "reparam: Mlp: needs at least two sizes, in and out (got 1)");
  nn::Linear<double> l(3, 2, rng);
  Tape tape;
  REQUIRE_ERROR(l(tape.constant(Mat::Zero(2, 4))), ShapeError, "reparam: linear: inner dimensions differ (2x4 and 3x2)");
}

TEST_CASE("tape.parameter: a variable, a constant under NoGrad, or a bound gradient buffer", "[nn][tape]") {
  Parameter<double> p(Mat::Constant(2, 2, 3.0));
  Tape tape;
  Var v = tape.parameter(p);
  CHECK(v.requires_grad());
  tape.backward(sum(square(v)));
  CHECK(p.grad == Mat::Constant(2, 2, 6.0));
  tape.clear();
  {
    NoGrad off(tape);
    CHECK_FALSE(tape.grad_enabled());
    Var c = tape.parameter(p);
    CHECK_FALSE(c.requires_grad());
    CHECK(c.value() == p.value);
    CHECK(c.value().data() == p.value.data());  // read in place, not copied
    REQUIRE_ERROR(tape.backward(sum(c)), GraphError,
                  "reparam: backward: output does not depend on any variable (nothing to differentiate)");
  }
  CHECK(tape.grad_enabled());
  Mat buffer;
  tape.bind_gradient(p, buffer);
  tape.clear();  // bindings outlive clear()
  tape.backward(sum(tape.parameter(p)));
  CHECK(buffer == Mat::Ones(2, 2));
  CHECK(p.grad == Mat::Constant(2, 2, 6.0));  // untouched
  Parameter<double> q(Mat::Ones(2, 2));
  REQUIRE_ERROR(tape.bind_gradient(q, buffer), GraphError,
                "reparam: bind_gradient: the buffer is already bound to another Parameter (each needs its own)");
  tape.unbind_gradients();
  tape.clear();
  tape.backward(sum(tape.parameter(p)));
  CHECK(p.grad == Mat::Constant(2, 2, 7.0));

  // An empty Parameter is still a variable (with an empty gradient), not a constant.
  Parameter<double> empty(Mat(0, 3));
  tape.clear();
  const Var e = tape.parameter(empty);
  CHECK(e.requires_grad());
  CHECK(e.rows() == 0);
  CHECK(e.cols() == 3);
  tape.backward(sum(e) + sum(tape.parameter(p)));
  CHECK(empty.grad.rows() == 0);
}

TEST_CASE("tape.overwrite_gradients: the first sweep assigns into Parameter buffers holding garbage", "[nn][tape]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Gen g(5);
  Parameter<double> w(g.matrix(3, 4)), b(g.matrix(1, 4)), unused(g.matrix(2, 2)), unread(g.matrix(2, 2));
  const Mat x = g.matrix(5, 3);
  auto loss = [&](Tape& t) { return sum(square(linear(t.constant(x), t.parameter(w), t.parameter(b)))); };
  Tape ref;
  ref.backward(loss(ref));
  const Mat gw = w.grad, gb = b.grad;
  for (Parameter<double>* p : {&w, &b, &unused, &unread}) p->grad.setConstant(nan);

  Tape tape;
  tape.overwrite_gradients();
  CHECK(tape.gradient_pending(w.grad));
  const Var l = loss(tape);
  const Var u = tape.parameter(unused);  // a leaf nothing flows back to
  CHECK(tape.parameter(w).index() == tape.parameter(w).index());  // one leaf per buffer and graph
  tape.backward(l);
  CHECK(w.grad == gw);  // the same bits as zeroing first
  CHECK(b.grad == gb);
  CHECK(unused.grad == Mat::Zero(2, 2));  // reached by no sweep: zeroed by it
  CHECK(u.grad() == Mat::Zero(2, 2));
  CHECK_FALSE(tape.gradient_pending(w.grad));
  CHECK_FALSE(tape.gradient_pending(unused.grad));
  CHECK(tape.gradient_pending(unread.grad));  // no leaf: still garbage, and said so
  CHECK(std::isnan(unread.grad(0, 0)));
  tape.backward(l);  // later sweeps add
  CHECK(w.grad == 2 * gw);

  // A Parameter read twice is one leaf: both uses add into one buffer.
  tape.clear();
  CHECK_FALSE(tape.gradient_pending(w.grad));  // clear() ends the overwrite
  w.grad.setConstant(nan);
  tape.overwrite_gradients();
  tape.backward(sum(tape.parameter(w) * tape.parameter(w)));
  CHECK((w.grad - 2 * w.value).cwiseAbs().maxCoeff() == 0);

  // Reading a fresh leaf's gradient before any sweep gives zeros and settles it.
  tape.clear();
  w.grad.setConstant(nan);
  tape.overwrite_gradients();
  const Var v = tape.parameter(w);
  CHECK(v.grad() == Mat::Zero(3, 4));
  CHECK_FALSE(tape.gradient_pending(w.grad));
  tape.backward(sum(v));
  CHECK(w.grad == Mat::Ones(3, 4));

  // A sum below the leaf (a constant gradient kept as one number) is written out in full.
  tape.clear();
  w.grad.setConstant(nan);
  tape.overwrite_gradients();
  tape.backward(sum(tape.parameter(w)));
  CHECK(w.grad == Mat::Ones(3, 4));

  // A rule that throws mid-sweep leaves zeros or partial sums, never the garbage.
  tape.clear();
  w.grad.setConstant(nan);
  b.grad.setConstant(nan);
  tape.overwrite_gradients();
  const Var wv = tape.parameter(w), bv = tape.parameter(b);
  Operation<double> op("boom", {wv});
  const Var boom = op.record(1, 1, [](auto y) { y.setZero(); }, [](Backward<double>&) { throw std::runtime_error("boom"); });
  CHECK_THROWS_AS(tape.backward(sum(bv) + boom), std::runtime_error);
  CHECK(w.grad == Mat::Zero(3, 4));
  CHECK(b.grad == Mat::Ones(1, 4));
  CHECK_FALSE(tape.gradient_pending(w.grad));
}

TEST_CASE("ParameterList: names, counts, gradient norm and PyTorch's clip_grad_norm", "[nn]") {
  Fixture f;
  REQUIRE(f.params.size() == 6);
  CHECK(f.params.name(0) == "net.0.weight");
  CHECK(f.params.name(5) == "net.2.bias");
  CHECK(f.params.find("net.1.bias") == &f.net[1].bias);
  CHECK(f.params.find("nope") == nullptr);
  CHECK(f.params.count() == 6 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3);
  CHECK(f.params.pointers().size() == 6);
  Tape tape;
  tape.backward(f.loss(tape, 0, f.x.rows()) * 100.0);
  double s = 0;
  for (std::size_t i = 0; i < f.params.size(); ++i) s += f.params[i].grad.squaredNorm();
  const double norm = std::sqrt(s);
  CHECK(test::close(f.params.grad_norm(), norm, 1e-14));
  const std::vector<Mat> before = grads(f.params);
  CHECK(test::close(f.params.clip_grad_norm(norm * 2), norm, 1e-14));  // below the limit: unchanged
  CHECK(grads(f.params) == before);
  f.params.clip_grad_norm(0.5);
  const double factor = 0.5 / (norm + 1e-6);
  for (std::size_t i = 0; i < f.params.size(); ++i) CHECK((f.params[i].grad - before[i] * factor).cwiseAbs().maxCoeff() < 1e-15);
  f.params.zero_grad();
  CHECK(f.params.grad_norm() == 0);
  REQUIRE_ERROR(f.params.add("net.0.weight", f.net[0].weight), DomainError,
                "reparam: ParameterList.add: name already used (got \"net.0.weight\")");
  REQUIRE_ERROR(f.params.add("", f.net[0].weight), DomainError, "reparam: ParameterList.add: name must not be empty (got \"\")");
  REQUIRE_ERROR(f.params.clip_grad_norm(0.0), DomainError, "reparam: clip_grad_norm: max_norm must be > 0 and finite (got 0)");
}

TEST_CASE("ThreadPool: every thread once, contiguous shards, the first exception rethrown", "[nn][threads]") {
  for (int n : {1, 2, 3, 5}) {
    ThreadPool pool(n);
    REQUIRE(pool.size() == n);
    for (int rep = 0; rep < 3; ++rep) {
      std::vector<int> calls(static_cast<std::size_t>(n), 0);
      pool.run([&](int t) { ++calls[static_cast<std::size_t>(t)]; });
      CHECK(std::all_of(calls.begin(), calls.end(), [](int c) { return c == 1; }));
    }
    for (Index rows : {0, 1, 7, 100}) {
      Index next = 0;
      for (int t = 0; t < n; ++t) {
        const auto s = ThreadPool::shard(rows, t, n);
        CHECK(s.first == next);
        CHECK(s.second >= rows / n);
        CHECK(s.second <= rows / n + 1);
        next += s.second;
      }
      CHECK(next == rows);
    }
  }
  ThreadPool pool(3);
  REQUIRE_THROWS_MATCHES(pool.run([](int t) {
    if (t >= 1) throw std::runtime_error("thread " + std::to_string(t));
  }),
                         std::runtime_error, Catch::Matchers::Message("thread 1"));
  int ran = 0;
  pool.run([&](int t) { if (t == 0) ran = 1; });  // usable after an exception
  CHECK(ran == 1);
  REQUIRE_ERROR(ThreadPool(-1), DomainError, "reparam: ThreadPool: threads must be >= 0 (got -1)");
  REQUIRE_ERROR(ThreadPool(ThreadPool::max_threads + 1), DomainError, "reparam: ThreadPool: threads must be at most 65536 (got 65537)");
  REQUIRE_ERROR(ThreadPool(std::numeric_limits<int>::max()), DomainError,
                "reparam: ThreadPool: threads must be at most 65536 (got 2147483647)");
  // run inside run (misuse) is refused, not a deadlock; the pool stays usable
  for (int n : {1, 2}) {
    ThreadPool p2(n);
    REQUIRE_ERROR(p2.run([&](int t) {
      if (t == 0) p2.run([](int) {});
    }),
                  GraphError, "reparam: ThreadPool.run: already running (run is not reentrant and takes one caller at a time)");
    int again = 0;
    p2.run([&](int t) { if (t == 0) again = 1; });
    CHECK(again == 1);
  }
  CHECK(ThreadPool(0).size() == ThreadPool::hardware_threads());
}

TEST_CASE("ThreadPool: every core means the CPUs this process may use, within its cgroup's quota", "[nn][threads]") {
  // cgroup v2's cpu.max and v1's quota and period, rounded up; no limit and bad text give 0
  CHECK(reparam::detail::cpu_max_cpus("200000 100000") == 2);
  CHECK(reparam::detail::cpu_max_cpus("150000 100000") == 2);
  CHECK(reparam::detail::cpu_max_cpus("50000 100000") == 1);
  CHECK(reparam::detail::cpu_max_cpus("1 100000") == 1);
  CHECK(reparam::detail::cpu_max_cpus("max 100000") == 0);
  CHECK(reparam::detail::cpu_max_cpus("") == 0);
  CHECK(reparam::detail::cpu_max_cpus("100000") == 0);
  CHECK(reparam::detail::cpu_max_cpus("100000 0") == 0);
  CHECK(reparam::detail::cpu_quota_cpus("-1", "100000") == 0);
  CHECK(reparam::detail::cpu_quota_cpus("400000", "100000") == 4);
  CHECK(reparam::detail::cpu_quota_cpus("400001", "100000") == 5);
  CHECK(reparam::detail::cpu_quota_cpus("x", "100000") == 0);
  CHECK(reparam::detail::cpu_quota_cpus("9223372036854775807", "1") == 0);  // absurd: ignored
  const int n = ThreadPool::hardware_threads();
  CHECK(n >= 1);
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(::sched_getaffinity(0, sizeof set, &set) == 0);
  const int quota = reparam::detail::cgroup_cpu_quota();
  CHECK(n == (quota > 0 ? std::min(CPU_COUNT(&set), quota) : CPU_COUNT(&set)));
#endif
}

TEST_CASE("DataParallel: the gradient of every thread count equals one tape's, the same bits every run", "[nn][threads]") {
  Fixture f;
  Tape tape;
  tape.backward(f.loss(tape, 0, f.x.rows()));
  const std::vector<Mat> reference = grads(f.params);
  for (int n : {1, 2, 3, 4}) {
    nn::DataParallel<double> dp(f.params, n);
    REQUIRE(dp.threads() == n);
    std::vector<Mat> first;
    for (int rep = 0; rep < 3; ++rep) {
      for (std::size_t i = 0; i < f.params.size(); ++i)  // replaced, not added to, never read
        f.params[i].grad.setConstant(rep == 1 ? std::numeric_limits<double>::quiet_NaN() : 5);
      dp.run(f.x.rows(), [&](Tape& t, Index begin, Index count, int) { t.backward(f.loss(t, begin, count)); });
      const std::vector<Mat> g = grads(f.params);
      for (std::size_t i = 0; i < g.size(); ++i) {
        INFO(n << " threads, " << f.params.name(i));
        CHECK((g[i] - reference[i]).cwiseAbs().maxCoeff() <= 1e-15 * (1 + reference[i].cwiseAbs().maxCoeff()));
      }
      if (rep == 0) first = g;
      CHECK(g == first);  // bit for bit
    }
    // accumulate = true adds to what the gradients hold
    dp.run(f.x.rows(), [&](Tape& t, Index begin, Index count, int) { t.backward(f.loss(t, begin, count)); }, true);
    for (std::size_t i = 0; i < f.params.size(); ++i)
      CHECK((f.params[i].grad - 2 * reference[i]).cwiseAbs().maxCoeff() <= 1e-15 * (1 + reference[i].cwiseAbs().maxCoeff()));
    // evaluate: no gradients recorded, every row seen once
    std::vector<Index> seen(static_cast<std::size_t>(n), -1);
    std::vector<int> recorded(static_cast<std::size_t>(n), 0);  // Catch's macros are not thread-safe: check after
    dp.evaluate(f.x.rows(), [&](Tape& t, Index, Index count, int th) {
      recorded[static_cast<std::size_t>(th)] = f.net(t.constant(f.x.topRows(count))).requires_grad();
      seen[static_cast<std::size_t>(th)] = count;
    });
    CHECK(std::accumulate(seen.begin(), seen.end(), Index(0)) == f.x.rows());
    CHECK(std::accumulate(recorded.begin(), recorded.end(), 0) == 0);
  }
  {
    // Threads without rows, and a step whose loss leaves out the last layer on some threads:
    // every gradient still replaced (zeros where nothing flowed), no garbage kept.
    nn::DataParallel<double> dp(f.params, 4);
    for (std::size_t i = 0; i < f.params.size(); ++i) f.params[i].grad.setConstant(std::numeric_limits<double>::quiet_NaN());
    dp.run(2, [&](Tape& t, Index begin, Index count, int) { t.backward(f.loss(t, begin, count)); });
    for (std::size_t i = 0; i < f.params.size(); ++i) CHECK(f.params[i].grad.allFinite());
    dp.run(4, [&](Tape& t, Index, Index, int th) {
      if (th % 2 == 0) t.backward(sum(t.parameter(f.params[0])));
    });
    CHECK(f.params[0].grad == Mat::Constant(f.params[0].rows(), f.params[0].cols(), 2.0));
    for (std::size_t i = 1; i < f.params.size(); ++i) CHECK(f.params[i].grad == Mat::Zero(f.params[i].rows(), f.params[i].cols()));
  }
  nn::DataParallel<double> dp(f.params, 2);
  REQUIRE_THROWS_MATCHES(dp.run(4, [&](Tape& t, Index, Index, int th) {
    if (th == 1) t.backward(t.constant(Mat::Zero(1, 2)));  // not 1x1
  }),
                         ShapeError, Catch::Matchers::Message("reparam: backward: output must be 1x1 (got 1x2)"));
}

TEST_CASE("checkpoints: parameters and Adam state round-trip bit for bit", "[nn][checkpoint]") {
  Fixture f;
  optim::Adam<double> adam(f.params.pointers(), {1e-2});
  for (int s = 0; s < 3; ++s) {
    f.params.zero_grad();
    Tape t;
    t.backward(f.loss(t, 0, f.x.rows()));
    adam.step();
  }
  const std::string path = temp_path("roundtrip.rpck");
  nn::save_checkpoint(path, f.params, &adam);
  Fixture g;  // another model of the same shapes (same seed: change it first)
  for (std::size_t i = 0; i < g.params.size(); ++i) g.params[i].value.setConstant(9);
  optim::Adam<double> adam2(g.params.pointers(), {1e-2});
  nn::load_checkpoint(path, g.params, &adam2);
  CHECK(adam2.steps() == 3);
  for (std::size_t i = 0; i < f.params.size(); ++i) {
    CHECK(g.params[i].value == f.params[i].value);
    CHECK(adam2.exp_avg(i) == adam.exp_avg(i));
    CHECK(adam2.exp_avg_sq(i) == adam.exp_avg_sq(i));
  }
  // Parameters only: a file with Adam state loads into a model without an optimizer.
  Fixture h;
  nn::load_checkpoint(path, h.params);
  CHECK(h.params[0].value == f.params[0].value);
  // float too
  Rng r(2);
  nn::Linear<float> lf(3, 2, r);
  nn::ParameterList<float> pf;
  lf.collect(pf);
  nn::save_checkpoint(path, pf);
  nn::Linear<float> lf2(3, 2, r);
  nn::ParameterList<float> pf2;
  lf2.collect(pf2);
  nn::load_checkpoint(path, pf2);
  CHECK(lf2.weight.value == lf.weight.value);
  std::remove(path.c_str());
}

TEST_CASE("checkpoints: a StateList (a model's non-trained state) round-trips and is checked by name and shape", "[nn][checkpoint]") {
  Fixture f;
  optim::Adam<double> adam(f.params.pointers(), {1e-2});
  Mat baseline = Mat::Constant(1, 2, 0.1), running = (Mat(2, 3) << 1, -2, 3.5, 1e-300, -0.0, 7).finished();
  nn::StateList<double> state;
  state.add("baseline", baseline);
  state.add("running", running);
  CHECK(state.size() == 2);
  CHECK(state.name(1) == "running");
  CHECK(&state[0] == &baseline);
  REQUIRE_ERROR(state.add("", baseline), DomainError, "reparam: StateList.add: name must not be empty (got \"\")");
  REQUIRE_ERROR(state.add("running", baseline), DomainError, "reparam: StateList.add: name already used (got \"running\")");
  const std::string path = temp_path("state.rpck");
  nn::save_checkpoint(path, f.params, &adam, &state);

  Fixture g;
  optim::Adam<double> adam2(g.params.pointers(), {1e-2});
  Mat b2 = Mat::Constant(1, 2, 9), r2 = Mat::Constant(2, 3, 9);
  nn::StateList<double> state2;
  state2.add("running", r2);  // another order: entries are found by name
  state2.add("baseline", b2);
  nn::load_checkpoint(path, g.params, &adam2, &state2);
  CHECK(b2 == baseline);
  CHECK(r2 == running);
  CHECK(std::signbit(r2(1, 1)));  // the bits, -0 included
  // The state is the model's, as its parameters are (unlike Adam's, which a model without an
  // optimizer ignores): a model that leaves it out is refused, naming the first entry.
  Fixture h;
  const std::string no_adam = temp_path("state_no_adam.rpck");
  nn::save_checkpoint(no_adam, f.params, static_cast<optim::Adam<double>*>(nullptr), &state);
  REQUIRE_ERROR(nn::load_checkpoint(no_adam, h.params), FileError,
                "reparam: load_checkpoint: \"state.baseline\" is in the file but not in the model (" + no_adam + ")");
  std::remove(no_adam.c_str());

  // Each entry the list names must be in the file, with its shape; the file's others must be in the list.
  Mat r3 = Mat::Constant(3, 2, 9), other = Mat::Constant(1, 1, 9);
  nn::StateList<double> wrong_shape, missing, fewer;
  wrong_shape.add("baseline", b2);
  wrong_shape.add("running", r3);
  REQUIRE_ERROR(nn::load_checkpoint(path, g.params, &adam2, &wrong_shape), FileError,
                "reparam: load_checkpoint: shape of \"state.running\" differs (" + path + " has 2x3, the model 3x2)");
  missing.add("baseline", b2);
  missing.add("running", r2);
  missing.add("other", other);
  REQUIRE_ERROR(nn::load_checkpoint(path, g.params, &adam2, &missing), FileError,
                "reparam: load_checkpoint: \"state.other\" is missing (" + path + ")");
  fewer.add("baseline", b2);
  REQUIRE_ERROR(nn::load_checkpoint(path, g.params, &adam2, &fewer), FileError,
                "reparam: load_checkpoint: \"state.running\" is in the file but not in the model (" + path + ")");
  // A refused file changes nothing: parameters, Adam's state and the list's matrices.
  CHECK(other == Mat::Constant(1, 1, 9));
  b2.setConstant(5);
  REQUIRE_ERROR(nn::load_checkpoint(path, g.params, &adam2, &missing), FileError,
                "reparam: load_checkpoint: \"state.other\" is missing (" + path + ")");
  CHECK(b2 == Mat::Constant(1, 2, 5));
  // A file saved without state is refused by a model that asks for it.
  nn::save_checkpoint(path, f.params, &adam);
  REQUIRE_ERROR(nn::load_checkpoint(path, g.params, &adam2, &state2), FileError,
                "reparam: load_checkpoint: \"state.running\" is missing (" + path + ")");  // the list's first
  // State far larger than the parameters: within the size bound that loading reads up to.
  Mat big = Mat::Constant(200, 200, 0.25), big2 = Mat::Zero(200, 200);
  nn::StateList<double> with_big, with_big2;
  with_big.add("big", big);
  with_big2.add("big", big2);
  nn::save_checkpoint(path, f.params, &adam, &with_big);
  nn::load_checkpoint(path, g.params, &adam2, &with_big2);
  CHECK(big2 == big);
  std::remove(path.c_str());
}

TEST_CASE("checkpoints: a corrupt, truncated or mismatched file is refused, naming what differs, and changes nothing", "[nn][checkpoint][errors]") {
  Fixture f;
  const std::string path = temp_path("bad.rpck");
  nn::save_checkpoint(path, f.params);
  std::vector<char> good;
  {
    std::ifstream in(path, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto write = [&](const std::vector<char>& b) {
    std::ofstream o(path, std::ios::binary | std::ios::trunc);
    o.write(b.data(), std::streamsize(b.size()));
  };
  Fixture g;
  for (std::size_t i = 0; i < g.params.size(); ++i) g.params[i].value.setConstant(9);
  auto unchanged = [&] {
    for (std::size_t i = 0; i < g.params.size(); ++i) CHECK(g.params[i].value == Mat::Constant(g.params[i].rows(), g.params[i].cols(), 9));
  };

  std::vector<char> b = good;
  b[40] ^= 1;
  write(b);
  REQUIRE_ERROR(nn::load_checkpoint(path, g.params), FileError,
                "reparam: load_checkpoint: checksum mismatch (" + path + " is corrupt or truncated)");
  b = good;
  b.resize(b.size() - 9);
  write(b);
  REQUIRE_ERROR(nn::load_checkpoint(path, g.params), FileError,
                "reparam: load_checkpoint: checksum mismatch (" + path + " is corrupt or truncated)");
  write(std::vector<char>(good.begin(), good.begin() + 10));
  REQUIRE_ERROR(nn::load_checkpoint(path, g.params), FileError, "reparam: load_checkpoint: file is truncated (" + path + ": 10 bytes)");
  b = good;
  b[0] = 'X';
  write(b);
  REQUIRE_ERROR(nn::load_checkpoint(path, g.params), FileError,
                "reparam: load_checkpoint: not a reparam checkpoint (" + path + ": magic is not \"RPCK\")");
  b = good;
  b[4] = 7;
  write(b);
  REQUIRE_ERROR(nn::load_checkpoint(path, g.params), FileError,
                "reparam: load_checkpoint: unsupported format version (" + path + ": version 7, this library reads 1)");
  unchanged();

  write(good);
  Rng rng(1);
  nn::Mlp<double> other({6, 7, 4, 3}, nn::Activation::tanh, rng);
  nn::ParameterList<double> po;
  other.collect(po, "net");
  REQUIRE_ERROR(nn::load_checkpoint(path, po), FileError,
                "reparam: load_checkpoint: shape of \"net.0.weight\" differs (" + path + " has 6x5, the model 6x7)");
  nn::Mlp<double> renamed({6, 5, 4, 3}, nn::Activation::tanh, rng);
  nn::ParameterList<double> pr;
  renamed.collect(pr, "encoder");
  REQUIRE_ERROR(nn::load_checkpoint(path, pr), FileError, "reparam: load_checkpoint: \"encoder.0.weight\" is missing (" + path + ")");
  nn::ParameterList<double> fewer;
  fewer.add("net.0.weight", g.net[0].weight);
  REQUIRE_ERROR(nn::load_checkpoint(path, fewer), FileError,
                "reparam: load_checkpoint: \"net.0.bias\" is in the file but not in the model (" + path + ")");
  optim::Adam<double> adam(g.params.pointers());
  REQUIRE_ERROR(nn::load_checkpoint(path, g.params, &adam), FileError,
                "reparam: load_checkpoint: \"adam.exp_avg.net.0.weight\" is missing (" + path + ")");
  nn::ParameterList<float> pf;
  nn::Linear<float> lf(6, 5, rng);
  lf.collect(pf, "net.0");
  REQUIRE_ERROR(nn::load_checkpoint(path, pf), FileError,
                "reparam: load_checkpoint: scalar type differs (" + path + " holds double, the model is float)");
  unchanged();

  // Reading stops at the size of the largest checkpoint this model could take (parameters and
  // Adam's moments) and at a wrong magic number: a huge file or an endless one is not read whole.
  const std::string with_adam = temp_path("bad_adam.rpck");
  optim::Adam<double> full(f.params.pointers());
  nn::save_checkpoint(with_adam, f.params, &full);
  std::ifstream in_adam(with_adam, std::ios::binary | std::ios::ate);
  const std::uint64_t largest = static_cast<std::uint64_t>(in_adam.tellg());
  in_adam.close();
  nn::load_checkpoint(with_adam, g.params);  // Adam's state is allowed in the file, and ignored
  CHECK(g.params[0].value == f.params[0].value);
  for (std::size_t i = 0; i < g.params.size(); ++i) g.params[i].value.setConstant(9);
  b = good;
  b.resize(good.size() + (1 << 20));
  write(b);
  std::string message;
  try {
    nn::load_checkpoint(path, g.params);
  } catch (const FileError& e) {
    message = e.what();
  }
  const std::string prefix = "reparam: load_checkpoint: file is larger than any checkpoint of this model (" + path + ": more than ";
  REQUIRE(message.compare(0, prefix.size(), prefix) == 0);
  REQUIRE(message.size() > prefix.size() + 7);
  CHECK(message.substr(message.size() - 7) == " bytes)");
  const std::uint64_t bound = std::stoull(message.substr(prefix.size()));
  CHECK(bound >= largest);                            // the largest real file still loads
  CHECK(bound - largest <= 19 * g.params.size());     // the bound's slack: the shorter name prefixes
  // A step count below zero (Adam's bias corrections would be garbage) is refused.
  optim::Adam<double> negative(f.params.pointers());
  negative.set_steps(-3);
  nn::save_checkpoint(path, f.params, &negative);
  optim::Adam<double> reader(g.params.pointers());
  REQUIRE_ERROR(nn::load_checkpoint(path, g.params, &reader), FileError,
                "reparam: load_checkpoint: \"adam.steps\" is negative (" + path + ": -3)");
  CHECK(reader.steps() == 0);
  REQUIRE_ERROR(nn::load_checkpoint(".", g.params), FileError, "reparam: load_checkpoint: read failed (.: Is a directory)");
  if (std::ifstream("/dev/zero"))
    REQUIRE_ERROR(nn::load_checkpoint("/dev/zero", g.params), FileError,
                  "reparam: load_checkpoint: not a reparam checkpoint (/dev/zero: magic is not \"RPCK\")");
  unchanged();
  std::remove(with_adam.c_str());
  std::remove(path.c_str());
  REQUIRE_ERROR(nn::load_checkpoint(path, g.params), FileError,
                "reparam: load_checkpoint: cannot open (" + path + ": No such file or directory)");
}

TEST_CASE("checkpoints: saving goes through a temporary file, a failed save leaves the previous checkpoint", "[nn][checkpoint][errors]") {
  Fixture f;
  const std::string path = temp_path("atomic.rpck");
  nn::save_checkpoint(path, f.params);
  std::ifstream tmp(path + ".tmp");
  CHECK_FALSE(tmp.good());  // renamed away
  // A save that cannot write its temporary file fails and leaves the old checkpoint whole.
  REQUIRE_ERROR(nn::save_checkpoint("no_such_dir/x.rpck", f.params), FileError,
                "reparam: save_checkpoint: cannot open for writing (no_such_dir/x.rpck.tmp: No such file or directory)");
  std::ofstream block(path + ".tmp");  // a stale temporary from a crash does not matter
  block << "junk";
  block.close();
  Fixture g;
  nn::save_checkpoint(path, g.params);
  nn::load_checkpoint(path, f.params);
  CHECK(f.params[0].value == g.params[0].value);
  std::remove(path.c_str());
}

TEST_CASE("Adam.step(pool): the same bits as step() at every thread count", "[nn][threads]") {
  Gen g(8);
  std::vector<Parameter<float>> a, b;
  for (Index n : {1, 7, 4099, 10000}) {
    a.emplace_back(g.matrix(1, n).cast<float>());
    a.back().grad = g.matrix(1, n).cast<float>();
  }
  for (int threads : {1, 2, 3}) {
    b = a;
    std::vector<Parameter<float>> c = a;
    std::vector<Parameter<float>*> pb, pc;
    for (auto& p : b) pb.push_back(&p);
    for (auto& p : c) pc.push_back(&p);
    optim::Adam<float> ob(pb, {0.01f, 0.9f, 0.999f, 1e-8f, 0.01f}), oc(pc, {0.01f, 0.9f, 0.999f, 1e-8f, 0.01f});
    ThreadPool pool(threads);
    for (int s = 0; s < 3; ++s) {
      ob.step();
      oc.step(pool);
    }
    for (std::size_t i = 0; i < b.size(); ++i) {
      INFO(threads << " threads, parameter " << i);
      CHECK(b[i].value == c[i].value);
      CHECK(ob.exp_avg_sq(i) == oc.exp_avg_sq(i));
    }
  }
}

TEST_CASE("DataParallel.step with Adam: the same bits as run then Adam.step(pool), the sum taken in the update", "[nn][threads]") {
  // Parameters of 2800 elements span two of Adam's blocks; sizes 70, 40, 3 leave packet tails.
  Rng init(9);
  nn::Mlp<float> net0({6, 70, 40, 3}, nn::Activation::tanh, init);
  const Eigen::MatrixXf x = Gen(4).matrix(13, 6).cast<float>(), y = Gen(5).matrix(13, 3).cast<float>();
  for (float wd : {0.0f, 0.01f})
    for (int n : {1, 2, 3, 4}) {
      // a: run, then Adam.step(pool); b: DataParallel.step. Adam holds all parameters but the
      // last bias (summed by DataParallel alone) plus one DataParallel does not hold.
      nn::Mlp<float> na = net0, nb = net0;
      nn::ParameterList<float> la, lb;
      na.collect(la);
      nb.collect(lb);
      Parameter<float> extra_a(Eigen::MatrixXf::Constant(2, 3, 0.5f)), extra_b = extra_a;
      auto held = [](nn::ParameterList<float>& l, Parameter<float>& extra) {
        std::vector<Parameter<float>*> v = l.pointers();
        v.pop_back();
        v.push_back(&extra);
        return v;
      };
      optim::Adam<float> oa(held(la, extra_a), {0.01f, 0.9f, 0.999f, 1e-8f, wd}), ob(held(lb, extra_b), {0.01f, 0.9f, 0.999f, 1e-8f, wd});
      nn::DataParallel<float> da(la, n), db(lb, n);
      auto loss = [&](nn::Mlp<float>& net) {
        return [&net, &x, &y](BasicTape<float>& t, Index f, Index c, int) {
          const BasicVar<float> out = net(t.constant(x.middleRows(f, c)));
          t.backward(sum(square(out - t.constant(y.middleRows(f, c)))) / 13.0f);
        };
      };
      for (int s = 0; s < 3; ++s) {
        extra_a.grad = extra_b.grad = Eigen::MatrixXf::Constant(2, 3, 0.25f * float(s + 1));
        da.run(13, loss(na));
        oa.step(da.pool());
        db.step(13, loss(nb), ob);
      }
      for (std::size_t i = 0; i < la.size(); ++i) {
        INFO(n << " threads, weight decay " << wd << ", " << la.name(i));
        CHECK(la[i].value == lb[i].value);
        CHECK(la[i].grad == lb[i].grad);  // the sum over threads is left in the gradient
      }
      for (std::size_t i = 0; i + 1 < la.size(); ++i) CHECK(oa.exp_avg_sq(i) == ob.exp_avg_sq(i));
      CHECK(extra_a.value == extra_b.value);
      CHECK(extra_a.value != Eigen::MatrixXf::Constant(2, 3, 0.5f));
    }
  // with SGD (no fused path) it is run then step(pool)
  Fixture f, g;
  optim::SGD<double> sf(f.params.pointers(), {0.1}), sg(g.params.pointers(), {0.1});
  nn::DataParallel<double> df(f.params, 2), dg(g.params, 2);
  df.run(f.x.rows(), [&](Tape& t, Index b, Index c, int) { t.backward(f.loss(t, b, c)); });
  sf.step();
  dg.step(g.x.rows(), [&](Tape& t, Index b, Index c, int) { t.backward(g.loss(t, b, c)); }, sg);
  for (std::size_t i = 0; i < f.params.size(); ++i) CHECK(f.params[i].value == g.params[i].value);
}

TEST_CASE("Mlp.apply: the same map with the parameters given as Vars, on a tape of doubles or of duals", "[nn][second_order]") {
  Rng rng(31);
  nn::Mlp<double> net({3, 5, 2}, nn::Activation::tanh, rng, nn::Activation::softplus);
  nn::ParameterList<double> list;
  net.collect(list);
  const Mat x = test::Gen(32).matrix(4, 3);
  Tape t;
  std::vector<Var> leaves;
  for (std::size_t i = 0; i < list.size(); ++i) leaves.push_back(t.variable(list[i].value));
  const Mat a = net.apply(t.constant(x), leaves).value(), b = net(t.constant(x)).value();
  REQUIRE(a == b);
  // on duals: the values are the same map's
  BasicTape<Dual<double>> td;
  std::vector<BasicVar<Dual<double>>> ld;
  for (std::size_t i = 0; i < list.size(); ++i) ld.push_back(td.variable(list[i].value.cast<Dual<double>>()));
  const auto yd = net.apply(td.constant(x.cast<Dual<double>>()), ld).value();
  for (Index k = 0; k < a.size(); ++k) CHECK(std::abs(yd.data()[k].v - a.data()[k]) <= 1e-14);
  REQUIRE_ERROR(net.apply(t.constant(x), std::vector<Var>(leaves.begin(), leaves.begin() + 3)), ShapeError,
                "reparam: Mlp.apply: needs 4 parameters from index 0 (got 3)");
  std::vector<Var> swapped = leaves;
  std::swap(swapped[0], swapped[2]);
  REQUIRE_ERROR(net.apply(t.constant(x), swapped), ShapeError,
                "reparam: Mlp.apply: parameters of layer 0 do not fit (5x2 and 1x5 for 3x5 and 1x5)");
}
