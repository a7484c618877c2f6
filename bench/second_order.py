#!/usr/bin/env python3
"""Second order, measured in one run on this machine: the cost of a Hessian-vector product against
a gradient of the same function (the issue's target: at most 4x), a Fisher-vector product and a
natural-gradient step, for reparam (bench_second_order, Google Benchmark, medians) and for PyTorch
(torch.func or functorch: jvp over grad, the forward-over-reverse PyTorch recommends; and double backward), on
one thread: OPENBLAS_NUM_THREADS and OMP_NUM_THREADS are pinned before torch is imported.

    python3 bench/second_order.py [--build build/release] [--reps 5]
"""
import argparse
import json
import os
import subprocess
import sys
import time

os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"


def run_bench(build, reps):
    exe = os.path.join(build, "bench", "bench_second_order")
    out = subprocess.run([exe, "--benchmark_format=json", "--benchmark_repetitions=%d" % reps,
                          "--benchmark_report_aggregates_only=true"], check=True, capture_output=True, text=True)
    res = {}
    for b in json.loads(out.stdout)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
            res[b["run_name"].replace("BM_", "")] = b["real_time"] * unit
    return res


def median_time(f, reps, min_time=0.3):
    f()
    times = []
    for _ in range(reps):
        n, t0 = 0, time.perf_counter()
        while True:
            f()
            n += 1
            if time.perf_counter() - t0 >= min_time:
                break
        times.append((time.perf_counter() - t0) / n)
    times.sort()
    return times[len(times) // 2]


def torch_figures(reps):
    import torch
    try:
        from torch.func import grad, jvp
    except ImportError:  # PyTorch < 2.0 (Debian 12 ships 1.13): the same transforms in functorch
        from functorch import grad, jvp
    torch.set_num_threads(1)
    torch.manual_seed(0)
    d = torch.float64

    def mlp_params(sizes):
        ps = []
        for i, o in zip(sizes[:-1], sizes[1:]):
            b = 1 / i ** 0.5
            ps += [(torch.rand(i, o, dtype=d) * 2 - 1) * b, (torch.rand(1, o, dtype=d) * 2 - 1) * b]
        return tuple(ps)

    # the regression network: 1-16-16-2 tanh, Normal NLL over 1000 points
    x = torch.rand(1000, 1, dtype=d) * 8 - 4
    y = torch.rand(1000, 1, dtype=d) * 4 - 2
    reg = mlp_params([1, 16, 16, 2])

    def reg_loss(*p):
        h = torch.tanh(x @ p[0] + p[1])
        h = torch.tanh(h @ p[2] + p[3])
        out = h @ p[4] + p[5]
        q = torch.distributions.Normal(out[:, :1], torch.nn.functional.softplus(out[:, 1:]) + 1e-3)
        return -q.log_prob(y).mean()

    # the VAE encoder: 784-400-40 relu, batch 100, KL to N(0, I) plus log1p(z^2) of an rsample
    xe = (torch.rand(100, 784, dtype=d) > 0.5).to(d)
    enc = mlp_params([784, 400, 40])
    eps = torch.randn(100, 20, dtype=d)

    def enc_loss(*p):
        h = torch.relu(xe @ p[0] + p[1]) @ p[2] + p[3]
        loc, scale = h[:, :20], torch.exp(0.5 * h[:, 20:])
        q = torch.distributions.Normal(loc, scale)
        prior = torch.distributions.Normal(torch.zeros_like(loc), torch.ones_like(loc))
        z = loc + scale * eps
        return (torch.distributions.kl_divergence(q, prior).sum() + torch.log1p(z * z).sum()) / 100

    out = {}
    for name, loss, params in [("Regression", reg_loss, reg), ("Encoder", enc_loss, enc)]:
        v = tuple(torch.rand_like(p) for p in params)
        argnums = tuple(range(len(params)))
        g = grad(loss, argnums=argnums)

        def gradient():
            ps = [p.detach().requires_grad_() for p in params]
            loss(*ps).backward()

        def hvp_fwd():
            jvp(lambda *p: g(*p), params, v)

        def hvp_double():
            ps = [p.detach().requires_grad_() for p in params]
            gs = torch.autograd.grad(loss(*ps), ps, create_graph=True)
            torch.autograd.grad(gs, ps, grad_outputs=v)

        out[name + "Gradient"] = median_time(gradient, reps)
        out[name + "Hvp"] = median_time(hvp_fwd, reps)
        out[name + "HvpDoubleBackward"] = median_time(hvp_double, reps)
    return out, torch.__version__


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    r = run_bench(a.build, a.reps)
    try:
        t, version = torch_figures(a.reps)
    except ImportError:
        t, version = {}, None
    print("one thread, float64, medians of %d repetitions%s" % (a.reps, "; PyTorch %s" % version if version else ""))
    print("| network | reparam gradient | reparam H v | H v / gradient | PyTorch gradient | PyTorch H v (jvp of grad) | (double backward) | PyTorch H v / ours |")
    print("|---|---|---|---|---|---|---|---|")
    for net, label in [("Regression", "regression 1-16-16-2, 1000 points"), ("Encoder", "VAE encoder 784-400-40, batch 100")]:
        g, h = r[net + "Gradient"], r[net + "Hvp"]
        row = "| %s | %.0f us | %.0f us | **%.2fx** |" % (label, g * 1e6, h * 1e6, h / g)
        if t:
            row += " %.0f us | %.0f us | %.0f us | %.2fx |" % (t[net + "Gradient"] * 1e6, t[net + "Hvp"] * 1e6,
                                                           t[net + "HvpDoubleBackward"] * 1e6, t[net + "Hvp"] / h)
        print(row)
    print("\nFisher-vector product (regression network): %.0f us; natural-gradient step (20 CG products, line search): %.1f ms"
          % (r["RegressionFisherVectorProduct"] * 1e6, r["RegressionNaturalGradientStep"] * 1e3))
    worst = max(r["RegressionHvp"] / r["RegressionGradient"], r["EncoderHvp"] / r["EncoderGradient"])
    print("target: H v at most 4x a gradient: %s (worst %.2fx)" % ("met" if worst <= 4 else "NOT met", worst))


if __name__ == "__main__":
    sys.exit(main())
