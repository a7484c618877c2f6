// vae_categorical: the categorical VAE of Jang, Gu & Poole (2017) on binarized (Fashion-)MNIST:
// 20 categorical latents of 10 classes each, trained through the Concrete (Gumbel-softmax)
// relaxation, its straight-through form (--hard), or the score-function estimator with a
// baseline (--estimator score-function), on every core.
//
//   encoder  784 -> 512 -> 256 (relu) -> 20 x 10 logits, one Categorical per latent
//   z        Concrete(logits, tau).reparameterize(u), tau = max(0.5, exp(-3e-5 step))
//   decoder  200 -> 256 -> 512 (relu) -> 784 logits of Bernoulli pixels
//   loss     sum over pixels of bce_with_logits + KL(Categorical(logits) || uniform), per image
//
// The test-set bound uses discrete one-hot samples (Gumbel-max from the same uniforms): the
// ELBO of the discrete model, whichever estimator trained it.
#include "train.hpp"

namespace vae {

enum class Estimator { concrete, straight_through, score_function };

struct CategoricalVae {
  const char* name = "vae_categorical";
  Index n, k, noise_cols;
  Estimator estimator;
  reparam::nn::Mlp<T> encoder, decoder;
  /// The score-function baseline: (0, 0) a moving average (0.9) of the batch's mean negative
  /// ELBO, (0, 1) whether it has been set; a matrix so that checkpoints carry it (StateList).
  Mat baseline = Mat::Zero(1, 2);

  CategoricalVae(Index latents, Index classes, Estimator e, reparam::Rng& rng)
      : n(latents), k(classes), noise_cols(latents * classes), estimator(e),
        encoder({784, 512, 256, latents * classes}, reparam::nn::Activation::relu, rng),
        decoder({latents * classes, 256, 512, 784}, reparam::nn::Activation::relu, rng) {}

  void collect(reparam::nn::ParameterList<T>& p) {
    encoder.collect(p, "encoder");
    decoder.collect(p, "decoder");
  }
  void collect_state(reparam::nn::StateList<T>& s) { s.add("baseline", baseline); }
  void draw_noise(reparam::Rng& rng, Mat& u) const { reparam::fill_uniform(rng, u); }
  void after_step(T mean) {
    baseline(0, 0) = baseline(0, 1) != 0 ? T(0.9) * baseline(0, 0) + T(0.1) * mean : mean;
    baseline(0, 1) = 1;
  }

  static T temperature(long step) { return std::max(T(0.5), T(std::exp(-3e-5 * double(step)))); }

  /// Logits of the rows' latents, (rows * n) x k.
  Var logits(Var x) { return reshape(encoder(x), x.rows() * n, k); }
  /// The uniforms of a block of rows as (rows * n) x k (contiguous rows of a row-major matrix).
  template <class U>
  Eigen::Map<const Mat> per_latent(const Eigen::DenseBase<U>& u) const {
    return Eigen::Map<const Mat>(u.derived().data(), u.rows() * n, k);
  }
  /// KL(q || uniform) summed over each row's latents: rows x 1.
  Var kl(Tape& tape, Var lg, Index rows) {
    const reparam::Categorical<T> q(lg), prior(tape.constant(Mat::Zero(1, k)));
    return sum_rows(reshape(kl_divergence(q, prior), rows, n));
  }
  Var reconstruction(Var z, Var x) { return sum_rows(bce_with_logits(decoder(reshape(z, x.rows(), n * k)), x)); }

  template <class U>
  Var train_loss(Tape& tape, Var x, const Eigen::DenseBase<U>& u, long step, T& value) {
    const Index rows = x.rows();
    const Var lg = logits(x);
    const reparam::Concrete<T> q(lg, temperature(step));
    const Var kl_rows = kl(tape, lg, rows);
    if (estimator == Estimator::score_function) {
      // z ~ Categorical(softmax(logits)) by Gumbel-max on the same uniforms; no path through z
      const Var z = stop_gradient(q.reparameterize_hard(per_latent(u)));
      const Var rec = reconstruction(z, x);
      const Var log_q = sum_rows(reshape(reparam::Categorical<T>(lg).log_prob(z), rows, n));
      const Var cost = rec + kl_rows;
      value = sum(cost).item();
      // decoder: pathwise through rec; encoder: the analytic KL + (cost - b) d log q(z | x)
      return sum(cost) + reparam::score_function(log_q, cost, baseline_value());
    }
    const Var z = estimator == Estimator::straight_through ? q.reparameterize_hard(per_latent(u)) : q.reparameterize(per_latent(u));
    const Var l = sum(reconstruction(z, x) + kl_rows);
    value = l.item();
    return l;
  }
  T baseline_value() const { return baseline(0, 1) != 0 ? baseline(0, 0) : T(0); }

  template <class U>
  Var test_neg_elbo(Tape& tape, Var x, const Eigen::DenseBase<U>& u) {
    const Var lg = logits(x);
    const Var z = reparam::Concrete<T>(lg, T(1)).reparameterize_hard(per_latent(u));
    return reconstruction(z, x) + kl(tape, lg, x.rows());
  }
  /// log p(x | z) + log p(z) - log q(z | x) with z one-hot, p(z) uniform.
  template <class U>
  Var log_weight(Tape&, Var x, const Eigen::DenseBase<U>& u) {
    const Var lg = logits(x);
    const Var z = reparam::Concrete<T>(lg, T(1)).reparameterize_hard(per_latent(u));
    const Var log_q = sum_rows(reshape(reparam::Categorical<T>(lg).log_prob(z), x.rows(), n));
    return T(-double(n) * std::log(double(k))) - log_q - reconstruction(z, x);
  }

  void pictures(Tape& tape, const Data& d, const Options& o, reparam::Rng& rng) {
    const Index count = 32, cols = 16;
    const Mat x = d.test.images.topRows(count);
    // reconstructions through the most probable class of every latent
    const Var lg = logits(tape.constant(x));
    Mat z = Mat::Zero(count * n, k);
    for (Index r = 0; r < z.rows(); ++r) {
      Index j;
      lg.value().row(r).maxCoeff(&j);
      z(r, j) = 1;
    }
    const Mat recon = sigmoid(decoder(tape.constant(Eigen::Map<const Mat>(z.data(), count, n * k)))).value();
    write_png(o.out + "/reconstructions.png", pairs_grid(x, recon, cols));
    // decoded draws from the uniform prior: one class per latent
    Mat zs = Mat::Zero(64, n * k);
    for (Index i = 0; i < 64; ++i)
      for (Index l = 0; l < n; ++l) zs(i, l * k + Index(reparam::data::uniform_index(rng, std::uint64_t(k)))) = 1;
    write_png(o.out + "/samples.png", image_grid(sigmoid(decoder(tape.constant(zs))).value(), 8));
  }
};

}  // namespace vae

int main(int argc, char** argv) {
  CLI::App app{"vae_categorical: a categorical VAE (Jang et al.) with Gumbel-softmax samples on binarized Fashion-MNIST",
               "vae_categorical"};
  vae::Options o;
  vae::add_common_flags(app, o, 6000);
  reparam::Index latents = 20, classes = 10;
  bool hard = false;
  std::string estimator = "gumbel-softmax";
  app.add_option("--latents", latents, "categorical latents")->capture_default_str()->transform(vae::decimal(true));
  app.add_option("--classes", classes, "classes of each latent")->capture_default_str()->transform(vae::decimal(true));
  app.add_flag("--hard", hard, "straight-through: one-hot samples forward, the relaxed gradient backward");
  app.add_option("--estimator", estimator, "gumbel-softmax (pathwise through the Concrete relaxation) or score-function")
      ->capture_default_str();
  bool done;
  const int code = vae::parse(app, argc, argv, done);
  if (done) return code;
  return vae::guarded("vae_categorical", [&] {
    if (latents <= 0) throw vae::UsageError("--latents must be > 0 (got " + std::to_string(latents) + ")");
    if (classes < 2) throw vae::UsageError("--classes must be >= 2 (got " + std::to_string(classes) + ")");
    const double nk = double(latents) * double(classes);
    vae::check_model_size((784 * 512 + 512) + (512 * 256 + 256) + (256 * nk + nk) + (nk * 256 + 256) + (256 * 512 + 512) +
                              (512 * 784 + 784),
                          "--latents " + std::to_string(latents) + " and --classes " + std::to_string(classes));
    vae::Estimator e;
    if (estimator == "gumbel-softmax")
      e = hard ? vae::Estimator::straight_through : vae::Estimator::concrete;
    else if (estimator == "score-function")
      e = vae::Estimator::score_function;
    else
      throw vae::UsageError("--estimator must be gumbel-softmax or score-function (got " + estimator + ")");
    if (hard && e == vae::Estimator::score_function) throw vae::UsageError("--hard goes with --estimator gumbel-softmax only");
    reparam::Rng rng(o.seed);
    vae::CategoricalVae model(latents, classes, e, rng);
    return vae::train("vae_categorical", model, o, rng);
  });
}
