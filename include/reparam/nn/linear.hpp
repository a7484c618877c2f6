#pragma once
/// \file linear.hpp  `nn::Linear` (y = x W + b in one `linear` node) and `nn::Mlp`, a stack of
/// them with an activation between layers. Weights are `Parameter`s owned by the layer.
///
///     reparam::Rng rng(1);
///     reparam::nn::Mlp<double> net({784, 400, 40}, reparam::nn::Activation::relu, rng);
///     reparam::Var h = net(tape.constant(x));       // batch x 40
///
/// A layer reads its parameters through `tape.parameter(p)`: a variable normally, a constant
/// inside a `NoGrad` scope (evaluation), or a variable whose gradient goes to a buffer the tape
/// binds (data-parallel steps, see `BasicTape::bind_gradient`).

#include <cmath>
#include <string>
#include <vector>

#include <reparam/nn/parameters.hpp>
#include <reparam/ops/linalg.hpp>
#include <reparam/ops/unary.hpp>
#include <reparam/random.hpp>

namespace reparam {
namespace nn {

/// Activation applied between the layers of an `Mlp`.
enum class Activation { none, relu, tanh, sigmoid, softplus };

/// `a(x)` on a Var.
template <class T>
BasicVar<T> activate(Activation a, const BasicVar<T>& x) {
  switch (a) {
    case Activation::relu: return relu(x);
    case Activation::tanh: return tanh(x);
    case Activation::sigmoid: return sigmoid(x);
    case Activation::softplus: return softplus(x);
    case Activation::none: break;
  }
  return x;
}

/// `a(x W + b)`, as one node where the activation is relu (`linear_relu`).
template <class T>
BasicVar<T> dense(const BasicVar<T>& x, const BasicVar<T>& w, const BasicVar<T>& b, Activation a) {
  return a == Activation::relu ? linear_relu(x, w, b) : activate(a, linear(x, w, b));
}

/// Fully connected layer: x (batch x in) -> x W + b (batch x out). W is in x out, b is 1 x out.
template <class T>
class Linear {
 public:
  /// PyTorch's default initialisation: weight, then bias, each U(-1/sqrt(in), 1/sqrt(in)),
  /// drawn in row-major order from `rng` (any uniform random bit generator).
  template <class G>
  Linear(Index in, Index out, G& rng) {
    if (in <= 0 || out <= 0)
      detail::throw_shape("Linear", "sizes must be positive (got in " + std::to_string(in) + ", out " + std::to_string(out) + ")");
    detail::shape_size("Linear", in, out);  // ShapeError if in x out overflows
    using std::sqrt;
    const T bound = T(1) / sqrt(T(in));
    auto draw = [&](Matrix<T>& m) {
      for (Index k = 0; k < m.size(); ++k) m.data()[k] = (T(2) * uniform<T>(rng) - T(1)) * bound;
    };
    weight.value.resize(in, out);
    bias.value.resize(1, out);
    draw(weight.value);
    draw(bias.value);
    weight.zero_grad();
    bias.zero_grad();
  }

  Index in_features() const noexcept { return weight.rows(); }
  Index out_features() const noexcept { return weight.cols(); }

  /// x W + b on x's tape.
  BasicVar<T> operator()(const BasicVar<T>& x) {
    BasicTape<T>& t = x.tape();
    return linear(x, t.parameter(weight), t.parameter(bias));
  }
  /// a(x W + b) on x's tape (`dense`: one node for relu).
  BasicVar<T> operator()(const BasicVar<T>& x, Activation a) {
    BasicTape<T>& t = x.tape();
    return dense(x, t.parameter(weight), t.parameter(bias), a);
  }
  /// The same map with the weight and bias given as Vars of any tape (a functional call): e.g.
  /// the leaves `hessian_vector_product` or `natural_gradient_step` pass, on a tape of duals.
  template <class S>
  static BasicVar<S> apply(const BasicVar<S>& x, const BasicVar<S>& weight, const BasicVar<S>& bias) {
    return linear(x, weight, bias);
  }
  /// Adds "prefix.weight" and "prefix.bias" (or "weight" and "bias" when prefix is empty).
  void collect(ParameterList<T>& list, const std::string& prefix = "") {
    const std::string p = prefix.empty() ? "" : prefix + ".";
    list.add(p + "weight", weight);
    list.add(p + "bias", bias);
  }

  Parameter<T> weight;
  Parameter<T> bias;
};

/// Linear layers of the given sizes ({in, hidden..., out}) with `hidden` after every layer but
/// the last, which is followed by `output` (none by default). Layers are drawn in order from rng.
template <class T>
class Mlp {
 public:
  template <class G>
  Mlp(const std::vector<Index>& sizes, Activation hidden, G& rng, Activation output = Activation::none)
      : hidden_(hidden), output_(output) {
    if (sizes.size() < 2)
      detail::throw_shape("Mlp", "needs at least two sizes, in and out (got " + std::to_string(sizes.size()) + ")");
    layers_.reserve(sizes.size() - 1);
    for (std::size_t i = 0; i + 1 < sizes.size(); ++i) layers_.emplace_back(sizes[i], sizes[i + 1], rng);
  }
  BasicVar<T> operator()(BasicVar<T> x) {
    for (std::size_t i = 0; i < layers_.size(); ++i)
      x = layers_[i](x, i + 1 < layers_.size() ? hidden_ : output_);
    return x;
  }
  /// The same map with the parameters given as Vars of any tape, in the order of `collect` (weight
  /// and bias of each layer), starting at params[first]: a functional call, for
  /// `hessian_vector_product`, `fisher_vector_product` and `natural_gradient_step`, whose leaves
  /// (on a tape of T or of Dual<T>) stand for the layers' Parameters.
  template <class S>
  BasicVar<S> apply(BasicVar<S> x, const std::vector<BasicVar<S>>& params, std::size_t first = 0) const {
    if (params.size() < first + 2 * layers_.size())
      detail::throw_shape("Mlp.apply", "needs " + std::to_string(2 * layers_.size()) + " parameters from index " +
                                           std::to_string(first) + " (got " + std::to_string(params.size()) + ")");
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      const BasicVar<S>& w = params[first + 2 * i];
      const BasicVar<S>& b = params[first + 2 * i + 1];
      const Linear<T>& l = layers_[i];
      if (w.rows() != l.weight.rows() || w.cols() != l.weight.cols() || b.rows() != 1 || b.cols() != l.bias.cols())
        detail::throw_shape("Mlp.apply", "parameters of layer " + std::to_string(i) + " do not fit (" +
                                             detail::shape_str(w.rows(), w.cols()) + " and " + detail::shape_str(b.rows(), b.cols()) +
                                             " for " + detail::shape_str(l.weight.rows(), l.weight.cols()) + " and " +
                                             detail::shape_str(1, l.bias.cols()) + ")");
      x = dense(x, w, b, i + 1 < layers_.size() ? hidden_ : output_);
    }
    return x;
  }
  /// Adds "prefix.0.weight", "prefix.0.bias", "prefix.1.weight", ...
  void collect(ParameterList<T>& list, const std::string& prefix = "") {
    const std::string p = prefix.empty() ? "" : prefix + ".";
    for (std::size_t i = 0; i < layers_.size(); ++i) layers_[i].collect(list, p + std::to_string(i));
  }
  std::size_t size() const noexcept { return layers_.size(); }
  Linear<T>& operator[](std::size_t i) { return layers_.at(i); }
  Index in_features() const { return layers_.front().in_features(); }
  Index out_features() const { return layers_.back().out_features(); }

 private:
  std::vector<Linear<T>> layers_;
  Activation hidden_, output_;
};

}  // namespace nn
}  // namespace reparam
