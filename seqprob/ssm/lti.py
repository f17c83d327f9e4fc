"""Linear time-invariant SSM machinery shared by S4D, S4 and the companion SSM.

Every such layer runs ``H`` independent single-input single-output systems

    x_t = A x_{t-1} + b u_t,        y_t = Re(c . x_t) + D u_t,

with ``x_t`` of size ``N`` (real or complex). In parallel mode the output is the causal
convolution of ``u`` with the kernel ``K_l = Re(c A^l b)`` (FFT), plus the response to an
initial state; the final state is computed from the input in chunks of the length, so no
``(H, N, L)`` tensor ever exists. Shapes: ``u`` is ``(B, H, L)``, states are ``(B, H, N)``.
"""

from __future__ import annotations

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
            if out.shape[-1] < n:
                p = p @ p
        return out[..., :n]

    def transpose(self) -> DenseTransition:
        return DenseTransition(self.a.mT)


Transition = DiagonalTransition | DenseTransition


def chunk_size(length: int, per_position: int) -> int:
    """A chunk of the length whose temporaries hold about ``ELEMENT_BUDGET`` elements."""
    return max(1, min(length, ELEMENT_BUDGET // max(per_position, 1)))


def fft_size(n: int) -> int:
    """An FFT length ``>= n`` that real FFTs handle fast: ``2 m`` with ``m`` the smallest
    ``2^a 3^b 5^c >= n / 2`` (a real FFT of even length runs a complex FFT of half the
    length; odd lengths such as 675 took twice as long as 720 on the CPU)."""
    size = max(-(-n // 2), 1)
    while True:
        rest = size
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return 2 * size
        size += 1


class _CausalConv(torch.autograd.Function):
    """``irfft(rfft(u) rfft(k))`` with a backward of three real FFTs (autograd's backward of
    ``rfft`` runs a full-length complex FFT on a zero-filled spectrum, the dominant cost of a
    training step)."""

    @staticmethod
    def forward(ctx, u: Tensor, k: Tensor, n: int) -> Tensor:
        u_f, k_f = torch.fft.rfft(u, n=n), torch.fft.rfft(k, n=n)
        ctx.save_for_backward(u_f, k_f)
        ctx.n, ctx.shapes = n, (u.shape, k.shape)
        return torch.fft.irfft(u_f * k_f, n=n)[..., :u.shape[-1]]

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        u_f, k_f = ctx.saved_tensors
        (u_shape, k_shape), n = ctx.shapes, ctx.n
        # n >= len(u) + len(k): the circular correlations below wrap only onto zero padding
        # (broadcast dimensions are summed in the frequency domain, before the inverse FFT)
        g_f = torch.fft.rfft(grad, n=n)
        grad_u = grad_k = None
        if ctx.needs_input_grad[0]:
            prod = (g_f * k_f.conj()).sum_to_size(*u_shape[:-1], g_f.shape[-1])
            grad_u = torch.fft.irfft(prod, n=n)[..., :u_shape[-1]]
        if ctx.needs_input_grad[1]:
            prod = (g_f * u_f.conj()).sum_to_size(*k_shape[:-1], g_f.shape[-1])
            grad_k = torch.fft.irfft(prod, n=n)[..., :k_shape[-1]]
        return grad_u, grad_k, None


def fft_conv(u: Tensor, k: Tensor) -> Tensor:
    """Causal convolution ``y_t = sum_{s<=t} k_s u_{t-s}``; ``u`` ``(B, H, L)``, ``k`` ``(H, L)``
    (any shapes that broadcast: ``u`` ``(B, 1, H, L)`` with ``k`` ``(K, H, L)`` convolves one
    input with ``K`` kernels and transforms ``u`` once) -> the broadcast shape."""
    length = u.shape[-1]
    if u.numel() == 0:                  # an empty batch: FFT libraries refuse empty transforms
        return u.new_zeros(*torch.broadcast_shapes(u.shape[:-1], k.shape[:-1]), length)
    return _CausalConv.apply(u, k, fft_size(max(length + k.shape[-1], 2)))


def fir_conv(u: Tensor, taps: Tensor) -> Tensor:
    """Causal convolution with short per-channel taps, computed directly (a grouped
    ``conv1d``: cheaper than FFTs for a few dozen taps): ``u`` ``(B, H, L)``, ``taps``
    ``(H, W)`` -> ``(B, H, L)``."""
    if u.numel() == 0:
        return torch.zeros_like(u)
    width = taps.shape[-1]
    return F.conv1d(F.pad(u, (width - 1, 0)), taps.flip(-1)[:, None].to(u.dtype),
                    groups=u.shape[1])


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
    x = contrib[0]
    if len(contrib) > 1:
        jump = trans.power(c)
        for block in contrib[1:]:
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
