"""``seqprob demo``: a short tour of what seqprob does, one section per capability."""

from __future__ import annotations

import time

import torch
from tqdm import tqdm

from seqprob.cli.table import format_table
from seqprob.core import scan


def scan_tour(quiet: bool) -> None:
    """Time every available selective-scan backend against the reference on one shape."""
    batch, dim, length, n = 1, 256, 512, 16
    g = torch.Generator().manual_seed(0)
    u = torch.randn(batch, dim, length, generator=g)
    delta = torch.rand(batch, dim, length, generator=g) * 0.1
    A = -torch.rand(dim, n, generator=g)
    B = torch.randn(batch, n, length, generator=g)
    C = torch.randn(batch, n, length, generator=g)
    print(f"Selective scan, forward, fp32, batch={batch} dim={dim} length={length} N={n}")
    names = [name for name, ok, _ in scan.backend_status() if ok and name in scan.BACKENDS]
    results, rows = {}, []
    for name in tqdm(names, desc="scan backends", disable=quiet, leave=False):
        scan.selective_scan(u, delta, A, B, C, backend=name)  # warm-up (compilation)
        start = time.perf_counter()
        results[name] = scan.selective_scan(u, delta, A, B, C, backend=name)
        results[name + "_s"] = time.perf_counter() - start
    ref_s = results["reference_s"]
    for name in names:
        err = (results[name] - results["reference"]).abs().max().item()
        rows.append((name, f"{results[name + '_s'] * 1e3:.1f} ms",
                     f"{ref_s / results[name + '_s']:.1f}x", f"{err:.1e}"))
    print(format_table(["backend", "time", "speed-up vs reference", "max |diff|"], rows))


SECTIONS = (scan_tour,)


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="a short tour of seqprob's capabilities")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args) -> int:
    for section in SECTIONS:
        section(args.quiet)
        print()
    return 0
