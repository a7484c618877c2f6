#pragma once
/// \file checkpoint.hpp  Save and load a model's parameters and its optimizer's state.
///
///     reparam::nn::save_checkpoint("vae.rpck", params, &adam);   // atomic: tmp, fsync, rename
///     reparam::nn::load_checkpoint("vae.rpck", params, &adam);   // all or nothing
///     reparam::nn::save_checkpoint("vae.rpck", params, &adam, &state);  // with a StateList
///
/// The format (version 1), every number little-endian:
///
///     offset 0   4 bytes  magic "RPCK"
///            4   u32      format version (1)
///            8   u8       scalar size in bytes: 4 (float) or 8 (double); then 3 zero bytes
///           12   u64      number of entries
///           20   entries, each:
///                  u32 name length, the name (UTF-8, no terminator),
///                  u8 kind: 0 a matrix, then u64 rows, u64 cols, rows*cols scalars row by row;
///                           1 an integer, then one i64
///          end   u64      FNV-1a 64-bit hash of every byte before it
///
/// Parameters are stored under their `ParameterList` names; Adam's state as
/// "adam.exp_avg.<name>", "adam.exp_avg_sq.<name>" and the integer "adam.steps"; a
/// `StateList`'s matrices as "state.<name>". Loading without an optimizer ignores the file's
/// "adam." entries; the state is the model's, as its parameters are: each entry must be in the
/// file and each of the file's in the list (PyTorch's strict loading of buffers). Loading reads
/// at most the size of the largest checkpoint the model could take (a longer file, or one whose
/// first bytes are not the magic, is refused without reading the rest) and checks the whole file
/// first (magic, version, scalar type, checksum, that it ends where it
/// should, that every name the model needs is there with the model's shape, that nothing else is)
/// and changes nothing unless all of it holds; errors are `FileError`s that name what differs.
/// Saving writes "<path>.tmp", flushes and fsyncs it, then renames it over `path`: a crash while
/// writing leaves the previous checkpoint whole.

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include <unistd.h>

#include <reparam/errors.hpp>
#include <reparam/nn/parameters.hpp>
#include <reparam/optim.hpp>

namespace reparam {
namespace nn {
namespace detail_ckpt {

inline constexpr char magic[4] = {'R', 'P', 'C', 'K'};
inline constexpr std::uint32_t version = 1;

inline std::uint64_t fnv1a(const unsigned char* p, std::size_t n) noexcept {
  std::uint64_t h = 14695981039346656037ull;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

inline bool little_endian() noexcept {
  const std::uint16_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

class Writer {
 public:
  template <class U>
  void put(U v) {
    static_assert(std::is_trivially_copyable<U>::value, "plain values only");
    const std::size_t at = bytes.size();
    bytes.resize(at + sizeof(U));
    std::memcpy(bytes.data() + at, &v, sizeof(U));
  }
  void put_bytes(const void* p, std::size_t n) {
    const std::size_t at = bytes.size();
    bytes.resize(at + n);
    if (n) std::memcpy(bytes.data() + at, p, n);
  }
  void name(const std::string& s) {
    put(static_cast<std::uint32_t>(s.size()));
    put_bytes(s.data(), s.size());
  }
  std::vector<unsigned char> bytes;
};

class Reader {
 public:
  Reader(const std::string& path, const unsigned char* p, std::size_t n) : path_(path), p_(p), n_(n) {}
  template <class U>
  U get(const char* what) {
    U v;
    need(sizeof(U), what);
    std::memcpy(&v, p_ + at_, sizeof(U));
    at_ += sizeof(U);
    return v;
  }
  const unsigned char* take(std::size_t n, const char* what) {
    need(n, what);
    const unsigned char* r = p_ + at_;
    at_ += n;
    return r;
  }
  std::size_t left() const noexcept { return n_ - at_; }
  std::size_t offset() const noexcept { return at_; }

 private:
  void need(std::size_t n, const char* what) const {
    if (n > n_ - at_)
      reparam::detail::throw_file("load_checkpoint", "file is truncated (" + path_ + ": " + what + " at byte " +
                                                         std::to_string(at_) + " runs past the end)");
  }
  const std::string& path_;
  const unsigned char* p_;
  std::size_t n_, at_ = 0;
};

struct Entry {
  std::string name;
  std::uint8_t kind = 0;
  std::uint64_t rows = 0, cols = 0;
  const unsigned char* data = nullptr;
  std::int64_t integer = 0;
  bool used = false;
};

}  // namespace detail_ckpt

/// Writes `params` (and, if given, `adam`'s moments and step count) to `path` atomically.
/// FileError if the file cannot be written.
/// With `state`, its matrices too.
template <class T>
void save_checkpoint(const std::string& path, const ParameterList<T>& params, optim::Adam<T>* adam = nullptr,
                     const StateList<T>* state = nullptr) {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "reparam: save_checkpoint: T must be float or double");
  using detail_ckpt::Writer;
  if (!detail_ckpt::little_endian())
    reparam::detail::throw_file("save_checkpoint", "only little-endian hosts are supported");
  Writer w;
  w.put_bytes(detail_ckpt::magic, 4);
  w.put(detail_ckpt::version);
  w.put(static_cast<std::uint8_t>(sizeof(T)));
  w.put_bytes("\0\0\0", 3);
  const std::uint64_t count = params.size() * (adam ? 3 : 1) + (adam ? 1 : 0) + (state ? state->size() : 0);
  w.put(count);
  auto matrix = [&](const std::string& name, const Matrix<T>& m) {
    w.name(name);
    w.put(std::uint8_t(0));
    w.put(static_cast<std::uint64_t>(m.rows()));
    w.put(static_cast<std::uint64_t>(m.cols()));
    w.put_bytes(m.data(), sizeof(T) * static_cast<std::size_t>(m.size()));
  };
  for (std::size_t i = 0; i < params.size(); ++i) matrix(params.name(i), params[i].value);
  if (adam) {
    for (std::size_t i = 0; i < params.size(); ++i) {
      matrix("adam.exp_avg." + params.name(i), adam->exp_avg(i));
      matrix("adam.exp_avg_sq." + params.name(i), adam->exp_avg_sq(i));
    }
    w.name("adam.steps");
    w.put(std::uint8_t(1));
    w.put(static_cast<std::int64_t>(adam->steps()));
  }
  if (state)
    for (std::size_t i = 0; i < state->size(); ++i) matrix("state." + state->name(i), (*state)[i]);
  w.put(detail_ckpt::fnv1a(w.bytes.data(), w.bytes.size()));

  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) reparam::detail::throw_file("save_checkpoint", "cannot open for writing (" + tmp + ": " + std::strerror(errno) + ")");
  bool ok = std::fwrite(w.bytes.data(), 1, w.bytes.size(), f) == w.bytes.size();
  ok = std::fflush(f) == 0 && ok;
  ok = ::fsync(::fileno(f)) == 0 && ok;
  const int err = errno;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    reparam::detail::throw_file("save_checkpoint", "write failed (" + tmp + ": " + std::strerror(err) + ")");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    reparam::detail::throw_file("save_checkpoint", "cannot rename " + tmp + " to " + path + " (" + std::strerror(e) + ")");
  }
}

/// Reads `path` into `params` (and `adam` and `state`, if given): all or nothing; FileError
/// naming what is wrong or what differs from the model.
template <class T>
void load_checkpoint(const std::string& path, ParameterList<T>& params, optim::Adam<T>* adam = nullptr,
                     StateList<T>* state = nullptr) {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "reparam: load_checkpoint: T must be float or double");
  using reparam::detail::throw_file;
  // The largest file this model can accept: every parameter with both of Adam's moments (kept
  // even when `adam` is null), in double (a file of the other scalar type is refused below
  // with that reason), the step count, the header and the checksum. Reading stops there,
  // and at the magic number, so /dev/zero or a huge file that is no checkpoint of this model is
  // refused at once instead of read into memory.
  std::uint64_t most = 20 + 8 + 4 + 10 + 1 + 8;
  for (std::size_t i = 0; i < params.size(); ++i)
    most += 3 * (4 + params.name(i).size() + 16 + 1 + 16 + 8 * static_cast<std::uint64_t>(params[i].value.size()));
  if (state)
    for (std::size_t i = 0; i < state->size(); ++i)
      most += 4 + 6 + state->name(i).size() + 1 + 16 + 8 * static_cast<std::uint64_t>((*state)[i].size());
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw_file("load_checkpoint", "cannot open (" + path + ": " + std::strerror(errno) + ")");
  std::vector<unsigned char> bytes;
  unsigned char buf[1 << 16];
  std::size_t got;
  bool too_big = false, not_ours = false;
  errno = 0;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) {
    bytes.insert(bytes.end(), buf, buf + got);
    if (bytes.size() >= 4 && std::memcmp(bytes.data(), detail_ckpt::magic, 4) != 0) not_ours = true;
    if (bytes.size() > most) too_big = true;
    if (not_ours || too_big) break;
  }
  const int err = errno;
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) throw_file("load_checkpoint", "read failed (" + path + ": " + std::strerror(err) + ")");

  if (not_ours || bytes.size() < 4 || std::memcmp(bytes.data(), detail_ckpt::magic, 4) != 0)
    throw_file("load_checkpoint", "not a reparam checkpoint (" + path + ": magic is not \"RPCK\")");
  if (too_big)
    throw_file("load_checkpoint", "file is larger than any checkpoint of this model (" + path + ": more than " +
                                      std::to_string(most) + " bytes)");
  if (bytes.size() < 28) throw_file("load_checkpoint", "file is truncated (" + path + ": " + std::to_string(bytes.size()) + " bytes)");
  detail_ckpt::Reader r(path, bytes.data(), bytes.size() - 8);
  r.take(4, "magic");
  const auto ver = r.get<std::uint32_t>("version");
  if (ver != detail_ckpt::version)
    throw_file("load_checkpoint", "unsupported format version (" + path + ": version " + std::to_string(ver) +
                                      ", this library reads " + std::to_string(detail_ckpt::version) + ")");
  const auto scalar = r.get<std::uint8_t>("scalar size");
  r.take(3, "reserved bytes");
  auto type_name = [](unsigned s) { return s == 4 ? std::string("float") : s == 8 ? std::string("double") : "a " + std::to_string(s) + "-byte scalar"; };
  if (scalar != sizeof(T))
    throw_file("load_checkpoint", "scalar type differs (" + path + " holds " + type_name(scalar) + ", the model is " +
                                      type_name(sizeof(T)) + ")");
  std::uint64_t stored;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  if (stored != detail_ckpt::fnv1a(bytes.data(), bytes.size() - 8))
    throw_file("load_checkpoint", "checksum mismatch (" + path + " is corrupt or truncated)");

  const auto count = r.get<std::uint64_t>("entry count");
  std::vector<detail_ckpt::Entry> entries;
  for (std::uint64_t e = 0; e < count; ++e) {
    detail_ckpt::Entry en;
    const auto len = r.get<std::uint32_t>("name length");
    const unsigned char* s = r.take(len, "name");
    en.name.assign(reinterpret_cast<const char*>(s), len);
    en.kind = r.get<std::uint8_t>("entry kind");
    if (en.kind == 0) {
      en.rows = r.get<std::uint64_t>("rows");
      en.cols = r.get<std::uint64_t>("cols");
      if (en.rows > (1ull << 40) || en.cols > (1ull << 40) || (en.rows && en.cols > (std::uint64_t(1) << 58) / en.rows))
        throw_file("load_checkpoint", "entry \"" + en.name + "\" has an impossible shape (" + path + ")");
      en.data = r.take(static_cast<std::size_t>(en.rows * en.cols * sizeof(T)), "matrix data");
    } else if (en.kind == 1) {
      en.integer = r.get<std::int64_t>("integer");
    } else {
      throw_file("load_checkpoint", "entry \"" + en.name + "\" has an unknown kind " + std::to_string(en.kind) + " (" + path + ")");
    }
    entries.push_back(std::move(en));
  }
  if (r.left() != 0)
    throw_file("load_checkpoint", std::to_string(r.left()) + " unexpected bytes after the last entry (" + path + ")");

  auto find = [&](const std::string& name) -> detail_ckpt::Entry* {
    for (auto& en : entries)
      if (en.name == name) return &en;
    return nullptr;
  };
  auto shape = [](Index r_, Index c_) { return std::to_string(r_) + "x" + std::to_string(c_); };
  auto need_matrix = [&](const std::string& name, Index rows, Index cols) -> detail_ckpt::Entry& {
    detail_ckpt::Entry* en = find(name);
    if (!en) throw_file("load_checkpoint", "\"" + name + "\" is missing (" + path + ")");
    if (en->kind != 0) throw_file("load_checkpoint", "\"" + name + "\" is not a matrix (" + path + ")");
    if (en->rows != static_cast<std::uint64_t>(rows) || en->cols != static_cast<std::uint64_t>(cols))
      throw_file("load_checkpoint", "shape of \"" + name + "\" differs (" + path + " has " +
                                        std::to_string(en->rows) + "x" + std::to_string(en->cols) + ", the model " +
                                        shape(rows, cols) + ")");
    en->used = true;
    return *en;
  };
  // Check everything first, then copy: a refused file changes nothing.
  std::vector<detail_ckpt::Entry*> plan;
  for (std::size_t i = 0; i < params.size(); ++i) plan.push_back(&need_matrix(params.name(i), params[i].rows(), params[i].cols()));
  detail_ckpt::Entry* steps = nullptr;
  if (adam) {
    for (std::size_t i = 0; i < params.size(); ++i) {
      plan.push_back(&need_matrix("adam.exp_avg." + params.name(i), params[i].rows(), params[i].cols()));
      plan.push_back(&need_matrix("adam.exp_avg_sq." + params.name(i), params[i].rows(), params[i].cols()));
    }
    steps = find("adam.steps");
    if (!steps || steps->kind != 1) throw_file("load_checkpoint", "\"adam.steps\" is missing (" + path + ")");
    if (steps->integer < 0)
      throw_file("load_checkpoint", "\"adam.steps\" is negative (" + path + ": " + std::to_string(steps->integer) + ")");
    steps->used = true;
  }
  if (state)
    for (std::size_t i = 0; i < state->size(); ++i)
      plan.push_back(&need_matrix("state." + state->name(i), (*state)[i].rows(), (*state)[i].cols()));
  for (const auto& en : entries)
    if (!en.used && !(adam == nullptr && en.name.compare(0, 5, "adam.") == 0))
      throw_file("load_checkpoint", "\"" + en.name + "\" is in the file but not in the model (" + path + ")");

  auto copy = [](Matrix<T>& m, const detail_ckpt::Entry& en) {
    std::memcpy(m.data(), en.data, sizeof(T) * static_cast<std::size_t>(m.size()));
  };
  std::size_t k = 0;
  for (std::size_t i = 0; i < params.size(); ++i) copy(params[i].value, *plan[k++]);
  if (adam) {
    for (std::size_t i = 0; i < params.size(); ++i) {
      copy(adam->exp_avg(i), *plan[k++]);
      copy(adam->exp_avg_sq(i), *plan[k++]);
    }
    adam->set_steps(static_cast<long>(steps->integer));
  }
  if (state)
    for (std::size_t i = 0; i < state->size(); ++i) copy((*state)[i], *plan[k++]);
}

}  // namespace nn
}  // namespace reparam
