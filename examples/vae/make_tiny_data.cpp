// Writes small MNIST-format folders for the VAE programs' tests: a good one (gzip) and one per
// broken case (truncated, corrupt gzip stream, wrong magic number, image and label counts that
// differ), plus a checkpoint of a Gaussian VAE with 20 hidden units (for the mismatch test).
#include <cstdio>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <zlib.h>

#include <reparam/data/batcher.hpp>
#include <reparam/data/idx.hpp>
#include <reparam/reparam.hpp>

namespace {

std::vector<unsigned char> idx(std::uint32_t magic, const std::vector<std::uint32_t>& dims, const std::vector<unsigned char>& data) {
  return reparam::data::idx_bytes(dims, data, magic);
}
bool write_plain(const std::string& p, const std::vector<unsigned char>& b) {
  reparam::data::write_file(p, b, false);
  return true;
}
bool write_gz(const std::string& p, const std::vector<unsigned char>& b) {
  reparam::data::write_file(p, b, true);
  return true;
}
std::vector<unsigned char> read_all(const std::string& p) {
  std::vector<unsigned char> b;
  std::FILE* f = std::fopen(p.c_str(), "rb");
  int c;
  while (f && (c = std::fgetc(f)) != EOF) b.push_back(static_cast<unsigned char>(c));
  if (f) std::fclose(f);
  return b;
}

// Images of stripes and blocks whose position depends on the label: something to learn.
void make_set(std::uint32_t n, std::uint64_t seed, std::vector<unsigned char>& images, std::vector<unsigned char>& labels) {
  reparam::Rng rng(seed);
  images.assign(std::size_t(n) * 784, 0);
  labels.resize(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    const int l = int(reparam::data::uniform_index(rng, 10));
    labels[i] = static_cast<unsigned char>(l);
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x) {
        const bool on = (y / 4 == l % 7) || (x / 4 == l % 5 + 1) || reparam::data::uniform_index(rng, 20) == 0;
        images[std::size_t(i) * 784 + y * 28 + x] = on ? 200 : 10;
      }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_tiny_data OUT_DIR\n");
    return 2;
  }
  const std::string out = argv[1];
  std::vector<unsigned char> tr_i, tr_l, te_i, te_l;
  make_set(200, 1, tr_i, tr_l);
  make_set(100, 2, te_i, te_l);
  const auto train_images = idx(0x803, {200, 28, 28}, tr_i), train_labels = idx(0x801, {200}, tr_l);
  const auto test_images = idx(0x803, {100, 28, 28}, te_i), test_labels = idx(0x801, {100}, te_l);
  bool ok = true;
  auto folder = [&](const std::string& name, const std::vector<unsigned char>* images, const std::vector<unsigned char>* labels,
                    bool gz_images = true) {
    const std::string d = out + (name.empty() ? "" : "/" + name);
    ::mkdir(out.c_str(), 0777);
    ::mkdir(d.c_str(), 0777);
    ok = (gz_images ? write_gz(d + "/train-images-idx3-ubyte.gz", images ? *images : train_images)
                    : write_plain(d + "/train-images-idx3-ubyte", images ? *images : train_images)) && ok;
    ok = write_gz(d + "/train-labels-idx1-ubyte.gz", labels ? *labels : train_labels) && ok;
    ok = write_plain(d + "/t10k-images-idx3-ubyte", test_images) && ok;  // plain files work too
    ok = write_gz(d + "/t10k-labels-idx1-ubyte.gz", test_labels) && ok;
  };
  folder("", nullptr, nullptr);
  auto truncated = train_images;
  truncated.resize(truncated.size() - 1000);
  folder("truncated", &truncated, nullptr, false);
  auto bad_magic = train_images;
  bad_magic[2] = 0x09;  // 0x0903: not unsigned bytes
  bad_magic[0] = 0x12;
  folder("badmagic", &bad_magic, nullptr, false);
  auto short_labels = idx(0x801, {199}, std::vector<unsigned char>(tr_l.begin(), tr_l.end() - 1));
  folder("counts", nullptr, &short_labels);
  folder("corrupt", nullptr, nullptr);
  {  // flip bytes inside the deflate stream: zlib reports a data error or a bad check value
    const std::string p = out + "/corrupt/train-images-idx3-ubyte.gz";
    auto b = read_all(p);
    for (std::size_t i = b.size() / 3; i < b.size() / 3 + 64 && i < b.size(); ++i) b[i] ^= 0x5a;
    ok = write_plain(p, b) && ok;
  }
  {  // a checkpoint of vae_gaussian --hidden 20 (names and Adam state as the program saves them)
    reparam::Rng rng(1);
    reparam::nn::Mlp<float> enc({784, 20, 40}, reparam::nn::Activation::relu, rng);
    reparam::nn::Mlp<float> dec({20, 20, 784}, reparam::nn::Activation::relu, rng);
    reparam::nn::ParameterList<float> params;
    enc.collect(params, "encoder");
    dec.collect(params, "decoder");
    reparam::optim::Adam<float> adam(params.pointers());
    reparam::nn::save_checkpoint(out + "/g_hidden20.rpck", params, &adam);
  }
  if (!ok) {
    std::fprintf(stderr, "make_tiny_data: cannot write under %s\n", out.c_str());
    return 1;
  }
  return 0;
}
