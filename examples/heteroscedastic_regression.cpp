// Heteroscedastic regression: a small MLP maps x to the loc and (softplus) scale of a Normal over
// y, on seeded synthetic 1-D data whose noise grows with x. It trains twice from the same
// initialisation: with Adam on the negative log-likelihood, and with natural-gradient steps (the
// Fisher of the predicted Normals as the Hessian of KL(old || new), conjugate gradients, a KL
// trust region). Prints both learning curves, writes them as CSV and PNG, and draws the data, the
// predicted mean, a +-2 sigma band and samples drawn with rsample.
//
//     heteroscedastic_regression --out regression_out      # writes fit.png, curves.png, curves.csv
//     heteroscedastic_regression --check                   # exits 1 unless every natural step
//                                                          # kept its KL radius and lowered the loss
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <sys/stat.h>

#include <CLI/CLI.hpp>

#include <reparam/reparam.hpp>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wpedantic"
#endif
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_easy_font.h>
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace {

using reparam::Index;
using Mat = reparam::Matrix<double>;

struct Options {
  long adam_steps = 3000, natural_steps = 100;
  Index n = 1000, hidden = 16;
  double lr = 3e-3, max_kl = 0.01;
  std::uint64_t seed = 1;
  std::string out = "regression_out";
  bool check = false;
};

// ---- the data: y = sin(1.5 x) + 0.3 x + sigma(x) eps, sigma(x) = 0.05 + 0.25 (x / 4 + 1)^2 ----
double true_mean(double x) { return std::sin(1.5 * x) + 0.3 * x; }
double true_sigma(double x) { return 0.05 + 0.25 * (x / 4 + 1) * (x / 4 + 1); }

void make_data(reparam::Rng& rng, Index n, Mat& x, Mat& y) {
  x.resize(n, 1);
  y.resize(n, 1);
  for (Index i = 0; i < n; ++i) {
    x(i, 0) = -4 + 8 * reparam::uniform<double>(rng);
    y(i, 0) = true_mean(x(i, 0)) + true_sigma(x(i, 0)) * reparam::normal<double>(rng);
  }
}

// ---- the model: written once, generic in the tape's scalar (double, or Dual<double> inside the
// Fisher-vector products), reading the network's parameters from the leaves it is given ----
struct Model {
  reparam::nn::Mlp<double> net;
  std::vector<reparam::Parameter<double>*> params;

  Model(Index hidden, reparam::Rng& rng) : net({1, hidden, hidden, 2}, reparam::nn::Activation::tanh, rng) {
    reparam::nn::ParameterList<double> list;
    net.collect(list);
    params = list.pointers();
  }
  /// The predicted Normal(loc, softplus(s) + 1e-3) at the inputs x, one per row.
  template <class S>
  reparam::Normal<S> predict(reparam::BasicTape<S>& t, const std::vector<reparam::BasicVar<S>>& leaves,
                             const reparam::Matrix<S>& x) const {
    const reparam::BasicVar<S> out = net.apply(t.constant(x), leaves);
    return reparam::Normal<S>(slice_cols(out, 0, 1), softplus(slice_cols(out, 1, 1)) + S(1e-3));
  }
};

/// The training data, also as duals (the natural-gradient step's Fisher-vector products run the
/// model on a tape of Dual<double>).
struct TrainingData {
  Mat x, y;
  reparam::Matrix<reparam::Dual<double>> xd, yd;
  template <class S>
  const reparam::Matrix<S>& xs() const {
    if constexpr (std::is_same<S, double>::value) return x; else return xd;
  }
  template <class S>
  const reparam::Matrix<S>& ys() const {
    if constexpr (std::is_same<S, double>::value) return y; else return yd;
  }
};

/// Mean negative log-likelihood of (x, y) under the model's current parameters.
double nll(const Model& m, const Mat& x, const Mat& y) {
  reparam::Tape t;
  std::vector<reparam::Var> leaves;
  for (auto* p : m.params) leaves.push_back(t.constant(*p));
  return -mean(m.predict(t, leaves, x).log_prob(t.constant(y))).item();
}

// ---- pictures: an RGB canvas, PNG through stb_image_write, text through stb_easy_font ----
struct Canvas {
  int w, h;
  std::vector<unsigned char> px;
  Canvas(int w_, int h_) : w(w_), h(h_), px(std::size_t(w_) * h_ * 3, 255) {}
  void set(int x, int y, unsigned r, unsigned g, unsigned b, double alpha = 1) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    unsigned char* p = &px[(std::size_t(y) * w + x) * 3];
    const unsigned c[3] = {r, g, b};
    for (int k = 0; k < 3; ++k) p[k] = static_cast<unsigned char>(std::lround(p[k] * (1 - alpha) + c[k] * alpha));
  }
  void dot(int x, int y, unsigned r, unsigned g, unsigned b, int radius = 1) {
    for (int dy = -radius; dy <= radius; ++dy)
      for (int dx = -radius; dx <= radius; ++dx)
        if (dx * dx + dy * dy <= radius * radius + 1) set(x + dx, y + dy, r, g, b);
  }
  void line(int x0, int y0, int x1, int y1, unsigned r, unsigned g, unsigned b, int thick = 1) {
    const int n = std::max(std::abs(x1 - x0), std::abs(y1 - y0)) + 1;
    for (int k = 0; k <= n; ++k)
      for (int t = 0; t < thick; ++t) set(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n + t, r, g, b);
  }
  void text(int x, int y, const std::string& s, unsigned r = 0, unsigned g = 0, unsigned b = 0) {
    static char buffer[64 * 1024];
    std::vector<char> str(s.begin(), s.end());
    str.push_back('\0');
    const int quads = stb_easy_font_print(float(x), float(y), str.data(), nullptr, buffer, sizeof buffer);
    for (int q = 0; q < quads; ++q) {
      const float* v0 = reinterpret_cast<const float*>(buffer + q * 64);
      const float* v2 = reinterpret_cast<const float*>(buffer + q * 64 + 32);
      for (int yy = int(v0[1]); yy < int(v2[1]); ++yy)
        for (int xx = int(v0[0]); xx < int(v2[0]); ++xx) set(xx, yy, r, g, b);
    }
  }
  void write(const std::string& path) const {
    if (!stbi_write_png(path.c_str(), w, h, 3, px.data(), w * 3)) throw std::runtime_error("cannot write " + path);
  }
};

/// A panel at (ox, oy) of size pw x ph mapping [x0, x1] x [y0, y1].
struct Panel {
  int ox, oy, pw, ph;
  double x0, x1, y0, y1;
  int px(double x) const { return ox + int(std::lround((x - x0) / (x1 - x0) * (pw - 1))); }
  int py(double y) const { return oy + int(std::lround((y1 - y) / (y1 - y0) * (ph - 1))); }
  void frame(Canvas& c, const std::string& title, double xstep, double ystep) const {
    for (double v = std::ceil(y0 / ystep) * ystep; v <= y1 + 1e-9; v += ystep) {
      for (int x = ox; x < ox + pw; x += 3) c.set(x, py(v), 200, 200, 200);
      char b[32];
      std::snprintf(b, sizeof b, "%g", std::abs(v) < 1e-9 ? 0.0 : v);
      c.text(ox - 8 - 5 * int(std::string(b).size()), py(v) - 3, b);
    }
    for (double v = std::ceil(x0 / xstep) * xstep; v <= x1 + 1e-9; v += xstep) {
      char b[32];
      std::snprintf(b, sizeof b, "%g", std::abs(v) < 1e-9 ? 0.0 : v);
      c.text(px(v) - 4, oy + ph + 6, b);
    }
    c.line(ox, oy + ph, ox + pw, oy + ph, 0, 0, 0);
    c.line(ox, oy, ox, oy + ph, 0, 0, 0);
    c.text(ox, oy - 14, title);
  }
};

/// One panel of the fit: the +-2 sigma band, the data, samples drawn with rsample, the true and the
/// predicted mean.
void draw_fit(Canvas& c, const Panel& p, const Model& m, const Mat& x, const Mat& y, const std::string& title) {
  const Index G = p.pw;  // one prediction per pixel column
  Mat grid(G, 1);
  for (Index i = 0; i < G; ++i) grid(i, 0) = p.x0 + (p.x1 - p.x0) * double(i) / double(G - 1);
  reparam::Tape t;
  std::vector<reparam::Var> leaves;
  for (auto* q : m.params) leaves.push_back(t.constant(*q));
  const reparam::Normal<double> d = m.predict(t, leaves, grid);
  reparam::Rng rng(7);
  const Mat loc = d.loc().value(), scale = d.scale().value(), draws = d.rsample(rng).value();
  for (Index i = 0; i < G; ++i) {  // the band, as vertical strokes
    const int xx = p.px(grid(i, 0));
    for (int yy = p.py(loc(i, 0) + 2 * scale(i, 0)); yy <= p.py(loc(i, 0) - 2 * scale(i, 0)); ++yy)
      if (yy >= p.oy && yy < p.oy + p.ph) c.set(xx, yy, 120, 170, 230, 0.35);
  }
  p.frame(c, title, 1, 1);
  for (Index i = 0; i < x.rows(); ++i) c.dot(p.px(x(i, 0)), p.py(y(i, 0)), 90, 90, 90);
  for (Index i = 0; i < G; i += 5) c.dot(p.px(grid(i, 0)), p.py(draws(i, 0)), 230, 120, 20);
  for (Index i = 1; i < G; ++i) {
    c.line(p.px(grid(i - 1, 0)), p.py(true_mean(grid(i - 1, 0))), p.px(grid(i, 0)), p.py(true_mean(grid(i, 0))), 0, 150, 0);
    c.line(p.px(grid(i - 1, 0)), p.py(loc(i - 1, 0)), p.px(grid(i, 0)), p.py(loc(i, 0)), 20, 60, 200, 2);
  }
}

void draw_legend(Canvas& c, int x, int y) {
  c.dot(x, y + 3, 90, 90, 90);
  c.text(x + 8, y, "data");
  c.dot(x + 50, y + 3, 230, 120, 20);
  c.text(x + 58, y, "rsample");
  c.line(x + 115, y + 3, x + 130, y + 3, 20, 60, 200, 2);
  c.text(x + 135, y, "predicted mean");
  for (int k = 0; k < 8; ++k) c.line(x + 225, y - 1 + k, x + 240, y - 1 + k, 120, 170, 230);
  c.text(x + 245, y, "mean +- 2 sigma");
  c.line(x + 340, y + 3, x + 355, y + 3, 0, 150, 0);
  c.text(x + 360, y, "true mean");
}

/// The two learning curves: test NLL against the step and against training seconds (both log10).
void draw_curves(const std::string& path, const std::vector<double>& t_adam, const std::vector<double>& adam,
                 const std::vector<double>& t_nat, const std::vector<double>& nat) {
  Canvas c(1200, 420);
  double lo = 1e300, hi = -1e300;
  for (const auto* v : {&adam, &nat})
    for (double a : *v) {
      lo = std::min(lo, a);
      hi = std::max(hi, a);
    }
  const double ylo = std::floor(lo * 4) / 4, yhi = std::ceil(std::min(hi, lo + 3) * 4) / 4;
  std::vector<double> s_adam(adam.size()), s_nat(nat.size());
  for (std::size_t i = 0; i < adam.size(); ++i) s_adam[i] = double(i + 1);
  for (std::size_t i = 0; i < nat.size(); ++i) s_nat[i] = double(i + 1);
  auto panel = [&](const Panel& p, const std::vector<double>& xa, const std::vector<double>& xn, const std::string& title) {
    p.frame(c, title, 1, 0.25);
    auto curve = [&](const std::vector<double>& t, const std::vector<double>& v, unsigned r, unsigned g, unsigned b) {
      auto X = [&](double u) { return p.px(std::clamp(std::log10(std::max(u, 1e-9)), p.x0, p.x1)); };
      for (std::size_t i = 1; i < v.size(); ++i)
        c.line(X(t[i - 1]), p.py(std::clamp(v[i - 1], p.y0, p.y1)), X(t[i]), p.py(std::clamp(v[i], p.y0, p.y1)), r, g, b, 2);
    };
    curve(xa, adam, 200, 60, 40);
    curve(xn, nat, 20, 60, 200);
    c.line(p.ox + p.pw - 130, p.oy + 20, p.ox + p.pw - 110, p.oy + 20, 200, 60, 40, 2);
    c.text(p.ox + p.pw - 105, p.oy + 17, "Adam");
    c.line(p.ox + p.pw - 130, p.oy + 35, p.ox + p.pw - 110, p.oy + 35, 20, 60, 200, 2);
    c.text(p.ox + p.pw - 105, p.oy + 32, "natural gradient");
  };
  const double smax = std::ceil(std::log10(double(std::max(adam.size(), nat.size()))));
  panel(Panel{60, 40, 500, 320, 0, smax, ylo, yhi}, s_adam, s_nat, "test NLL (nats per point) against the step (log10)");
  const double tmin = std::floor(std::log10(std::max(1e-6, std::min(t_adam.front(), t_nat.front())))),
               tmax = std::ceil(std::log10(std::max(t_adam.back(), t_nat.back())));
  panel(Panel{660, 40, 500, 320, tmin, tmax, ylo, yhi}, t_adam, t_nat, "test NLL against training seconds (log10)");
  c.write(path);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int run(const Options& o) {
  if (o.adam_steps < 1 || o.natural_steps < 1) throw CLI::ValidationError("--adam-steps and --natural-steps must be > 0");
  if (o.n < 2) throw CLI::ValidationError("--n must be at least 2");
  if (o.hidden < 1) throw CLI::ValidationError("--hidden must be > 0");
  if (!(o.lr > 0) || !std::isfinite(o.lr)) throw CLI::ValidationError("--lr must be a positive number");
  if (!(o.max_kl > 0) || !std::isfinite(o.max_kl)) throw CLI::ValidationError("--max-kl must be a positive number");
  ::mkdir(o.out.c_str(), 0755);
  if (!std::ofstream(o.out + "/curves.csv")) throw CLI::ValidationError("--out: cannot write in " + o.out);
  reparam::Rng data_rng(o.seed, 1);
  Mat x, y, xt, yt;
  make_data(data_rng, o.n, x, y);
  make_data(data_rng, 2000, xt, yt);  // the test set

  // two models from the same initialisation
  reparam::Rng init_a(o.seed, 2), init_b(o.seed, 2);
  Model adam_model(o.hidden, init_a), nat_model(o.hidden, init_b);
  std::printf("heteroscedastic regression: %ld training points, MLP 1-%ld-%ld-2 (tanh), %ld parameters, initial test NLL %.4f\n",
              long(o.n), long(o.hidden), long(o.hidden), long(reparam::flatten(adam_model.params).size()), nll(adam_model, xt, yt));

  // ---- Adam, full batch ----
  std::vector<double> adam_curve, adam_time;
  {
    reparam::optim::Adam<double> opt(adam_model.params, {o.lr});
    reparam::Tape t;
    std::vector<reparam::Var> leaves;
    double elapsed = 0;
    for (long s = 1; s <= o.adam_steps; ++s) {
      const auto ts = std::chrono::steady_clock::now();
      t.clear();
      leaves.clear();
      for (auto* p : adam_model.params) {
        p->zero_grad();
        leaves.push_back(t.variable(*p));
      }
      t.backward(-mean(adam_model.predict(t, leaves, x).log_prob(t.constant(y))));
      opt.step();
      elapsed += seconds_since(ts);  // training time only, not the evaluation below
      adam_curve.push_back(nll(adam_model, xt, yt));
      adam_time.push_back(elapsed);
      if (s % (o.adam_steps / 10 > 0 ? o.adam_steps / 10 : 1) == 0 || s == 1)
        std::printf("  adam     step %5ld  test NLL %8.4f  %.2f s\n", s, adam_curve.back(), elapsed);
    }
  }

  // ---- natural-gradient steps, full batch ----
  std::vector<double> nat_curve, nat_time, kls;
  bool ok = true;
  {
    const TrainingData data{x, y, x.cast<reparam::Dual<double>>(), y.cast<reparam::Dual<double>>()};
    // the model's Normal and the loss, generic in the tape's scalar
    auto make = [&](auto& t, const auto& leaves) {
      using S = typename std::decay_t<decltype(t)>::Scalar;
      return nat_model.predict(t, leaves, data.xs<S>());
    };
    auto loss = [&](auto& t, const auto& leaves) {
      using S = typename std::decay_t<decltype(t)>::Scalar;
      return -mean(make(t, leaves).log_prob(t.constant(data.ys<S>())));
    };
    reparam::NaturalGradientOptions opts;
    opts.max_kl = o.max_kl;
    opts.cg_iterations = 20;
    reparam::NaturalGradient<double> ng(opts);  // keeps its tapes and vectors from step to step
    double elapsed = 0;
    for (long s = 1; s <= o.natural_steps; ++s) {
      const auto ts = std::chrono::steady_clock::now();
      const reparam::NaturalGradientResult r = ng.step(nat_model.params, loss, make);
      elapsed += seconds_since(ts);
      nat_curve.push_back(nll(nat_model, xt, yt));
      nat_time.push_back(elapsed);
      kls.push_back(r.kl);
      if (r.accepted && !(r.kl <= o.max_kl && r.loss_after < r.loss_before)) {
        std::fprintf(stderr, "step %ld: KL %g (radius %g), loss %g -> %g\n", s, r.kl, o.max_kl, r.loss_before, r.loss_after);
        ok = false;
      }
      if (!r.accepted) std::printf("  natural  step %5ld  no step lowered the loss inside the radius\n", s);
      if (s % (o.natural_steps / 10 > 0 ? o.natural_steps / 10 : 1) == 0 || s == 1)
        std::printf("  natural  step %5ld  test NLL %8.4f  train %8.4f  KL %.4f  CG %2ld  scale %.3f  %.2f s\n", s,
                    nat_curve.back(), r.loss_after, r.kl, long(r.cg_iterations), r.step_scale, elapsed);
    }
  }

  // ---- outputs ----
  {
    std::ofstream csv(o.out + "/curves.csv");
    csv << "method,step,seconds,test_nll\n";
    for (std::size_t i = 0; i < adam_curve.size(); ++i) csv << "adam," << i + 1 << ',' << adam_time[i] << ',' << adam_curve[i] << '\n';
    for (std::size_t i = 0; i < nat_curve.size(); ++i) csv << "natural," << i + 1 << ',' << nat_time[i] << ',' << nat_curve[i] << '\n';
    if (!csv) throw std::runtime_error("cannot write " + o.out + "/curves.csv");
  }
  draw_curves(o.out + "/curves.png", adam_time, adam_curve, nat_time, nat_curve);
  Canvas c(1200, 470);
  const Panel left{50, 40, 520, 360, -4, 4, -3.5, 4.5}, right{650, 40, 520, 360, -4, 4, -3.5, 4.5};
  char title[128];
  std::snprintf(title, sizeof title, "Adam, %ld steps: test NLL %.3f", o.adam_steps, adam_curve.back());
  draw_fit(c, left, adam_model, x, y, title);
  std::snprintf(title, sizeof title, "natural gradient, %ld steps: test NLL %.3f", o.natural_steps, nat_curve.back());
  draw_fit(c, right, nat_model, x, y, title);
  draw_legend(c, 330, 445);
  c.write(o.out + "/fit.png");

  // the true model's test NLL, the floor both approach
  double floor_nll = 0;
  for (Index i = 0; i < xt.rows(); ++i) {
    const double s = true_sigma(xt(i, 0)), z = (yt(i, 0) - true_mean(xt(i, 0))) / s;
    floor_nll += 0.5 * z * z + std::log(s) + 0.5 * std::log(2 * M_PI);
  }
  floor_nll /= double(xt.rows());
  std::printf("final test NLL: Adam %.4f after %ld steps (%.2f s), natural gradient %.4f after %ld steps (%.2f s); the true model %.4f\n",
              adam_curve.back(), o.adam_steps, adam_time.back(), nat_curve.back(), o.natural_steps, nat_time.back(), floor_nll);
  std::printf("largest KL of a natural step: %.5f (radius %g)\nwrote %s/fit.png, %s/curves.png, %s/curves.csv\n",
              *std::max_element(kls.begin(), kls.end()), o.max_kl, o.out.c_str(), o.out.c_str(), o.out.c_str());
  if (o.check) {
    if (!(nat_curve.back() < nat_curve.front() && adam_curve.back() < adam_curve.front())) {
      std::fprintf(stderr, "check: the test NLL did not fall\n");
      ok = false;
    }
    if (!ok) return 1;
    std::printf("check: every natural step within its KL radius and lowering the loss\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Heteroscedastic regression: Adam against natural-gradient steps (reparam example)"};
  Options o;
  app.add_option("--adam-steps", o.adam_steps, "Adam steps (full batch)")->capture_default_str();
  app.add_option("--natural-steps", o.natural_steps, "natural-gradient steps (full batch)")->capture_default_str();
  app.add_option("--n", o.n, "training points")->capture_default_str();
  app.add_option("--hidden", o.hidden, "hidden units per layer")->capture_default_str();
  app.add_option("--lr", o.lr, "Adam learning rate")->capture_default_str();
  app.add_option("--max-kl", o.max_kl, "natural-gradient trust region: mean KL per point")->capture_default_str();
  app.add_option("--seed", o.seed, "seed of data and initialisation")->capture_default_str();
  app.add_option("--out", o.out, "folder for fit.png, curves.png, curves.csv")->capture_default_str();
  app.add_flag("--check", o.check, "exit 1 unless every natural step kept its KL radius and lowered the loss");
  try {
    app.parse(argc, argv);
    return run(o);
  } catch (const CLI::CallForHelp&) {
    std::printf("%s", app.help().c_str());
    return 0;
  } catch (const CLI::ParseError& e) {  // bad flags and values: exit status 2
    std::fprintf(stderr, "heteroscedastic_regression: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "heteroscedastic_regression: error: %s\n", e.what());
    return 1;
  }
}
