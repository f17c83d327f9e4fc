"""Linear time-invariant SSM machinery shared by S4D, S4 and the companion SSM.

Every such layer runs ``H`` independent single-input single-output systems

    x_t = A x_{t-1} + b u_t,        y_t = Re(c . x_t) + D u_t,

with ``x_t`` of size ``N`` (real or complex). In parallel mode the output is the causal
convolution of ``u`` with the kernel ``K_l = Re(c A^l b)`` (FFT), plus the response to an
initial state; the final state is computed from the input in chunks of the length, so no
``(H, N, L)`` tensor ever exists. Shapes: ``u`` is ``(B, H, L)``, states are ``(B, H, N)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# Chunk sizes keep every temporary at about this many elements.
ELEMENT_BUDGET = 1 << 21


class DiagonalTransition:
    """``A = diag(exp(log_a))`` for ``log_a`` of shape ``(H, N)``."""

    def __init__(self, log_a: Tensor):
        self.log_a = log_a                                                      # (H N)

    def apply(self, x: Tensor) -> Tensor:
        """``A x`` for ``x`` ``(..., H, N)``."""
        return torch.exp(self.log_a) * x

    def power(self, k: int) -> DiagonalTransition:
        return DiagonalTransition(self.log_a * k)

    def krylov(self, v: Tensor, n: int) -> Tensor:
        """``[v, A v, ..., A^{n-1} v]``: ``(..., H, N)`` -> ``(..., H, N, n)``."""
        j = torch.arange(n, device=v.device, dtype=self.log_a.real.dtype)
        return v[..., None] * torch.exp(self.log_a[..., None] * j)             # (.. H N n)

    def transpose(self) -> DiagonalTransition:
        return self


class DenseTransition:
    """A dense ``A`` of shape ``(H, N, N)`` (DPLR after discretization, companion)."""

    def __init__(self, a: Tensor):
        self.a = a                                                              # (H N N)

    def apply(self, x: Tensor) -> Tensor:
        """``A x`` for ``x`` ``(..., H, N)``: one GEMM per head, never a batch-wide copy of
        ``A``."""
        return torch.einsum("hij,...hj->...hi", self.a, x)

    def power(self, k: int) -> DenseTransition:
        return DenseTransition(torch.linalg.matrix_power(self.a, k))

    def krylov(self, v: Tensor, n: int) -> Tensor:
        """``[v, A v, ..., A^{n-1} v]`` by doubling: ``(..., H, N)`` -> ``(..., H, N, n)``."""
        out, p = v[..., None], self.a                                           # (.. H N 1)
        while out.shape[-1] < n:
            out = torch.cat([out, p @ out], dim=-1)
            p = p @ p
        return out[..., :n]

    def transpose(self) -> DenseTransition:
        return DenseTransition(self.a.mT)


Transition = DiagonalTransition | DenseTransition


def chunk_size(length: int, per_position: int) -> int:
    """A chunk of the length whose temporaries hold about ``ELEMENT_BUDGET`` elements."""
    return max(1, min(length, ELEMENT_BUDGET // max(per_position, 1)))


def fft_conv(u: Tensor, k: Tensor) -> Tensor:
    """Causal convolution ``y_t = sum_{s<=t} k_s u_{t-s}``; ``u`` ``(B, H, L)``, ``k`` ``(H, L)``.
    """
    length = u.shape[-1]
    n = 1 << math.ceil(math.log2(max(2 * length, 2)))
    y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)  # (B H n)
    return y[..., :length]


def final_state(trans: Transition, b: Tensor, u: Tensor, x0: Tensor | None) -> Tensor:
    """``x_L = A^L x0 + sum_k A^{L-1-k} b u_k`` computed in chunks of the length.

    ``b`` ``(H, N)``, ``u`` ``(B, H, L)`` real, ``x0`` ``(B, H, N)`` or None -> ``(B, H, N)``.
    """
    heads, length = u.shape[1:]
    c = chunk_size(length, heads * b.shape[-1])  # the Krylov block does not grow with batch
    pad = (-length) % c
    blocks = F.pad(u, (pad, 0)).unflatten(-1, (-1, c)).to(b.dtype)          # (B H m c)
    reach = trans.krylov(b, c).flip(-1)                                      # (H N c)
    contrib = torch.einsum("hnj,bhmj->mbhn", reach, blocks)                  # (m B H N)
    jump = trans.power(c)
    x = torch.zeros_like(contrib[0])
    for block in contrib:
        x = jump.apply(x) + block
    if x0 is not None:
        x = x + trans.power(length).apply(x0.to(x.dtype))
    return x


def state_response(trans: Transition, c_out: Tensor, x0: Tensor, length: int) -> Tensor:
    """The outputs' part due to the initial state: ``Re(c A^{t+1} x0)`` for ``t < length``.

    ``c_out`` ``(H, N)``, ``x0`` ``(B, H, N)`` -> ``(B, H, length)``.
    """
    batch, heads, n = x0.shape
    c = chunk_size(length, heads * n * max(batch, 1))
    rows = trans.transpose().krylov(c_out, c)                                # (H N c)
    jump = trans.power(c)
    z = trans.apply(x0.to(rows.dtype))                                       # (B H N)
    out = []
    for _ in range(-(-length // c)):
        out.append(torch.einsum("hnj,bhn->bhj", rows, z).real)               # (B H c)
        z = jump.apply(z)
    return torch.cat(out, dim=-1)[..., :length]


def impulse_response(trans: Transition, b: Tensor, c_out: Tensor, length: int) -> Tensor:
    """The dense Krylov kernel ``K_l = Re(c A^l b)``, ``l < length``: ``(H, length)``.

    The oracle against which the structured kernels (Vandermonde, Cauchy, companion FFT)
    are tested.
    """
    powers = trans.krylov(b, length)                                         # (H N L)
    return torch.einsum("hn,hnl->hl", c_out.to(powers.dtype), powers).real


def recurrence_step(trans: Transition, b: Tensor, c_out: Tensor, x: Tensor, u_t: Tensor
                    ) -> tuple[Tensor, Tensor]:
    """One position: ``u_t`` ``(B, H)``, ``x`` ``(B, H, N)`` -> ``(Re(c.x'), x')``."""
    x = trans.apply(x) + b * u_t[..., None].to(b.dtype)                      # (B H N)
    return (x * c_out).sum(-1).real, x
