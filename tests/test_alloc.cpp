// Steady state allocates nothing: rebuilding the same graph on a cleared tape, forward and
// backward, makes no heap allocation. Every malloc-family call (Eigen allocates with malloc) is
// counted through -Wl,--wrap, and every operator new through replacement.
#include <atomic>
#include <cstdlib>
#include <new>

#include "support.hpp"

namespace {
std::atomic<long> g_allocs{0};
}

extern "C" {
void* __real_malloc(std::size_t);
void* __real_calloc(std::size_t, std::size_t);
void* __real_realloc(void*, std::size_t);
int __real_posix_memalign(void**, std::size_t, std::size_t);
void* __real_aligned_alloc(std::size_t, std::size_t);
void* __wrap_malloc(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __real_malloc(n);
}
void* __wrap_calloc(std::size_t n, std::size_t s) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __real_calloc(n, s);
}
void* __wrap_realloc(void* p, std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __real_realloc(p, n);
}
int __wrap_posix_memalign(void** p, std::size_t a, std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __real_posix_memalign(p, a, n);
}
void* __wrap_aligned_alloc(std::size_t a, std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __real_aligned_alloc(a, n);
}
}

void* operator new(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = __real_malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, std::align_val_t a) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  void* p = nullptr;
  const std::size_t al = std::max(static_cast<std::size_t>(a), sizeof(void*));
  if (__real_posix_memalign(&p, al, n ? n : 1) != 0) throw std::bad_alloc();
  return p;
}
void* operator new[](std::size_t n, std::align_val_t a) { return operator new(n, a); }
// The nothrow forms too, so that every new is malloc and every delete free (sanitizers check it).
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __real_malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  void* p = nullptr;
  const std::size_t al = std::max(static_cast<std::size_t>(a), sizeof(void*));
  return __real_posix_memalign(&p, al, n ? n : 1) == 0 ? p : nullptr;
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t& t) noexcept { return operator new(n, a, t); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

using namespace reparam;
using test::Gen;
using test::Mat;

namespace {

template <class T>
using M = Matrix<T>;

// One training step of a 3-layer MLP (GEMM-sized, so Eigen's blocked product path is exercised)
// plus every other operation; returns the loss.
template <class T>
T step(BasicTape<T>& tape, Parameter<T>& w1, Parameter<T>& b1, Parameter<T>& w2, Parameter<T>& b2, Parameter<T>& w3,
       const M<T>& x, const M<T>& y) {
  tape.clear();
  const BasicVar<T> in = tape.constant(x);
  const BasicVar<T> h1 = relu(matmul(in, tape.variable(w1)) + tape.variable(b1));
  const BasicVar<T> h2 = tanh(matmul(h1, tape.variable(w2)) + tape.variable(b2));
  const BasicVar<T> logits = matmul(h2, tape.variable(w3));
  const BasicVar<T> ce = -sum(log_softmax(logits) * tape.constant(y)) / T(x.rows());
  const BasicVar<T> misc = mean(softplus(logits) + log_sigmoid(logits) + sigmoid(logits) * exp(logits * T(0.01)) +
                                sqrt(square(logits) + T(1)) + log(abs(logits) + T(1)) + log1p(square(logits)) +
                                expm1(logits * T(0.01)) + pow(square(logits) + T(1), T(0.5)) + softmax(logits)) +
                           sum(logsumexp(logits)) * T(0.01) + sum(sum_rows(h2)) * T(0.001) +
                           sum(sum_cols(h1) / (T(1) + sum_cols(h1))) * T(0.001) +
                           sum(reshape(transpose(logits), 1, -1)) * T(0.001) + sum(stop_gradient(h2) * h2) * T(0.001) +
                           sum(bce_with_logits(logits, tape.constant(y))) * T(0.001) + mean(h2 - T(1)) + mean(T(2) - h2) +
                           mean(T(3) / (h2 + T(2))) * (tape.constant(T(1)) - T(0.5));
  const BasicVar<T> loss = ce + misc * T(0.01);
  tape.backward(loss);
  return loss.item();
}

template <class T>
void check_steady_state() {
  Gen gen(60);
  const Index batch = 128;
  Parameter<T> w1(gen.matrix(784, 256, -0.05, 0.05).cast<T>()), b1(M<T>::Zero(1, 256));
  Parameter<T> w2(gen.matrix(256, 256, -0.05, 0.05).cast<T>()), b2(M<T>::Zero(1, 256));
  Parameter<T> w3(gen.matrix(256, 10, -0.05, 0.05).cast<T>());
  const M<T> x = gen.matrix(batch, 784, 0, 1).cast<T>();
  M<T> y = M<T>::Zero(batch, 10);
  for (Index i = 0; i < batch; ++i) y(i, i % 10) = T(1);
  BasicTape<T> tape;
  optim::Adam<T> opt({&w1, &b1, &w2, &b2, &w3}, {T(1e-3)});
  // Warm-up builds size the arena and the GEMM workspace.
  for (int i = 0; i < 3; ++i) {
    opt.zero_grad();
    step(tape, w1, b1, w2, b2, w3, x, y);
    opt.step();
  }
  const long before = g_allocs.load();
  T last = 0;
  for (int i = 0; i < 5; ++i) {
    opt.zero_grad();
    last = step(tape, w1, b1, w2, b2, w3, x, y);
    opt.step();
  }
  const long during = g_allocs.load() - before;
  CHECK(std::isfinite(double(last)));
  CHECK(tape.size() > 80);
  INFO("heap allocations in 5 steady-state steps: " << during);
  CHECK(during == 0);
}

}  // namespace

TEST_CASE("the counter sees Eigen's and the standard library's allocations", "[alloc]") {
  const long before = g_allocs.load();
  { Mat m(100, 100); m.setZero(); }
  const long eigen = g_allocs.load() - before;
  CHECK(eigen >= 1);
  { std::vector<int> v(10); (void)v; }
  CHECK(g_allocs.load() - before >= eigen + 1);
}

TEST_CASE("rebuilding the same graph on a cleared tape allocates nothing (double)", "[alloc]") { check_steady_state<double>(); }

TEST_CASE("rebuilding the same graph on a cleared tape allocates nothing (float)", "[alloc]") { check_steady_state<float>(); }

TEST_CASE("a first build that needed several arena blocks merges them for the next", "[alloc]") {
  Tape tape;
  auto build = [&] {
    tape.clear();
    Var x = tape.variable(Mat::Ones(300, 300));
    for (int i = 0; i < 20; ++i) x = tanh(x) * 0.5 + 0.1;  // ~ 40 nodes of 90,000 doubles
    tape.backward(sum(x));
  };
  build();
  build();  // merges the blocks on clear
  const long before = g_allocs.load();
  build();
  build();
  CHECK(g_allocs.load() - before == 0);
}
