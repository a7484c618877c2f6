// What the two VAE programs share: flags, error exits, the progress display, the training loop
// over all cores, pictures (PNG through stb) and the final report. The models live in
// vae_gaussian.cpp and vae_categorical.cpp.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "../decimal_flags.hpp"

#include <reparam/data/batcher.hpp>
#include <reparam/data/idx.hpp>
#include <reparam/reparam.hpp>

namespace vae {

using T = float;
using Mat = reparam::Matrix<T>;
using reparam::Index;
using Tape = reparam::BasicTape<T>;
using Var = reparam::BasicVar<T>;

/// A bad flag, bad data or an unwritable folder: one line on stderr, exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  long steps = 0;
  Index batch = 100;
  double lr = 1e-3;
  std::uint64_t seed = 1;
  int threads = 0;
  std::string out = "vae_out";
  std::string save, load;
  bool json = false;
  int iw = 0;
  long log_every = 0;
  long eval_every = 0;  // steps between test-set evaluations (0: only at the end)
  long save_every = 0;  // steps between checkpoints to `save` (0: only at the end)
};

/// Integer flags: decimal digits only (examples/decimal_flags.hpp).
using flags::decimal;

/// The flags both programs take; `default_steps` trains a useful model in about a minute.
inline void add_common_flags(CLI::App& app, Options& o, long default_steps) {
  o.steps = default_steps;
  app.add_option("--data", o.data, "MNIST-format folder (train/t10k images and labels, .gz or plain)")->capture_default_str();
  app.add_option("--steps", o.steps, "training steps (> 0)")->capture_default_str()
      ->transform(decimal(true));
  app.add_option("--batch", o.batch, "batch size (1 .. number of training images)")->capture_default_str()
      ->transform(decimal(true));
  app.add_option("--lr", o.lr, "Adam learning rate (> 0)")->capture_default_str();
  app.add_option("--seed", o.seed, "seed of initialisation, batches and noise")
      ->capture_default_str()
      ->transform(decimal(false));
  app.add_option("--threads", o.threads, "threads for the training step (0: every core)")->capture_default_str()
      ->transform(decimal(true, std::numeric_limits<int>::max()));
  app.add_option("--out", o.out, "folder for the pictures and the learning curve")->capture_default_str();
  app.add_option("--save", o.save, "write a checkpoint (model and Adam state) here at the end (and every --save-every steps)");
  app.add_option("--load", o.load, "start from this checkpoint (written by --save with the same sizes; with the same flags the run goes on exactly as one long run)");
  app.add_flag("--json", o.json, "print one JSON line with the results at the end (and nothing else on stdout)");
  app.add_option("--iw", o.iw, "also report the importance-weighted bound with K samples (0: off)")->capture_default_str()
      ->transform(decimal(true, std::numeric_limits<int>::max()));
  app.add_option("--log-every", o.log_every, "steps between progress lines when not on a terminal (0: a tenth of the run)")->transform(decimal(true));
  app.add_option("--eval-every", o.eval_every,
                 "steps between test-set evaluations during training (one-sample negative ELBO, into test_curve.csv and the "
                 "learning-curve picture; 0: only at the end)")
      ->capture_default_str()
      ->transform(decimal(true));
  app.add_option("--save-every", o.save_every, "steps between checkpoints to --save during training (0: only at the end)")
      ->capture_default_str()
      ->transform(decimal(true));
}

inline bool make_dirs(const std::string& path) {
  std::string cur;
  for (std::size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!cur.empty()) {
        struct stat st;
        if (::stat(cur.c_str(), &st) != 0 && ::mkdir(cur.c_str(), 0777) != 0) return false;
      }
    }
    if (i < path.size()) cur += path[i];
  }
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

/// Checks the flags that do not need the data; the out folder is created and probed.
inline void check_options(const Options& o) {
  if (o.steps <= 0) throw UsageError("--steps must be > 0 (got " + std::to_string(o.steps) + ")");
  if (o.steps > 100000000) throw UsageError("--steps must be at most 100000000 (got " + std::to_string(o.steps) + ")");
  if (o.batch <= 0) throw UsageError("--batch must be > 0 (got " + std::to_string(o.batch) + ")");
  if (!(o.lr > 0) || !std::isfinite(o.lr)) throw UsageError("--lr must be a positive number (got " + std::to_string(o.lr) + ")");
  if (o.threads < 0) throw UsageError("--threads must be >= 0 (got " + std::to_string(o.threads) + ")");
  if (o.threads > 1024) throw UsageError("--threads must be at most 1024 (got " + std::to_string(o.threads) + ")");
  if (o.iw < 0) throw UsageError("--iw must be >= 0 (got " + std::to_string(o.iw) + ")");
  if (o.log_every < 0) throw UsageError("--log-every must be >= 0 (got " + std::to_string(o.log_every) + ")");
  if (o.eval_every < 0) throw UsageError("--eval-every must be >= 0 (got " + std::to_string(o.eval_every) + ")");
  if (o.save_every < 0) throw UsageError("--save-every must be >= 0 (got " + std::to_string(o.save_every) + ")");
  if (o.save_every > 0 && o.save.empty()) throw UsageError("--save-every needs --save (the checkpoint's file)");
  if (!make_dirs(o.out)) throw UsageError("cannot create --out folder " + o.out);
  const std::string probe = o.out + "/.write_test";
  std::FILE* f = std::fopen(probe.c_str(), "wb");
  if (!f) throw UsageError("--out folder is not writable (" + o.out + ")");
  std::fclose(f);
  std::remove(probe.c_str());
  if (!o.save.empty()) {  // found out now, not after the training it was meant to keep
    struct stat st;
    if (::stat(o.save.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) throw UsageError("--save names a folder (" + o.save + "), not a file");
    const std::string tmp = o.save + ".tmp";  // what save_checkpoint writes before renaming it
    const bool existed = ::stat(tmp.c_str(), &st) == 0;
    std::FILE* t = std::fopen(tmp.c_str(), "ab");  // appending: an existing file keeps its bytes
    if (!t) throw UsageError("--save: cannot write " + tmp + " (" + std::strerror(errno) + ")");
    std::fclose(t);
    if (!existed) std::remove(tmp.c_str());
  }
}

/// Refuses sizes whose parameters alone (weights, gradients and Adam's two moments: 16 bytes
/// each in float) would not fit in this machine's memory, before anything is allocated: one
/// line and exit status 2 instead of std::bad_alloc, or a signed overflow in a layer's size.
/// `params` is counted in double by the caller, so no size product can wrap around.
inline void check_model_size(double params, const std::string& flags) {
  const double page = double(::sysconf(_SC_PAGESIZE)), pages = double(::sysconf(_SC_PHYS_PAGES));
  const double have = page > 0 && pages > 0 ? page * pages : 0, need = 16 * params;
  if (!(params < 9e15) || (have > 0 && need > have)) {
    char b[256];
    std::snprintf(b, sizeof b, "%s make %.3g parameters, which need %.3g GB for the weights, gradients and Adam's moments (this machine has %.3g GB)",
                  flags.c_str(), params, need / 1e9, have / 1e9);
    throw UsageError(b);
  }
}

/// The training and test sets, binarized at > 127. The training images stay bytes (0 and 1):
/// 47 MB instead of 188, and a batch gathered from them reads a quarter of the memory
/// (`gather_rows` converts them to floats on the tape).
struct Data {
  reparam::data::MnistSet<std::uint8_t> train;
  reparam::data::MnistSet<T> test;
};
inline Data load_data(const Options& o) {
  Data d;
  d.train = reparam::data::load_mnist<std::uint8_t>(o.data, "train");  // FileError: exit 2 through guarded()
  d.test = reparam::data::load_mnist<T>(o.data, "t10k");
  if (d.train.images.cols() != 784 || d.test.images.cols() != 784)
    throw UsageError("images must be 28x28 (got " + std::to_string(d.train.rows) + "x" + std::to_string(d.train.cols) + ")");
  d.train.binarize();
  d.test.binarize();
  if (o.batch > d.train.size())
    throw UsageError("--batch must be at most the number of training images (" + std::to_string(d.train.size()) + ", got " +
                     std::to_string(o.batch) + ")");
  return d;
}

/// A bar with rate, ETA and running loss on a terminal; plain lines otherwise (every
/// `log_every` units, or a tenth of the run). `unit` and `units` name what is counted ("step",
/// "steps"), `value` the figure shown beside it (nullptr: none).
class Progress {
 public:
  Progress(long total, long log_every, const char* unit = "step", const char* units = "steps", const char* value = "neg ELBO")
      : total_(total), tty_(::isatty(2) != 0), unit_(unit), units_(units), value_(value) {
    every_ = log_every > 0 ? log_every : std::max(1L, total / 10);
    start_ = last_ = clock::now();
  }
  void update(long step, double loss) {
    const auto now = clock::now();
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double rate = elapsed > 0 ? step / elapsed : 0;
    const double eta = rate > 0 ? (total_ - step) / rate : 0;
    char shown[64] = "";
    if (value_) std::snprintf(shown, sizeof shown, "  %s %.*f", value_, tty_ ? 2 : 3, loss);
    if (tty_) {
      if (step != total_ && std::chrono::duration<double>(now - last_).count() < 0.1) return;
      last_ = now;
      const int width = 30, filled = static_cast<int>(width * step / total_);
      std::fprintf(stderr, "\r[%s%s] %ld/%ld  %.0f %s/s  ETA %s%s  ", std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(), step, total_, rate, units_, clock_str(eta).c_str(), shown);
      if (step == total_) std::fprintf(stderr, "\n");
    } else if (step % every_ == 0 || step == total_) {
      std::fprintf(stderr, "%s %ld/%ld  %.0f %s/s  ETA %s%s\n", unit_, step, total_, rate, units_, clock_str(eta).c_str(), shown);
    }
  }
  /// A line of its own between updates (a test-set figure). On a terminal it takes the bar's
  /// place, and the next update draws the bar again below it.
  void note(const std::string& line) {
    if (tty_) {
      std::fprintf(stderr, "\r\033[K%s\n", line.c_str());
      last_ = clock::time_point{};
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  }

 private:
  using clock = std::chrono::steady_clock;
  static std::string clock_str(double s) {
    char b[32];
    const long t = static_cast<long>(s + 0.5);
    if (t >= 3600)
      std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
      std::snprintf(b, sizeof b, "%ld:%02ld", t / 60, t % 60);
    return b;
  }
  long total_, every_;
  bool tty_;
  const char* unit_;
  const char* units_;
  const char* value_;
  clock::time_point start_, last_;
};

// ---- Pictures ----------------------------------------------------------------------------------

/// A grayscale picture, 0 black .. 255 white.
struct Picture {
  int w, h;
  std::vector<unsigned char> px;
  Picture(int w_, int h_, unsigned char fill = 255) : w(w_), h(h_), px(static_cast<std::size_t>(w_) * h_, fill) {}
  void set(int x, int y, unsigned char v) {
    if (x >= 0 && y >= 0 && x < w && y < h) px[static_cast<std::size_t>(y) * w + x] = v;
  }
};
void write_png(const std::string& path, const Picture& p);   // vae_png.cpp (stb_image_write)
void draw_text(Picture& p, int x, int y, const std::string& s, unsigned char v);  // stb_easy_font

/// Images (one per row, 28x28 in [0, 1]) in a grid of `cols` columns with a 2-pixel border.
inline Picture image_grid(const Mat& images, int cols, int scale = 2) {
  const int n = static_cast<int>(images.rows()), rows = (n + cols - 1) / cols, cell = 28 * scale + 2;
  Picture p(cols * cell + 2, rows * cell + 2, 128);
  for (int i = 0; i < n; ++i)
    for (int y = 0; y < 28 * scale; ++y)
      for (int x = 0; x < 28 * scale; ++x) {
        const T v = images(i, (y / scale) * 28 + x / scale);
        p.set(2 + (i % cols) * cell + x, 2 + (i / cols) * cell + y,
              static_cast<unsigned char>(std::lround(255 * std::clamp(v, T(0), T(1)))));
      }
  return p;
}

/// Test images above their reconstructions: rows of `cols` originals, each followed by a row of
/// their reconstructions.
inline Picture pairs_grid(const Mat& originals, const Mat& recon, Index cols) {
  const Index n = originals.rows();
  Mat grid = Mat::Zero(2 * ((n + cols - 1) / cols) * cols, originals.cols());
  for (Index i = 0; i < n; ++i) {
    const Index r = (i / cols) * 2 * cols + i % cols;
    grid.row(r) = originals.row(i);
    grid.row(r + cols) = recon.row(i);
  }
  return image_grid(grid, int(cols));
}

/// A test-set figure during training: the step after which it was measured, and its value.
struct TestPoint {
  long step;
  double value;
};

/// Draws a line from (x0, y0) to (x1, y1), every `dash`-th pixel of it (1: solid).
inline void draw_line(Picture& p, int x0, int y0, int x1, int y1, unsigned char v, int dash = 1) {
  const int n = std::max(std::abs(x1 - x0), std::abs(y1 - y0)) + 1;
  for (int k = 0; k <= n; ++k)
    if (dash <= 1 || (k / dash) % 2 == 0) p.set(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n, v);
}

/// The learning curve: the running mean of the training loss against the step (`y[0]` at
/// `first_step`), with axis labels; with `test`, the test-set figures as squares joined by a
/// dashed line, and a legend.
inline Picture curve_plot(const std::vector<double>& y, long first_step, const std::string& title,
                          const std::vector<TestPoint>& test = {}) {
  const int W = 640, H = 400, L = 70, R = 20, Tp = 30, B = 40;
  Picture p(W, H, 255);
  if (y.empty()) return p;
  double lo = *std::min_element(y.begin(), y.end()), hi = *std::max_element(y.begin(), y.end());
  // start the axis at the curve after its first tenth: the first steps are far above the rest
  const std::size_t skip = y.size() / 10;
  if (y.size() > 20) hi = *std::max_element(y.begin() + static_cast<long>(skip), y.end());
  for (const TestPoint& t : test) {  // the test figures after the first tenth widen the axis too
    if (!std::isfinite(t.value)) continue;
    lo = std::min(lo, t.value);
    if (y.size() <= 20 || t.step - first_step >= static_cast<long>(skip)) hi = std::max(hi, t.value);
  }
  if (hi - lo < 1e-9) hi = lo + 1;
  const double pad = 0.05 * (hi - lo);
  lo -= pad;
  hi += pad;
  auto px = [&](std::size_t i) { return L + static_cast<int>((W - L - R - 1) * (y.size() > 1 ? double(i) / (y.size() - 1) : 0.0)); };
  auto py = [&](double v) { return Tp + static_cast<int>((H - Tp - B - 1) * (hi - std::clamp(v, lo, hi)) / (hi - lo)); };
  for (int k = 0; k <= 4; ++k) {  // grid and labels
    const double v = lo + (hi - lo) * k / 4;
    const int yy = py(v);
    for (int x = L; x < W - R; x += 2) p.set(x, yy, 200);
    char b[32];
    std::snprintf(b, sizeof b, "%.1f", v);
    draw_text(p, 4, yy - 3, b, 0);
    const long s = first_step + static_cast<long>((y.size() - 1) * k / 4);
    std::snprintf(b, sizeof b, "%ld", s);
    draw_text(p, L + (W - L - R) * k / 4 - 8, H - B + 8, b, 0);
  }
  for (int x = L; x < W - R; ++x) p.set(x, H - B, 0);
  for (int yy = Tp; yy <= H - B; ++yy) p.set(L, yy, 0);
  // The first steps above the axis are left out (drawn at its top they would read as a plateau):
  // the curve enters from the top edge, and a note says which steps are not shown.
  std::size_t above = 0;
  while (above < y.size() && y[above] > hi) ++above;
  if (above > 0) {
    char b[64];
    if (above == 1)
      std::snprintf(b, sizeof b, "step %ld above the axis", first_step);
    else
      std::snprintf(b, sizeof b, "steps %ld-%ld above the axis", first_step, first_step + static_cast<long>(above) - 1);
    draw_text(p, W - R - 6 * static_cast<int>(std::strlen(b)) - 4, Tp + 4, b, 96);
  }
  for (std::size_t i = std::max<std::size_t>(above, 1); i < y.size(); ++i)  // the curve, segment by segment
    draw_line(p, px(i - 1), py(y[i - 1]), px(i), py(y[i]), 0);
  if (!test.empty()) {  // the test figures (those above the axis left out), and the legend
    auto tx = [&](long step) {
      const double f = y.size() > 1 ? double(step - first_step) / double(y.size() - 1) : 1.0;
      return L + static_cast<int>((W - L - R - 1) * std::clamp(f, 0.0, 1.0));
    };
    int px0 = -1, py0 = -1;
    for (const TestPoint& t : test) {
      if (!std::isfinite(t.value) || t.value > hi) continue;
      const int x = tx(t.step), yy = py(t.value);
      if (px0 >= 0) draw_line(p, px0, py0, x, yy, 96, 3);
      for (int dy = -2; dy <= 2; ++dy)
        for (int dx = -2; dx <= 2; ++dx) p.set(x + dx, yy + dy, 96);
      px0 = x;
      py0 = yy;
    }
    const int lx = W - R - 190, ly = Tp + 22;  // top right, below the note: the curve ends low
    draw_line(p, lx, ly, lx + 16, ly, 0);
    draw_text(p, lx + 22, ly - 3, "training (running mean of 50)", 0);
    for (int dy = -2; dy <= 2; ++dy)
      for (int dx = -2; dx <= 2; ++dx) p.set(lx + 8 + dx, ly + 14 + dy, 96);
    draw_text(p, lx + 22, ly + 11, "test set (one sample)", 0);
  }
  draw_text(p, L, 10, title, 0);
  draw_text(p, W / 2 - 10, H - 16, "step", 0);
  return p;
}

// ---- Results -----------------------------------------------------------------------------------

inline double peak_rss_mb() {
  struct rusage ru;
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // kB on Linux
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

/// The CSV and PNG of the learning curve (and the test-set figures' CSV, test_curve.csv);
/// returns the mean loss of the last 50 steps.
inline double write_curve(const Options& o, const std::vector<double>& loss, long first_step, const std::string& title,
                          const std::vector<TestPoint>& test) {
  {
    std::ofstream t(o.out + "/test_curve.csv");
    t << "step,test_neg_elbo\n";
    char b[64];
    for (const TestPoint& p : test) {
      std::snprintf(b, sizeof b, "%ld,%.4f\n", p.step, p.value);
      t << b;
    }
    if (!t) throw UsageError("cannot write " + o.out + "/test_curve.csv");
  }
  std::ofstream csv(o.out + "/learning_curve.csv");
  csv << "step,neg_elbo,running_mean_50\n";
  std::vector<double> running;
  double s = 0;
  for (std::size_t i = 0; i < loss.size(); ++i) {
    s += loss[i];
    if (i >= 50) s -= loss[i - 50];
    running.push_back(s / double(std::min<std::size_t>(i + 1, 50)));
    csv << first_step + long(i) + 1 << ',' << loss[i] << ',' << running.back() << '\n';
  }
  if (!csv) throw UsageError("cannot write " + o.out + "/learning_curve.csv");
  write_png(o.out + "/learning_curve.png", curve_plot(running, first_step + 1, title, test));
  return running.empty() ? 0 : running.back();
}

/// Runs `body` and turns every failure into one line on stderr and an exit status (2 for bad
/// input, 1 for anything else).
inline int guarded(const char* prog, const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", prog, e.what());
    const bool bad_input = dynamic_cast<const UsageError*>(&e) || dynamic_cast<const reparam::FileError*>(&e);
    return bad_input ? 2 : 1;
  }
}

/// Parses the command line; --help prints and exits 0, a bad flag exits 2 with one line.
inline int parse(CLI::App& app, int argc, char** argv, bool& done) {
  done = false;
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::printf("%s", app.help().c_str());
    done = true;
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: error: %s\n", app.get_name().c_str(), e.what());
    done = true;
    return 2;
  }
  return 0;
}

}  // namespace vae
