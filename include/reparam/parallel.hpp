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
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

#include <reparam/errors.hpp>
#include <reparam/matrix.hpp>

namespace reparam {
namespace detail {

/// CPUs a quota allows, rounded up: cgroup v2's cpu.max ("200000 100000": 2; "max 100000": no
/// limit) or v1's quota and period in microseconds (quota -1: no limit). 0 when there is none or
/// the text is not understood.
inline int cpu_quota_cpus(const std::string& quota, const std::string& period) noexcept {
  char* end = nullptr;
  const long long q = std::strtoll(quota.c_str(), &end, 10);
  if (end == quota.c_str() || q <= 0) return 0;
  const long long per = std::strtoll(period.c_str(), &end, 10);
  if (end == period.c_str() || per <= 0) return 0;
  const long long cpus = q / per + (q % per != 0 ? 1 : 0);  // rounded up, without overflow
  return cpus > 0 && cpus < (1 << 20) ? static_cast<int>(cpus) : 0;
}
inline int cpu_max_cpus(const std::string& cpu_max) noexcept {  // "<quota|max> <period>"
  const std::size_t space = cpu_max.find(' ');
  if (space == std::string::npos) return 0;
  return cpu_quota_cpus(cpu_max.substr(0, space), cpu_max.substr(space + 1));
}

#if defined(__linux__)
inline std::string read_first_line(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return {};
  char buf[256];
  const bool got = std::fgets(buf, sizeof buf, f) != nullptr;
  std::fclose(f);
  if (!got) return {};
  std::string line(buf);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  return line;
}
/// The smallest CPU quota of this process's control group and those above it (0: none), from
/// /proc/self/cgroup: cgroup v2 ("0::<path>", <path>/cpu.max under /sys/fs/cgroup) or v1 (the
/// "cpu" controller's <path>/cpu.cfs_quota_us and cpu.cfs_period_us). Never throws.
inline int cgroup_cpu_quota() noexcept {
  try {
    int best = 0;
    auto take = [&best](int cpus) {
      if (cpus > 0 && (best == 0 || cpus < best)) best = cpus;
    };
    auto walk = [](std::string path, auto&& visit) {  // path, then each parent up to "/"
      for (;;) {
        visit(path == "/" ? std::string() : path);
        if (path.empty() || path == "/") return;
        const std::size_t slash = path.find_last_of('/');
        path = slash == 0 || slash == std::string::npos ? std::string("/") : path.substr(0, slash);
      }
    };
    std::FILE* f = std::fopen("/proc/self/cgroup", "r");
    if (!f) return 0;
    struct Closer {
      std::FILE* f;
      ~Closer() { std::fclose(f); }
    } closer{f};
    char buf[1024];
    while (std::fgets(buf, sizeof buf, f)) {
      std::string line(buf);
      while (!line.empty() && line.back() == '\n') line.pop_back();
      const std::size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
      if (b == std::string::npos) continue;
      const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
      if (line.compare(0, a, "0") == 0 && controllers.empty()) {  // v2
        walk(path, [&](const std::string& p) { take(cpu_max_cpus(read_first_line("/sys/fs/cgroup" + p + "/cpu.max"))); });
      } else if (("," + controllers + ",").find(",cpu,") != std::string::npos) {  // v1
        for (const char* root : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"})
          walk(path, [&](const std::string& p) {
            const std::string dir = std::string(root) + p;
            take(cpu_quota_cpus(read_first_line(dir + "/cpu.cfs_quota_us"), read_first_line(dir + "/cpu.cfs_period_us")));
          });
      }
    }
    return best;
  } catch (...) {
    return 0;
  }
}
#endif

}  // namespace detail

/// Threads that run `f(t)` for t = 0..size()-1, one call per thread; thread 0 is the caller.
/// `run` returns when every call has returned and rethrows the first exception (by thread
/// number) any of them threw. Workers sleep between calls. Not reentrant: a second `run` while one
/// is under way (from inside f, or from another thread) throws GraphError.
class ThreadPool {
 public:
  /// `threads` in all, the calling thread included; 0 means hardware_threads(): one per CPU this
  /// process may run on.
  explicit ThreadPool(int threads = 0) {
    if (threads < 0) detail::throw_domain("ThreadPool", "threads must be >= 0 (got " + std::to_string(threads) + ")");
    if (threads > max_threads)
      detail::throw_domain("ThreadPool", "threads must be at most " + std::to_string(max_threads) + " (got " + std::to_string(threads) + ")");
    if (threads == 0) threads = hardware_threads();
    errors_.resize(static_cast<std::size_t>(threads));
    workers_.reserve(static_cast<std::size_t>(threads - 1));
    try {
      for (int t = 1; t < threads; ++t) workers_.emplace_back([this, t] { loop(t); });
    } catch (const std::system_error& e) {  // the system's limit on threads: stop those started
      const int started = size();
      shut_down();
      workers_.clear();
      detail::throw_domain("ThreadPool", "cannot start thread " + std::to_string(started) + " of " + std::to_string(threads) + " (" +
                                             e.what() + ")");
    }
  }
  /// The most threads a pool takes (the calling thread included).
  static constexpr int max_threads = 1 << 16;
  ~ThreadPool() { shut_down(); }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Number of threads, the caller included.
  int size() const noexcept { return static_cast<int>(workers_.size()) + 1; }

  /// The number of hardware threads this process may run on (at least 1): on Linux the CPUs of
  /// its affinity mask (`taskset`, cpusets, `docker --cpuset-cpus`), capped by the CPU quota of
  /// its control group and the groups above it (`docker --cpus 2`: cgroup v2's cpu.max, v1's
  /// cpu.cfs_quota_us, rounded up); elsewhere std::thread::hardware_concurrency(), which counts
  /// every CPU of the machine. Read once per process.
  static int hardware_threads() noexcept {
    static const int n = [] {
      int count = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
#if defined(__linux__)
      cpu_set_t set;
      CPU_ZERO(&set);
      if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) count = CPU_COUNT(&set);
      const int quota = detail::cgroup_cpu_quota();
      if (quota > 0) count = std::min(count, quota);
#endif
      return count;
    }();
    return n;
  }

  /// For threads that wait on each other's progress: pauses while the wait is short, then gives
  /// the core away (sched_yield) every time, so that more threads than cores, or a core taken by
  /// another program, cost a time slice rather than a spinning thread's whole one.
  class Backoff {
   public:
    void operator()() noexcept {
      if (++rounds_ < 2048) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      } else {
        std::this_thread::yield();
      }
    }
    void reset() noexcept { rounds_ = 0; }

   private:
    unsigned rounds_ = 0;
  };

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
  void shut_down() noexcept {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_.store(true, std::memory_order_release);
    }
    start_.notify_all();
    for (std::thread& w : workers_)
      if (w.joinable()) w.join();
  }
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
