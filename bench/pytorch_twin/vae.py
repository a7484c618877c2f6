#!/usr/bin/python3
"""The PyTorch twins of examples/vae/vae_gaussian and vae_categorical: the same models,
initialisation (PyTorch's nn.Linear default is the U(+-1/sqrt(fan_in)) the C++ layers draw), data,
binarization (> 127), batch, optimizer (Adam, lr 1e-3), temperature schedule and test-set
bound, so that the quality and speed of the two can be compared run for run.

  OPENBLAS_NUM_THREADS and OMP_NUM_THREADS are set from --threads before torch is imported:
  Debian's torch multiplies matrices with OpenBLAS, whose threads torch.set_num_threads does not
  limit.

  python3 bench/pytorch_twin/vae.py gaussian --steps 3000 --seed 1 --threads 1 --json
  python3 bench/pytorch_twin/vae.py categorical --steps 3000 --seed 1 --json
"""
import argparse
import gzip
import json
import math
import os
import resource
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("model", choices=["gaussian", "categorical"])
p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
p.add_argument("--steps", type=int, default=3000)
p.add_argument("--batch", type=int, default=100)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--hard", action="store_true")
p.add_argument("--estimator", default="gumbel-softmax", choices=["gumbel-softmax", "score-function"])
p.add_argument("--json", action="store_true")
p.add_argument("--no-eval", action="store_true", help="skip the test-set bound (speed runs)")
a = p.parse_args()

os.environ["OPENBLAS_NUM_THREADS"] = str(a.threads)
os.environ["OMP_NUM_THREADS"] = str(a.threads)
os.environ["MKL_NUM_THREADS"] = str(a.threads)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)


def idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        b = f.read()
    nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def load(split):
    stem = os.path.join(a.data, split + "-images-idx3-ubyte")
    path = stem + ".gz" if os.path.exists(stem + ".gz") else stem
    x = idx(path).reshape(-1, 784)
    return torch.from_numpy((x > 127).astype(np.float32))


train, test = load("train"), load("t10k")


def mlp(sizes):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


N, K = 20, 10
if a.model == "gaussian":
    enc, dec = mlp([784, 400, 40]), mlp([20, 400, 784])
else:
    enc, dec = mlp([784, 512, 256, N * K]), mlp([N * K, 256, 512, 784])
params = list(enc.parameters()) + list(dec.parameters())
opt = torch.optim.Adam(params, lr=a.lr)


def gaussian_neg_elbo(x):
    h = enc(x)
    mu, lv = h[:, :20], h[:, 20:]
    std = torch.exp(0.5 * lv)
    z = mu + std * torch.randn_like(std)
    rec = F.binary_cross_entropy_with_logits(dec(z), x, reduction="none").sum(1)
    kl = 0.5 * (mu.pow(2) + std.pow(2) - 1).sum(1) - torch.log(std).sum(1)
    return rec + kl


def categorical_parts(x):
    logits = enc(x).view(-1, K)
    lq = F.log_softmax(logits, -1)
    kl = (lq.exp() * (lq + math.log(K))).sum(-1).view(-1, N).sum(1)
    return logits, lq, kl


baseline = [None]


def categorical_loss(x, step):
    tau = max(0.5, math.exp(-3e-5 * step))
    logits, lq, kl = categorical_parts(x)
    if a.estimator == "score-function":
        with torch.no_grad():
            idx_ = torch.distributions.Categorical(logits=logits).sample()
            z = F.one_hot(idx_, K).float()
        rec = F.binary_cross_entropy_with_logits(dec(z.view(-1, N * K)), x, reduction="none").sum(1)
        logq = (lq * z).sum(-1).view(-1, N).sum(1)
        cost = (rec + kl).detach()
        b = baseline[0] if baseline[0] is not None else 0.0
        surrogate = ((cost - b) * logq).sum()
        value = cost.sum()
        return (rec + kl).sum() + surrogate, value
    y = torch.distributions.RelaxedOneHotCategorical(torch.tensor(tau), logits=logits).rsample()
    if a.hard:
        hard = F.one_hot(y.argmax(-1), K).float()
        y = hard - y.detach() + y
    rec = F.binary_cross_entropy_with_logits(dec(y.view(-1, N * K)), x, reduction="none").sum(1)
    loss = (rec + kl).sum()
    return loss, loss.detach()


@torch.no_grad()
def test_neg_elbo():
    torch.manual_seed(a.seed + 1000)
    total = 0.0
    for i in range(0, test.shape[0], 1000):
        x = test[i:i + 1000]
        if a.model == "gaussian":
            total += gaussian_neg_elbo(x).sum().item()
        else:
            logits, lq, kl = categorical_parts(x)
            z = F.one_hot(torch.distributions.Categorical(logits=logits).sample(), K).float()
            rec = F.binary_cross_entropy_with_logits(dec(z.view(-1, N * K)), x, reduction="none").sum(1)
            total += (rec + kl).sum().item()
    return total / test.shape[0]


g = torch.Generator().manual_seed(a.seed + 1)
perm, at = torch.randperm(train.shape[0], generator=g), 0
losses, times = [], []
for step in range(1, a.steps + 1):
    t0 = time.perf_counter()
    if at + a.batch > train.shape[0]:
        perm, at = torch.randperm(train.shape[0], generator=g), 0
    x = train[perm[at:at + a.batch]]
    at += a.batch
    opt.zero_grad()
    if a.model == "gaussian":
        loss = gaussian_neg_elbo(x).sum()
        value = loss.detach()
    else:
        loss, value = categorical_loss(x, step)
    (loss / a.batch).backward()
    opt.step()
    v = value.item() / a.batch
    if a.model == "categorical" and a.estimator == "score-function":
        baseline[0] = v if baseline[0] is None else 0.9 * baseline[0] + 0.1 * v
    times.append((time.perf_counter() - t0) * 1e3)
    losses.append(v)

res = {
    "model": "pytorch_" + a.model, "steps": a.steps, "batch": a.batch, "threads": a.threads,
    "step_ms_median": float(np.median(times)), "train_neg_elbo": float(np.mean(losses[-50:])),
    "test_neg_elbo": None if a.no_eval else test_neg_elbo(), "seed": a.seed,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
}
print(json.dumps(res) if a.json else "\n".join(f"{k}: {v}" for k, v in res.items()))
