// vae_gaussian: the variational autoencoder of Kingma & Welling (2014) on binarized
// (Fashion-)MNIST, trained from C++ on every core.
//
//   encoder  784 -> 400 (relu) -> 2 x 20: loc and log-variance of q(z | x) = Normal(loc, e^(lv/2))
//   z        q.reparameterize(eps): loc + scale * eps, the pathwise (reparameterized) sample
//   decoder  20 -> 400 (relu) -> 784 logits of Bernoulli pixels
//   loss     sum over pixels of bce_with_logits + KL(q || N(0, I)) in closed form, per image
//
//   vae_gaussian --steps 3000 --out pictures     (see --help)
#include "train.hpp"

namespace vae {

struct Gaussian {
  const char* name = "vae_gaussian";
  Index latent, noise_cols;
  reparam::nn::Mlp<T> encoder, decoder;

  Gaussian(Index in, Index hidden, Index latent_, reparam::Rng& rng)
      : latent(latent_), noise_cols(latent_),
        encoder({in, hidden, 2 * latent_}, reparam::nn::Activation::relu, rng),
        decoder({latent_, hidden, in}, reparam::nn::Activation::relu, rng) {}

  void collect(reparam::nn::ParameterList<T>& p) {
    encoder.collect(p, "encoder");
    decoder.collect(p, "decoder");
  }
  void collect_state(reparam::nn::StateList<T>&) {}  // nothing besides the parameters
  void draw_noise(reparam::Rng& rng, Mat& eps) const { reparam::fill_normal(rng, eps); }
  void after_step(T) {}

  /// q(z | x) from the encoder.
  reparam::Normal<T> posterior(Var x) {
    const Var h = encoder(x);
    return reparam::Normal<T>(slice_cols(h, 0, latent), exp(T(0.5) * slice_cols(h, latent, latent)));
  }
  /// -log p(x | z) - log p(z) + log q(z | x) would be the single-sample bound; with the KL in
  /// closed form: sum of pixel BCEs + KL(q || N(0, I)), per row.
  template <class U>
  Var neg_elbo(Tape& tape, Var x, const Eigen::DenseBase<U>& eps) {
    const reparam::Normal<T> q = posterior(x);
    const Var z = q.reparameterize(eps);
    const reparam::Normal<T> prior(tape.constant(Mat::Zero(1, latent)), T(1));
    return sum_rows(bce_with_logits(decoder(z), x)) + sum_rows(kl_divergence(q, prior));
  }
  template <class U>
  Var train_loss(Tape& tape, Var x, const Eigen::DenseBase<U>& eps, long, T& value) {
    const Var l = sum(neg_elbo(tape, x, eps));
    value = l.item();
    return l;
  }
  template <class U>
  Var test_neg_elbo(Tape& tape, Var x, const Eigen::DenseBase<U>& eps) {
    return neg_elbo(tape, x, eps);
  }
  /// log p(x | z) + log p(z) - log q(z | x) with z ~ q.
  template <class U>
  Var log_weight(Tape& tape, Var x, const Eigen::DenseBase<U>& eps) {
    const reparam::Normal<T> q = posterior(x);
    const Var z = q.reparameterize(eps);
    const reparam::Normal<T> prior(tape.constant(Mat::Zero(1, latent)), T(1));
    return sum_rows(prior.log_prob(z) - q.log_prob(z)) - sum_rows(bce_with_logits(decoder(z), x));
  }

  void pictures(Tape& tape, const Data& d, const Options& o, reparam::Rng& rng) {
    // test images (odd rows) above their reconstructions from the posterior mean (even rows)
    const Index n = 32, cols = 16;
    Mat x = d.test.images.topRows(n);
    const Mat recon = sigmoid(decoder(posterior(tape.constant(x)).mean())).value();
    write_png(o.out + "/reconstructions.png", pairs_grid(x, recon, cols));
    // decoded draws from the prior N(0, I)
    const Mat z = reparam::normal_matrix<T>(rng, 64, latent);
    write_png(o.out + "/samples.png", image_grid(sigmoid(decoder(tape.constant(z))).value(), 8));
    if (latent == 2) {  // the latent plane, through the normal quantiles 0.05 .. 0.95
      const int side = 16;
      Mat zz(side * side, 2);
      for (int i = 0; i < side; ++i)
        for (int j = 0; j < side; ++j) {
          const double pi = 0.05 + 0.9 * i / (side - 1), pj = 0.05 + 0.9 * j / (side - 1);
          zz(i * side + j, 0) = T(reparam::detail::ndtri(pj));
          zz(i * side + j, 1) = T(reparam::detail::ndtri(1 - pi));
        }
      write_png(o.out + "/latent_traversal.png", image_grid(sigmoid(decoder(tape.constant(zz))).value(), side, 1));
    }
  }
};

}  // namespace vae

int main(int argc, char** argv) {
  CLI::App app{"vae_gaussian: a Gaussian VAE (Kingma & Welling) on binarized Fashion-MNIST, trained with rsample", "vae_gaussian"};
  vae::Options o;
  vae::add_common_flags(app, o, 10000);
  reparam::Index hidden = 400, latent = 20;
  app.add_option("--hidden", hidden, "hidden units of the encoder and the decoder")->capture_default_str()->transform(vae::decimal(true));
  app.add_option("--latent", latent, "latent dimensions (2 also draws the latent plane)")->capture_default_str()->transform(vae::decimal(true));
  bool done;
  const int code = vae::parse(app, argc, argv, done);
  if (done) return code;
  return vae::guarded("vae_gaussian", [&] {
    if (hidden <= 0) throw vae::UsageError("--hidden must be > 0 (got " + std::to_string(hidden) + ")");
    if (latent <= 0) throw vae::UsageError("--latent must be > 0 (got " + std::to_string(latent) + ")");
    const double h = double(hidden), l = double(latent);
    vae::check_model_size((784 * h + h) + (h * 2 * l + 2 * l) + (l * h + h) + (h * 784 + 784),
                          "--hidden " + std::to_string(hidden) + " and --latent " + std::to_string(latent));
    reparam::Rng rng(o.seed);
    vae::Gaussian model(784, hidden, latent, rng);
    return vae::train("vae_gaussian", model, o, rng);
  });
}
