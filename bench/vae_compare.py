#!/usr/bin/python3
"""One run that times a VAE training step every way the issue asks, on this machine:
bench_vae (reparam on 1 thread and on every core; the floor: the products alone with reparam's
GEMM, with Eigen's packed GEMM and with OpenBLAS's), bench_vae_libtorch (LibTorch's C++ frontend, when built) and the PyTorch twin
(bench/pytorch_twin/vae.py) on 1 thread and on every core; then the programs' own --json figures
and peak memory against the twin's; then `--rounds` rounds in which each program runs right before
its twin, both timed by the median of their per-step times, and the median of the rounds' ratios. OPENBLAS_NUM_THREADS and OMP_NUM_THREADS are set for every
child before it starts (Debian's torch ignores torch.set_num_threads for OpenBLAS).

  python3 bench/vae_compare.py --build build/release
"""
import argparse
import json
import os
import subprocess
import sys

p = argparse.ArgumentParser()
p.add_argument("--build", default="build/release")
p.add_argument("--steps", type=int, default=400, help="steps of the twins and programs")
p.add_argument("--rounds", type=int, default=5,
               help="rounds of the programs against the twins, each program run right beside its twin")
a = p.parse_args()
here = os.path.dirname(os.path.abspath(__file__))
cores = os.cpu_count() or 1


# bench_vae_blas and bench_vae_libtorch are not in `all`: build them (when configured) first.
for target in ("bench_vae", "bench_vae_blas", "bench_vae_libtorch"):
    subprocess.run(["cmake", "--build", a.build, "--target", target], capture_output=True)


def env(threads):
    e = dict(os.environ)
    e["OPENBLAS_NUM_THREADS"] = e["OMP_NUM_THREADS"] = e["MKL_NUM_THREADS"] = str(threads)
    return e


def gbench(binary, threads, extra=()):
    # Repetitions in random order (Google Benchmark's random interleaving): the floor, the bound
    # and the steps each run at nine moments spread over the whole run, so a burst of load on a
    # shared host falls on all of them alike; the median of each is reported, its minimum kept.
    out = subprocess.run([binary, "--benchmark_format=json", "--benchmark_repetitions=9", "--benchmark_min_time=0.2",
                          "--benchmark_enable_random_interleaving=true", *extra],
                         check=True, capture_output=True, text=True, env=env(threads)).stdout
    res, runs = {}, {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("run_type") == "iteration":
            runs.setdefault(b["run_name"], []).append(b["real_time"])  # ms
    for name, v in runs.items():
        v = sorted(v)
        res[name] = v[len(v) // 2]
        res["fastest " + name] = v[0]
    return res


def twin(model, threads):
    out = subprocess.run([sys.executable, os.path.join(here, "pytorch_twin", "vae.py"), model, "--steps", str(a.steps),
                          "--threads", str(threads), "--no-eval", "--json"],
                         check=True, capture_output=True, text=True, env=env(threads)).stdout
    return json.loads(out.strip().splitlines()[-1])


def program(model, threads):
    # the program's own timing: like the twin's, the median of its per-step times (data included)
    out = subprocess.run([os.path.join(a.build, "examples", "vae_" + model), "--steps", str(a.steps), "--threads",
                          str(threads), "--out", "/tmp/reparam_vae_compare", "--json"],
                         check=True, capture_output=True, text=True, env=env(1)).stdout
    return json.loads(out.strip().splitlines()[-1])


ours = gbench(os.path.join(a.build, "bench", "bench_vae"), 1, ["--benchmark_filter=-Pair"])


def paired(binary, reps=3):
    # bench_vae's paired rows (BM_Pair*): two things alternate in runs of 8 steps, each row's
    # figure the median of the rounds' ratios; here its value in each of `reps` repetitions.
    out = subprocess.run([binary, "--benchmark_format=json", "--benchmark_filter=Pair", f"--benchmark_repetitions={reps}",
                          "--benchmark_min_time=2"], check=True, capture_output=True, text=True, env=env(1)).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("run_type") == "iteration":
            for key in ("step/floor", "speedup"):
                if key in b:
                    res.setdefault(b["run_name"], []).append(b[key])
    return res


pairs = paired(os.path.join(a.build, "bench", "bench_vae"))
blas_bin = os.path.join(a.build, "bench", "bench_vae_blas")
blas = gbench(blas_bin, 1, ["--benchmark_filter=^BM_Step"]) if os.path.exists(blas_bin) else {}
for k, v in blas.items():
    ours["BLAS " + k] = v
lt = {}
ltb = os.path.join(a.build, "bench", "bench_vae_libtorch")
if os.path.exists(ltb):
    lt[1] = list(gbench(ltb, 1, ["--threads", "1"]).values())[0]
    lt[cores] = list(gbench(ltb, cores, ["--threads", str(cores)]).values())[0]
tw = {(m, t): twin(m, t) for m in ("gaussian", "categorical") for t in (1, cores)}

print(f"machine: {cores} cores; times are medians of one training step (batch 100, float); benchmark repetitions interleaved\n")
print(f"{'':34}{'gaussian':>12}{'categorical':>14}")
rows = [("floor: products, reparam's GEMM", "BM_Floor_Eigen/categorical:0", "BM_Floor_Eigen/categorical:1"),
        ("floor: products, Eigen packed GEMM", "BM_Floor_EigenPacked/categorical:0", "BM_Floor_EigenPacked/categorical:1"),
        ("floor: products, OpenBLAS GEMM", "BM_Floor_OpenBLAS/categorical:0", "BM_Floor_OpenBLAS/categorical:1"),
        ("floor split over all cores, Eigen", "BM_FloorSplit_Eigen/categorical:0", "BM_FloorSplit_Eigen/categorical:1"),
        ("products, then Adam, Eigen", "BM_FloorAdam_Eigen/categorical:0", "BM_FloorAdam_Eigen/categorical:1"),
        ("products, then Adam, OpenBLAS", "BM_FloorAdam_OpenBLAS/categorical:0", "BM_FloorAdam_OpenBLAS/categorical:1"),
        ("reparam (Eigen GEMM), 1 thread", "BM_Step<Gaussian>/threads:1/real_time", "BM_Step<Categorical>/threads:1/real_time"),
        ("  the same, gradients stored", "BM_StepStored<Gaussian>/threads:1/real_time", "BM_StepStored<Categorical>/threads:1/real_time"),
        ("reparam (Eigen GEMM), all cores", "BM_Step<Gaussian>/threads:0/real_time", "BM_Step<Categorical>/threads:0/real_time"),
        ("reparam (OpenBLAS), 1 thread", "BLAS BM_Step<Gaussian>/threads:1/real_time", "BLAS BM_Step<Categorical>/threads:1/real_time"),
        ("reparam (OpenBLAS), all cores", "BLAS BM_Step<Gaussian>/threads:0/real_time", "BLAS BM_Step<Categorical>/threads:0/real_time")]


def get(name):
    for k, v in ours.items():
        if k.startswith(name):
            return v
    return None


for label, g, c in rows:
    vg, vc = get(g), get(c)
    if vg is None:
        continue
    print(f"{label:36}{vg:>9.3f} ms{vc:>11.3f} ms")
for t in (1, cores):
    print(f"{'PyTorch twin, ' + str(t) + ' thread(s)':34}{tw[('gaussian', t)]['step_ms_median']:>9.3f} ms"
          f"{tw[('categorical', t)]['step_ms_median']:>11.3f} ms")
for t, v in lt.items():
    print(f"{'LibTorch C++, ' + str(t) + ' thread(s)':34}{v:>9.3f} ms")

print("\nratios (issue targets in brackets)")
def best(*names):
    vals = [v for v in (get(n) for n in names) if v is not None]
    return min(vals) if vals else None


floor = best("BM_Floor_OpenBLAS/categorical:0", "BM_Floor_Eigen/categorical:0", "BM_Floor_EigenPacked/categorical:0")
floor_c = best("BM_Floor_OpenBLAS/categorical:1", "BM_Floor_Eigen/categorical:1", "BM_Floor_EigenPacked/categorical:1")
# The programs' GEMM: chosen at configure time (cmake/ProbeGemm.cmake), recorded in the cache.
choice = "eigen"
try:
    with open(os.path.join(a.build, "CMakeCache.txt")) as f:
        for line in f:
            if line.startswith("REPARAM_GEMM_CHOICE:"):
                choice = line.strip().split("=", 1)[1]
except OSError:
    pass
pre = "BLAS " if choice == "openblas" and blas else ""
g1, c1 = get(pre + "BM_Step<Gaussian>/threads:1"), get(pre + "BM_Step<Categorical>/threads:1")
ga, ca = get(pre + "BM_Step<Gaussian>/threads:0"), get(pre + "BM_Step<Categorical>/threads:0")
print("(reparam rows below: " + ("the OpenBLAS backend" if pre else "Eigen's GEMM") +
      ", as the programs are built here: REPARAM_GEMM_CHOICE=" + choice + ")")
print(f"gaussian 1 thread / best floor:            {g1 / floor:.2f}x  [<= 1.1]")
fl = best("fastest BM_Floor_OpenBLAS/categorical:0", "fastest BM_Floor_Eigen/categorical:0",
          "fastest BM_Floor_EigenPacked/categorical:0")
print(f"  the same from the fastest repetitions:   {get(pre + 'fastest BM_Step<Gaussian>/threads:1') / fl:.2f}x")
bound_g = best("BM_FloorAdam_OpenBLAS/categorical:0", "BM_FloorAdam_Eigen/categorical:0")
bound_c = best("BM_FloorAdam_OpenBLAS/categorical:1", "BM_FloorAdam_Eigen/categorical:1")
if bound_g is not None:
    # The products with their gradients stored, then Adam's update from them: what any step that
    # keeps its gradients (clipping, more than one thread) must at least do. The one-thread step
    # updates inside the sweep instead (Adam.stream_from) and can go below it.
    print(f"  products then Adam / best floor:         {bound_g / floor:.2f}x gaussian, {bound_c / floor_c:.2f}x categorical")
    print(f"  1 thread / products then Adam:           {g1 / bound_g:.2f}x gaussian, {c1 / bound_c:.2f}x categorical")
s1, sc1 = get(pre + "BM_StepStored<Gaussian>/threads:1"), get(pre + "BM_StepStored<Categorical>/threads:1")
if s1 is not None:
    print(f"  Adam in the sweep vs gradients stored:   {g1 / s1:.2f}x gaussian, {c1 / sc1:.2f}x categorical")
print(f"categorical 1 thread / best floor:         {c1 / floor_c:.2f}x")
print(f"gaussian 1 thread / twin 1 thread:         {g1 / tw[('gaussian', 1)]['step_ms_median']:.2f}x  [<= 0.6]")
print(f"categorical 1 thread / twin 1 thread:      {c1 / tw[('categorical', 1)]['step_ms_median']:.2f}x  [<= 0.6]")
best_g = min(tw[('gaussian', t)]['step_ms_median'] for t in (1, cores))
best_c = min(tw[('categorical', t)]['step_ms_median'] for t in (1, cores))
print(f"gaussian all cores / twin's best:          {ga / best_g:.2f}x  [<= 0.5]")
print(f"categorical all cores / twin's best:       {ca / best_c:.2f}x  [<= 0.5]")
print(f"gaussian speed-up, all cores vs 1 thread:  {g1 / ga:.2f}x  [>= 1.7 on 2 cores]")
print(f"categorical speed-up:                      {c1 / ca:.2f}x  [>= 1.7 on 2 cores]")
fs, fsc = get("BM_FloorSplit_Eigen/categorical:0"), get("BM_FloorSplit_Eigen/categorical:1")
if fs is not None:
    # Each core the products of its rows of the batch with private copies of everything: the
    # speed-up no data-parallel step can exceed on this machine (smaller products run slower per row).
    fe, fec = get("BM_Floor_Eigen/categorical:0"), get("BM_Floor_Eigen/categorical:1")
    print(f"  bound: the floor split over the cores:   {fe / fs:.2f}x gaussian, {fec / fsc:.2f}x categorical")
if lt:
    print(f"gaussian 1 thread / LibTorch 1 thread:     {g1 / lt[1]:.2f}x")

print("\npaired: two things alternating in runs of 8 steps, each figure the median of the rounds' ratios,\n"
      "so both sides see the host in the same moment (3 repetitions of 2 s: median, then all three)")
for label, name in (("gaussian 1 thread / floor (reparam's GEMM)", "BM_PairStepFloor<Gaussian>"),
                    ("categorical 1 thread / floor", "BM_PairStepFloor<Categorical>"),
                    ("gaussian speed-up, all cores / 1", "BM_PairSpeedup<Gaussian>"),
                    ("categorical speed-up", "BM_PairSpeedup<Categorical>"),
                    ("  bound: floor split, gaussian", "BM_PairFloorSplit/categorical:0"),
                    ("  bound: floor split, categorical", "BM_PairFloorSplit/categorical:1")):
    v = next((x for k, x in pairs.items() if k.startswith(name)), None)
    if v:
        print(f"{label:43}{sorted(v)[len(v) // 2]:.3f}x  (" + ", ".join(f"{x:.3f}" for x in v) + ")")

print("\nthe programs (--json, all cores) and peak resident memory against the twins")
for m in ("gaussian", "categorical"):
    r = program(m, 0)
    t = tw[(m, cores)]
    evict = {True: "; shared lines evicted", False: "; shared lines not evicted"}.get(r.get("evict_shared"), "")
    print(f"vae_{m}: step_ms_median {r['step_ms_median']:.3f} on {r['threads']} threads{evict} (the trial's choice); "
          f"peak RSS {r['peak_rss_mb']:.0f} MB (twin {t['peak_rss_mb']:.0f} MB)")

# The programs against the twins with one statistic on both sides: each side's --json figure is
# the median of its own per-step times over the same loop (batch gathered, step, loss read back),
# where the Google Benchmark rows above are medians of repetition means, which a host's bursts
# raise. Each program runs right before its twin, round after round, so both meet the same spell of
# the host; the ratio of each round is kept and their median reported.
print(f"\nthe programs against the twins, both --json step medians, {a.rounds} rounds each run beside its twin")
times = {}  # (model, threads) -> [(ours, twin)] per round
for r in range(a.rounds):
    line = []
    for m in ("gaussian", "categorical"):
        for t in (1, cores):
            run = program(m, t)
            ours_ms = run["step_ms_median"]
            twin_ms = twin(m, t)["step_ms_median"]
            times.setdefault((m, t), []).append((ours_ms, twin_ms))
            evict = {True: " (evict)", False: " (no evict)"}.get(run.get("evict_shared"), "")
            line.append(f"{m} {t}t {ours_ms:.3f}/{twin_ms:.3f}{evict}")
    print(f"round {r + 1} (ours/twin): " + ";  ".join(line) + " ms")


def med(v):
    v = sorted(v)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


for m in ("gaussian", "categorical"):
    one = [o / w for o, w in times[(m, 1)]]
    print(f"{m:12} program 1 thread / twin 1 thread:    median {med(one):.2f}x  [<= 0.6]  rounds " +
          " ".join(f"{x:.2f}" for x in one))
for m in ("gaussian", "categorical"):
    # all cores against the twin's best configuration in the same round
    allc = [times[(m, cores)][i][0] / min(times[(m, 1)][i][1], times[(m, cores)][i][1]) for i in range(a.rounds)]
    print(f"{m:12} program all cores / twin's best:     median {med(allc):.2f}x  [<= 0.5]  rounds " +
          " ".join(f"{x:.2f}" for x in allc))
for m in ("gaussian", "categorical"):
    sp = [times[(m, 1)][i][0] / times[(m, cores)][i][0] for i in range(a.rounds)]
    print(f"{m:12} program speed-up, all cores / 1:     median {med(sp):.2f}x  [>= 1.7 on 2 cores]  rounds " +
          " ".join(f"{x:.2f}" for x in sp))
