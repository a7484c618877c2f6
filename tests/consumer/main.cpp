// A user's program: d/dx sum(x^2) = 2x, checked.
#include <cstdio>

#include <reparam/reparam.hpp>

int main() {
  reparam::Tape tape;
  reparam::Var x = tape.variable(reparam::Matrix<double>::Constant(2, 3, 1.5));
  tape.backward(reparam::sum(reparam::square(x)));
  if (!(x.grad().array() == 3.0).all()) return 1;
  std::printf("consumer ok (reparam %d)\n", reparam::version);
  return 0;
}
