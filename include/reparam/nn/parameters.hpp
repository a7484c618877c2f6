#pragma once
/// \file parameters.hpp  `nn::ParameterList`: a model's parameters by name, gathered once, for
/// optimizers, gradient clipping and checkpoints.
///
///     reparam::nn::ParameterList<double> params;
///     encoder.collect(params, "encoder");               // "encoder.0.weight", ...
///     reparam::optim::Adam<double> opt(params.pointers(), {1e-3});
///     params.clip_grad_norm(5.0);
///
/// `nn::StateList`: what a model keeps besides its parameters (a running average, a baseline),
/// by name, so that checkpoints carry it (PyTorch's buffers): never trained.

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <reparam/errors.hpp>
#include <reparam/tape.hpp>

namespace reparam {
namespace nn {

namespace detail_list {
/// Unique, non-empty names and the addresses of things owned elsewhere: what `ParameterList` and
/// `StateList` share. `who` names the list in errors ("ParameterList.add").
template <class Item>
class NamedList {
 public:
  std::size_t size() const noexcept { return items_.size(); }
  Item& operator[](std::size_t i) const { return *items_.at(i).second; }
  const std::string& name(std::size_t i) const { return items_.at(i).first; }

 protected:
  void add_named(const char* who, std::string name, Item& item) {
    if (name.empty()) reparam::detail::throw_domain(who, "name must not be empty (got \"\")");
    for (const auto& e : items_)
      if (e.first == name) reparam::detail::throw_domain(who, "name already used (got \"" + name + "\")");
    items_.emplace_back(std::move(name), &item);
  }
  std::vector<std::pair<std::string, Item*>> items_;
};
}  // namespace detail_list

/// Names and addresses of Parameters owned elsewhere (the layers). Gathering allocates; the
/// per-step members (zero_grad, grad_norm, clip_grad_norm) do not.
template <class T>
class ParameterList : public detail_list::NamedList<Parameter<T>> {
  using detail_list::NamedList<Parameter<T>>::items_;

 public:
  /// Adds `p` under `name`; names must be unique and not empty.
  void add(std::string name, Parameter<T>& p) { this->add_named("ParameterList.add", std::move(name), p); }
  /// The Parameter called `name`, or nullptr.
  Parameter<T>* find(const std::string& name) const {
    for (const auto& e : items_)
      if (e.first == name) return e.second;
    return nullptr;
  }
  /// Addresses in order, for `optim::Adam` and `optim::SGD`.
  std::vector<Parameter<T>*> pointers() const {
    std::vector<Parameter<T>*> out;
    out.reserve(items_.size());
    for (const auto& e : items_) out.push_back(e.second);
    return out;
  }
  /// Number of scalars over all parameters.
  Index count() const noexcept {
    Index n = 0;
    for (const auto& e : items_) n += e.second->value.size();
    return n;
  }
  void zero_grad() {
    for (const auto& e : items_) e.second->zero_grad();
  }
  /// Euclidean norm of all gradients together.
  T grad_norm() const {
    using std::sqrt;
    T s = T(0);
    for (const auto& e : items_) s += e.second->grad.squaredNorm();
    return sqrt(s);
  }
  /// Scales all gradients so that their joint norm is at most `max_norm` (as PyTorch's
  /// clip_grad_norm_: factor max_norm / (norm + 1e-6) when below 1); returns the norm before.
  T clip_grad_norm(T max_norm) {
    using std::isfinite;
    if (!(max_norm > T(0)) || !isfinite(max_norm))
      detail::throw_domain("clip_grad_norm", "max_norm must be > 0 and finite (got " + detail::scalar_str(max_norm) + ")");
    const T norm = grad_norm();
    const T factor = max_norm / (norm + T(1e-6));
    if (factor < T(1))
      for (const auto& e : items_) e.second->grad *= factor;
    return norm;
  }
};

/// Names and addresses of matrices a model keeps besides its parameters (running averages,
/// baselines, counters held as scalars), owned elsewhere: `save_checkpoint` and
/// `load_checkpoint` carry them as "state.<name>" when given one. Optimizers never see them.
template <class T>
class StateList : public detail_list::NamedList<Matrix<T>> {
 public:
  /// Adds `m` under `name`; names must be unique and not empty.
  void add(std::string name, Matrix<T>& m) { this->add_named("StateList.add", std::move(name), m); }
};

}  // namespace nn
}  // namespace reparam
