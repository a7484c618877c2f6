#pragma once
/// \file parallel.hpp  `ThreadPool`: a fixed set of threads that run one function on every
/// thread and wait for all of them, without touching the heap per call. The building block of
/// data-parallel training steps (`nn::DataParallel`).
///
///     reparam::ThreadPool pool(4);                  // the caller plus 3 workers
///     pool.run([&](int t) { work_on_shard(t); });  // t = 0..3; returns when all are done

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <reparam/errors.hpp>
#include <reparam/matrix.hpp>

namespace reparam {

/// Threads that run `f(t)` for t = 0..size()-1, one call per thread; thread 0 is the caller.
/// `run` returns when every call has returned and rethrows the first exception (by thread
/// number) any of them threw. Workers sleep between calls. Not reentrant: a second `run` while one
/// is under way (from inside f, or from another thread) throws GraphError.
class ThreadPool {
 public:
  /// `threads` in all, the calling thread included; 0 means one per hardware thread.
  explicit ThreadPool(int threads = 0) {
    if (threads < 0) detail::throw_domain("ThreadPool", "threads must be >= 0 (got " + std::to_string(threads) + ")");
    if (threads == 0) threads = hardware_threads();
    errors_.resize(static_cast<std::size_t>(threads));
    workers_.reserve(static_cast<std::size_t>(threads - 1));
    for (int t = 1; t < threads; ++t) workers_.emplace_back([this, t] { loop(t); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_.store(true, std::memory_order_release);
    }
    start_.notify_all();
    for (std::thread& w : workers_) w.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Number of threads, the caller included.
  int size() const noexcept { return static_cast<int>(workers_.size()) + 1; }

  /// The number of hardware threads (at least 1).
  static int hardware_threads() noexcept { return std::max(1, static_cast<int>(std::thread::hardware_concurrency())); }

  /// Calls f(t) on thread t for every t, waits for all, rethrows the first exception.
  template <class F>
  void run(F&& f) {
    using Fn = std::remove_reference_t<F>;
    if (busy_.exchange(true))
      detail::throw_graph("ThreadPool.run", "already running (run is not reentrant and takes one caller at a time)");
    struct Release {
      std::atomic<bool>& b;
      ~Release() { b = false; }
    } release{busy_};
    if (workers_.empty()) {
      f(0);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(m_);
      fn_ = [](void* ctx, int t) { (*static_cast<Fn*>(ctx))(t); };
      ctx_ = const_cast<void*>(static_cast<const void*>(&f));
      pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
      generation_.store(generation_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }
    start_.notify_all();  // no system call when every worker is still spinning
    call(0);
    if (!spin([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lock(m_);
      done_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
    }
    for (std::exception_ptr& e : errors_)
      if (e) {
        std::exception_ptr first = std::move(e);
        for (std::exception_ptr& r : errors_) r = nullptr;
        std::rethrow_exception(first);
      }
  }

  /// Rows [first, first + count) of `rows` for shard t of n: contiguous, sizes differ by at most one.
  static std::pair<Index, Index> shard(Index rows, int t, int n) noexcept {
    const Index base = rows / n, extra = rows % n;
    const Index first = t * base + std::min<Index>(t, extra);
    return {first, base + (t < extra ? 1 : 0)};
  }

 private:
  void call(int t) noexcept {
    try {
      fn_(ctx_, t);
    } catch (...) {
      errors_[static_cast<std::size_t>(t)] = std::current_exception();
    }
  }
  /// Polls `ready` for up to about 100 microseconds: the calls of one training step follow each
  /// other closely (forward and backward, the sum over threads, the optimizer), and waking a
  /// sleeping thread costs tens of microseconds. Then the caller sleeps on a condition variable.
  template <class Ready>
  static bool spin(Ready&& ready) noexcept {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(100);
    for (int i = 1;; ++i) {
      if (ready()) return true;
      if (i % 64 == 0 && std::chrono::steady_clock::now() > until) return false;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }
  void loop(int t) {
    std::uint64_t seen = 0;
    for (;;) {
      if (!spin([&] { return generation_.load(std::memory_order_acquire) != seen || stop_.load(std::memory_order_acquire); })) {
        std::unique_lock<std::mutex> lock(m_);
        start_.wait(lock, [&] { return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen; });
      }
      if (stop_.load(std::memory_order_acquire)) return;
      seen = generation_.load(std::memory_order_acquire);
      call(t);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        { std::lock_guard<std::mutex> lock(m_); }  // the caller is either before its check or asleep
        done_.notify_one();
      }
    }
  }

  std::vector<std::thread> workers_;
  std::vector<std::exception_ptr> errors_;
  std::mutex m_;
  std::condition_variable start_, done_;
  void (*fn_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> busy_{false};
};

}  // namespace reparam
