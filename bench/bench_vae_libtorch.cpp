// The Gaussian VAE step of examples/vae/vae_gaussian in LibTorch's C++ frontend (Debian's
// libtorch-dev): what a C++ user would pick today. The same model (784-400-20, batch 100,
// float, Adam 1e-3, BCE with logits, closed-form KL), timed like bench_vae's BM_Step.
// Built only when CMake finds Torch. Threads: --threads N (set OPENBLAS_NUM_THREADS and
// OMP_NUM_THREADS to N too: bench/vae_compare.py does).
#include <cstdlib>
#include <cstring>
#include <string>

#include <benchmark/benchmark.h>
#include <torch/torch.h>

namespace {

void BM_LibTorch_GaussianStep(benchmark::State& state) {
  torch::manual_seed(1);
  const int64_t batch = 100;
  torch::Tensor images = (torch::rand({2000, 784}) > 0.6).to(torch::kFloat);
  torch::nn::Sequential enc(torch::nn::Linear(784, 400), torch::nn::ReLU(), torch::nn::Linear(400, 40));
  torch::nn::Sequential dec(torch::nn::Linear(20, 400), torch::nn::ReLU(), torch::nn::Linear(400, 784));
  std::vector<torch::Tensor> params = enc->parameters();
  for (auto& p : dec->parameters()) params.push_back(p);
  torch::optim::Adam opt(params, torch::optim::AdamOptions(1e-3));
  int64_t at = 0;
  torch::Tensor perm = torch::randperm(images.size(0));
  for (auto _ : state) {
    if (at + batch > images.size(0)) {
      perm = torch::randperm(images.size(0));
      at = 0;
    }
    torch::Tensor x = images.index_select(0, perm.slice(0, at, at + batch));
    at += batch;
    opt.zero_grad();
    torch::Tensor h = enc->forward(x);
    torch::Tensor mu = h.slice(1, 0, 20), lv = h.slice(1, 20, 40);
    torch::Tensor sd = torch::exp(0.5 * lv);
    torch::Tensor z = mu + sd * torch::randn_like(sd);
    torch::Tensor rec = torch::binary_cross_entropy_with_logits(dec->forward(z), x, {}, {}, at::Reduction::Sum);
    torch::Tensor kl = 0.5 * (mu.pow(2) + sd.pow(2) - 1).sum() - torch::log(sd).sum();
    torch::Tensor loss = (rec + kl) / double(batch);
    loss.backward();
    opt.step();
    benchmark::DoNotOptimize(loss.item<float>());
  }
  state.counters["threads"] = double(torch::get_num_threads());
}
BENCHMARK(BM_LibTorch_GaussianStep)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--threads") == 0) threads = std::atoi(argv[i + 1]);
  torch::set_num_threads(threads);
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0) { ++i; continue; }
    rest.push_back(argv[i]);
  }
  int n = int(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
