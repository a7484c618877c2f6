#!/usr/bin/env python3
"""The speed targets, measured in one run on this machine.

Runs bench_tape and bench_dist (Google Benchmark; medians of repetitions) and their PyTorch
twins torch_tape.py and torch_dist.py (one thread: OPENBLAS_NUM_THREADS and OMP_NUM_THREADS are
pinned before torch is imported) and prints, for each workload, reparam against the floor (the
same arithmetic hand-written in plain Eigen) and against PyTorch; then the all-cores rows, where
reparam runs one tape per core (data-parallel) and PyTorch uses every core.

    python3 bench/compare.py [--build build/release] [--check]

--check exits 1 when a target is missed (for humans; CI never times anything).
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_bench(build, reps, name="bench_tape"):
    exe = os.path.join(build, "bench", name)
    out = subprocess.run([exe, "--benchmark_format=json", "--benchmark_repetitions=%d" % reps,
                          "--benchmark_report_aggregates_only=true"], check=True, capture_output=True, text=True)
    data = json.loads(out.stdout)
    res = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        res[b["run_name"].replace("/real_time", "")] = b["real_time"] * unit
    return res, data["context"]


def run_torch(script="torch_tape.py", threads=1):
    env = dict(os.environ, REPARAM_TORCH_THREADS=str(threads))
    try:
        out = subprocess.run([sys.executable, os.path.join(HERE, script)], check=True, capture_output=True,
                             text=True, cwd=HERE, env=env)
        return json.loads(out.stdout)
    except (subprocess.CalledProcessError, FileNotFoundError, json.JSONDecodeError) as e:
        print("PyTorch not measured (%s); install python3-torch" % e, file=sys.stderr)
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build", "release"))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()

    r, ctx = run_bench(args.build, args.reps)
    d, _ = run_bench(args.build, args.reps, "bench_dist")
    r.update(d)
    t = run_torch()
    td = run_torch("torch_dist.py")
    cores = os.cpu_count() or 1
    tall = run_torch(threads=cores)
    chain_ops = 10000
    rows = [
        ("elementwise 1000x1000 f64 fwd+bwd", r["BM_Elementwise_Tape"], r["BM_Elementwise_Floor"], 1.3,
         t and t["elementwise_s"], "ms", 1e3),
        ("MLP 784-256-256-10 b128 f32 fwd+bwd", r["BM_MLP_Tape"], r["BM_MLP_Floor"], 1.1, t and t["mlp_s"], "us", 1e6),
        ("scalar chain, per op (1x1 nodes)", r["BM_ScalarChain_Tape"] / chain_ops, r["BM_ScalarChain_Floor"] / chain_ops,
         None, t and t["chain_s_per_op"], "ns", 1e9),
    ]
    print("machine: %s x %d cores @ %s MHz; PyTorch %s on %s thread(s)" % (
        ctx.get("host_name", "?"), ctx.get("num_cpus", 0), ctx.get("mhz_per_cpu", "?"),
        t["torch"] if t else "-", t["threads"] if t else "-"))
    hdr = "%-38s %12s %12s %8s %8s %12s %10s" % ("workload", "reparam", "floor", "ratio", "target", "PyTorch", "vs torch")
    print(hdr)
    print("-" * len(hdr))
    ok = True
    for name, tape, floor, target, torch_s, unit, scale in rows:
        ratio = tape / floor
        tgt = "<=%.1fx" % target if target else ""
        if target and ratio > target:
            ok = False
        torch_txt = "%.1f %s" % (torch_s * scale, unit) if torch_s else "-"
        vs = "%.1fx" % (torch_s / tape) if torch_s else "-"
        print("%-38s %9.1f %s %9.1f %s %7.2fx %8s %12s %10s" % (name, tape * scale, unit, floor * scale, unit, ratio, tgt,
                                                             torch_txt, vs))
    # All cores, both sides: reparam data-parallel (one tape per core, bench_tape's *_AllCores),
    # PyTorch with every core for its own threads and OpenBLAS's.
    print()
    hdr = "%-38s %12s %12s %12s %10s" % ("all %d cores" % cores, "reparam", "1 thread", "PyTorch", "vs torch")
    print(hdr)
    print("-" * len(hdr))
    for name, key, one, tkey, unit, scale in [
            ("elementwise 1000x1000 f64 fwd+bwd", "BM_Elementwise_Tape_AllCores", "BM_Elementwise_Tape", "elementwise_s", "ms", 1e3),
            ("MLP 784-256-256-10 b128 f32 fwd+bwd", "BM_MLP_Tape_AllCores", "BM_MLP_Tape", "mlp_s", "us", 1e6)]:
        tt = tall and tall[tkey]
        print("%-38s %9.1f %s %9.1f %s %12s %10s" % (name, r[key] * scale, unit, r[one] * scale, unit,
                                                    "%.1f %s" % (tt * scale, unit) if tt else "-",
                                                    "%.1fx" % (tt / r[key]) if tt else "-"))
    per_op_ns = r["BM_ScalarChain_Tape"] / chain_ops * 1e9
    print("scalar chain target: <= 40 ns per operation: %.1f ns" % per_op_ns)
    if per_op_ns > 40:
        ok = False
    # Samplers: forward + backward in float, PyTorch must be beaten 4x.
    n = 256 * 256
    dist_rows = [
        ("Normal.rsample 256x256 f32", r["BM_Normal_Tape"], r["BM_Normal_Floor"], td and td["normal_s"], n),
        ("Gumbel.rsample 256x256 f32", r["BM_Gumbel_Tape"], r["BM_Gumbel_Floor"], td and td["gumbel_s"], n),
        ("Logistic.rsample 256x256 f32", r["BM_Logistic_Tape"], r["BM_Logistic_Floor"], td and td["logistic_s"], n),
        ("Laplace.rsample 256x256 f32", r["BM_Laplace_Tape"], r["BM_Laplace_Floor"], td and td["laplace_s"], n),
        ("gumbel_softmax 6400x10 f32", r["BM_Concrete_Tape/6400/10"], r["BM_Concrete_Floor/6400/10"],
         td and td["concrete_6400x10_s"], 64000),
        ("gumbel_softmax 64x1000 f32", r["BM_Concrete_Tape/64/1000"], r["BM_Concrete_Floor/64/1000"],
         td and td["concrete_64x1000_s"], 64000),
    ]
    print()
    hdr = "%-30s %14s %14s %8s %14s %10s %8s" % ("sampler fwd+bwd", "reparam M/s", "floor M/s", "ratio", "PyTorch M/s",
                                                 "vs torch", "target")
    print(hdr)
    print("-" * len(hdr))
    for name, tape, floor, torch_s, items in dist_rows:
        vs = torch_s / tape if torch_s else None
        if vs is not None and vs < 4:
            ok = False
        print("%-30s %14.1f %14.1f %7.2fx %14s %10s %8s" % (
            name, items / tape / 1e6, items / floor / 1e6, tape / floor,
            "%.1f" % (items / torch_s / 1e6) if torch_s else "-", "%.1fx" % vs if vs else "-", ">=4x"))
    print("raw generators: %.0f M normal floats/s, %.0f M uniform floats/s" % (
        n / r["BM_Rng_NormalFloat"] / 1e6, n / r["BM_Rng_UniformFloat"] / 1e6))
    print("all targets met" if ok else "A TARGET WAS MISSED")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
