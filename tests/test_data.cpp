// The IDX reader (gzip and plain, and every refusal), load_mnist, binarization, the batcher
// (each epoch a permutation, seeded) and uniform_index (chi-square). Built when zlib is found.
#include <cstdio>
#include <limits>
#include <set>
#include <string>

#include <zlib.h>

#include <sys/resource.h>

#include <reparam/data/batcher.hpp>
#include <reparam/data/idx.hpp>

#include "support.hpp"

using namespace reparam;

#define REQUIRE_ERROR(expr, Type, text) REQUIRE_THROWS_MATCHES(expr, Type, Catch::Matchers::Message(text))

namespace {

std::vector<unsigned char> idx_bytes(std::uint32_t magic, const std::vector<std::uint32_t>& dims, const std::vector<unsigned char>& data) {
  return data::idx_bytes(dims, data, magic);
}
void write_file(const std::string& p, const std::vector<unsigned char>& b, bool gz) { data::write_file(p, b, gz); }

}  // namespace

TEST_CASE("read_idx: plain and gzip files give the same array", "[data]") {
  std::vector<unsigned char> data(2 * 3 * 4);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(i * 7);
  const auto bytes = idx_bytes(0x803, {2, 3, 4}, data);
  write_file("reparam_test.idx", bytes, false);
  write_file("reparam_test.idx.gz", bytes, true);
  for (const char* p : {"reparam_test.idx", "reparam_test.idx.gz"}) {
    const data::IdxArray a = data::read_idx(p);
    CHECK(a.dims == std::vector<std::uint32_t>{2, 3, 4});
    CHECK(a.data == data);
    CHECK(a.count() == 2);
  }
  std::remove("reparam_test.idx");
  std::remove("reparam_test.idx.gz");
  REQUIRE_ERROR(data::write_file("no_such_dir/x.idx", bytes, false), FileError, "reparam: write_file: cannot write (no_such_dir/x.idx)");
  REQUIRE_ERROR(data::write_file("no_such_dir/x.idx.gz", bytes, true), FileError, "reparam: write_file: cannot write (no_such_dir/x.idx.gz)");
}

TEST_CASE("read_idx: missing, truncated, longer, corrupt, wrong magic, wrong type", "[data][errors]") {
  const std::string p = "reparam_bad.idx";
  std::remove(p.c_str());
  REQUIRE_ERROR(data::read_idx(p), FileError, "reparam: read_idx: cannot open (" + p + ": no such file)");
  REQUIRE_ERROR(data::read_idx("."), FileError, "reparam: read_idx: cannot open (.: is a directory)");
  const std::vector<unsigned char> data(12, 1);
  auto bytes = idx_bytes(0x802, {3, 4}, data);
  bytes.resize(bytes.size() - 2);
  write_file(p, bytes, false);
  REQUIRE_ERROR(data::read_idx(p), FileError, "reparam: read_idx: file is truncated (" + p + ": 10 of 12 data bytes)");
  write_file(p, {0, 0}, false);
  REQUIRE_ERROR(data::read_idx(p), FileError, "reparam: read_idx: file is truncated (" + p + ": no IDX header)");
  write_file(p, {0, 0, 8, 2, 0, 0}, false);
  REQUIRE_ERROR(data::read_idx(p), FileError, "reparam: read_idx: file is truncated (" + p + ": in the dimensions)");
  bytes = idx_bytes(0x802, {3, 4}, data);
  bytes.push_back(0);
  write_file(p, bytes, false);
  REQUIRE_ERROR(data::read_idx(p), FileError, "reparam: read_idx: file is longer than its dimensions say (" + p + ")");
  write_file(p, idx_bytes(0x12345678, {3}, {1, 2, 3}), false);
  REQUIRE_ERROR(data::read_idx(p), FileError,
                "reparam: read_idx: wrong magic number (" + p + ": not an IDX file; bytes 18 52 86 120)");
  // dimensions whose product wraps around 2^64 (2^17 x 2^17 x 2^31 = 2^65) are refused, not read as 0
  write_file(p, idx_bytes(0x803, {1u << 17, 1u << 17, 1u << 31}, {}), false);
  REQUIRE_ERROR(data::read_idx(p), FileError, "reparam: read_idx: dimensions are too large (" + p + ")");
  // A header claiming the most the reader takes (2^17 x 2^17 = 2^34 bytes) over 10 bytes of data,
  // plain and gzip: refused as truncated without allocating what the header claims (zero-filled,
  // that would be 17 GB of resident memory).
  const std::vector<unsigned char> ten(10, 1);
  struct rusage before;
  ::getrusage(RUSAGE_SELF, &before);
  write_file(p, idx_bytes(0x802, {1u << 17, 1u << 17}, ten), false);
  REQUIRE_ERROR(data::read_idx(p), FileError, "reparam: read_idx: file is truncated (" + p + ": 10 of 17179869184 data bytes)");
  write_file(p, idx_bytes(0x802, {1u << 17, 1u << 17}, ten), true);
  REQUIRE_ERROR(data::read_idx(p), FileError, "reparam: read_idx: file is truncated (" + p + ": 10 of 17179869184 data bytes)");
  struct rusage after;
  ::getrusage(RUSAGE_SELF, &after);
  CHECK(after.ru_maxrss - before.ru_maxrss < 512 * 1024);  // kB: the gzip path's first 64 MB at most
  write_file(p, idx_bytes(0x0d01, {3}, {1, 2, 3}), false);
  REQUIRE_ERROR(data::read_idx(p), FileError, "reparam: read_idx: unsupported element type (" + p + ": type 0x0d, only unsigned bytes 0x08)");
  // a gzip stream with flipped bytes: zlib's own diagnosis, named
  std::vector<unsigned char> big(20000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<unsigned char>((i * i) >> 3);
  write_file(p, idx_bytes(0x801, {20000}, big), true);
  std::FILE* f = std::fopen(p.c_str(), "r+b");
  std::fseek(f, 0, SEEK_END);
  const long size = std::ftell(f);
  std::fseek(f, size / 2, SEEK_SET);
  for (int i = 0; i < 16; ++i) std::fputc(0xa5, f);
  std::fclose(f);
  REQUIRE_THROWS_WITH(data::read_idx(p), Catch::Matchers::StartsWith("reparam: read_idx: corrupt file (" + p + ": "));
  std::remove(p.c_str());
}

TEST_CASE("load_mnist: a folder of four files, labels checked, counts matched, binarized at > 127", "[data]") {
  const std::string d = "reparam_mnist_test";
  std::remove((d + "/train-images-idx3-ubyte").c_str());
  REQUIRE_ERROR(data::load_mnist<float>(d + "_nowhere", "train"), FileError, "reparam: load_mnist: no such folder (" + d + "_nowhere)");
  REQUIRE(system(("mkdir -p " + d).c_str()) == 0);
  std::vector<unsigned char> px(3 * 2 * 2);
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<unsigned char>(std::vector<int>{0, 127, 128, 255}[i % 4]);
  write_file(d + "/train-images-idx3-ubyte.gz", idx_bytes(0x803, {3, 2, 2}, px), true);
  REQUIRE_ERROR(data::load_mnist<float>(d, "train"), FileError, "reparam: load_mnist: missing file (" + d + "/train-labels-idx1-ubyte[.gz])");
  write_file(d + "/train-labels-idx1-ubyte", idx_bytes(0x801, {3}, {1, 9, 0}), false);
  data::MnistSet<float> s = data::load_mnist<float>(d, "train");
  CHECK(s.size() == 3);
  CHECK(s.rows == 2);
  CHECK(s.cols == 2);
  CHECK(s.labels == std::vector<int>{1, 9, 0});
  CHECK(s.images(0, 1) == 127.0f / 255);
  s.binarize();
  CHECK(s.images.row(0) == (Matrix<float>(1, 4) << 0, 0, 1, 1).finished());
  // as bytes: the file's pixels as they are, binarized at the same place (> 127)
  data::MnistSet<std::uint8_t> b = data::load_mnist<std::uint8_t>(d, "train");
  CHECK(b.size() == 3);
  CHECK(b.labels == std::vector<int>{1, 9, 0});
  for (Index i = 0; i < 3; ++i)
    for (Index j = 0; j < 4; ++j) {
      INFO("pixel " << i << ", " << j);
      CHECK(int(b.images(i, j)) == int(px[static_cast<std::size_t>(4 * i + j)]));
    }
  b.binarize();
  CHECK(b.images.cast<float>() == s.images);
  REQUIRE_ERROR(data::load_mnist<std::uint8_t>(d, "t10k"), FileError, "reparam: load_mnist: missing file (" + d + "/t10k-images-idx3-ubyte[.gz])");
  write_file(d + "/train-labels-idx1-ubyte", idx_bytes(0x801, {2}, {1, 9}), false);
  REQUIRE_ERROR(data::load_mnist<float>(d, "train"), FileError,
                "reparam: load_mnist: image and label counts differ (3 images in " + d + "/train-images-idx3-ubyte.gz, 2 labels in " + d +
                    "/train-labels-idx1-ubyte)");
  write_file(d + "/train-labels-idx1-ubyte", idx_bytes(0x801, {3}, {1, 10, 0}), false);
  REQUIRE_ERROR(data::load_mnist<float>(d, "train"), FileError,
                "reparam: load_mnist: label out of range (" + d + "/train-labels-idx1-ubyte: 10 at index 1)");
  REQUIRE(system(("rm -rf " + d).c_str()) == 0);
}

TEST_CASE("Batcher: every epoch a permutation cut into full batches, the same seed the same order", "[data]") {
  data::Batcher a(23, 5, 9), b(23, 5, 9), c(23, 5, 10);
  CHECK(a.batches_per_epoch() == 4);
  bool differs = false;
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::set<Index> seen;
    for (int k = 0; k < 4; ++k) {
      const std::vector<Index> x = a.next();
      CHECK(x == b.next());
      differs = differs || x != c.next();
      CHECK(x.size() == 5);
      for (Index i : x) {
        CHECK(i >= 0);
        CHECK(i < 23);
        seen.insert(i);
      }
    }
    CHECK(seen.size() == 20);  // distinct within the epoch
  }
  CHECK(differs);
  CHECK(a.epoch() == 2);
  REQUIRE_ERROR(data::Batcher(10, 11, 1), DomainError, "reparam: Batcher: batch must be in [1, 10] (got 11 for 10 rows)");
  REQUIRE_ERROR(data::Batcher(10, 0, 1), DomainError, "reparam: Batcher: batch must be in [1, 10] (got 0 for 10 rows)");
  Matrix<float> src = Matrix<float>::Random(6, 3), out;
  data::gather_rows(src, {4, 0}, out);
  CHECK(out.row(0) == src.row(4));
  CHECK(out.row(1) == src.row(0));
  REQUIRE_ERROR(data::gather_rows(src, {6}, out), ShapeError, "reparam: gather_rows: index out of range (got 6 for 6 rows)");
  // a thread's share: the same rows as the whole gather, nothing else written
  const std::vector<Index> idx = {5, 1, 3, 3, 0};
  Matrix<float> whole, part = Matrix<float>::Constant(5, 3, -9.0f);
  data::gather_rows(src, idx, whole);
  data::gather_rows(src, idx, 1, 3, part);
  CHECK(part.middleRows(1, 3) == whole.middleRows(1, 3));
  CHECK((part.row(0).array() == -9.0f).all());
  CHECK((part.row(4).array() == -9.0f).all());
  data::gather_rows(src, idx, 5, 0, part);  // an empty share
  Matrix<float> wrong(4, 3);
  REQUIRE_ERROR(data::gather_rows(src, idx, 0, 2, wrong), ShapeError, "reparam: gather_rows: out must be 5x3 (got 4x3)");
  REQUIRE_ERROR(data::gather_rows(src, idx, 4, 2, part), ShapeError, "reparam: gather_rows: rows [4, 6) are not within the 5 indices");
  REQUIRE_ERROR(data::gather_rows(src, idx, -1, 1, part), ShapeError, "reparam: gather_rows: rows [-1, 0) are not within the 5 indices");
  REQUIRE_ERROR(data::gather_rows(src, {0, 7, 1, 2, 3}, 1, 1, part), ShapeError, "reparam: gather_rows: index out of range (got 7 for 6 rows)");
  // an end past the largest Index is written as a sum, not computed (it would overflow)
  const Index top = std::numeric_limits<Index>::max();
  REQUIRE_ERROR(data::gather_rows(src, idx, top, 1, part), ShapeError,
                "reparam: gather_rows: rows [" + std::to_string(top) + ", " + std::to_string(top) + " + 1) are not within the 5 indices");
  REQUIRE_ERROR(data::gather_rows(src, idx, 1, top, part), ShapeError,
                "reparam: gather_rows: rows [1, 1 + " + std::to_string(top) + ") are not within the 5 indices");
}

TEST_CASE("gather_rows from bytes: each element converted, the same rows, shares and errors as from floats", "[data][tape]") {
  Matrix<std::uint8_t> bytes(6, 5);
  for (Index i = 0; i < bytes.size(); ++i) bytes.data()[i] = static_cast<std::uint8_t>((37 * i + 11) % 256);  // 0..255 all over
  const Matrix<float> floats = bytes.cast<float>();
  const Matrix<double> doubles = bytes.cast<double>();
  const std::vector<Index> idx = {5, 1, 3, 3, 0};
  Matrix<float> from_floats, from_bytes;
  data::gather_rows(floats, idx, from_floats);
  data::gather_rows(bytes, idx, from_bytes);
  CHECK(from_bytes == from_floats);
  CHECK(from_bytes(0, 4) == float(bytes(5, 4)));
  Matrix<double> part = Matrix<double>::Constant(5, 5, -9.0);
  data::gather_rows(bytes, idx, 1, 3, part);
  CHECK(part.middleRows(1, 3) == from_floats.middleRows(1, 3).cast<double>());
  CHECK((part.row(0).array() == -9.0).all());
  TapeF tape;
  const VarF all = data::gather_rows(tape, bytes, idx, 0, 5);
  CHECK(all.value() == from_floats);
  CHECK_FALSE(all.requires_grad());
  Tape dtape;
  const Var share = data::gather_rows(dtape, bytes, idx, 2, 3);
  Matrix<double> rows(3, 5);
  rows << doubles.row(3), doubles.row(3), doubles.row(0);
  CHECK(share.value() == rows);
  CHECK(data::gather_rows(tape, bytes, idx, 5, 0).rows() == 0);
  const std::size_t nodes = tape.size();
  REQUIRE_ERROR(data::gather_rows(tape, bytes, {0, 6}, 0, 2), ShapeError, "reparam: gather_rows: index out of range (got 6 for 6 rows)");
  REQUIRE_ERROR(data::gather_rows(tape, bytes, idx, 4, 2), ShapeError, "reparam: gather_rows: rows [4, 6) are not within the 5 indices");
  REQUIRE_ERROR(data::gather_rows(bytes, {-1}, from_bytes), ShapeError, "reparam: gather_rows: index out of range (got -1 for 6 rows)");
  Matrix<float> wrong(4, 5);
  REQUIRE_ERROR(data::gather_rows(bytes, idx, 0, 2, wrong), ShapeError, "reparam: gather_rows: out must be 5x5 (got 4x5)");
  CHECK(tape.size() == nodes);
}

TEST_CASE("gather_rows onto a tape: a constant with the gathered rows, no gradient, checked before recording", "[data][tape]") {
  const Matrix<float> src = Matrix<float>::Random(6, 3);
  const std::vector<Index> idx = {5, 1, 3, 3, 0};
  Matrix<float> whole;
  data::gather_rows(src, idx, whole);
  TapeF tape;
  const VarF all = data::gather_rows(tape, src, idx, 0, 5);
  CHECK(all.value() == whole);
  CHECK_FALSE(all.requires_grad());
  const VarF share = data::gather_rows(tape, src, idx, 1, 3);  // a thread's rows, as rows 0..2
  CHECK(share.rows() == 3);
  CHECK(share.value() == whole.middleRows(1, 3));
  const VarF none = data::gather_rows(tape, src, idx, 5, 0);
  CHECK(none.rows() == 0);
  CHECK(none.cols() == 3);
  // in a graph: the same loss and gradients as the copied constant
  const VarF w = tape.variable(Matrix<float>::Constant(3, 2, 0.5f));
  tape.backward(sum(matmul(share, w)));
  const Matrix<float> gw = w.grad();
  TapeF copied;
  const VarF w2 = copied.variable(Matrix<float>::Constant(3, 2, 0.5f));
  copied.backward(sum(matmul(copied.constant(whole.middleRows(1, 3)), w2)));
  CHECK(gw == w2.grad());
  // errors leave the tape as it was
  const std::size_t nodes = tape.size();
  REQUIRE_ERROR(data::gather_rows(tape, src, idx, 4, 2), ShapeError, "reparam: gather_rows: rows [4, 6) are not within the 5 indices");
  REQUIRE_ERROR(data::gather_rows(tape, src, {0, 7, 1}, 0, 3), ShapeError, "reparam: gather_rows: index out of range (got 7 for 6 rows)");
  REQUIRE_ERROR(data::gather_rows(tape, src, idx, std::numeric_limits<Index>::max(), 2), ShapeError,
                "reparam: gather_rows: rows [" + std::to_string(std::numeric_limits<Index>::max()) + ", " +
                    std::to_string(std::numeric_limits<Index>::max()) + " + 2) are not within the 5 indices");
  CHECK(tape.size() == nodes);
}

TEST_CASE("tape.constant(rows, cols, fill): the value written in place, sizes checked first", "[tape]") {
  TapeF tape;
  int calls = 0;
  const VarF c = tape.constant(2, 3, [&](Eigen::Map<Matrix<float>> y) {
    ++calls;
    for (Index i = 0; i < y.size(); ++i) y.data()[i] = float(i);
  });
  CHECK(calls == 1);
  CHECK(c.value()(1, 2) == 5.0f);
  CHECK_FALSE(c.requires_grad());
  const VarF e = tape.constant(0, 4, [&](Eigen::Map<Matrix<float>>) { ++calls; });
  CHECK(calls == 1);  // nothing to fill
  CHECK(e.cols() == 4);
  REQUIRE_ERROR(tape.constant(-1, 2, [&](Eigen::Map<Matrix<float>>) { ++calls; }), ShapeError,
                "reparam: constant: shape must not be negative (got -1x2)");
  const Index huge = Index(1) << 40;
  REQUIRE_ERROR(tape.constant(huge, huge, [&](Eigen::Map<Matrix<float>>) { ++calls; }), ShapeError,
                "reparam: constant: size overflows (" + std::to_string(huge) + "x" + std::to_string(huge) + ")");
  CHECK(calls == 1);
}

TEST_CASE("uniform_index: uniform over 0, ..., n - 1 (chi-square, seeded)", "[data][stats]") {
  Rng rng(4);
  for (std::uint64_t n : {2ull, 7ull, 10ull, 1000ull}) {
    std::vector<double> counts(n, 0);
    const int draws = 200000;
    for (int i = 0; i < draws; ++i) {
      const std::uint64_t k = data::uniform_index(rng, n);
      REQUIRE(k < n);
      counts[k] += 1;
    }
    double chi2 = 0;
    const double e = double(draws) / double(n);
    for (double c : counts) chi2 += (c - e) * (c - e) / e;
    // chi-square with n - 1 degrees of freedom: mean n - 1, sd sqrt(2(n - 1)); 5 sd
    CHECK(chi2 < double(n - 1) + 5 * std::sqrt(2.0 * double(n - 1)));
  }
}
