#pragma once
/// \file optim.hpp  Optimizers that step `Parameter`s: `optim::SGD` and `optim::Adam`, with
/// PyTorch's update rules (so a PyTorch twin of a program follows the same trajectory).
///
///     reparam::optim::Adam opt({&w, &b}, {1e-3});
///     opt.zero_grad(); /* build loss on a tape */ tape.backward(loss); opt.step();

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <vector>

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
  void step() { update(nullptr); }
  /// The same update with the elements spread over `pool`'s threads: elementwise, so the result
  /// is bit for bit that of `step()` at any thread count.
  void step(ThreadPool& pool) { update(&pool); }
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
  void update(ThreadPool* pool) {
    using std::pow;
    using std::sqrt;
    for (std::size_t i = 0; i < params_.size(); ++i) detail::check_shape("Adam.step", i, *params_[i], m_[i]);
    ++steps_;
    const T bc1 = T(1) - pow(o_.beta1, T(steps_));
    const T bc2_sqrt = sqrt(T(1) - pow(o_.beta2, T(steps_)));
    const T step_size = o_.lr / bc1, inv_bc2_sqrt = T(1) / bc2_sqrt;
    auto run = [&](int t, int n) {
      for (std::size_t i = 0; i < params_.size(); ++i) {
        Parameter<T>& p = *params_[i];
        if (p.grad.rows() != p.value.rows() || p.grad.cols() != p.value.cols()) continue;  // never read by a tape
        // Blocks of 2048 elements (they stay in the L1 cache: one pass over memory instead of
        // three), the same blocks at every thread count, so the same bits.
        constexpr Index block = 2048;
        const Index size = p.value.size();
        const auto s = ThreadPool::shard((size + block - 1) / block, t, n);
        for (Index b = s.first * block; b < std::min(size, (s.first + s.second) * block); b += block) {
          const Index len = std::min<Index>(block, size - b);
          using A = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
          A pv(p.value.data() + b, len), g(p.grad.data() + b, len), m(m_[i].data() + b, len), v(v_[i].data() + b, len);
          if (o_.weight_decay != T(0)) g += o_.weight_decay * pv;  // as torch: g += wd p
          // m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
          m = o_.beta1 * m + (T(1) - o_.beta1) * g;
          v = o_.beta2 * v + (T(1) - o_.beta2) * g.square();
          // one division per element, not two; the sqrt correctly rounded (as torch's), where
          // Eigen's fast-math float packets would approximate it (and differ between SSE and AVX)
          pv -= step_size * m / (v.unaryExpr(reparam::detail::ExactSqrtFunctor<T>()) * inv_bc2_sqrt + o_.eps);
        }
      }
    };
    if (pool)
      pool->run([&](int t) { run(t, pool->size()); });
    else
      run(0, 1);
  }

  std::vector<Parameter<T>*> params_;
  AdamOptions<T> o_;
  std::vector<Matrix<T>> m_, v_;
  long steps_ = 0;
};

}  // namespace optim
}  // namespace reparam
