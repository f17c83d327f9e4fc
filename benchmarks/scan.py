"""Selective scan on CPU: seqprob ``cpu`` vs mambapy's ``pscan`` vs the sequential reference.

    python benchmarks/scan.py            # both shapes, ~15 minutes on 2 cores
    python benchmarks/scan.py --quick    # first shape only, reference forward+backward skipped
    python benchmarks/scan.py --quick --threads 2,1

seqprob's cpu backend runs twice: on ``.mT`` views of (batch, length, dim) memory (``[B L D]``,
the Mamba block's layout and mambapy's own; the channel kernels) and on contiguous
(batch, dim, length) tensors (``[B D L]``, mamba_ssm's layout; the row kernels).
Every (shape, implementation, mode) runs in a fresh subprocess with the threads of
``--threads`` (default 2; torch's setting, which the numba kernels follow): inputs are built, a tiny call warms up (numba
compilation is cached), then the first timed call also measures peak memory as the rise of the process's peak RSS (VmHWM, reset
through /proc/self/clear_refs) over its RSS before the call. RSS sees every allocation, torch's
included (tracemalloc would not); a fresh process and a fixed glibc mmap threshold keep
allocator caches out of the figure. Times are medians over the repeats, wall clock and process
CPU time (all threads; less sensitive to other jobs on a shared machine). mambapy's selective scan is built the way
its Mamba block builds it (``seqprob.kernels.peers``): deltaA = exp(delta A), BX = delta B x,
hs = pscan(deltaA, BX), y = hs @ C + D x, on inputs in its (batch, length, dim) layout. The sequential reference
forward+backward takes minutes: it runs once at the first shape, and at the second shape on
the first 512 steps, scaled by length (marked "extrapolated"). A correctness check in the same
run compares outputs and gradients of ``cpu`` with mambapy and the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))                 # this checkout

SHAPES = ((2, 1024, 768, 16), (1, 4096, 1536, 16))          # (batch, length, dim, N)
IMPLS = ("seqprob cpu [B L D]", "seqprob cpu [B D L]", "mambapy pscan", "reference")
OURS = IMPLS[:2]
REF_FB_LENGTH = 512                                          # reference fwd+bwd at shape 2


def _inputs(batch, length, dim, nstate, seed=0):
    import torch
    g = torch.Generator().manual_seed(seed)
    return dict(u=torch.randn(batch, dim, length, generator=g),
                delta=torch.rand(batch, dim, length, generator=g) * 0.1 + 0.001,
                A=-torch.rand(dim, nstate, generator=g) * 4 - 0.1,
                B=torch.randn(batch, nstate, length, generator=g),
                C=torch.randn(batch, nstate, length, generator=g),
                D=torch.randn(dim, generator=g))


def _mambapy_fn(kw):
    """mambapy's selective scan on (batch, length, dim) copies of the inputs."""
    from seqprob.kernels.peers import mambapy_selective_scan
    x, delta = kw["u"].transpose(1, 2).contiguous(), kw["delta"].transpose(1, 2).contiguous()
    B, C = kw["B"].transpose(1, 2).contiguous(), kw["C"].transpose(1, 2).contiguous()
    leaves = dict(u=x, delta=delta, A=kw["A"].clone(), B=B, C=C, D=kw["D"].clone())
    def run(u, delta, A, B, C, D):
        return mambapy_selective_scan(u, delta, A, B, C, D).transpose(1, 2)   # (B D L)
    return run, leaves


def _seqprob_fn(kw, backend):
    from seqprob.core.scan import selective_scan
    def run(u, delta, A, B, C, D):
        return selective_scan(u, delta, A, B, C, D, backend=backend)
    return run, kw


def _mamba_layout(kw):
    """u, delta, B, C as ``.mT`` views of (batch, length, ...) memory, as the Mamba block
    passes them (and as mambapy holds them): the channel kernels' layout."""
    return {k: v.mT.contiguous().mT if v.dim() == 3 else v for k, v in kw.items()}


def _make(impl, kw):
    if impl == "mambapy pscan":
        return _mambapy_fn(kw)
    if impl == "seqprob cpu [B L D]":
        return _seqprob_fn(_mamba_layout(kw), "cpu")
    return _seqprob_fn(kw, "cpu" if impl == "seqprob cpu [B D L]" else "reference")


def _call(run, leaves, backward):
    import torch
    if not backward:
        with torch.no_grad():
            return run(**leaves)
    args = {k: v.detach().requires_grad_() for k, v in leaves.items()}
    y = run(**args)
    y.backward(torch.ones_like(y))
    return y


def _rss_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_rise_mb(fn):
    """Run ``fn`` once; the rise of peak RSS over the RSS before, in MB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                                                       # resets VmHWM
    before = _rss_kb("VmRSS")
    fn()
    return (_rss_kb("VmHWM") - before) / 1024


def worker(impl, mode, shape, repeats, threads):
    """One fresh-process measurement: JSON with times (s) and peak memory rise (MB)."""
    import torch
    torch.set_num_threads(threads)               # the numba kernels follow torch's count
    backward = mode == "fwd+bwd"
    run, leaves = _make(impl, _inputs(1, 64, 8, shape[3], seed=1))
    _call(run, leaves, backward)                                           # warm-up
    run, leaves = _make(impl, _inputs(*shape))
    start, cpu_start = time.perf_counter(), time.process_time()
    peak = _peak_rise_mb(lambda: _call(run, leaves, backward))
    times, cpu_times = [time.perf_counter() - start], [time.process_time() - cpu_start]
    while len(times) < repeats and sum(times) < 60:
        start, cpu_start = time.perf_counter(), time.process_time()
        _call(run, leaves, backward)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    print(json.dumps({"times": times, "cpu_times": cpu_times, "peak_mb": peak}))


def check(shape):
    """Max relative differences of ``cpu`` against mambapy and the reference (fp32)."""
    import torch
    torch.set_num_threads(2)                     # the numba kernels follow torch's count
    kw = _inputs(*shape)
    def outputs(impl, backward):
        run, leaves = _make(impl, kw)
        args = {k: v.detach().requires_grad_(backward) for k, v in leaves.items()}
        y = run(**args)
        if not backward:
            return y.detach(), {}
        y.backward(torch.ones_like(y))
        grads = {k: v.grad.transpose(1, 2) if impl == "mambapy pscan" and v.dim() == 3
                 else v.grad for k, v in args.items()}
        return y.detach(), grads
    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max())
    y_cpu, g_cpu = outputs("seqprob cpu [B L D]", True)
    y_mpy, g_mpy = outputs("mambapy pscan", True)
    y_ref, _ = outputs("reference", False)
    print(json.dumps({"y vs reference": rel(y_cpu, y_ref), "y vs mambapy": rel(y_cpu, y_mpy),
                      **{f"d{k} vs mambapy": rel(g_cpu[k], g_mpy[k]) for k in g_cpu}}))


def _sub(*args):
    # A fixed mmap threshold makes every large block an mmap that free() returns to the OS, so
    # RSS follows live memory (glibc's adaptive threshold would keep freed blocks resident).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "262144"}
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         check=False, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _plan(quick):
    shapes = SHAPES[:1] if quick else SHAPES
    for shape in shapes:
        for impl in IMPLS:
            for mode in ("fwd", "fwd+bwd"):
                if impl == "reference" and mode == "fwd+bwd":
                    if quick:
                        continue
                    if shape != SHAPES[0]:
                        yield shape, impl, mode, (*shape[:1], REF_FB_LENGTH, *shape[2:]), 1
                        continue
                    yield shape, impl, mode, shape, 1
                    continue
                yield shape, impl, mode, shape, 3 if impl == "reference" else 7


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="first shape only, no reference forward+backward")
    parser.add_argument("--threads", default="2",
                        help="comma-separated torch (and numba) thread counts, e.g. 2,1")
    parser.add_argument("--worker", nargs=5,
                        metavar=("IMPL", "MODE", "SHAPE", "REPEATS", "THREADS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--check", metavar="SHAPE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        impl, mode, shape, repeats, threads = args.worker
        return worker(impl, mode, tuple(json.loads(shape)), int(repeats), int(threads))
    if args.check:
        return check(tuple(json.loads(args.check)))
    from tqdm import tqdm
    load = os.getloadavg()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}; fp32; load average at start "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for threads in (int(t) for t in args.threads.split(",")):
        results = {}
        plan = list(_plan(args.quick))
        for shape, impl, mode, run_shape, repeats in tqdm(plan, desc=f"{threads} threads"):
            res = _sub("--worker", impl, mode, json.dumps(run_shape), str(repeats), str(threads))
            scale = shape[1] / run_shape[1]
            results[shape, impl, mode] = (statistics.median(res["times"]) * scale,
                                          res["peak_mb"] * scale, len(res["times"]),
                                          scale != 1, statistics.median(res["cpu_times"]) * scale)
        print(f"\n{threads} torch and {threads} numba threads:")
        _report(results, args.quick)
    check_res = _sub("--check", json.dumps(SHAPES[0]))
    print("Correctness at the first shape, seqprob cpu [B L D] (max |difference| / max |value|): "
          + ", ".join(f"{k} {v:.1e}" for k, v in check_res.items()))
    return 0


def _report(results, quick):
    from seqprob.cli.table import format_table
    rows = []
    shapes = SHAPES[:1] if quick else SHAPES
    for shape in shapes:
        for impl in IMPLS:
            cells = [f"B={shape[0]} L={shape[1]} D={shape[2]} N={shape[3]}", impl]
            for mode in ("fwd", "fwd+bwd"):
                if (shape, impl, mode) not in results:
                    cells += ["skipped", "", "", ""]
                    continue
                sec, mb, runs, scaled, cpu = results[shape, impl, mode]
                mark = "*" if scaled else ""
                cells += [f"{sec * 1e3:,.1f}{mark}", f"{cpu * 1e3:,.1f}{mark}",
                          f"{mb:,.0f}{mark}", str(runs)]
            rows.append(cells)
    print(format_table(["shape", "implementation", "fwd ms", "fwd CPU ms", "fwd MB", "runs",
                        "fwd+bwd ms", "fwd+bwd CPU ms", "fwd+bwd MB", "runs"], rows))
    print("ms: wall-clock median; CPU ms: process CPU time (all threads) median; MB: peak RSS "
          "rise; * extrapolated by length from L=512")
    print()
    for shape in shapes:
        for ours in OURS:
            ratios = []
            for mode, target in (("fwd", 20), ("fwd+bwd", 30)):
                mine, peer = results[shape, ours, mode], results[shape, "mambapy pscan", mode]
                ratios.append(f"{mode} {peer[0] / mine[0]:.1f}x faster (target {target}x; CPU "
                              f"time {peer[4] / mine[4]:.1f}x), peak memory "
                              f"1/{peer[1] / max(mine[1], 1):.0f} (target 1/4)")
            print(f"B={shape[0]} L={shape[1]}, {ours} vs mambapy pscan: " + "; ".join(ratios))


if __name__ == "__main__":
    sys.exit(main())
