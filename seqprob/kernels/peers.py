"""Peer implementations used for cross-checks and benchmarks (optional dependencies).

``mambapy_selective_scan`` is mambapy's parallel selective scan assembled the way its Mamba
block assembles it (``mambapy.mamba.MambaBlock.selective_scan``): it materializes
``(batch, length, dim, N)`` tensors and runs a Blelloch ``pscan`` over them.
"""

from __future__ import annotations

import torch
from torch import Tensor


def mambapy_selective_scan(x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                           D: Tensor) -> Tensor:
    """mambapy layout: ``x, delta`` (batch, length, dim); ``A`` (dim, N); ``B, C``
    (batch, length, N); ``D`` (dim,). Returns ``y`` (batch, length, dim)."""
    try:
        from mambapy.pscan import pscan
    except ImportError as err:
        raise ImportError("mambapy is a dev dependency: pip install 'seqprob[dev]'") from err
    delta_a = torch.exp(delta.unsqueeze(-1) * A)                            # (B L D N)
    bx = delta.unsqueeze(-1) * B.unsqueeze(2) * x.unsqueeze(-1)             # (B L D N)
    hs = pscan(delta_a, bx)                                                 # (B L D N)
    return (hs @ C.unsqueeze(-1)).squeeze(3) + D * x                        # (B L D)
