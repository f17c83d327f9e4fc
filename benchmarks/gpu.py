"""The python half of ``benchmarks/gpu.sh``: scans, the step and one large EM step on a GPU,
each checked against the reference, printed as one table.

    python benchmarks/gpu.py                       # CUDA, the shapes below
    python benchmarks/gpu.py --device cpu --tiny   # smoke test: tiny shapes, Triton interpreted

Rows: the selective scan forward and forward+backward (``triton``, ``mamba_ssm`` when
importable, ``reference``), the single-token step (``selective_state_update_triton``,
mamba_ssm's when importable, and the reference: ``selective_scan_ref`` over one step), and one
EM step of a categorical HMM (K=4096, V=49,152, 512 sequences x 32, E-step in chunks of 128
sequences). Times are medians of CUDA-event timings (wall clock on CPU). Bandwidth counts the
compulsory traffic only (every input read once, every output written once), as a fraction of
the card's peak from ``PEAK_TBPS`` (keyed by device name) and of a measured device-to-device
copy. Errors are max |difference| / max |reference| over the output, the last state and (for
forward+backward) every gradient.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))                 # this checkout

# Datasheet HBM/GDDR bandwidth, TB/s, matched as a substring of torch's device name.
PEAK_TBPS = {"H200": 4.8, "H100 SXM": 3.35, "H100 NVL": 3.9, "H100 PCIe": 2.0, "H100": 3.35,
             "GH200": 4.0, "B200": 8.0, "A100-SXM4-80GB": 2.04, "A100 80GB PCIe": 1.94,
             "A100": 1.555, "L40S": 0.864, "L4": 0.3, "A10G": 0.6, "RTX 4090": 1.008,
             "V100": 0.9}
FULL = dict(scan=(4, 2048, 2048, 16), step=(256, 4096, 16), em=(4096, 49152, 512, 32, 128))
TINY = dict(scan=(2, 12, 8, 4), step=(3, 8, 4), em=(6, 11, 8, 5, 3))


def _device_setup(device: str) -> None:
    """Triton's interpreter for CPU tensors (set before Triton is first imported)."""
    if device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")


def timed(fn: Callable[[], object], device, repeats: int) -> float:
    """Median milliseconds of ``fn()`` after one warm-up call (CUDA events on a GPU)."""
    import torch
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def peak_tbps(device) -> tuple[str, float | None]:
    """(device name, datasheet peak in TB/s or None when the name is not in ``PEAK_TBPS``)."""
    import torch
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((v for k, v in PEAK_TBPS.items() if k in name), None)


def copy_tbps(device, tiny: bool) -> float:
    """Measured device-to-device copy bandwidth (read + write), TB/s: the practical peak."""
    import torch
    src = torch.empty((1 << 18) if tiny else (1 << 28), device=device)     # 1 GiB on a GPU
    dst = torch.empty_like(src)
    ms = timed(lambda: dst.copy_(src), device, 3 if tiny else 20)
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e12


def rel_err(got, want) -> float:
    pairs = [(g, w) for g, w in zip(got, want, strict=True) if w is not None]
    return max(float((g.double() - w.double()).abs().max() /
                     w.double().abs().max().clamp_min(1e-30)) for g, w in pairs)


def scan_inputs(shape, device):
    """The Mamba block's call: time-varying B, C, D skip, silu gate, softplus(delta + bias)."""
    import torch
    batch, length, dim, nstate = shape
    g = torch.Generator().manual_seed(0)
    def rand(*s, scale=1.0):
        return (torch.randn(*s, generator=g) * scale).to(device)
    return dict(u=rand(batch, dim, length), delta=rand(batch, dim, length, scale=0.5) - 2.0,
                A=-(torch.rand(dim, nstate, generator=g) * 4 + 0.1).to(device),
                B=rand(batch, nstate, length), C=rand(batch, nstate, length), D=rand(dim),
                z=rand(batch, dim, length), delta_bias=rand(dim, scale=0.1),
                delta_softplus=True)


def scan_bytes(shape, backward: bool) -> int:
    """Compulsory fp32 traffic: u, delta, z, B, C read and y written (forward); the backward
    reads them again with dy and writes du, ddelta, dz, dB, dC."""
    batch, length, dim, nstate = shape
    rows, bc = batch * dim * length, 2 * batch * nstate * length
    fwd = 4 * rows + bc
    return 4 * (fwd + (8 * rows + 2 * bc if backward else 0))


def scan_rows(shape, device, repeats):
    """(name, mode, ms, bytes, error) for every scan backend that runs here."""
    import torch

    from seqprob.core.scan import selective_scan
    from seqprob.kernels.reference import selective_scan_ref
    kw = scan_inputs(shape, device)
    leaves = [k for k, v in kw.items() if isinstance(v, torch.Tensor)]
    def run(backend, backward):
        args = {k: v.detach().requires_grad_(backward) if k in leaves else v
                for k, v in kw.items()}
        if backend == "reference":
            y = selective_scan_ref(**args)
        else:
            y = selective_scan(**args, backend=backend)
        if not backward:
            return [y.detach()]
        y.backward(torch.ones_like(y))
        return [y.detach(), *(args[k].grad for k in leaves)]
    with torch.no_grad():
        want_fwd = run("reference", False)
    want_bwd = run("reference", True)
    rows = []
    for backend in ("triton", "mamba_ssm", "reference"):
        if backend == "mamba_ssm" and not _importable("mamba_ssm"):
            rows += [("scan mamba_ssm", mode, None, None, "not installed")
                     for mode in ("fwd", "fwd+bwd")]
            continue
        if backend == "triton" and device.type == "cpu" and os.environ.get(
                "TRITON_INTERPRET") != "1":
            continue
        for backward, want in ((False, want_fwd), (True, want_bwd)):
            def call(backend=backend, backward=backward):
                with torch.set_grad_enabled(backward):
                    return run(backend, backward)
            err = rel_err(call(), want)
            ms = timed(call, device, 1 if backend == "reference" else repeats)
            rows.append((f"scan {backend}", "fwd+bwd" if backward else "fwd", ms,
                         scan_bytes(shape, backward), f"{err:.1e}"))
    return rows


def step_inputs(shape, device):
    import torch
    batch, dim, nstate = shape
    g = torch.Generator().manual_seed(1)
    def rand(*s):
        return torch.randn(*s, generator=g).to(device)
    return rand(batch, dim, nstate), dict(
        x=rand(batch, dim), dt=rand(batch, dim) - 2.0,
        A=-(torch.rand(dim, nstate, generator=g) * 4 + 0.1).to(device), B=rand(batch, nstate),
        C=rand(batch, nstate), D=rand(dim), z=rand(batch, dim), dt_bias=rand(dim) * 0.1,
        dt_softplus=True)


def reference_step(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus):
    """The reference twin of one step: the sequential scan over a length-1 sequence."""
    from seqprob.kernels.reference import selective_scan_ref
    y, last = selective_scan_ref(x[..., None], dt[..., None], A, B[..., None], C[..., None], D,
                                 z[..., None], dt_bias, dt_softplus, state, True)
    state.copy_(last)
    return y[..., 0]


def step_rows(shape, device, repeats):
    """(name, mode, ms, bytes, error) for the single-token step backends."""
    batch, dim, nstate = shape
    impls = {"step reference": reference_step}
    if device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        from seqprob.kernels.triton_step import selective_state_update_triton
        impls["step triton"] = selective_state_update_triton
    if _importable("mamba_ssm"):
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update
        impls["step mamba_ssm"] = selective_state_update
    state0, kw = step_inputs(shape, device)
    want_state = state0.clone()
    want = reference_step(want_state, **kw)
    nbytes = 4 * (2 * batch * dim * nstate + 4 * batch * dim + 2 * batch * nstate)
    rows = [] if "step mamba_ssm" in impls else [("step mamba_ssm", "1 token", None, None,
                                                  "not installed")]
    for name, fn in impls.items():
        state = state0.clone()
        err = rel_err([fn(state, **kw), state], [want, want_state])
        ms = timed(lambda fn=fn, state=state: fn(state, **kw), device, repeats)
        rows.append((name, "1 token", ms, nbytes, f"{err:.1e}"))
    return rows


def em_row(shape, device, repeats):
    """One EM step (E-step over chunks of sequences, statistics summed, M-step), timed; the
    error column is the log-likelihood's relative change against an unchunked E-step at the
    tiny shape, and the peak memory at the full one."""
    import torch

    from seqprob.hmm.em import expected_statistics, maximize
    from seqprob.hmm.model import HMM
    k, v, batch, length, chunk = shape
    g = torch.Generator().manual_seed(2)
    model = HMM(k, "categorical", n_symbols=v).to(device)
    with torch.no_grad():
        for p in (model.log_startprob, model.log_transmat, model.emission.log_emission):
            p.copy_(torch.log_softmax(torch.randn(p.shape, generator=g), -1).to(device))
    x = torch.randint(0, v, (batch, length), generator=g).to(device)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    def e_step():
        total = None
        for i in range(0, batch, chunk):
            part = expected_statistics(model, x[i:i + chunk], method="sequential",
                                       reduce=False)
            total = part if total is None else total + part
        return total
    def em_step():
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(params[n])                     # every repeat starts from the same model
        maximize(model, e_step())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ms = timed(em_step, device, repeats)
    if device.type == "cuda":
        note = f"peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
    else:
        whole = expected_statistics(model, x, method="sequential", reduce=False)
        note = f"{rel_err([e_step().log_likelihood], [whole.log_likelihood]):.1e}"
    return [(f"EM step K={k} V={v}", f"{batch}x{length}", ms, None, note)]


def _importable(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def table(rows, peak, copy) -> str:
    from seqprob.cli.table import format_table
    out = []
    for name, mode, ms, nbytes, note in rows:
        gbs = nbytes / (ms * 1e-3) / 1e9 if ms and nbytes else None
        out.append([name, mode, "" if ms is None else f"{ms:,.3f}",
                    "" if gbs is None else f"{gbs:,.1f}",
                    "" if gbs is None or peak is None else f"{gbs / (peak * 1e3):.0%}",
                    "" if gbs is None else f"{gbs / (copy * 1e3):.0%}", note])
    return format_table(["check", "shape/mode", "ms", "GB/s", "of peak", "of copy",
                         "error vs ref / note"], out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pytest", default=None, help="the gpu-marked tests' summary line")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    _device_setup(args.device)
    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here (use --device cpu --tiny)")
    device = torch.device(args.device)
    shapes = TINY if args.tiny else FULL
    name, peak = peak_tbps(device)
    copy = copy_tbps(device, args.tiny)
    rows = [("pytest -m gpu", "", None, None, args.pytest)] if args.pytest else []
    for part, key, repeats in ((scan_rows, "scan", args.repeats),
                               (step_rows, "step", args.repeats), (em_row, "em", 3)):
        try:
            rows += part(shapes[key], device, repeats)
        except Exception as err:      # one failing part still leaves the table of the others
            traceback.print_exc()
            rows.append((f"{key} FAILED", "", None, None, f"{type(err).__name__}: {err}"[:120]))
    b, length, d, n = shapes["scan"]
    lines = [f"{name}: datasheet peak {peak or 'unknown'} TB/s, measured copy {copy:.3f} TB/s; "
             f"torch {torch.__version__}; scan B={b} L={length} D={d} N={n} fp32, step "
             f"batch={shapes['step'][0]} dim={shapes['step'][1]} N={shapes['step'][2]}",
             table(rows, peak, copy)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return int(any(row[0].endswith("FAILED") for row in rows))


if __name__ == "__main__":
    sys.exit(main())
