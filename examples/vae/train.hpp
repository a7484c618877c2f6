// The training loop both VAE programs run: seeded batches, noise drawn on the main thread (so a
// run's samples do not depend on the thread count), the step over all cores with
// nn::DataParallel, Adam, the learning curve, the test-set bounds, checkpoints and the report.
//
// A model provides:
//   const char* name;  Index noise_cols;  void collect(ParameterList&);
//   void collect_state(StateList&);                          // what else a checkpoint keeps
//   void draw_noise(Rng&, Mat& noise);                       // noise for every row of a batch
//   Var train_loss(Tape&, Var x, NoiseBlock u, long step, T& neg_elbo_sum);   // 1x1 objective (sum over rows)
//   void after_step(T batch_neg_elbo_mean);                  // baselines and the like
//   Var test_neg_elbo(Tape&, Var x, NoiseBlock u);           // rows x 1
//   Var log_weight(Tape&, Var x, NoiseBlock u);              // rows x 1: log p(x, z) - log q(z | x)
//   void pictures(Tape&, const Data&, const Options&, Rng&); // PNGs into o.out
#pragma once

#include <csignal>

#include "common.hpp"

namespace vae {


/// Mean over the test set of model.test_neg_elbo (single sample) and, with K > 0, of the
/// importance-weighted bound -log (1/K) sum_k w_k (Burda et al.), both over all cores. Each
/// row's log-mean-exp is kept running (its largest log weight so far and the sum of the others'
/// exponentials scaled by it), so memory does not grow with K; with K > 0 the passes over the
/// test set are shown as the training steps are (a large K takes minutes).
template <class Model>
void evaluate(Model& model, reparam::nn::DataParallel<T>& dp, const Mat& images, std::uint64_t seed, int K,
              long log_every, double& neg_elbo, double& iw_nll) {
  reparam::Rng rng(seed, 1000);  // a stream of its own: the same test noise for every run length
  const Index chunk = 1000, n = images.rows();
  Mat x, u(chunk, model.noise_cols), col(chunk, 1);
  std::vector<double> top(static_cast<std::size_t>(chunk)), scaled(static_cast<std::size_t>(chunk));
  double total = 0, iw_total = 0;
  const long passes = long((n + chunk - 1) / chunk) * long(K);
  Progress progress(passes, log_every, "importance-weighted bound: pass", "passes", nullptr);
  long done = 0;
  for (Index first = 0; first < n; first += chunk) {
    const Index rows = std::min(chunk, n - first);
    x = images.middleRows(first, rows);
    u.resize(rows, model.noise_cols);
    col.resize(rows, 1);
    model.draw_noise(rng, u);
    const Mat& cu = u;
    dp.evaluate(rows, [&](Tape& tape, Index f, Index c, int) {
      Var xv = tape.constant(x.middleRows(f, c));
      col.middleRows(f, c) = model.test_neg_elbo(tape, xv, cu.middleRows(f, c)).value();
    });
    for (Index i = 0; i < rows; ++i) total += col(i, 0);
    if (K <= 0) continue;
    std::fill(top.begin(), top.end(), -std::numeric_limits<double>::infinity());
    std::fill(scaled.begin(), scaled.end(), 0.0);
    for (int k = 0; k < K; ++k) {
      model.draw_noise(rng, u);
      dp.evaluate(rows, [&](Tape& tape, Index f, Index c, int) {
        Var xv = tape.constant(x.middleRows(f, c));
        col.middleRows(f, c) = model.log_weight(tape, xv, cu.middleRows(f, c)).value();
      });
      for (Index i = 0; i < rows; ++i) {  // running log-sum-exp: top + log(scaled)
        const double w = col(i, 0);
        double& m = top[static_cast<std::size_t>(i)];
        double& s = scaled[static_cast<std::size_t>(i)];
        if (w > m) {
          s = s * std::exp(m - w) + 1;
          m = w;
        } else if (w > -std::numeric_limits<double>::infinity()) {
          s += std::exp(w - m);
        }
      }
      progress.update(++done, 0);
    }
    for (Index i = 0; i < rows; ++i)
      iw_total += -(top[static_cast<std::size_t>(i)] + std::log(scaled[static_cast<std::size_t>(i)] / K));
  }
  neg_elbo = total / double(n);
  iw_nll = K > 0 ? iw_total / double(n) : 0;
}

/// Ctrl-C (SIGINT) or SIGTERM during training: the step under way finishes, and the run ends as
/// if --steps had been reached there (checkpoint, learning curve, test-set bounds, pictures,
/// report), then exits with status 130. A second signal, or one after training, ends the
/// program at once.
inline volatile std::sig_atomic_t stop_requested = 0;
extern "C" inline void request_stop(int sig) {
  stop_requested = 1;
  std::signal(sig, SIG_DFL);
}

template <class Model>
int train(const char* prog, Model& model, const Options& o, reparam::Rng& rng) {
  check_options(o);
  const Data d = load_data(o);
  reparam::nn::ParameterList<T> params;
  model.collect(params);
  reparam::nn::StateList<T> state;
  model.collect_state(state);
  reparam::optim::Adam<T> adam(params.pointers(), {T(o.lr)});
  if (!o.load.empty()) reparam::nn::load_checkpoint(o.load, params, &adam, &state);  // FileError: exit 2
  const long first_step = adam.steps();
  reparam::set_blas_threads(1);  // with the BLAS backend (reparam::openblas): our threads, not OpenBLAS's
  reparam::nn::DataParallel<T> dp(params, o.threads);
  // One thread: Adam updates each weight as the sweep computes its gradient; more: the threads
  // hand their weight gradients over as factors and each updates its share of every weight's
  // rows. Whether each thread should first evict the lines the other threads write (cores that
  // do not share a cache) depends on the host, and on a VM it can change within a minute: the
  // first 14 steps, and 14 after every 200 more, time both ways and keep the faster (the same
  // bits either way; the trials cost about 0.5% of the steps' time where the two differ by 15%).
  dp.set_stream_updates(true);
  dp.tune_evict_shared(6, 200);
  reparam::data::Batcher batches(d.train.size(), o.batch, o.seed + 1);
  Mat u(o.batch, model.noise_cols);
  if (first_step > 0) {
    // Resuming: the batches and noise go on from where a run with these flags left them at the
    // checkpoint's step (drawn again and dropped: about a second per 100,000 Gaussian steps), so
    // training to step n in pieces gives the bits of one n-step run.
    std::fprintf(o.json ? stderr : stdout, "%s: resuming after step %ld of %s\n", prog, first_step, o.load.c_str());
    for (long k = 0; k < first_step; ++k) {
      batches.next();
      model.draw_noise(rng, u);
    }
  }
  std::vector<T> thread_loss(static_cast<std::size_t>(dp.threads()));
  std::vector<double> loss, step_ms;
  std::vector<TestPoint> test_curve;  // --eval-every's figures, then the final one
  loss.reserve(static_cast<std::size_t>(o.steps));
  step_ms.reserve(static_cast<std::size_t>(o.steps));
  FILE* info = o.json ? stderr : stdout;
  std::fprintf(info, "%s: %ld training and %ld test images from %s; %ld parameters; batch %ld; %d thread%s\n", prog,
               long(d.train.size()), long(d.test.size()), o.data.c_str(), long(params.count()), long(o.batch), dp.threads(),
               dp.threads() == 1 ? "" : "s");
  std::fflush(info);  // before the progress lines on stderr, also when stdout is a pipe
  Progress progress(o.steps, o.log_every);
  int evict_choice = -1;  // the last finished trial's setting (-1: none finished), for the report
  const T inv_batch = T(1) / T(o.batch);
  double running = 0;
  stop_requested = 0;
  std::signal(SIGINT, request_stop);
  std::signal(SIGTERM, request_stop);
  long done = 0;
  for (long s = 1; s <= o.steps && !stop_requested; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    const long step = first_step + s;
    const std::vector<Index>& rows = batches.next();
    model.draw_noise(rng, u);  // on this thread: the samples do not depend on the thread count
    const Mat& cu = u;
    // Every thread gathers its rows of the batch and builds their graph on its own tape; Adam
    // then updates the weights inside the sweep (one thread) or each thread its share of every
    // weight from the threads' gradient factors (more); the same bits either way.
    dp.step(o.batch, [&](Tape& tape, Index f, Index c, int t) {
      Var xv = reparam::data::gather_rows(tape, d.train.images, rows, f, c);  // straight onto the tape
      T value = 0;
      Var objective = model.train_loss(tape, xv, cu.middleRows(f, c), step, value);
      thread_loss[static_cast<std::size_t>(t)] = value;
      tape.backward(objective * inv_batch);
    }, adam);
    T total = 0;
    for (T v : thread_loss) total += v;  // thread order: the same sum on every run
    const T mean = total * inv_batch;
    if (!std::isfinite(mean)) throw std::runtime_error("the loss is not finite at step " + std::to_string(step) + " (try a smaller --lr)");
    model.after_step(mean);
    step_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    loss.push_back(mean);
    running = loss.size() <= 50 ? running + (mean - running) / double(loss.size()) : running + (mean - loss[loss.size() - 51]) / 50;
    progress.update(s, running);
    if (dp.threads() > 1 && !dp.evict_tuning()) evict_choice = dp.evict_shared() ? 1 : 0;
    done = s;
    // Between steps, outside their timing: neither changes a bit of the training run (the test
    // noise is a stream of its own, the same at every evaluation).
    if (o.eval_every > 0 && s % o.eval_every == 0 && s < o.steps) {
      double v = 0, unused = 0;
      evaluate(model, dp, d.test.images, o.seed, 0, 0, v, unused);
      test_curve.push_back({step, v});
      char line[128];
      std::snprintf(line, sizeof line, "step %ld: test negative ELBO %.3f (one sample)", step, v);
      progress.note(line);
    }
    if (o.save_every > 0 && s % o.save_every == 0 && s < o.steps) {  // atomic: a crash keeps the last one whole
      reparam::nn::save_checkpoint(o.save, params, &adam, &state);
      progress.note("step " + std::to_string(step) + ": checkpoint written to " + o.save);
    }
  }
  std::signal(SIGINT, SIG_DFL);  // from here on a signal ends the program at once
  std::signal(SIGTERM, SIG_DFL);
  const bool interrupted = done < o.steps;
  if (interrupted)
    std::fprintf(stderr, "\n%s: interrupted after step %ld of %ld; finishing the run there (a second signal ends it at once)\n",
                 prog, done, o.steps);
  if (!o.save.empty()) reparam::nn::save_checkpoint(o.save, params, &adam, &state);

  double test_neg_elbo = 0, test_iw = 0;
  evaluate(model, dp, d.test.images, o.seed, o.iw, o.log_every, test_neg_elbo, test_iw);
  test_curve.push_back({first_step + done, test_neg_elbo});
  const double train_neg_elbo = write_curve(o, loss, first_step, std::string(model.name) + ": negative ELBO", test_curve);
  reparam::Rng picture_rng(o.seed, 2000);
  {
    Tape& tape = dp.tape(0);
    tape.clear();
    reparam::NoGrad<T> off(tape);
    model.pictures(tape, d, o, picture_rng);
  }
  const double ms = median(step_ms);
  if (o.json) {
    std::printf("{\"model\":\"%s\",\"steps\":%ld,\"batch\":%ld,\"threads\":%d,\"step_ms_median\":%.4f,"
                "\"train_neg_elbo\":%.4f,\"test_neg_elbo\":%.4f", model.name, done, long(o.batch), dp.threads(), ms,
                train_neg_elbo, test_neg_elbo);
    if (o.iw > 0) std::printf(",\"test_iw_neg_ll\":%.4f,\"iw\":%d", test_iw, o.iw);
    std::printf(",\"seed\":%llu,\"lr\":%g,\"peak_rss_mb\":%.1f", static_cast<unsigned long long>(o.seed), o.lr, peak_rss_mb());
    if (evict_choice >= 0) std::printf(",\"evict_shared\":%s", evict_choice ? "true" : "false");
    if (interrupted) std::printf(",\"interrupted\":true,\"steps_asked\":%ld", o.steps);
    std::printf("}\n");
  } else {
    std::printf("train negative ELBO (mean of the last 50 steps): %.3f\n", train_neg_elbo);
    std::printf("test negative ELBO (one sample): %.3f nats\n", test_neg_elbo);
    if (o.iw > 0) std::printf("test negative log-likelihood bound (importance-weighted, K = %d): %.3f nats\n", o.iw, test_iw);
    std::printf("median step %.3f ms on %d thread%s; peak memory %.0f MB\n", ms, dp.threads(), dp.threads() == 1 ? "" : "s",
                peak_rss_mb());
    if (evict_choice >= 0)
      std::printf("shared cache lines %s before each update (the faster in the last finished trial)\n",
                  evict_choice ? "evicted" : "not evicted");
    std::printf("pictures and learning curve in %s/\n", o.out.c_str());
    if (!o.save.empty()) std::printf("checkpoint in %s\n", o.save.c_str());
  }
  return interrupted ? 130 : 0;
}

}  // namespace vae
