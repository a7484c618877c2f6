#!/usr/bin/env python3
"""PyTorch (one CPU thread, float32) on the workloads of bench_dist.cpp; prints JSON on stdout:
seconds per step and samples (or logits) per second, forward and backward included.

Run by compare.py; alone: python3 bench/torch_dist.py
"""
import json
import os

# Debian's PyTorch multiplies matrices with OpenBLAS, whose threads torch.set_num_threads does not
# limit: pin them before torch is imported (REPARAM_TORCH_THREADS, default 1).
THREADS = os.environ.get("REPARAM_TORCH_THREADS", "1")
os.environ["OPENBLAS_NUM_THREADS"] = THREADS
os.environ["OMP_NUM_THREADS"] = THREADS

import torch
import torch.nn.functional as F

from torch_tape import timeit

torch.set_num_threads(int(THREADS))
ROWS, COLS = 256, 256


def loc_scale(dist):
    loc = torch.full((ROWS, COLS), 0.25, requires_grad=True)
    scale = torch.full((ROWS, COLS), 1.5, requires_grad=True)

    def step():
        loc.grad = None
        scale.grad = None
        dist(loc, scale).rsample().sum().backward()
    return timeit(step)


def logistic(loc, scale):
    base = torch.distributions.Uniform(torch.zeros_like(loc), torch.ones_like(loc))
    return torch.distributions.TransformedDistribution(
        base, [torch.distributions.SigmoidTransform().inv, torch.distributions.AffineTransform(loc, scale)])


def concrete(rows, k):
    logits = (torch.rand(rows, k) * 2 - 1).requires_grad_()
    w = torch.rand(rows, k) * 2 - 1

    def step():
        logits.grad = None
        (F.gumbel_softmax(logits, tau=0.5) * w).sum().backward()
    return timeit(step)


def main():
    n = ROWS * COLS
    res = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    res["normal_s"] = loc_scale(torch.distributions.Normal)
    res["gumbel_s"] = loc_scale(torch.distributions.Gumbel)
    res["logistic_s"] = loc_scale(logistic)
    res["laplace_s"] = loc_scale(torch.distributions.Laplace)
    res["concrete_6400x10_s"] = concrete(6400, 10)
    res["concrete_64x1000_s"] = concrete(64, 1000)
    res["normal_per_s"] = n / res["normal_s"]
    res["gumbel_per_s"] = n / res["gumbel_s"]
    res["concrete_6400x10_per_s"] = 64000 / res["concrete_6400x10_s"]
    res["concrete_64x1000_per_s"] = 64000 / res["concrete_64x1000_s"]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
