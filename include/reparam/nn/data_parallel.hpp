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
/// stay in their tapes, and after the sweeps every thread computes the whole batch's gradient
/// for its share of each weight's rows (the threads' products added in thread order, the bits
/// of the stored sum) and updates each block with Adam while it is in cache.

#include <algorithm>
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
namespace nn {

template <class T>
class DataParallel {
 public:
  /// `threads` in all (0: one per hardware thread). The list is read now: add parameters first.
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
    order_.resize(nt);
    plan_shares();
    for (int t = 0; t < n; ++t) workspaces_.push_back(std::make_unique<detail::Workspace<T>>());
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
  /// tape (the factors live in it). Off by default; other optimizers are not affected.
  void set_stream_updates(bool on) noexcept { stream_updates_ = on; }
  bool stream_updates() const noexcept { return stream_updates_; }
  /// With `stream_updates` on more than one thread, have each thread evict from its core's
  /// caches the cache lines other threads will write next (x86: `clflushopt`, else nothing):
  /// after its sweep, the rows of the weights other threads update; after the update, the other
  /// threads' factors it read. Every step each core reads lines another core writes; where the
  /// cores do not share a last-level cache, each such write then waits for the line to be taken
  /// from the reader's cache, and evicting first is cheaper. On the 2-vCPU VM of our
  /// measurements Adam's pass over its share took 3-4x as long without, and the 2-thread VAE
  /// steps were 11-13% faster with (`bench/bench_vae`, README). Off by default: where the cores
  /// share their caches it only moves the weights to memory. Values are not affected.
  void set_evict_shared(bool on) noexcept { evict_shared_ = on; }
  bool evict_shared() const noexcept { return evict_shared_; }
  /// Thread t's rows [first, last) of parameter i (position in the list) in the update of a step
  /// with `stream_updates` on more than one thread: whole blocks of the weight gradient's product
  /// grid, contiguous, the blocks of all the parameters split so that the threads' totals of
  /// elements differ by at most about one block (planned from the shapes at construction and at
  /// every such step). The threads' ranges of a parameter tile its rows.
  std::pair<Index, Index> update_rows(std::size_t i, int t) const {
    if (i >= params_.size() || t < 0 || t >= threads())
      reparam::detail::throw_shape("DataParallel.update_rows", "no parameter " + std::to_string(i) + " of " +
                                                                   std::to_string(params_.size()) + " or thread " +
                                                                   std::to_string(t) + " of " + std::to_string(threads()));
    return owned_rows(i, t);
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

  /// With `keep_tapes`, f must leave its tape's graph in place (GraphError if it clears it).
  template <class F>
  void compute(Index rows, F& f, bool accumulate, bool keep_tapes = false) {
    const int n = threads();
    for (auto& p : params_)
      if (p->grad.rows() != p->rows() || p->grad.cols() != p->cols()) p->zero_grad();
    pool_.run([&](int t) {
      BasicTape<T>& tape = *tapes_[static_cast<std::size_t>(t)];
      tape.clear();
      // Zeroing every buffer would be a pass over all the parameters' memory: instead the first
      // sweep assigns into the buffers (GEMMs with beta = 0) and only those it never reached
      // are zeroed after f.
      const bool overwrite = t > 0 || !accumulate;
      if (overwrite) tape.overwrite_gradients();
      const auto s = ThreadPool::shard(rows, t, n);
      const std::uint64_t graph = tape.generation();
      if (s.second > 0) f(tape, s.first, s.second, t);
      if (keep_tapes && tape.generation() != graph)
        reparam::detail::throw_graph("DataParallel.step", "f cleared its tape, which holds the gradients' factors until the "
                                                          "update (with stream_updates, build one graph per step)");
      if (keep_tapes && evict_shared_) evict_weights(t);
      if (overwrite)
        for (std::size_t i = 0; i < params_.size(); ++i) {
          Matrix<T>& g = t > 0 ? grads_[static_cast<std::size_t>(t)][i] : params_[i]->grad;
          if (tape.gradient_pending(g)) g.setZero();
        }
    });
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

  /// A weight's gradient handed over by thread t's sweep as factors (GradientSink::factors).
  struct Factors {
    GradientFactors<T> f;
    bool set = false;
  };
  static void take_factors(void* row, std::size_t i, const GradientFactors<T>& f) {
    Factors& x = static_cast<Factors*>(row)[i];
    if (x.set)
      reparam::detail::throw_graph("DataParallel.step", "a parameter's gradient was handed over twice in one step (one "
                                                        "backward per thread and step, without clearing the tape)");
    x.f = f;
    x.set = true;
  }

  /// `step(rows, f, adam)` on several threads with `stream_updates`: the sweeps hand weight
  /// gradients over as factors, then every thread updates its share of each parameter.
  template <class F>
  void step_factored(Index rows, F& f, optim::Adam<T>& opt) {
    const int n = threads();
    const std::vector<Parameter<T>*>& stepped = opt.parameters();
    bool others = false;  // parameters of this object that opt does not step: summed as run sums them
    for (std::size_t i = 0; i < params_.size(); ++i) {
      slot_[i] = static_cast<std::size_t>(std::find(stepped.begin(), stepped.end(), params_[i]) - stepped.begin());
      others |= slot_[i] == stepped.size();
    }
    for (int t = 0; t < n; ++t) {
      std::vector<Factors>& row = factors_[static_cast<std::size_t>(t)];
      for (std::size_t i = 0; i < params_.size(); ++i) {
        row[i].set = false;
        if (slot_[i] < stepped.size()) tapes_[static_cast<std::size_t>(t)]->stream_gradient(*params_[i], {nullptr, row.data(), i, &take_factors});
      }
    }
    auto unstream = [this] {
      for (auto& tape : tapes_) tape->unstream_gradients();
    };
    plan_shares();
    opt.begin_step();
    try {
      compute(rows, f, false, true);
      if (others) reduce(&stepped);
      pool_.run([&](int t) { update_share(opt, t); });
    } catch (...) {
      opt.abandon_step();
      unstream();
      throw;
    }
    unstream();
    opt.finish_step();  // Adam's parameters that this object does not hold, from their p.grad
  }

  /// Thread t's share of the update of every parameter opt steps: whole-batch blocks of its rows
  /// of a weight handed over as factors (the threads' terms in thread order, stored ones added
  /// as they are), element ranges of the others (the threads' buffers added in order).
  void update_share(optim::Adam<T>& opt, int t) {
    const int n = threads();
    const std::size_t ts = static_cast<std::size_t>(t);
    detail::TnTerm<T>* terms = terms_[ts].data();
    const T** more = more_[ts].data();
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const std::size_t j = slot_[i];
      if (j == opt.parameters().size()) continue;
      Parameter<T>& p = *params_[i];
      bool factored = false;
      for (int u = 0; u < n; ++u) factored |= factors_[static_cast<std::size_t>(u)][i].set;
      if (!factored) {  // Adam's own split: blocks of 2048 elements
        constexpr Index block = 2048;
        const Index size = p.value.size();
        const auto s = ThreadPool::shard((size + block - 1) / block, t, n);
        const Index first = s.first * block, last = std::min(size, (s.first + s.second) * block);
        if (last <= first) continue;
        for (int u = 1; u < n; ++u) more[u - 1] = grads_[static_cast<std::size_t>(u)][i].data() + first;
        opt.update_block(j, first, last - first, p.grad.data() + first, more, n - 1);
        continue;
      }
      for (int u = 0; u < n; ++u) {
        const Factors& fu = factors_[static_cast<std::size_t>(u)][i];
        const T* dense = u == 0 ? p.grad.data() : grads_[static_cast<std::size_t>(u)][i].data();
        terms[u] = fu.set ? detail::TnTerm<T>{fu.f.a, fu.f.g, fu.f.depth, fu.f.alpha, nullptr}
                          : detail::TnTerm<T>{nullptr, nullptr, 0, T(1), dense};
      }
      const Index m = p.rows(), cols = p.cols();
      const auto rows = owned_rows(i, t);
      const Index first = rows.first, last = rows.second;
      if (last <= first) continue;
      const bool done = detail::gemm_tn_sum_rows(terms, n, m, cols, first, last, *workspaces_[ts],
                                                 [&](Index row, Index count, T* c) { opt.update_block(j, row * cols, count * cols, c); });
      REPARAM_ASSERT(done);  // every factor passed gemm_tn_rows_applies when it was handed over
      (void)done;
      if (evict_shared_)  // the other threads' factors this thread read: they write them again next step
        for (int u = 0; u < n; ++u) {
          const Factors& fu = factors_[static_cast<std::size_t>(u)][i];
          if (u == t || !fu.set) continue;
          for (Index r = 0; r < fu.f.depth; ++r) evict(fu.f.a + r * m + first, last - first);
          evict(fu.f.g, fu.f.depth * cols);
        }
    }
    if (evict_shared_) evict_fence();
  }

  /// Thread t's rows of parameter i in the update (`update_share`, a weight handed over as factors).
  std::pair<Index, Index> owned_rows(std::size_t i, int t) const {
    return owned_[i * static_cast<std::size_t>(threads()) + static_cast<std::size_t>(t)];
  }
  /// Splits every parameter's rows between the threads for `update_share`: whole blocks of the
  /// product's grid (each block computed as the stored path computes it), contiguous per thread,
  /// the extra blocks of an uneven split going to the threads with the least work so far
  /// (elements updated), so the threads' shares of all the weights together differ by at most
  /// about one block. Depends on the shapes alone; which thread computes a block does not change
  /// its bits.
  void plan_shares() {
    const int n = threads();
    const std::size_t nt = static_cast<std::size_t>(n);
    std::fill(load_.begin(), load_.end(), Index(0));
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const Index m = params_[i]->rows(), cols = params_[i]->cols();
      const Index step = detail::gemm_tn_block_rows<T>(m, cols);
      // threads by load, least first (ties by index; an insertion sort, which allocates nothing):
      // the first roles of shard() get the extra blocks
      for (std::size_t k = 0; k < nt; ++k) {
        std::size_t j = k;
        for (; j > 0 && load_[static_cast<std::size_t>(order_[j - 1])] > load_[k]; --j) order_[j] = order_[j - 1];
        order_[j] = static_cast<int>(k);
      }
      for (int k = 0; k < n; ++k) {
        const auto s = ThreadPool::shard((m + step - 1) / step, k, n);
        const std::size_t u = static_cast<std::size_t>(order_[static_cast<std::size_t>(k)]);
        const Index first = std::min(m, s.first * step), last = std::min(m, (s.first + s.second) * step);
        owned_[i * nt + u] = {first, last};
        load_[u] += (last - first) * cols;
      }
    }
  }
  /// After thread t's sweep: the rows of the weights it handed over as factors that other threads
  /// will update, out of this core's caches.
  void evict_weights(int t) {
    for (std::size_t i = 0; i < params_.size(); ++i) {
      if (!factors_[static_cast<std::size_t>(t)][i].set) continue;
      const Parameter<T>& p = *params_[i];
      for (int u = 0; u < threads(); ++u) {
        const auto r = owned_rows(i, u);
        if (u != t && r.second > r.first) evict(p.value.data() + r.first * p.cols(), (r.second - r.first) * p.cols());
      }
    }
    evict_fence();
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
  std::vector<std::unique_ptr<detail::Workspace<T>>> workspaces_;  // [thread]: packing for the products
  std::vector<std::size_t> slot_;                       // Adam's index of each parameter
  std::vector<std::pair<Index, Index>> owned_;          // [parameter * threads + thread]: rows in the update
  std::vector<Index> load_;                             // [thread]: elements planned so far (plan_shares)
  std::vector<int> order_;                              // [rank]: threads by load (plan_shares)
  bool stream_updates_ = false;
  bool evict_shared_ = false;
};

}  // namespace nn
}  // namespace reparam
