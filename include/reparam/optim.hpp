#pragma once
/// \file optim.hpp  Optimizers that step `Parameter`s: `optim::SGD` and `optim::Adam`, with
/// PyTorch's update rules (so a PyTorch twin of a program follows the same trajectory).
///
///     reparam::optim::Adam opt({&w, &b}, {1e-3});
///     opt.zero_grad(); /* build loss on a tape */ tape.backward(loss); opt.step();

#include <algorithm>
#include <atomic>
#include <cmath>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

#include <reparam/detail/adam_math.hpp>
#include <reparam/detail/math.hpp>
#include <reparam/errors.hpp>
#include <reparam/parallel.hpp>
#include <reparam/tape.hpp>

namespace reparam {
namespace optim {

namespace detail {
template <class T>
void check_params(const char* op, const std::vector<Parameter<T>*>& params) {
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (params[i] == nullptr) reparam::detail::throw_graph(op, "parameter " + std::to_string(i) + " is null");
    if (params[i]->value.size() == 0)
      reparam::detail::throw_shape(op, "parameter " + std::to_string(i) + " is empty (" +
                                           reparam::detail::shape_str(params[i]->rows(), params[i]->cols()) + ")");
    // listed twice, it would be stepped twice per step (PyTorch warns and will refuse)
    for (std::size_t j = 0; j < i; ++j)
      if (params[j] == params[i])
        reparam::detail::throw_graph(op, "parameter " + std::to_string(i) + " is parameter " + std::to_string(j) + " again");
  }
}
/// DomainError unless v is finite and `ok` holds (NaN fails every comparison, so it is caught too).
template <class T>
void check_hyper(const char* op, const char* what, T v, bool ok) {
  using std::isfinite;
  if (!ok || !isfinite(v))
    reparam::detail::throw_domain(op, std::string(what) + " and finite (got " + reparam::detail::scalar_str(v) + ")");
}
/// ShapeError when parameter i no longer has the shape its optimizer state was made for.
template <class T>
void check_shape(const char* op, std::size_t i, const Parameter<T>& p, const Matrix<T>& state) {
  if (p.value.rows() != state.rows() || p.value.cols() != state.cols())
    reparam::detail::throw_shape(op, "parameter " + std::to_string(i) + " changed shape (was " +
                                         reparam::detail::shape_str(state.rows(), state.cols()) + ", now " +
                                         reparam::detail::shape_str(p.rows(), p.cols()) + ")");
}

/// Adam's constants for one step from its options and bias corrections.
template <class T, class O>
reparam::detail::AdamStep<T> adam_step(const O& o, T step_size, T inv_bc2_sqrt) {
  reparam::detail::AdamStep<T> s;
  s.b1 = o.beta1;
  s.c1 = T(1) - o.beta1;
  s.b2 = o.beta2;
  s.c2 = T(1) - o.beta2;
  s.eps = o.eps;
  s.wd = o.weight_decay;
  s.step_size = step_size;
  s.inv_bc2_sqrt = inv_bc2_sqrt;
  return s;
}

/// One pass of Adam over n elements: each element's gradient, moments and value are read once
/// and written once (three separate passes left the division and square root waiting on memory
/// in the last one while the first two waited on loads: one loop lets the core overlap them).
/// The operations are those of torch.optim.Adam (its `_single_tensor_adam`):
///   g += wd p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
///   p -= (lr/bc1) m / (sqrt(v) / sqrt(bc2) + eps),
/// the square root correctly rounded and 1/sqrt(bc2) one multiplication, each "x y + z" one
/// fused multiply-add where the build has them (`detail::adam_packet`), the same in the packet
/// lanes and in the scalar tail, so any split of the elements gives the same bits.
///
/// With `extra` > 0 the gradient is g + src(0) + ... + src(extra - 1), added in that order (as
/// `nn::DataParallel` adds its threads' gradients). With `keep_grad` the gradient used (the sum,
/// with weight decay added) is stored back in g; without, g is only read (a write per element
/// less, where nobody reads the gradient after the step).
template <class T, class O, class Src>
void adam_update(T* p, T* g, T* m, T* v, Index n, const O& o, T step_size, T inv_bc2_sqrt, int extra, const Src& src,
                 bool keep_grad = true) {
  const reparam::detail::AdamStep<T> s = adam_step(o, step_size, inv_bc2_sqrt);
  const bool store_g = keep_grad && (extra > 0 || s.wd != T(0));
  Index i = 0;
  if constexpr (std::is_floating_point<T>::value && Eigen::internal::packet_traits<T>::Vectorizable) {
    namespace ei = Eigen::internal;
    using P = typename ei::packet_traits<T>::type;
    constexpr Index L = ei::packet_traits<T>::size;
    for (; i + L <= n; i += L) {
      P pg = ei::ploadu<P>(g + i);
      for (int u = 0; u < extra; ++u) pg = ei::padd(pg, ei::ploadu<P>(src(u) + i));
      P pm = ei::ploadu<P>(m + i), pv = ei::ploadu<P>(v + i);
      const P pp = reparam::detail::adam_packet(s, ei::ploadu<P>(p + i), pg, pm, pv);
      if (store_g) ei::pstoreu(g + i, pg);
      ei::pstoreu(m + i, pm);
      ei::pstoreu(v + i, pv);
      ei::pstoreu(p + i, pp);
    }
  }
  for (; i < n; ++i) {
    T gi = g[i];
    for (int u = 0; u < extra; ++u) gi += src(u)[i];
    p[i] = reparam::detail::adam_element(s, p[i], gi, m[i], v[i]);
    if (keep_grad) g[i] = gi;
  }
}
}  // namespace detail

/// Settings of `SGD` (PyTorch's names and defaults; lr has none).
template <class T>
struct SGDOptions {
  T lr;
  T momentum = T(0);
  T dampening = T(0);
  T weight_decay = T(0);
  bool nesterov = false;
};

/// Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay.
template <class T>
class SGD {
 public:
  SGD(std::vector<Parameter<T>*> params, SGDOptions<T> options) : params_(std::move(params)), o_(options) {
    detail::check_params("SGD", params_);
    detail::check_hyper("SGD", "lr must be >= 0", o_.lr, o_.lr >= T(0));
    detail::check_hyper("SGD", "momentum must be >= 0", o_.momentum, o_.momentum >= T(0));
    detail::check_hyper("SGD", "weight_decay must be >= 0", o_.weight_decay, o_.weight_decay >= T(0));
    detail::check_hyper("SGD", "dampening must be >= 0", o_.dampening, o_.dampening >= T(0));
    if (o_.nesterov && (o_.momentum <= T(0) || o_.dampening != T(0)))
      reparam::detail::throw_domain("SGD", "nesterov needs momentum > 0 and dampening 0 (got momentum " +
                                               reparam::detail::scalar_str(o_.momentum) + ", dampening " +
                                               reparam::detail::scalar_str(o_.dampening) + ")");
    for (Parameter<T>* p : params_) buf_.emplace_back(Matrix<T>::Zero(p->rows(), p->cols()));
  }
  SGD(std::initializer_list<Parameter<T>*> params, SGDOptions<T> options)
      : SGD(std::vector<Parameter<T>*>(params), options) {}

  /// One update of every parameter from its gradient.
  void step() {
    for (std::size_t i = 0; i < params_.size(); ++i) detail::check_shape("SGD.step", i, *params_[i], buf_[i]);
    for (std::size_t i = 0; i < params_.size(); ++i) {
      Parameter<T>& p = *params_[i];
      if (p.grad.rows() != p.value.rows() || p.grad.cols() != p.value.cols()) continue;  // never read by a tape
      Matrix<T>& b = buf_[i];
      // d = g + wd p;  b = mu b + (1 - dampening) d (b = d on the first step);  p -= lr (d + mu b or b)
      if (o_.momentum != T(0)) {
        if (steps_ == 0)
          b = p.grad + o_.weight_decay * p.value;
        else
          b = o_.momentum * b + (T(1) - o_.dampening) * (p.grad + o_.weight_decay * p.value);
        if (o_.nesterov)
          p.value -= o_.lr * (p.grad + o_.weight_decay * p.value + o_.momentum * b);
        else
          p.value -= o_.lr * b;
      } else {
        p.value -= o_.lr * (p.grad + o_.weight_decay * p.value);
      }
    }
    ++steps_;
  }
  void zero_grad() {
    for (Parameter<T>* p : params_) p->zero_grad();
  }
  const SGDOptions<T>& options() const noexcept { return o_; }
  /// Learning rate, e.g. for a schedule.
  void set_lr(T lr) {
    detail::check_hyper("set_lr", "lr must be >= 0", lr, lr >= T(0));
    o_.lr = lr;
  }

 private:
  std::vector<Parameter<T>*> params_;
  SGDOptions<T> o_;
  std::vector<Matrix<T>> buf_;
  long steps_ = 0;
};

/// Settings of `Adam` (PyTorch's names and defaults).
template <class T>
struct AdamOptions {
  T lr = T(1e-3);
  T beta1 = T(0.9);
  T beta2 = T(0.999);
  T eps = T(1e-8);
  T weight_decay = T(0);
};

/// Adam (Kingma & Ba 2015) as torch.optim.Adam computes it (amsgrad off), to an ulp: the bias
/// correction of the second moment is one multiplication by 1 / sqrt(1 - beta2^t), not a division.
template <class T>
class Adam {
 public:
  Adam(std::vector<Parameter<T>*> params, AdamOptions<T> options = {}) : params_(std::move(params)), o_(options) {
    detail::check_params("Adam", params_);
    detail::check_hyper("Adam", "lr must be >= 0", o_.lr, o_.lr >= T(0));
    detail::check_hyper("Adam", "beta1 must be in [0, 1)", o_.beta1, o_.beta1 >= T(0) && o_.beta1 < T(1));
    detail::check_hyper("Adam", "beta2 must be in [0, 1)", o_.beta2, o_.beta2 >= T(0) && o_.beta2 < T(1));
    detail::check_hyper("Adam", "eps must be >= 0", o_.eps, o_.eps >= T(0));
    detail::check_hyper("Adam", "weight_decay must be >= 0", o_.weight_decay, o_.weight_decay >= T(0));
    for (Parameter<T>* p : params_) {
      m_.emplace_back(Matrix<T>::Zero(p->rows(), p->cols()));
      v_.emplace_back(Matrix<T>::Zero(p->rows(), p->cols()));
    }
  }
  Adam(std::initializer_list<Parameter<T>*> params, AdamOptions<T> options = {})
      : Adam(std::vector<Parameter<T>*>(params), options) {}

  /// One update of every parameter from its gradient.
  void step() { update(nullptr, 0, no_extra); }
  /// The same update with the elements spread over `pool`'s threads: elementwise, so the result
  /// is bit for bit that of `step()` at any thread count.
  void step(ThreadPool& pool) { update(&pool, 0, no_extra); }
  /// The update of `step(pool)` with each parameter's gradient first completed by a sum, in the
  /// same pass over memory: for a parameter p with extra(p, 0) non-null its gradient is
  /// p.grad + extra(p, 0) + ... + extra(p, count - 1), added in that order and left in p.grad
  /// (parameters with extra(p, 0) == nullptr use p.grad alone). The result is bit for bit that of
  /// adding the buffers into p.grad first and then calling `step(pool)`. `nn::DataParallel::step`
  /// uses it to sum its threads' gradients where the update reads them (one pass over the
  /// gradients and optimizer state instead of two). extra(p, u) points to p.size() values. With
  /// `keep_sum` false the sum is not stored in p.grad (one write per element less).
  template <class Extra>
  void step(ThreadPool& pool, int count, const Extra& extra, bool keep_sum = true) {
    update(&pool, count, extra, keep_sum);
  }
  /// The parameters this optimizer steps, in order.
  const std::vector<Parameter<T>*>& parameters() const noexcept { return params_; }

  /// A step fused into the backward sweep: a weight is updated block by block as its gradient
  /// comes out of the GEMM that computes it, while the block is still in cache, so the gradient
  /// never goes to memory (on the one-thread VAE steps 0.92-1.00x the time of storing it). Same bits as
  /// `backward` then `step()`.
  ///
  ///     adam.stream_from(tape);              // once: tape hands these parameters' gradients to adam
  ///     tape.clear(); tape.overwrite_gradients();
  ///     /* build loss */
  ///     adam.begin_step();                   // this step's bias corrections
  ///     tape.backward(loss);                 // streamed weights are updated here
  ///     adam.finish_step();                  // the others (biases, shared weights) from p.grad
  ///
  /// Streamed gradients are not stored (p.grad keeps its old contents), so nothing can be done
  /// between backward and update (no clipping). See `BasicTape::stream_gradient` for when a
  /// gradient is streamed. This object must outlive the registration (`tape.unstream_gradients()`).
  void stream_from(BasicTape<T>& tape) {
    for (std::size_t i = 0; i < params_.size(); ++i)
      tape.stream_gradient(*params_[i], {&Adam::take_block, this, i});
  }
  /// Starts a fused step (see `stream_from`): counts the step and fixes its bias corrections.
  void begin_step() {
    if (in_step_) reparam::detail::throw_graph("Adam.begin_step", "the previous step was not finished (finish_step)");
    prepare();
    for (Flag& f : streamed_) f.on.store(false, std::memory_order_relaxed);
    in_step_ = true;
  }
  /// Ends a fused step: updates every parameter that no sweep streamed, from its gradient.
  void finish_step() {
    if (!in_step_) reparam::detail::throw_graph("Adam.finish_step", "no step was begun (begin_step)");
    in_step_ = false;
    for (std::size_t i = 0; i < params_.size(); ++i)
      if (!streamed_[i].on.load(std::memory_order_relaxed)) apply(i, 0, 1, 0, no_extra);
  }
  /// Inside a fused step (`begin_step` ... `finish_step`): updates elements [offset, offset +
  /// count) of parameter i from their gradient g[0, count) plus more[0][0, count) + ... +
  /// more[n_more - 1][0, count), added in that order (g is only read). Any thread may call it for
  /// any block, each element once per step; `finish_step` then updates only the parameters no
  /// block reached. Same bits as `step()` on the summed gradient. How a gradient streamed from
  /// a sweep arrives, and how `nn::DataParallel` updates each block of its threads' summed
  /// products while the block is in cache.
  void update_block(std::size_t i, Index offset, Index count, const T* g, const T* const* more = nullptr, int n_more = 0) {
    if (!in_step_)
      reparam::detail::throw_graph("Adam", "a gradient was streamed outside begin_step() and finish_step()");
    if (i >= params_.size())
      reparam::detail::throw_shape("Adam", "a streamed gradient block names parameter " + std::to_string(i) + " of " +
                                               std::to_string(params_.size()));
    const Parameter<T>& p = *params_[i];
    if (p.value.rows() != m_[i].rows() || p.value.cols() != m_[i].cols() || offset < 0 || count < 0 ||
        offset > p.value.size() - count || n_more < 0 || (n_more > 0 && more == nullptr))
      reparam::detail::throw_shape("Adam", "a streamed gradient block does not fit parameter " + std::to_string(i));
    if (!streamed_[i].on.load(std::memory_order_relaxed)) streamed_[i].on.store(true, std::memory_order_relaxed);
    // adam_update reads g and, without keep_grad, never writes it
    detail::adam_update(params_[i]->value.data() + offset, const_cast<T*>(g), m_[i].data() + offset, v_[i].data() + offset, count,
                        o_, step_size_, inv_bc2_sqrt_, n_more, [more](int u) { return more[u]; }, false);
  }
  /// Leaves a fused step begun by `begin_step` without updating the rest (after an exception in
  /// the sweep); the step stays counted and parameters streamed so far stay updated.
  void abandon_step() noexcept { in_step_ = false; }

  void zero_grad() {
    for (Parameter<T>* p : params_) p->zero_grad();
  }
  const AdamOptions<T>& options() const noexcept { return o_; }
  void set_lr(T lr) {
    detail::check_hyper("set_lr", "lr must be >= 0", lr, lr >= T(0));
    o_.lr = lr;
  }
  /// Steps taken so far.
  long steps() const noexcept { return steps_; }
  /// First and second moment estimates of parameter i (for checkpoints).
  Matrix<T>& exp_avg(std::size_t i) { return m_.at(i); }
  Matrix<T>& exp_avg_sq(std::size_t i) { return v_.at(i); }
  void set_steps(long s) noexcept { steps_ = s; }

 private:
  /// Checks the shapes, counts the step and fixes its bias corrections.
  void prepare() {
    using std::pow;
    using std::sqrt;
    for (std::size_t i = 0; i < params_.size(); ++i) detail::check_shape("Adam.step", i, *params_[i], m_[i]);
    ++steps_;
    const T bc1 = T(1) - pow(o_.beta1, T(steps_));
    const T bc2_sqrt = sqrt(T(1) - pow(o_.beta2, T(steps_)));
    step_size_ = o_.lr / bc1;
    inv_bc2_sqrt_ = T(1) / bc2_sqrt;
  }

  template <class Extra>
  void update(ThreadPool* pool, int extra, const Extra& extra_of, bool keep_grad = true) {
    if (in_step_) reparam::detail::throw_graph("Adam.step", "a fused step is under way (finish_step first)");
    prepare();
    if (pool)
      pool->run([&](int t) {
        for (std::size_t i = 0; i < params_.size(); ++i) apply(i, t, pool->size(), extra, extra_of, keep_grad);
      });
    else
      for (std::size_t i = 0; i < params_.size(); ++i) apply(i, 0, 1, extra, extra_of, keep_grad);
  }

  /// Thread t of n's share of the update of parameter i from its gradient (plus the extra buffers).
  template <class Extra>
  void apply(std::size_t i, int t, int n, int extra, const Extra& extra_of, bool keep_grad = true) {
    Parameter<T>& p = *params_[i];
    if (p.grad.rows() != p.value.rows() || p.grad.cols() != p.value.cols()) return;  // never read by a tape
    // Threads take blocks of 2048 elements, the same blocks at every thread count; each
    // element's arithmetic does not depend on its block, so the bits are the same anyway.
    constexpr Index block = 2048;
    const Index size = p.value.size();
    const auto s = ThreadPool::shard((size + block - 1) / block, t, n);
    const Index first = s.first * block, last = std::min(size, (s.first + s.second) * block);
    if (last <= first) return;
    // The buffers to add, looked up once per parameter; more than fit here are added in a
    // pass of their own first (the same sums in the same order, kept in p.grad).
    constexpr int max_fused = 64;
    const T* src[max_fused];
    int k = 0;
    if (extra > 0 && extra_of(p, 0) != nullptr) {
      if (extra <= max_fused) {
        for (; k < extra; ++k) src[k] = extra_of(p, k) + first;
      } else {
        using A = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
        using C = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
        A g(p.grad.data() + first, last - first);
        for (int u = 0; u < extra; ++u) g += C(extra_of(p, u) + first, last - first);
      }
    }
    detail::adam_update(p.value.data() + first, p.grad.data() + first, m_[i].data() + first, v_[i].data() + first,
                        last - first, o_, step_size_, inv_bc2_sqrt_, k, [&src](int u) { return src[u]; }, keep_grad);
  }

  /// The sink of parameter i (GradientSink): elements [offset, offset + count) of its gradient.
  static void take_block(void* self, std::size_t i, Index offset, Index count, T* g) {
    static_cast<Adam*>(self)->update_block(i, offset, count, g);
  }

  static const T* no_extra(const Parameter<T>&, int) { return nullptr; }

  std::vector<Parameter<T>*> params_;
  AdamOptions<T> o_;
  std::vector<Matrix<T>> m_, v_;
  struct Flag {  // an atomic that copies (Adam stays copyable)
    std::atomic<bool> on{false};
    Flag() = default;
    Flag(const Flag& f) noexcept : on(f.on.load()) {}
    Flag& operator=(const Flag& f) noexcept {
      on.store(f.on.load());
      return *this;
    }
  };
  std::vector<Flag> streamed_ = std::vector<Flag>(params_.size());  // reached by update_block in this fused step
  long steps_ = 0;
  T step_size_ = T(0), inv_bc2_sqrt_ = T(1);
  bool in_step_ = false;
};

}  // namespace optim
}  // namespace reparam
