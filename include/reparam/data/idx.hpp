#pragma once
/// \file idx.hpp  The IDX format of MNIST and Fashion-MNIST (gzip-compressed or plain), and
/// `load_mnist`, which reads a folder of the four files. Needs zlib: link `reparam::data`
/// (CMake) or `-lz`. No other reparam header includes this one.
///
///     auto train = reparam::data::load_mnist<float>("/usr/share/datasets/fashion-mnist", "train");
///     // train.images: 60000 x 784 in [0, 1]; train.labels: 60000 ints
///     train.binarize();                                  // pixels > 127 -> 1, others 0
///
///     // or the pixels as bytes (0..255; 0 and 1 once binarized): a quarter of the memory, and
///     // gather_rows (batcher.hpp) converts a batch's rows to the tape's scalar as it copies them
///     auto bytes = reparam::data::load_mnist<std::uint8_t>("/usr/share/datasets/fashion-mnist", "train");

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <sys/stat.h>
#include <zlib.h>

#include <reparam/errors.hpp>
#include <reparam/matrix.hpp>

namespace reparam {
namespace data {

/// An IDX file of unsigned bytes: its dimensions and its data, in row-major order.
struct IdxArray {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> data;
  std::size_t count() const { return dims.empty() ? 0 : dims[0]; }
};

/// Reads an IDX file of unsigned bytes (type 0x08), gzip-compressed or not (zlib reads both).
/// FileError for a missing or unreadable file, a corrupt gzip stream, a wrong magic number, a
/// type other than unsigned bytes, dimensions whose product overflows, and a file that is shorter
/// or longer than its dimensions say.
inline IdxArray read_idx(const std::string& path) {
  using reparam::detail::throw_file;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw_file("read_idx", "cannot open (" + path + ": no such file)");
  if (S_ISDIR(st.st_mode)) throw_file("read_idx", "cannot open (" + path + ": is a directory)");
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw_file("read_idx", "cannot open (" + path + ")");
  struct Closer {
    gzFile f;
    ~Closer() { gzclose(f); }
  } closer{f};
  auto read = [&](void* out, std::size_t n, const char* what) -> std::size_t {
    std::size_t done = 0;
    while (done < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, 1u << 30));
      const int got = gzread(f, static_cast<char*>(out) + done, chunk);
      if (got < 0) {
        int code;
        std::string msg = gzerror(f, &code);
        if (msg.compare(0, path.size() + 2, path + ": ") == 0) msg.erase(0, path.size() + 2);  // zlib prefixes the path
        throw_file("read_idx", std::string("corrupt file (") + path + ": " + msg + " while reading " + what + ")");
      }
      if (got == 0) break;
      done += static_cast<std::size_t>(got);
    }
    return done;
  };
  unsigned char head[4];
  if (read(head, 4, "the magic number") != 4) throw_file("read_idx", "file is truncated (" + path + ": no IDX header)");
  if (head[0] != 0 || head[1] != 0 || head[3] == 0 || head[3] > 4)
    throw_file("read_idx", "wrong magic number (" + path + ": not an IDX file; bytes " + std::to_string(head[0]) + " " +
                               std::to_string(head[1]) + " " + std::to_string(head[2]) + " " + std::to_string(head[3]) + ")");
  if (head[2] != 0x08)
    throw_file("read_idx", "unsupported element type (" + path + ": type 0x" + (head[2] < 16 ? "0" : "") +
                               [&] { char b[3]; std::snprintf(b, sizeof b, "%x", head[2]); return std::string(b); }() +
                               ", only unsigned bytes 0x08)");
  IdxArray a;
  std::uint64_t total = 1;
  for (int d = 0; d < head[3]; ++d) {
    unsigned char b[4];
    if (read(b, 4, "the dimensions") != 4) throw_file("read_idx", "file is truncated (" + path + ": in the dimensions)");
    const std::uint32_t v = (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) | (std::uint32_t(b[2]) << 8) | b[3];
    a.dims.push_back(v);
    if (v != 0 && total > (std::uint64_t(1) << 34) / v) throw_file("read_idx", "dimensions are too large (" + path + ")");
    total *= v;
  }
  // Memory for the data as it arrives, not as the header claims it: a damaged or hostile header
  // (up to 2^34 bytes) on a short file must not make the reader zero-fill gigabytes before it
  // finds the file truncated. A plain file's size is known, so its shortfall is found at once;
  // a gzip stream grows the buffer 64 MB at a time (a file under 64 MB: one exact allocation).
  const std::uint64_t header = 4 + 4 * std::uint64_t(head[3]);
  if (S_ISREG(st.st_mode) && gzdirect(f) && static_cast<std::uint64_t>(st.st_size) < header + total)
    throw_file("read_idx", "file is truncated (" + path + ": " + std::to_string(std::uint64_t(st.st_size) - header) + " of " +
                               std::to_string(total) + " data bytes)");
  std::size_t got = 0;
  while (got < total) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(total - got, std::uint64_t(1) << 26));
    a.data.resize(got + want);
    const std::size_t n = read(a.data.data() + got, want, "the data");
    got += n;
    if (n < want) break;
  }
  if (got != total)
    throw_file("read_idx", "file is truncated (" + path + ": " + std::to_string(got) + " of " + std::to_string(total) + " data bytes)");
  unsigned char extra;
  if (read(&extra, 1, "the end") != 0)
    throw_file("read_idx", "file is longer than its dimensions say (" + path + ")");
  return a;
}

/// The bytes of an IDX file of unsigned bytes: magic 0x0000 08 <ndims>, the dimensions
/// (big-endian u32), the data. `magic` overrides the first word (tests of broken files).
inline std::vector<unsigned char> idx_bytes(const std::vector<std::uint32_t>& dims, const std::vector<unsigned char>& data,
                                            std::uint32_t magic = 0) {
  std::vector<unsigned char> b;
  auto u32 = [&](std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(v >> s));
  };
  u32(magic ? magic : 0x800u | static_cast<std::uint32_t>(dims.size()));
  for (auto d : dims) u32(d);
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

/// Writes `bytes` to `path`, gzip-compressed or plain. FileError if it cannot.
inline void write_file(const std::string& path, const std::vector<unsigned char>& bytes, bool gzip) {
  bool ok;
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    ok = f != nullptr;
    if (f) ok = gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()) && ok;
    if (f) ok = gzclose(f) == Z_OK && ok;
  } else {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ok = f != nullptr;
    if (f) ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() && ok;
    if (f) ok = std::fclose(f) == 0 && ok;
  }
  if (!ok) reparam::detail::throw_file("write_file", "cannot write (" + path + ")");
}

/// Images (one per row) and labels of an MNIST-format set. The pixels are pixel / 255 for a
/// floating-point T; for an integer T (`std::uint8_t`) the file's bytes 0..255 as they are.
template <class T>
struct MnistSet {
  Matrix<T> images;
  std::vector<int> labels;
  Index rows = 0, cols = 0;  // image height and width
  Index size() const noexcept { return images.rows(); }
  /// Pixels above 127 (127/255 as a fraction) become 1, the others 0 (the binarization of the VAE
  /// papers' MNIST), in place.
  void binarize() {
    const T cut = std::is_integral<T>::value ? T(127) : T(127.5) / T(255);
    for (Index i = 0; i < images.size(); ++i) images.data()[i] = images.data()[i] > cut ? T(1) : T(0);
  }
};

namespace detail {
inline std::string find_idx(const std::string& dir, const std::string& stem) {
  struct stat st;
  for (const char* ext : {".gz", ""}) {
    const std::string p = dir + "/" + stem + ext;
    if (::stat(p.c_str(), &st) == 0) return p;
  }
  reparam::detail::throw_file("load_mnist", "missing file (" + dir + "/" + stem + "[.gz])");
}
}  // namespace detail

/// Reads `<dir>/<split>-images-idx3-ubyte[.gz]` and `<dir>/<split>-labels-idx1-ubyte[.gz]`
/// (split "train" or "t10k"). FileError for a missing folder or file, anything `read_idx`
/// refuses, images that are not 3-D, labels that are not 1-D or above 9, and counts that differ.
template <class T>
MnistSet<T> load_mnist(const std::string& dir, const std::string& split) {
  using reparam::detail::throw_file;
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) throw_file("load_mnist", "no such folder (" + dir + ")");
  const std::string ip = detail::find_idx(dir, split + "-images-idx3-ubyte");
  const std::string lp = detail::find_idx(dir, split + "-labels-idx1-ubyte");
  const IdxArray im = read_idx(ip);
  const IdxArray lb = read_idx(lp);
  if (im.dims.size() != 3) throw_file("load_mnist", "images must have 3 dimensions (" + ip + " has " + std::to_string(im.dims.size()) + ")");
  if (lb.dims.size() != 1) throw_file("load_mnist", "labels must have 1 dimension (" + lp + " has " + std::to_string(lb.dims.size()) + ")");
  if (im.dims[0] != lb.dims[0])
    throw_file("load_mnist", "image and label counts differ (" + std::to_string(im.dims[0]) + " images in " + ip + ", " +
                                 std::to_string(lb.dims[0]) + " labels in " + lp + ")");
  if (im.dims[0] == 0 || im.dims[1] == 0 || im.dims[2] == 0) throw_file("load_mnist", "no images (" + ip + ")");
  MnistSet<T> s;
  s.rows = im.dims[1];
  s.cols = im.dims[2];
  const Index n = im.dims[0], d = s.rows * s.cols;
  s.images.resize(n, d);
  if constexpr (std::is_integral<T>::value) {
    static_assert(std::numeric_limits<T>::max() >= 255, "load_mnist: an integer pixel type must hold 0..255");
    for (Index i = 0; i < n * d; ++i) s.images.data()[i] = T(im.data[static_cast<std::size_t>(i)]);
  } else {
    for (Index i = 0; i < n * d; ++i) s.images.data()[i] = T(im.data[static_cast<std::size_t>(i)]) / T(255);
  }
  s.labels.resize(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    const int l = lb.data[static_cast<std::size_t>(i)];
    if (l > 9) throw_file("load_mnist", "label out of range (" + lp + ": " + std::to_string(l) + " at index " + std::to_string(i) + ")");
    s.labels[static_cast<std::size_t>(i)] = l;
  }
  return s;
}

}  // namespace data
}  // namespace reparam
