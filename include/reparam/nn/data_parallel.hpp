#pragma once
/// \file data_parallel.hpp  `nn::DataParallel`: one training step on every core, each thread
/// building the graph of its own rows of the batch on its own tape, then one deterministic sum of
/// the threads' gradients.
///
///     reparam::nn::DataParallel<float> dp(params, 4);          // 4 threads
///     dp.run(batch_rows, [&](reparam::TapeF& tape, Index first, Index count, int t) {
///       reparam::VarF loss = model_loss(tape, x.middleRows(first, count)) / T(batch_rows);
///       tape.backward(loss);                                  // into thread t's buffers
///     });                                                     // p.grad = sum over threads
///
/// Why this design: the networks of VAEs on 784 pixels multiply small matrices (100 x 784 x 400),
/// whose GEMMs gain little from splitting, while the rows of a batch are independent until the
/// gradients are summed. Thread 0 adds into the Parameters' own gradients, thread t > 0 into
/// buffers of its own (bound with `tape.bind_gradient`, so layers need not know), and the sum
/// over threads is taken in thread order for every element, split by element ranges across the
/// threads: for a fixed thread count the result is the same bits on every run. A different
/// thread count changes how the rows are grouped and so the last bits of the sums.
///
/// Training steps with Adam and `set_stream_updates(true)` (the VAE programs) skip the stored
/// weight gradients: the threads hand each weight's gradient x^T g over as its factors, which
/// stay in their tapes, and every thread then computes the whole batch's gradient for its share
/// of each weight's rows (the threads' products added in thread order, the bits of the stored
/// sum) and updates each block with Adam while it is in cache. There is no barrier between the
/// sweeps and the update: a weight is updated as soon as every thread has handed its gradient
/// over, and a thread whose sweep ends first takes the ready blocks of slower threads' shares,
/// so the cores do not wait for each other (on the 2-vCPU VM of our measurements the threads'
/// sweeps differ by about 0.2 ms from step to step).

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // _mm_clflushopt / _mm_clflush, _mm_sfence
#endif

#include <reparam/nn/parameters.hpp>
#include <reparam/optim.hpp>
#include <reparam/parallel.hpp>
#include <reparam/tape.hpp>

namespace reparam {
namespace detail {
/// True when the median of a[0..n) is below that of b[0..n) (n in [1, 32]; the arrays are
/// read, not changed): `DataParallel::tune_evict_shared`'s choice. Ties choose b.
inline bool lower_median(const double* a, const double* b, int n) {
  std::array<double, 32> x{}, y{};
  std::copy(a, a + n, x.begin());
  std::copy(b, b + n, y.begin());
  std::sort(x.begin(), x.begin() + n);
  std::sort(y.begin(), y.begin() + n);
  const auto median = [n](const std::array<double, 32>& v) {
    return n % 2 ? v[static_cast<std::size_t>(n / 2)] : (v[static_cast<std::size_t>(n / 2 - 1)] + v[static_cast<std::size_t>(n / 2)]) / 2;
  };
  return median(x) < median(y);
}
}  // namespace detail
namespace nn {

template <class T>
class DataParallel {
 public:
  /// `threads` in all (0: ThreadPool::hardware_threads(), the CPUs this process may use). The list is read now: add parameters first.
  DataParallel(const ParameterList<T>& params, int threads = 0) : params_(params.pointers()), pool_(threads) {
    const int n = pool_.size();
    const std::size_t nt = static_cast<std::size_t>(n);
    tapes_.reserve(nt);
    for (int t = 0; t < n; ++t) tapes_.push_back(std::make_unique<BasicTape<T>>());
    // what the streamed multi-thread step needs, sized once (steady state allocates nothing)
    factors_.assign(nt, std::vector<Factors>(params_.size()));
    terms_.assign(nt, std::vector<detail::TnTerm<T>>(nt));
    more_.assign(nt, std::vector<const T*>(nt));
    slot_.resize(params_.size());
    owned_.resize(params_.size() * nt);
    load_.resize(nt);
    count_.resize(params_.size() * nt);
    holder_.resize(params_.size());
    std::size_t blocks = 0;
    for (const Parameter<T>* p : params_) {
      const Index step = detail::gemm_tn_block_rows<T>(p->rows(), p->cols());
      blocks += static_cast<std::size_t>((p->rows() + step - 1) / step);
    }
    blocks_.reserve(blocks);
    plan_shares();
    for (std::size_t k = 0; k < nt * params_.size(); ++k) workspaces_.push_back(std::make_unique<detail::Workspace<T>>());
    handed_.reset(new std::atomic<int>[params_.size()]);
    sinks_.resize(nt);
    for (int t = 0; t < n; ++t) sinks_[static_cast<std::size_t>(t)] = {this, t};
    packed_.assign(nt, std::vector<char>(params_.size()));
    touched_.assign(nt, std::vector<char>(params_.size()));
    items_.resize(nt);
    pieces_.resize(nt);
    depths_.assign(nt * params_.size(), 0);
    reserved_.assign(nt * params_.size(), 0);
    claimed_.resize(nt);
    claimed_size_.assign(nt, 0);
    for (std::size_t t = 0; t < nt; ++t) {  // room for every item of every parameter: planning allocates nothing
      std::size_t total = 0;
      for (const Parameter<T>* p : params_) {
        const Index step = detail::gemm_tn_block_rows<T>(p->rows(), p->cols());
        total += static_cast<std::size_t>((p->rows() + step - 1) / step) + 1;
      }
      items_[t].reserve(total);
      claimed_[t].reset(new std::atomic<unsigned char>[total]);
      claimed_size_[t] = total;
    }
    grads_.resize(nt);
    for (int t = 1; t < n; ++t) {
      auto& g = grads_[static_cast<std::size_t>(t)];
      g.resize(params_.size());
      for (std::size_t i = 0; i < params_.size(); ++i) {
        g[i].setZero(params_[i]->rows(), params_[i]->cols());
        tapes_[static_cast<std::size_t>(t)]->bind_gradient(*params_[i], g[i]);
      }
    }
  }

  int threads() const noexcept { return pool_.size(); }

  /// For steps whose gradients nobody reads after the update: `step(rows, f, adam)` then leaves
  /// the Parameters' gradients undefined and saves the memory traffic of keeping them. On one
  /// thread Adam's update runs inside the backward sweep (`optim::Adam::stream_from`): each weight
  /// is updated block by block as the GEMM produces its gradient, which never goes to memory (its
  /// `p.grad` keeps old contents). On more threads each weight's gradient x^T g is not computed
  /// in the sweeps: the threads hand over its factors (`GradientSink::factors`), then each
  /// thread computes whole-batch blocks of its share of the weight's rows, the threads' products
  /// added in thread order into the block, and updates each block while it is in cache; the
  /// other parameters (biases) are summed inside Adam's pass as before, not written back. The
  /// same parameter values as without, bit for bit (sign of zero aside). `f` must not clear its
  /// tape (the factors live in it: `clear()` is refused during the step). On more than one
  /// thread a weight's value changes as soon as every thread has handed its gradient over, while
  /// other threads may still be sweeping: f must not read the stepped parameters' values after
  /// its `backward`. After an exception from f the step is abandoned, and blocks other threads
  /// updated before it stay updated (as after an exception in a one-thread streamed sweep). Off
  /// by default; other optimizers are not affected.
  void set_stream_updates(bool on) noexcept { stream_updates_ = on; }
  bool stream_updates() const noexcept { return stream_updates_; }
  /// With `stream_updates` on more than one thread, have each thread evict from its core's
  /// caches the cache lines other threads will write next (x86: `clflushopt`, else nothing):
  /// once its sweep hands a weight over, the rows of it that other threads update; after the
  /// update, the other threads' factors it read. Every step each core reads lines another core writes; where the
  /// cores do not share a last-level cache, each such write then waits for the line to be taken
  /// from the reader's cache, and evicting first is cheaper. On the 2-vCPU VM of our
  /// measurements Adam's pass over its share took 3-4x as long without, and the 2-thread VAE
  /// steps were 11-13% faster with (`bench/bench_vae`, README). Off by default: where the cores
  /// share their caches it only moves the weights to memory. Values are not affected.
  void set_evict_shared(bool on) noexcept {
    evict_shared_ = on;
    tune_steps_ = 0;  // a setting chosen by hand ends any trial, and the trials to come
    tune_every_ = 0;
  }
  bool evict_shared() const noexcept { return evict_shared_; }
  /// Lets the next streamed steps on more than one thread choose `evict_shared` by timing:
  /// two untimed steps (one with eviction, one without), then 2 x `steps` timed ones alternating
  /// in pairs (on, off, off, on, on, off, ...: a steady drift of the host's speed falls on both
  /// alike), after which the setting whose steps had the lower median is kept
  /// (`evict_shared()`; `evict_tuning()` is false again). With `every` > 0 a new trial starts
  /// each time `every` streamed steps have run since the last one ended. Whether eviction pays
  /// depends on the host, and on a virtual machine it can change while a program runs: on the
  /// 2-vCPU VM of stop 35 it made the 2-thread VAE steps 11-14% slower in one hour and 13-16% faster
  /// in the next (README). Values never depend on it, so a trial changes no bits. Nothing
  /// happens on one thread or without `stream_updates` (the trial waits for such a step).
  /// `steps` in [1, 32], `every` >= 0; allocates nothing.
  void tune_evict_shared(int steps = 8, long every = 0) {
    if (steps < 1 || steps > kMaxTuneSteps)
      reparam::detail::throw_domain("DataParallel.tune_evict_shared", "steps must be in [1, " + std::to_string(kMaxTuneSteps) +
                                                                          "] (got " + std::to_string(steps) + ")");
    if (every < 0)
      reparam::detail::throw_domain("DataParallel.tune_evict_shared", "every must be >= 0 (got " + std::to_string(every) + ")");
    tune_size_ = tune_steps_ = steps;
    tune_every_ = every;
    tune_at_ = 0;
    since_tune_ = 0;
  }
  /// True while a trial started by `tune_evict_shared` is still running.
  bool evict_tuning() const noexcept { return tune_steps_ > 0; }
  /// Thread t's rows [first, last) of parameter i (position in the list) in the update of a step
  /// with `stream_updates` on more than one thread: whole blocks of the weight gradient's product
  /// grid, contiguous, the blocks of all the parameters split so that the threads' totals of
  /// elements differ by at most about one block (planned from the shapes at construction and at
  /// every such step). The threads' ranges of a parameter tile its rows. This is each thread's
  /// own share; a thread done with its own takes ready blocks of the others' (`update_pieces`).
  std::pair<Index, Index> update_rows(std::size_t i, int t) const {
    if (i >= params_.size() || t < 0 || t >= threads())
      reparam::detail::throw_shape("DataParallel.update_rows", "no parameter " + std::to_string(i) + " of " +
                                                                   std::to_string(params_.size()) + " or thread " +
                                                                   std::to_string(t) + " of " + std::to_string(threads()));
    return owned_rows(i, t);
  }
  /// How the update of the last `step(rows, f, adam)` with `stream_updates` on more than one
  /// thread was shared: pieces (blocks of a weight's rows, a parameter's elements) thread t ran
  /// from its own share (`update_rows`) and from other threads' shares. A thread whose sweep ends
  /// first takes the pieces of others that are ready; which thread runs a piece does not change
  /// its bits. A diagnostic: on a machine whose cores run at one speed `taken` stays small.
  struct UpdatePieces {
    int own = 0, taken = 0;
  };
  UpdatePieces update_pieces(int t) const {
    if (t < 0 || t >= threads())
      reparam::detail::throw_shape("DataParallel.update_pieces", "no thread " + std::to_string(t) + " of " + std::to_string(threads()));
    return pieces_[static_cast<std::size_t>(t)];
  }
  BasicTape<T>& tape(int t) { return *tapes_.at(static_cast<std::size_t>(t)); }
  ThreadPool& pool() noexcept { return pool_; }

  /// Clears every tape, then calls f(tape, first, count, t) on thread t for its rows
  /// [first, first + count) of `rows` (threads without rows are not called); the Parameters'
  /// gradients become the sum over threads (thread 0 writes into them directly, the others into
  /// their buffers, added after). With `accumulate` false (the default) the old gradients are
  /// replaced (no `zero_grad` needed; the tapes overwrite instead of zeroing first, see
  /// `BasicTape::overwrite_gradients`); with true they are added to. Returns after everything.
  template <class F>
  void run(Index rows, F&& f, bool accumulate = false) {
    compute(rows, f, accumulate);
    reduce(nullptr);
  }

  /// `run(rows, f)` followed by `opt.step(pool())`, the same bits, with the sum of the threads'
  /// gradients taken inside Adam's pass over the gradients and its state rather than in a pass
  /// of its own (the step's last two passes over memory become one). Parameters of this object
  /// that `opt` does not step are summed as `run` sums them; afterwards every Parameter's
  /// gradient holds the sum over threads, as after `run` (unless `set_stream_updates(true)`:
  /// then Adam's gradients are not kept). Other optimizers: `run`, then their `step(pool())`
  /// where they have one, else `step()`.
  template <class F, class Optimizer>
  void step(Index rows, F&& f, Optimizer& opt) {
    if constexpr (std::is_same<Optimizer, optim::Adam<T>>::value) {
      if (threads() == 1 && stream_updates_) {
        BasicTape<T>& tape = *tapes_[0];
        opt.stream_from(tape);
        opt.begin_step();
        try {
          compute(rows, f, false);
        } catch (...) {
          opt.abandon_step();
          tape.unstream_gradients();
          throw;
        }
        tape.unstream_gradients();
        opt.finish_step();
        return;
      }
      if (stream_updates_) {
        // (more than one thread here: one thread took the branch above)
        if (tune_steps_ == 0 && tune_every_ > 0 && ++since_tune_ > tune_every_) {
          tune_steps_ = tune_size_;  // the next trial
          tune_at_ = 0;
          since_tune_ = 0;
        }
        if (tune_steps_ > 0)
          tuned_step(rows, f, opt);
        else
          step_factored(rows, f, opt);
        return;
      }
    }
    compute(rows, f, false);
    if constexpr (std::is_same<Optimizer, optim::Adam<T>>::value) {
      if (threads() > 1) {
        reduce(&opt.parameters());
        opt.step(pool_, threads() - 1, [this](const Parameter<T>& p, int u) -> const T* {
          const std::size_t i = index_of(&p);
          return i < params_.size() ? grads_[static_cast<std::size_t>(u) + 1][i].data() : nullptr;
        });  // the sums kept in p.grad: the gradients of this path are read afterwards
        return;
      }
    } else {
      reduce(nullptr);
    }
    if constexpr (steps_on_pool<Optimizer>::value)
      opt.step(pool_);
    else
      opt.step();
  }

  /// Calls f(tape, first, count, t) for the rows of each thread with gradients off (a `NoGrad`
  /// scope on every tape): evaluation over all cores. Tapes are cleared first.
  template <class F>
  void evaluate(Index rows, F&& f) {
    const int n = threads();
    pool_.run([&](int t) {
      BasicTape<T>& tape = *tapes_[static_cast<std::size_t>(t)];
      tape.clear();
      NoGrad<T> off(tape);
      const auto s = ThreadPool::shard(rows, t, n);
      if (s.second > 0) f(tape, s.first, s.second, t);
    });
  }

 private:
  template <class O, class = void>
  struct steps_on_pool : std::false_type {};
  template <class O>
  struct steps_on_pool<O, std::void_t<decltype(std::declval<O&>().step(std::declval<ThreadPool&>()))>> : std::true_type {};

  void prepare_gradients() {
    for (auto& p : params_)
      if (p->grad.rows() != p->rows() || p->grad.cols() != p->cols()) p->zero_grad();
  }
  template <class F>
  void compute(Index rows, F& f, bool accumulate) {
    prepare_gradients();
    pool_.run([&](int t) { sweep(rows, f, accumulate, false, t); });
  }
  /// Thread t's part of `compute`: its rows through f on its tape. With `keep_tapes`, f must
  /// leave its tape's graph in place (GraphError if it clears it).
  template <class F>
  void sweep(Index rows, F& f, bool accumulate, bool keep_tapes, int t) {
    const int n = threads();
    BasicTape<T>& tape = *tapes_[static_cast<std::size_t>(t)];
    tape.clear();
    // Zeroing every buffer would be a pass over all the parameters' memory: instead the first
    // sweep assigns into the buffers (GEMMs with beta = 0) and only those it never reached are
    // zeroed after f.
    const bool overwrite = t > 0 || !accumulate;
    if (overwrite) tape.overwrite_gradients();
    const auto s = ThreadPool::shard(rows, t, n);
    // other threads may read this tape's factors as soon as they are handed over: f may not
    // clear it (refused at the clear, before anything is freed)
    if (keep_tapes) tape.guard_clear("DataParallel.step", kClearedTape);
    if (s.second > 0) f(tape, s.first, s.second, t);
    if (overwrite)
      for (std::size_t i = 0; i < params_.size(); ++i) {
        Matrix<T>& g = t > 0 ? grads_[static_cast<std::size_t>(t)][i] : params_[i]->grad;
        if (tape.gradient_pending(g)) g.setZero();
      }
  }

  /// p.grad += g_1 + g_2 + ... in that order for every element, threads taking element ranges;
  /// parameters in `skip` are left alone (an optimizer sums them in its own pass).
  void reduce(const std::vector<Parameter<T>*>* skip) {
    const int n = threads();
    if (n == 1) return;
    pool_.run([&](int t) {
      for (std::size_t i = 0; i < params_.size(); ++i) {
        if (skip != nullptr && std::find(skip->begin(), skip->end(), params_[i]) != skip->end()) continue;
        Matrix<T>& g = params_[i]->grad;
        const auto s = ThreadPool::shard(g.size(), t, n);
        if (s.second == 0) continue;
        auto out = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(g.data() + s.first, s.second);
        for (int u = 1; u < n; ++u)
          out += Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(grads_[static_cast<std::size_t>(u)][i].data() + s.first, s.second);
      }
    });
  }

  static constexpr const char* kClearedTape =
      "f cleared its tape, which holds the gradients' factors until the update (with stream_updates, build one graph per "
      "step)";
  /// A weight's gradient handed over by thread t's sweep as factors (GradientSink::factors).
  struct Factors {
    GradientFactors<T> f;
    bool set = false;
  };
  /// The sink's context: which object and thread.
  struct Sink {
    DataParallel* dp = nullptr;
    int t = 0;
  };
  /// One piece of a factored step's update: rows [first, last) of parameter i (a block of the
  /// weight gradient's grid) for a parameter Adam steps, elements [first, last) for one it does
  /// not (summed as `run` sums them).
  struct Item {
    std::size_t i = 0;
    Index first = 0, last = 0;
  };
  static void take_factors(void* context, std::size_t i, const GradientFactors<T>& f) {
    const Sink& sink = *static_cast<const Sink*>(context);
    sink.dp->hand_over(sink.t, i, f);
  }
  /// Thread t's sweep is done with parameter i's value (its rule read it for the last time) and
  /// hands its gradient over: the rows other threads update leave this core's caches, then the
  /// parameter counts one more thread toward being ready for the update.
  void hand_over(int t, std::size_t i, const GradientFactors<T>& f) {
    Factors& x = factors_[static_cast<std::size_t>(t)][i];
    if (x.set)
      reparam::detail::throw_graph("DataParallel.step", "a parameter's gradient was handed over twice in one step (one "
                                                        "backward per thread and step, without clearing the tape)");
    x.f = f;
    x.set = true;
    Index& seen = depths_[i * static_cast<std::size_t>(threads()) + static_cast<std::size_t>(t)];
    seen = std::max(seen, f.depth);  // this thread's slot: for the next step's reserve
    if (evict_shared_) {
      const Parameter<T>& p = *params_[i];
      for (int u = 0; u < threads(); ++u) {
        const auto r = owned_rows(i, u);
        if (u != t && r.second > r.first) evict(p.value.data() + r.first * p.cols(), (r.second - r.first) * p.cols());
      }
      evict_fence();
    }
    handed_[i].fetch_add(1, std::memory_order_release);
  }
  bool ready(std::size_t i) const noexcept { return handed_[i].load(std::memory_order_acquire) == threads(); }

  /// `step(rows, f, adam)` on several threads with `stream_updates`: the sweeps hand weight
  /// gradients over as factors; every thread, its sweep done, updates pieces of the parameters
  /// whose gradients every thread has handed over (its own share first, then the others' from
  /// their ends), so a thread that finishes its sweep early takes work off a slow one.
  template <class F>
  void step_factored(Index rows, F& f, optim::Adam<T>& opt) {
    const int n = threads();
    const std::vector<Parameter<T>*>& stepped = opt.parameters();
    for (std::size_t i = 0; i < params_.size(); ++i)
      slot_[i] = static_cast<std::size_t>(std::find(stepped.begin(), stepped.end(), params_[i]) - stepped.begin());
    for (int t = 0; t < n; ++t) {
      const std::size_t ts = static_cast<std::size_t>(t);
      std::vector<Factors>& row = factors_[ts];
      for (std::size_t i = 0; i < params_.size(); ++i) {
        row[i].set = false;
        if (slot_[i] < stepped.size()) tapes_[ts]->stream_gradient(*params_[i], {nullptr, &sinks_[ts], i, &take_factors});
      }
      std::fill(packed_[ts].begin(), packed_[ts].end(), char(0));
      pieces_[ts] = UpdatePieces{};
      std::fill(touched_[ts].begin(), touched_[ts].end(), char(0));
    }
    for (std::size_t i = 0; i < params_.size(); ++i) handed_[i].store(0, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    auto unstream = [this] {
      for (auto& tape : tapes_) {
        tape->unstream_gradients();
        tape->guard_clear(nullptr, nullptr);
      }
    };
    plan_shares();
    plan_items(stepped.size());
    prepare_gradients();
    // every thread may take a block of any weight: room to pack each weight's G^T, grown here
    // (not in the threads, where a first take would allocate) for the factors' depths seen so
    // far, at least the threads' rows of the batch
    for (std::size_t i = 0; i < params_.size(); ++i) {
      if (slot_[i] == stepped.size()) continue;
      Index* depths = depths_.data() + i * static_cast<std::size_t>(n);
      Index* reserved = reserved_.data() + i * static_cast<std::size_t>(n);
      bool grew = false;
      for (int u = 0; u < n; ++u) {
        depths[u] = std::max(depths[u], ThreadPool::shard(rows, u, n).second);
        grew |= depths[u] > reserved[u];
        reserved[u] = std::max(reserved[u], depths[u]);
      }
      if (!grew) continue;  // steady state: the workspaces already have the room
      for (std::size_t t = 0; t < static_cast<std::size_t>(n); ++t)
        detail::gemm_tn_sum_reserve(depths, n, params_[i]->rows(), params_[i]->cols(), *workspaces_[t * params_.size() + i]);
    }
    opt.begin_step();
    try {
      pool_.run([&](int t) {
        try {
          sweep(rows, f, false, true, t);
        } catch (...) {
          failed_.store(true, std::memory_order_relaxed);
          release_all(t);  // no thread waits for this one
          throw;
        }
        release_all(t);
        update_items(opt, t);
      });
    } catch (...) {
      opt.abandon_step();
      unstream();
      throw;
    }
    unstream();
    opt.finish_step();  // Adam's parameters that this object does not hold, from their p.grad
  }
  /// After thread t's sweep: every parameter whose gradient it did not hand over as factors is
  /// final in its buffer, and counts toward being ready.
  void release_all(int t) noexcept {
    const std::vector<Factors>& row = factors_[static_cast<std::size_t>(t)];
    for (std::size_t i = 0; i < params_.size(); ++i)
      if (!row[i].set) handed_[i].fetch_add(1, std::memory_order_release);
  }

  /// Each thread's pieces of the update, in the order their gradients become ready (the last
  /// parameters of a network first, as a backward sweep hands them over): for a stepped parameter
  /// its rows in `owned_rows`, one item per block of the weight gradient's grid (its bits do not
  /// depend on which thread computes it); for the others one element range per thread.
  void plan_items(std::size_t no_slot) {
    const int n = threads();
    for (int t = 0; t < n; ++t) {
      std::vector<Item>& items = items_[static_cast<std::size_t>(t)];
      items.clear();
      for (std::size_t k = params_.size(); k-- > 0;) {
        const Parameter<T>& p = *params_[k];
        if (slot_[k] == no_slot) {
          const auto s = ThreadPool::shard(p.value.size(), t, n);
          if (s.second > 0) items.push_back({k, s.first, s.first + s.second});
          continue;
        }
        const auto r = owned_rows(k, t);
        const Index step = detail::gemm_tn_block_rows<T>(p.rows(), p.cols());
        for (Index j = r.first; j < r.second; j += step) items.push_back({k, j, std::min(r.second, j + step)});
      }
      std::atomic<unsigned char>* claimed = claimed_[static_cast<std::size_t>(t)].get();
      if (items.size() > claimed_size_[static_cast<std::size_t>(t)]) {
        claimed_[static_cast<std::size_t>(t)].reset(new std::atomic<unsigned char>[items.size()]);
        claimed_size_[static_cast<std::size_t>(t)] = items.size();
        claimed = claimed_[static_cast<std::size_t>(t)].get();
      }
      for (std::size_t q = 0; q < items.size(); ++q) claimed[q].store(0, std::memory_order_relaxed);
    }
  }

  /// Thread t's part of the update: passes over its own items in order, then the other threads'
  /// items from their ends, taking every unclaimed item whose parameter is ready, until every
  /// item is claimed (or a sweep failed).
  void update_items(optim::Adam<T>& opt, int t) {
    const int n = threads();
    ThreadPool::Backoff backoff;
    for (;;) {
      bool waiting = false, progress = false;
      for (int k = 0; k < n && !failed_.load(std::memory_order_relaxed); ++k) {
        const int u = (t + k) % n;  // own list first
        const std::vector<Item>& items = items_[static_cast<std::size_t>(u)];
        std::atomic<unsigned char>* claimed = claimed_[static_cast<std::size_t>(u)].get();
        for (std::size_t q = 0; q < items.size(); ++q) {
          const std::size_t at = u == t ? q : items.size() - 1 - q;  // others' from their ends
          if (claimed[at].load(std::memory_order_relaxed) != 0) continue;
          if (!ready(items[at].i)) {
            waiting = true;
            continue;
          }
          // a failed sweep makes its parameters ready (no thread waits forever) but is no gradient
          if (failed_.load(std::memory_order_relaxed)) break;
          if (claimed[at].exchange(1, std::memory_order_acq_rel) != 0) continue;
          run_item(opt, t, items[at]);
          ++(u == t ? pieces_[static_cast<std::size_t>(t)].own : pieces_[static_cast<std::size_t>(t)].taken);
          progress = true;
          break;  // back to the own list: its next items may have become ready
        }
        if (progress) break;
      }
      if (failed_.load(std::memory_order_relaxed)) break;
      if (!progress) {
        if (!waiting) break;  // every item claimed
        backoff();            // a thread whose sweep is not done: perhaps not even running
      } else {
        backoff.reset();
      }
    }
    if (evict_shared_) {  // the other threads' factors this thread read: they write them again next step
      for (std::size_t i = 0; i < params_.size(); ++i) {
        if (!touched_[static_cast<std::size_t>(t)][i]) continue;
        for (int u = 0; u < n; ++u) {
          const Factors& fu = factors_[static_cast<std::size_t>(u)][i];
          if (u != t && fu.set) evict(fu.f.g, fu.f.depth * params_[i]->cols());
        }
      }
      evict_fence();
    }
  }

  /// One item on thread t: the whole batch's gradient of a block of rows (the threads' factors'
  /// products and stored gradients added in thread order) handed to Adam while in cache; or the
  /// threads' stored gradients of a parameter's elements summed for Adam, or into p.grad for a
  /// parameter it does not step.
  void run_item(optim::Adam<T>& opt, int t, const Item& item) {
    const int n = threads();
    const std::size_t ts = static_cast<std::size_t>(t), i = item.i, j = slot_[i];
    Parameter<T>& p = *params_[i];
    auto stored = [&](int u) { return u == 0 ? p.grad.data() : grads_[static_cast<std::size_t>(u)][i].data(); };
    if (j == opt.parameters().size()) {  // summed as run sums them
      auto out = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(p.grad.data() + item.first, item.last - item.first);
      for (int u = 1; u < n; ++u)
        out += Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(stored(u) + item.first, item.last - item.first);
      return;
    }
    const Index cols = p.cols();
    bool factored = false;
    for (int u = 0; u < n; ++u) factored |= factors_[static_cast<std::size_t>(u)][i].set;
    if (!factored) {  // every thread stored its gradient: Adam sums them in its pass
      const T** more = more_[ts].data();
      for (int u = 1; u < n; ++u) more[u - 1] = stored(u) + item.first * cols;
      opt.update_block(j, item.first * cols, (item.last - item.first) * cols, stored(0) + item.first * cols, more, n - 1);
      return;
    }
    detail::TnTerm<T>* terms = terms_[ts].data();
    for (int u = 0; u < n; ++u) {
      const Factors& fu = factors_[static_cast<std::size_t>(u)][i];
      terms[u] = fu.set ? detail::TnTerm<T>{fu.f.a, fu.f.g, fu.f.depth, fu.f.alpha, nullptr}
                        : detail::TnTerm<T>{nullptr, nullptr, 0, T(1), stored(u)};
    }
    const Index m = p.rows();
    detail::Workspace<T>& ws = *workspaces_[ts * params_.size() + i];
    if (!packed_[ts][i]) {
      const bool ok = detail::gemm_tn_sum_pack(terms, n, m, cols, ws);
      REPARAM_ASSERT(ok);  // every factor passed gemm_tn_rows_applies when it was handed over
      (void)ok;
      packed_[ts][i] = 1;
    }
    detail::gemm_tn_sum_rows_packed(terms, n, m, cols, item.first, item.last, ws,
                                    [&](Index row, Index count, T* c) { opt.update_block(j, row * cols, count * cols, c); });
    touched_[ts][i] = 1;
    if (evict_shared_)  // the rows of the other threads' layer inputs this block read
      for (int u = 0; u < n; ++u) {
        const Factors& fu = factors_[static_cast<std::size_t>(u)][i];
        if (u == t || !fu.set) continue;
        for (Index r = 0; r < fu.f.depth; ++r) evict(fu.f.a + r * m + item.first, item.last - item.first);
      }
  }

  /// Thread t's rows of parameter i in the update (`plan_items`: its own pieces).
  std::pair<Index, Index> owned_rows(std::size_t i, int t) const {
    return owned_[i * static_cast<std::size_t>(threads()) + static_cast<std::size_t>(t)];
  }
  /// Splits every parameter's rows between the threads for the update: whole blocks of the
  /// product's grid (each block computed as the stored path computes it), contiguous per thread.
  /// The blocks of all the parameters, largest first, each go to the thread with the least work
  /// so far (elements updated; ties by block order and thread index): a list schedule keeps the
  /// threads' totals within one block of each other, and largest first usually within a small
  /// one (stop 39: on the Gaussian VAE's layers 2 threads 616 elements apart, where the split
  /// before it, whole shares of each weight, left them 17,144 apart, 5% of a share). Then each
  /// thread's blocks of a parameter become one range, the thread of its last, partial block laid
  /// out last. Depends on the shapes alone (a parameter resized after construction may make the
  /// block list allocate); which thread computes a block does not change its bits.
  void plan_shares() {
    const std::size_t nt = static_cast<std::size_t>(threads());
    std::fill(load_.begin(), load_.end(), Index(0));
    std::fill(count_.begin(), count_.end(), Index(0));
    blocks_.clear();  // reserved at construction for every block: allocates nothing
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const Index m = params_[i]->rows(), cols = params_[i]->cols();
      const Index step = detail::gemm_tn_block_rows<T>(m, cols), blocks = (m + step - 1) / step;
      for (Index b = 0; b < blocks; ++b) blocks_.push_back({(b == 0 ? m - (blocks - 1) * step : step) * cols, i, b > 0});
    }
    std::sort(blocks_.begin(), blocks_.end(), [](const Block& x, const Block& y) {
      return x.size != y.size ? x.size > y.size : x.i != y.i ? x.i < y.i : x.full < y.full;
    });
    for (const Block& blk : blocks_) {
      const std::size_t u = static_cast<std::size_t>(std::min_element(load_.begin(), load_.end()) - load_.begin());
      load_[u] += blk.size;
      ++count_[blk.i * nt + u];
      if (!blk.full) holder_[blk.i] = u;
    }
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const Index m = params_[i]->rows(), step = detail::gemm_tn_block_rows<T>(m, params_[i]->cols());
      Index first = 0;
      for (std::size_t k = 0; k <= nt; ++k) {  // the threads in order, the holder's range moved to the end
        const std::size_t u = k < nt ? k : holder_[i];
        if (k < nt && u == holder_[i]) continue;
        const Index last = std::min(m, first + count_[i * nt + u] * step);
        owned_[i * nt + u] = {first, last};
        first = last;
      }
    }
  }
  /// The cache lines of p[0, count) out of every cache (written back where modified).
  static void evict(const T* p, Index count) noexcept {
#if defined(__x86_64__) || defined(__i386__)
    std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t(63);
    const std::uintptr_t e = reinterpret_cast<std::uintptr_t>(p + count);
    for (; a < e; a += 64) {
#if defined(__CLFLUSHOPT__)
      _mm_clflushopt(reinterpret_cast<void*>(a));  // weakly ordered: the lines are evicted in parallel
#else
      _mm_clflush(reinterpret_cast<const void*>(a));
#endif
    }
#else
    (void)p, (void)count;
#endif
  }
  static void evict_fence() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    _mm_sfence();
#endif
  }

  /// One step of the trial started by `tune_evict_shared`: steps 0 and 1 untimed (on, off), then
  /// timed pairs in the order on, off, off, on, ...; the last one picks the setting.
  template <class F>
  void tuned_step(Index rows, F& f, optim::Adam<T>& opt) {
    const int k = tune_at_ - 2;  // the timed trial's index, negative while warming up
    evict_shared_ = k < 0 ? tune_at_ == 0 : ((k / 2) % 2 == 0) == (k % 2 == 0);
    const auto t0 = std::chrono::steady_clock::now();
    step_factored(rows, f, opt);  // an exception leaves the trial where it was
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ++tune_at_;
    if (k < 0) return;
    (evict_shared_ ? tune_on_ : tune_off_)[static_cast<std::size_t>(k / 2)] = ms;
    if (tune_at_ < 2 + 2 * tune_steps_) return;
    evict_shared_ = detail::lower_median(tune_on_.data(), tune_off_.data(), tune_steps_);
    tune_steps_ = 0;
  }

  /// Position of p in this object's list (its size when absent).
  std::size_t index_of(const Parameter<T>* p) const {
    return static_cast<std::size_t>(std::find(params_.begin(), params_.end(), p) - params_.begin());
  }

  std::vector<Parameter<T>*> params_;
  ThreadPool pool_;
  std::vector<std::unique_ptr<BasicTape<T>>> tapes_;
  std::vector<std::vector<Matrix<T>>> grads_;
  std::vector<std::vector<Factors>> factors_;           // [thread][parameter]
  std::vector<std::vector<detail::TnTerm<T>>> terms_;   // [thread]: one term per thread
  std::vector<std::vector<const T*>> more_;             // [thread]: the other threads' buffers
  std::vector<std::unique_ptr<detail::Workspace<T>>> workspaces_;  // [thread * parameters + parameter]: packed G^T
  std::unique_ptr<std::atomic<int>[]> handed_;          // [parameter]: threads whose gradient of it is final
  std::atomic<bool> failed_{false};                     // a sweep threw: the update stops
  std::vector<Sink> sinks_;                             // [thread]: the factor sinks' contexts
  std::vector<std::vector<char>> packed_, touched_;     // [thread][parameter]: G^T packed; an item updated
  std::vector<std::vector<Item>> items_;                // [thread]: its pieces of the update (plan_items)
  std::vector<std::unique_ptr<std::atomic<unsigned char>[]>> claimed_;  // [thread][item]: taken by some thread
  std::vector<std::size_t> claimed_size_;
  std::vector<UpdatePieces> pieces_;                    // [thread]: update_pieces
  std::vector<Index> depths_;                           // [parameter * threads + thread]: largest factor depth seen
  std::vector<Index> reserved_;                         // the same: the depths the workspaces have room for
  std::vector<std::size_t> slot_;                       // Adam's index of each parameter
  std::vector<std::pair<Index, Index>> owned_;          // [parameter * threads + thread]: rows in the update
  std::vector<Index> load_;                             // [thread]: elements planned so far (plan_shares)
  /// One block of a parameter's rows in `plan_shares`: its elements, the parameter, and whether it
  /// is a whole block (not the last, partial one).
  struct Block {
    Index size;
    std::size_t i;
    bool full;
  };
  std::vector<Block> blocks_;                           // every parameter's blocks (plan_shares)
  std::vector<Index> count_;                            // [parameter * threads + thread]: blocks (plan_shares)
  std::vector<std::size_t> holder_;                     // [parameter]: the thread of its partial block (plan_shares)
  bool stream_updates_ = false;
  bool evict_shared_ = false;
  static constexpr int kMaxTuneSteps = 32;
  int tune_steps_ = 0, tune_size_ = 0, tune_at_ = 0;    // tune_evict_shared: steps per setting in the running trial (0: none), asked, taken
  long tune_every_ = 0, since_tune_ = 0;                // streamed steps between trials (0: one trial), since the last
  std::array<double, kMaxTuneSteps> tune_on_{}, tune_off_{};  // the trial's step times (ms) with and without eviction
};

}  // namespace nn
}  // namespace reparam
