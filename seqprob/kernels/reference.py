"""Plain sequential scans: readable, slow, the oracle every fast backend is tested against.

Layouts follow mamba_ssm (see ``seqprob.core.scan`` for the public, validated entry points):
``u, delta, z`` are ``(batch, dim, length)``; ``A`` is ``(dim, N)``; ``B`` and ``C`` are
``(dim, N)`` (fixed) or ``(batch, N, length)`` (time-varying). Arithmetic is fp32 or wider.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def selective_scan_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                       D: Tensor | None = None, z: Tensor | None = None,
                       delta_bias: Tensor | None = None, delta_softplus: bool = False,
                       initial_state: Tensor | None = None, return_last_state: bool = False
                       ) -> Tensor | tuple[Tensor, Tensor]:
    """x_t = exp(delta_t A) x_{t-1} + delta_t B_t u_t;  y_t = C_t x_t + D u_t, gated by silu(z).

    Returns ``y`` of shape ``(batch, dim, length)`` in ``u``'s dtype, and the last state
    ``(batch, dim, N)`` (fp32 or wider) when ``return_last_state``.
    """
    dtype_in = u.dtype
    wide = torch.promote_types(torch.float32, torch.promote_types(u.dtype, A.dtype))
    u, delta, A = u.to(wide), delta.to(wide), A.to(wide)
    B, C = B.to(wide), C.to(wide)
    if delta_bias is not None:
        delta = delta + delta_bias.to(wide)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, length = u.shape
    x = (initial_state.to(wide) if initial_state is not None
         else u.new_zeros(batch, dim, A.shape[1]))                           # (B D N)
    ys = []
    for t in range(length):
        dA = torch.exp(delta[:, :, t, None] * A)                            # (B D N)
        b_t = B[None] if B.dim() == 2 else B[:, None, :, t]                 # (B|1 D|1 N)
        c_t = C[None] if C.dim() == 2 else C[:, None, :, t]
        x = dA * x + delta[:, :, t, None] * b_t * u[:, :, t, None]
        ys.append((x * c_t).sum(-1))                                         # (B D)
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)        # (B D L)
    if D is not None:
        y = y + u * D.to(wide)[:, None]
    if z is not None:
        y = y * F.silu(z.to(wide))
    y = y.to(dtype_in)
    return (y, x) if return_last_state else y


def selective_state_update_ref(state: Tensor, x: Tensor, dt: Tensor, A: Tensor, B: Tensor,
                               C: Tensor, D: Tensor | None = None, z: Tensor | None = None,
                               dt_bias: Tensor | None = None, dt_softplus: bool = False
                               ) -> Tensor:
    """One step of ``selective_scan_ref``: ``state`` (batch, dim, N) is updated in place.

    ``x, dt, z``: (batch, dim); ``A``: (dim, N); ``B, C``: (batch, N); ``D, dt_bias``:
    (dim,). Returns ``y`` (batch, dim) in ``x``'s dtype.
    """
    wide = torch.promote_types(torch.float32, torch.promote_types(x.dtype, state.dtype))
    dt = dt.to(wide)
    if dt_bias is not None:
        dt = dt + dt_bias.to(wide)
    if dt_softplus:
        dt = F.softplus(dt)
    u = x.to(wide)
    decay = torch.exp(dt[..., None] * A.to(wide))                                # (B D N)
    h = decay * state.to(wide) + (dt * u)[..., None] * B.to(wide)[:, None, :]
    state.copy_(h)
    y = (h * C.to(wide)[:, None, :]).sum(-1)                                     # (B D)
    if D is not None:
        y = y + D.to(wide) * u
    if z is not None:
        y = y * F.silu(z.to(wide))
    return y.to(x.dtype)
