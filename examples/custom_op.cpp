// Defining a differentiable operation outside the library, with reparam::Operation: any number
// of operands, a forward computation and its backward rule side by side, recorded without heap
// allocation. Here: the log-density of a Student-t with nu degrees of freedom, a fused three-operand
// node (x, loc, scale), checked against central differences. Exits 1 if a gradient is wrong.
//
//   custom_op
#include <cmath>
#include <cstdio>

#include <reparam/reparam.hpp>

// log t_nu(x; loc, scale) = c - log scale - (nu + 1)/2 log(1 + z^2 / nu),  z = (x - loc) / scale
template <class T>
reparam::BasicVar<T> student_t_log_prob(const reparam::BasicVar<T>& x, const reparam::BasicVar<T>& loc,
                                        const reparam::BasicVar<T>& scale, T nu) {
  reparam::Operation<T> op("student_t_log_prob", {x, loc, scale});
  op.require_same_shape();
  using std::lgamma;
  using std::log;
  const T c = lgamma((nu + 1) / 2) - lgamma(nu / 2) - T(0.5) * log(nu * T(3.14159265358979323846));
  return op.record(
      x.rows(), x.cols(),
      [&](auto y) {
        const auto z = (x.value().array() - loc.value().array()) / scale.value().array();
        y.array() = c - scale.value().array().log() - (nu + 1) / 2 * (1 + z.square() / nu).log();
      },
      // with z as above and w = (nu + 1) z / (nu + z^2):  dx = -w / s,  dloc = w / s,  dscale = (w z - 1) / s
      [nu](reparam::Backward<T>& bw) {
        const auto x = bw.input(0).array(), m = bw.input(1).array(), s = bw.input(2).array();
        const auto z = (x - m) / s;
        const auto w = (nu + 1) * z / (nu + z.square());
        const auto g = bw.grad().array();
        bw.add(0, -g * w / s);
        bw.add(1, g * w / s);
        bw.add(2, g * (w * z - 1) / s);
      });
}

int main() {
  using M = reparam::Matrix<double>;
  const M x0{{0.3, -1.2, 2.5}}, m0{{0.0, 0.5, 1.0}}, s0{{1.0, 2.0, 0.7}};
  const double nu = 4.0;
  auto value = [&](const M& x, const M& m, const M& s) {
    reparam::Tape t;
    return reparam::sum(student_t_log_prob(t.constant(x), t.constant(m), t.constant(s), nu)).item();
  };
  reparam::Tape tape;
  const reparam::Var x = tape.variable(x0), m = tape.variable(m0), s = tape.variable(s0);
  const reparam::Var lp = reparam::sum(student_t_log_prob(x, m, s, nu));
  tape.backward(lp);
  std::printf("sum log t_4 = %.12f\n", lp.item());
  const M* inputs[3] = {&x0, &m0, &s0};
  const reparam::Var* vars[3] = {&x, &m, &s};
  const char* names[3] = {"x", "loc", "scale"};
  bool ok = true;
  for (int k = 0; k < 3; ++k)
    for (reparam::Index i = 0; i < 3; ++i) {
      M in[3] = {x0, m0, s0};
      const double h = 1e-6;
      in[k](0, i) = (*inputs[k])(0, i) + h;
      const double up = value(in[0], in[1], in[2]);
      in[k](0, i) = (*inputs[k])(0, i) - h;
      const double down = value(in[0], in[1], in[2]);
      const double numeric = (up - down) / (2 * h), tape_grad = vars[k]->grad()(0, i);
      const bool good = std::abs(numeric - tape_grad) <= 1e-7 * (1 + std::abs(numeric));
      ok = ok && good;
      std::printf("d/d%-5s[%ld]  tape %+.10f  central difference %+.10f  %s\n", names[k], long(i), tape_grad, numeric,
                  good ? "ok" : "WRONG");
    }
  std::printf(ok ? "all gradients match\n" : "a gradient is wrong\n");
  return ok ? 0 : 1;
}
