#pragma once
/// \file parameters.hpp  `nn::ParameterList`: a model's parameters by name, gathered once, for
/// optimizers, gradient clipping and checkpoints.
///
///     reparam::nn::ParameterList<double> params;
///     encoder.collect(params, "encoder");               // "encoder.0.weight", ...
///     reparam::optim::Adam<double> opt(params.pointers(), {1e-3});
///     params.clip_grad_norm(5.0);

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <reparam/errors.hpp>
#include <reparam/tape.hpp>

namespace reparam {
namespace nn {

/// Names and addresses of Parameters owned elsewhere (the layers). Gathering allocates; the
/// per-step members (zero_grad, grad_norm, clip_grad_norm) do not.
template <class T>
class ParameterList {
 public:
  /// Adds `p` under `name`; names must be unique and not empty.
  void add(std::string name, Parameter<T>& p) {
    if (name.empty()) detail::throw_domain("ParameterList.add", "name must not be empty (got \"\")");
    for (const auto& e : items_)
      if (e.first == name) detail::throw_domain("ParameterList.add", "name already used (got \"" + name + "\")");
    items_.emplace_back(std::move(name), &p);
  }
  std::size_t size() const noexcept { return items_.size(); }
  Parameter<T>& operator[](std::size_t i) const { return *items_.at(i).second; }
  const std::string& name(std::size_t i) const { return items_.at(i).first; }
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

 private:
  std::vector<std::pair<std::string, Parameter<T>*>> items_;
};

}  // namespace nn
}  // namespace reparam
