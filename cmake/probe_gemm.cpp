// Configure-time probe (cmake/ProbeGemm.cmake): which GEMM runs the VAE programs' products faster
// on this machine, Eigen's kernel as the headers compile it here or OpenBLAS's cblas_sgemm?
// Times the Gaussian model's forward and backward products (batch 100, float), the two kernels
// alternating, and prints "eigen <ms> openblas <ms>" (medians). Not part of the library.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include <reparam/detail/gemm.hpp>

extern "C" void cblas_sgemm(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
extern "C" void openblas_set_num_threads(int);

using Mat = reparam::Matrix<float>;
using reparam::Index;

struct Product {
  Mat c, a, b;
  bool ta, tb;
};

int main() {
  openblas_set_num_threads(1);
  // (m, n, k, ta, tb) of one step of 784-400-40 / 20-400-784 at batch 100
  const Index d[][5] = {{100, 400, 784, 0, 0}, {100, 40, 400, 0, 0}, {400, 40, 100, 1, 0}, {100, 400, 40, 0, 1},
                        {784, 400, 100, 1, 0}, {100, 400, 20, 0, 0},  {100, 784, 400, 0, 0}, {400, 784, 100, 1, 0},
                        {100, 400, 784, 0, 1}, {20, 400, 100, 1, 0},  {100, 20, 400, 0, 1}};
  std::vector<Product> ps;
  for (const auto& s : d) {
    const Index m = s[0], n = s[1], k = s[2];
    Product p{Mat::Zero(m, n), s[3] ? Mat::Random(k, m) : Mat::Random(m, k), s[4] ? Mat::Random(n, k) : Mat::Random(k, n),
              s[3] != 0, s[4] != 0};
    ps.push_back(std::move(p));
  }
  reparam::detail::Workspace<float> ws;
  auto eigen = [&] {
    for (Product& p : ps) {
      Eigen::Map<Mat> c(p.c.data(), p.c.rows(), p.c.cols());
      reparam::detail::gemm_acc(c, Eigen::Map<const Mat>(p.a.data(), p.a.rows(), p.a.cols()), p.ta,
                                Eigen::Map<const Mat>(p.b.data(), p.b.rows(), p.b.cols()), p.tb, 1.0f, ws, true);
    }
  };
  auto blas = [&] {
    for (Product& p : ps)
      cblas_sgemm(101, p.ta ? 112 : 111, p.tb ? 112 : 111, int(p.c.rows()), int(p.c.cols()), int(p.ta ? p.a.rows() : p.a.cols()),
                  1.0f, p.a.data(), int(p.a.cols()), p.b.data(), int(p.b.cols()), 0.0f, p.c.data(), int(p.c.cols()));
  };
  auto ms = [](auto&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i) f();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / 20;
  };
  std::vector<double> te, tb;
  eigen();
  blas();
  for (int r = 0; r < 7; ++r) {
    te.push_back(ms(eigen));
    tb.push_back(ms(blas));
  }
  std::sort(te.begin(), te.end());
  std::sort(tb.begin(), tb.end());
#ifdef REPARAM_INPLACE_GEMM
  const int inplace = 1;
#else
  const int inplace = 0;
#endif
  std::printf("eigen %.3f openblas %.3f inplace %d\n", te[3], tb[3], inplace);
  return 0;
}
