"""The dispatching selective-scan ops: ``selective_scan`` (a sequence) and
``selective_state_update`` (one token, mamba_ssm's signature, the state updated in place).

Each op is a checked entry point (shapes, dtypes, devices, finite inputs, finite result) over
an unchecked core (``*_unchecked``: backend choice and the kernel call only), which composite
models call after checking their own inputs once at their boundary.

Backends (``backend=``):

- ``"cpu"``: fused numba kernels (scan forward and backward, the step), CPU tensors.
- ``"triton"``: Triton kernels, CUDA tensors; CPU tensors only under ``TRITON_INTERPRET=1``
  (the interpreter, for tests). Needs ``pip install 'seqprob[gpu]'``.
- ``"mamba_ssm"``: ``mamba_ssm``'s kernels (``pip install 'seqprob[cuda]'``), CUDA tensors,
  fp32/fp16/bf16 only. Its scan has no ``initial_state`` and no gradient through the last
  state, so it refuses ``initial_state`` and, when gradients are recorded,
  ``return_last_state`` (use ``"triton"`` for those).
- ``"reference"``: the sequential loop, the oracle; never chosen by ``"auto"`` unless nothing
  else runs on the tensors' device.

``"auto"``: on CUDA, ``mamba_ssm`` when importable and the call is one it supports, else
``triton``; on CPU, ``cpu``. An explicitly requested backend that cannot run raises and names
what to install; ``"auto"`` falls back to ``reference`` (with a warning, once) only when no
fast backend runs on the device.

Dtypes: ``u, delta, z`` (and ``B, C, D, delta_bias, initial_state``) may be fp32, fp16, bf16
or fp64, ``A`` fp32 or fp64; arithmetic is fp32, or fp64 when ``u`` or ``A`` is fp64; the
output has ``u``'s dtype, the last state the compute dtype.

NaN policy: every input must be finite (a ``ValueError`` names the argument and the first bad
index), and a non-finite result (the recurrence overflowed, e.g. a positive ``A``) raises
instead of being returned.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from seqprob.core.validation import (
    check_choice,
    check_dtype,
    check_finite,
    check_shape,
    check_tensor,
)
from seqprob.kernels.limits import SCAN_MAX_STATE
from seqprob.kernels.reference import selective_scan_ref, selective_state_update_ref

BACKENDS = ("auto", "cpu", "triton", "mamba_ssm", "reference")
FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
A_FLOATS = (torch.float32, torch.float64)
INSTALL = {"triton": "pip install 'seqprob[gpu]'", "mamba_ssm": "pip install 'seqprob[cuda]'"}
_WARNED: set[str] = set()


@functools.cache
def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _triton_note(cuda: bool) -> str:
    if not _importable("triton"):
        return f"not installed: {INSTALL['triton']}"
    if cuda:
        return "Triton kernels, CUDA tensors"
    if _triton_interpreted():
        return "Triton interpreter on CPU tensors (TRITON_INTERPRET=1)"
    return "installed; needs a CUDA device (or TRITON_INTERPRET=1)"


def _mamba_note(cuda: bool) -> str:
    if not _importable("mamba_ssm"):
        return f"not installed: {INSTALL['mamba_ssm']}"
    return "mamba_ssm CUDA kernel" if cuda else "installed; needs a CUDA device"


def backend_status() -> list[tuple[str, bool, str]]:
    """``(backend, available here, note)`` for every concrete backend."""
    cuda = torch.cuda.is_available()
    return [
        ("cpu", True, "fused numba kernels, CPU tensors"),
        ("triton", _importable("triton") and (cuda or _triton_interpreted()), _triton_note(cuda)),
        ("mamba_ssm", _importable("mamba_ssm") and cuda, _mamba_note(cuda)),
        ("reference", True, "sequential loop, the oracle"),
    ]


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, UserWarning, stacklevel=4)


def _device(x: Tensor) -> torch.device:
    """Where the op runs (the device of its first tensor; one seam for tests)."""
    return x.device


def _require(backend: str, device: torch.device) -> None:
    """Raise unless ``backend`` can run on ``device``, naming what is missing."""
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"backend='cpu' needs CPU tensors, got tensors on {device}")
    if backend in INSTALL and not _importable(backend):
        raise ValueError(f"backend={backend!r} is not installed: {INSTALL[backend]}")
    if backend == "mamba_ssm" and device.type != "cuda":
        raise ValueError(f"backend='mamba_ssm' needs CUDA tensors, got tensors on {device}")
    if backend == "triton" and device.type != "cuda" and not _triton_interpreted():
        raise ValueError(f"backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for the "
                         f"CPU interpreter), got tensors on {device}")


def _auto(device: torch.device, mamba_ok: bool) -> str:
    if device.type == "cpu":
        return "cpu"
    if device.type == "cuda" and mamba_ok and _importable("mamba_ssm"):
        return "mamba_ssm"
    if device.type == "cuda" and _importable("triton"):
        return "triton"
    _warn_once(f"selective_scan/selective_state_update: no fast backend for tensors on "
               f"{device} ({INSTALL['triton']}); using the slow 'reference' backend")
    return "reference"


def _resolve(backend: str, device: torch.device, mamba_ok: bool, unsupported: str) -> str:
    """The concrete backend for a call: ``auto``'s choice or the requested one, checked."""
    name = _auto(device, mamba_ok) if backend == "auto" else backend
    _require(name, device)
    if name == "mamba_ssm" and not mamba_ok:
        raise ValueError(f"backend='mamba_ssm' supports {unsupported}: use backend='triton'")
    return name


def _check_state_size(nstate: int, name: str) -> None:
    if nstate > SCAN_MAX_STATE:
        raise ValueError(f"{name}: expected at most {SCAN_MAX_STATE} state dimensions "
                         f"(N = {name}.shape[1]), got {nstate}")


def _check_optional(optional, dims: dict[str, int]) -> list[tuple[str, Tensor]]:
    """Shapes and dtypes of the ``(name, tensor or None, spec)`` arguments given."""
    given = []
    for name, x, spec in optional:
        if x is not None:
            check_dtype(check_shape(x, name, spec, dims), name, FLOATS)
            given.append((name, x))
    return given


def _check_selective(u, delta, A, B, C, D, z, delta_bias, initial_state) -> None:
    """Shapes, dtypes, device and finiteness of selective_scan's inputs."""
    dims: dict[str, int] = {}
    check_dtype(check_shape(u, "u", ("batch", "dim", "length"), dims), "u", FLOATS)
    check_dtype(check_shape(delta, "delta", ("batch", "dim", "length"), dims), "delta", FLOATS)
    check_dtype(check_shape(A, "A", ("dim", "N"), dims), "A", A_FLOATS)
    _check_state_size(dims["N"], "A")
    for name, x in (("B", B), ("C", C)):
        spec = ("dim", "N") if check_tensor(x, name).dim() == 2 else ("batch", "N", "length")
        check_dtype(check_shape(x, name, spec, dims), name, FLOATS)
    given = _check_optional((("D", D, ("dim",)), ("z", z, ("batch", "dim", "length")),
                             ("delta_bias", delta_bias, ("dim",)),
                             ("initial_state", initial_state, ("batch", "dim", "N"))), dims)
    _check_device_and_finite([("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C),
                              *given])


def _all_finite(tensors: list[Tensor]) -> bool:
    """One fused test: min and max of every tensor are finite (NaN and inf propagate).
    ``amin``/``amax`` read strided views in place (``aminmax`` would copy them first)."""
    ends = [v.double() for x in tensors if x.numel() for v in (x.detach().amin(),
                                                              x.detach().amax())]
    return not ends or bool(torch.isfinite(torch.stack(ends)).all())


def _check_device_and_finite(named: list[tuple[str, Tensor]]) -> None:
    device = named[0][1].device
    for name, x in named:
        if x.device != device:
            raise ValueError(f"{name}: expected a tensor on {device} (like {named[0][0]}), "
                             f"got one on {x.device}")
    if not _all_finite([x for _, x in named]):
        for name, x in named:
            check_finite(x.detach(), name)


def _check_result(y: Tensor, op: str) -> Tensor:
    if not _all_finite([y]):
        raise ValueError(f"{op}: the result has non-finite values although the inputs are "
                         "finite: the recurrence overflowed (are the decays |a| <= 1, i.e. A "
                         "negative and delta positive?)")
    return y


def _selective_backend(name: str) -> Callable:
    if name == "cpu":
        from seqprob.kernels.cpu import selective_scan_cpu
        return selective_scan_cpu
    if name == "triton":
        from seqprob.kernels.triton_scan import selective_scan_triton
        return selective_scan_triton
    if name == "mamba_ssm":
        from seqprob.kernels.mamba import selective_scan_mamba
        return selective_scan_mamba
    return selective_scan_ref


def selective_scan_unchecked(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                             D: Tensor | None = None, z: Tensor | None = None,
                             delta_bias: Tensor | None = None, delta_softplus: bool = False,
                             initial_state: Tensor | None = None,
                             return_last_state: bool = False, backend: str = "auto"
                             ) -> Tensor | tuple[Tensor, Tensor]:
    """:func:`selective_scan` on inputs the caller has checked: no validation, no finiteness
    test (no host synchronization); only the backend choice and the kernel."""
    grad_last = return_last_state and torch.is_grad_enabled() and any(
        x is not None and x.requires_grad
        for x in (u, delta, A, B, C, D, z, delta_bias, initial_state))
    mamba_ok = (initial_state is None and not grad_last and u.dtype != torch.float64
                and A.dtype == torch.float32)
    name = _resolve(backend, _device(u), mamba_ok, "neither initial_state, nor gradients "
                    "through the last state, nor fp64")
    return _selective_backend(name)(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
                                    initial_state, return_last_state)


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   D: Tensor | None = None, z: Tensor | None = None,
                   delta_bias: Tensor | None = None, delta_softplus: bool = False,
                   initial_state: Tensor | None = None, return_last_state: bool = False,
                   backend: str = "auto") -> Tensor | tuple[Tensor, Tensor]:
    """x_t = exp(delta_t A) x_{t-1} + delta_t B_t u_t;  y_t = C_t x_t + D u_t, gated by silu(z).

    ``u, delta, z``: (batch, dim, length); ``A``: (dim, N), N <= 256; ``B, C``: (dim, N) or
    (batch, N, length); ``D, delta_bias``: (dim,); ``initial_state``: (batch, dim, N), zeros
    when omitted. ``delta`` is ``softplus(delta + delta_bias)`` when ``delta_softplus``.
    Returns ``y`` (batch, dim, length) in ``u``'s dtype, and the last state (batch, dim, N)
    when ``return_last_state``. Differentiable on every backend.
    """
    check_choice(backend, "backend", BACKENDS)
    _check_selective(u, delta, A, B, C, D, z, delta_bias, initial_state)
    out = selective_scan_unchecked(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                   initial_state, return_last_state, backend)
    _check_result(out[0] if return_last_state else out, "selective_scan")
    return out


def _check_step(state, x, dt, A, B, C, D, z, dt_bias) -> None:
    """Shapes, dtypes, device and finiteness of selective_state_update's inputs."""
    dims: dict[str, int] = {}
    check_dtype(check_shape(state, "state", ("batch", "dim", "N"), dims), "state", FLOATS)
    _check_state_size(dims["N"], "state")
    for name, t in (("x", x), ("dt", dt)):
        check_dtype(check_shape(t, name, ("batch", "dim"), dims), name, FLOATS)
    check_dtype(check_shape(A, "A", ("dim", "N"), dims), "A", A_FLOATS)
    for name, t in (("B", B), ("C", C)):
        check_dtype(check_shape(t, name, ("batch", "N"), dims), name, FLOATS)
    given = _check_optional((("D", D, ("dim",)), ("z", z, ("batch", "dim")),
                             ("dt_bias", dt_bias, ("dim",))), dims)
    _check_device_and_finite([("state", state), ("x", x), ("dt", dt), ("A", A), ("B", B),
                              ("C", C), *given])


def _step_backend(name: str) -> Callable:
    if name == "cpu":
        from seqprob.kernels.cpu_step import selective_state_update_cpu
        return selective_state_update_cpu
    if name == "triton":
        from seqprob.kernels.triton_step import selective_state_update_triton
        return selective_state_update_triton
    if name == "mamba_ssm":
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update
        return selective_state_update
    return selective_state_update_ref


def selective_state_update_unchecked(state: Tensor, x: Tensor, dt: Tensor, A: Tensor,
                                     B: Tensor, C: Tensor, D: Tensor | None = None,
                                     z: Tensor | None = None, dt_bias: Tensor | None = None,
                                     dt_softplus: bool = False, backend: str = "auto"
                                     ) -> Tensor:
    """:func:`selective_state_update` on inputs the caller has checked (``Mamba.step``)."""
    mamba_ok = torch.float64 not in (x.dtype, state.dtype, A.dtype)
    name = _resolve(backend, _device(x), mamba_ok, "no fp64")
    return _step_backend(name)(state, x, dt, A, B, C, D, z, dt_bias, bool(dt_softplus))


def block_step_backend(backend: str, x: Tensor, needs_grad: bool) -> str:
    """Which single-token Mamba block step runs for a block with ``backend`` on input ``x``:
    ``"cpu"`` (the fused numba block step, ``seqprob.kernels.cpu_step``) when ``backend`` is
    ``"auto"`` or ``"cpu"``, ``x`` is on the CPU and no gradient is needed; ``"reference"``
    (torch ops around :func:`selective_state_update` with ``backend``) otherwise."""
    fused = backend in ("auto", "cpu") and _device(x).type == "cpu" and not needs_grad
    return "cpu" if fused else "reference"


def selective_state_update(state: Tensor, x: Tensor, dt: Tensor, A: Tensor, B: Tensor,
                           C: Tensor, D: Tensor | None = None, z: Tensor | None = None,
                           dt_bias: Tensor | None = None, dt_softplus: bool = False,
                           backend: str = "auto") -> Tensor:
    """One token of :func:`selective_scan`, mamba_ssm's ``selective_state_update``.

    ``state`` (batch, dim, N), N <= 256, is updated in place to ``exp(dt A) state + dt B x``;
    returns ``y = state C + D x``, times ``silu(z)``, (batch, dim) in ``x``'s dtype.
    ``x, dt, z``: (batch, dim); ``A``: (dim, N); ``B, C``: (batch, N); ``D, dt_bias``:
    (dim,); ``dt`` is ``softplus(dt + dt_bias)`` when ``dt_softplus``. Not differentiable.
    A non-finite result raises (``state`` has been updated by then).
    """
    check_choice(backend, "backend", BACKENDS)
    _check_step(state, x, dt, A, B, C, D, z, dt_bias)
    y = selective_state_update_unchecked(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus,
                                         backend)
    return _check_result(y, "selective_state_update")
