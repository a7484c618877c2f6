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

#include <algorithm>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

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
    tapes_.reserve(static_cast<std::size_t>(n));
    for (int t = 0; t < n; ++t) tapes_.push_back(std::make_unique<BasicTape<T>>());
    grads_.resize(static_cast<std::size_t>(n));
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
  /// `p.grad` keeps old contents). On more threads the sum over threads is taken inside Adam's
  /// pass as before but not written back to `p.grad`. The same parameter values, bit for bit.
  /// Off by default; other optimizers are not affected.
  void set_stream_updates(bool on) noexcept { stream_updates_ = on; }
  bool stream_updates() const noexcept { return stream_updates_; }
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
    }
    compute(rows, f, false);
    if constexpr (std::is_same<Optimizer, optim::Adam<T>>::value) {
      if (threads() > 1) {
        reduce(&opt.parameters());
        opt.step(pool_, threads() - 1, [this](const Parameter<T>& p, int u) -> const T* {
          const std::size_t i = index_of(&p);
          return i < params_.size() ? grads_[static_cast<std::size_t>(u) + 1][i].data() : nullptr;
        }, !stream_updates_);
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

  template <class F>
  void compute(Index rows, F& f, bool accumulate) {
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
      if (s.second > 0) f(tape, s.first, s.second, t);
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

  /// Position of p in this object's list (its size when absent).
  std::size_t index_of(const Parameter<T>* p) const {
    return static_cast<std::size_t>(std::find(params_.begin(), params_.end(), p) - params_.begin());
  }

  std::vector<Parameter<T>*> params_;
  ThreadPool pool_;
  std::vector<std::unique_ptr<BasicTape<T>>> tapes_;
  std::vector<std::vector<Matrix<T>>> grads_;
  bool stream_updates_ = false;
};

}  // namespace nn
}  // namespace reparam
