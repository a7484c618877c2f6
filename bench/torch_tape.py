#!/usr/bin/env python3
"""PyTorch (one CPU thread) on the workloads of bench_tape.cpp; prints JSON on stdout.

Run by compare.py; alone: python3 bench/torch_tape.py
"""
import json
import os

# Debian's PyTorch multiplies matrices with OpenBLAS, whose threads torch.set_num_threads does not
# limit: pin them before torch is imported (REPARAM_TORCH_THREADS, default 1).
THREADS = os.environ.get("REPARAM_TORCH_THREADS", "1")
os.environ["OPENBLAS_NUM_THREADS"] = THREADS
os.environ["OMP_NUM_THREADS"] = THREADS
import statistics
import time

import torch

torch.set_num_threads(int(THREADS))


def timeit(fn, min_time=1.0, reps=5):
    fn()  # warm-up
    n, t = 1, 0.0
    while True:  # iterations per repetition so that one repetition lasts ~ min_time / reps
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t >= min_time / reps:
            break
        n *= 2
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n)
    return statistics.median(samples)


def elementwise():
    g = torch.Generator().manual_seed(1)
    a = (torch.rand(1000, 1000, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()
    b = (torch.rand(1000, 1000, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()

    def step():
        a.grad = None
        b.grad = None
        loss = (torch.tanh(a) * b + torch.exp(-a)).sum()
        loss.backward()

    return timeit(step)


def mlp():
    g = torch.Generator().manual_seed(2)
    B = 128

    def param(*shape):
        return ((torch.rand(*shape, generator=g) * 2 - 1) * 0.05).requires_grad_()

    w1, b1, w2, b2, w3, b3 = param(784, 256), param(256), param(256, 256), param(256), param(256, 10), param(10)
    x = torch.rand(B, 784, generator=g)
    y = torch.zeros(B, 10)
    y[torch.arange(B), (torch.arange(B) * 7) % 10] = 1
    params = [w1, b1, w2, b2, w3, b3]

    def step():
        for p in params:
            p.grad = None
        h1 = torch.relu(x @ w1 + b1)
        h2 = torch.relu(h1 @ w2 + b2)
        logits = h2 @ w3 + b3
        loss = -(torch.log_softmax(logits, dim=1) * y).sum() / B
        loss.backward()

    return timeit(step)


def chain():
    w = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)

    def step():
        w.grad = None
        y = w
        for _ in range(10000 // 4):
            y = y * w
            y = y + 0.1
            y = torch.tanh(y)
            y = y * y
        y.backward()

    return timeit(step, min_time=2.0, reps=3) / 10000


if __name__ == "__main__":
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "elementwise_s": elementwise(),
        "mlp_s": mlp(),
        "chain_s_per_op": chain(),
    }))
