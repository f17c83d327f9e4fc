"""``seqprob info``: versions, scan backends and whether a GPU is visible."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform

import torch

import seqprob
from seqprob.cli.table import format_table
from seqprob.core import scan

PACKAGES = ("torch", "numpy", "numba", "triton", "mamba_ssm", "transformers",
            "scikit-learn", "statsmodels", "pyro-ppl", "xarray", "pandas", "dask")


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _omp_wait_policy() -> str:
    """The OpenMP wait policy libgomp read at start-up, with advice when it can spin."""
    policy = os.environ.get("OMP_WAIT_POLICY")
    if policy and policy.upper() == "PASSIVE":
        return "PASSIVE"
    return (f"{policy or 'unset'} (on a busy machine start Python with OMP_WAIT_POLICY=PASSIVE: "
            "torch's and numba's OpenMP threads otherwise spin against each other)")


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="versions, scan backends, GPU visibility")
    parser.set_defaults(func=run)


def run(args) -> int:
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{torch.get_num_threads()} torch threads")
    print(f"OMP_WAIT_POLICY: {_omp_wait_policy()}")
    rows = [("seqprob", seqprob.__version__), *((p, _version(p)) for p in PACKAGES)]
    print(format_table(["package", "version"], rows))
    print()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none visible"
    print(f"GPU: {gpu}")
    rows = [(name, "yes" if ok else "no", why) for name, ok, why in scan.backend_status()]
    print(format_table(["scan backend", "available", "note"], rows))
    return 0
