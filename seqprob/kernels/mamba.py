"""The ``mamba_ssm`` backend: its CUDA selective-scan kernel, imported lazily.

mamba_ssm has no initial state and drops the gradient of its last state; ``seqprob.core.scan``
refuses those calls before they get here (it routes them to ``triton``), so this wrapper only
adapts dtypes: ``D`` and ``delta_bias`` go in as fp32, as mamba_ssm requires.
"""

from __future__ import annotations

from torch import Tensor


def selective_scan_mamba(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                         D: Tensor | None = None, z: Tensor | None = None,
                         delta_bias: Tensor | None = None, delta_softplus: bool = False,
                         initial_state: Tensor | None = None, return_last_state: bool = False
                         ) -> Tensor | tuple[Tensor, Tensor]:
    """``selective_scan_ref``'s contract on CUDA tensors via ``mamba_ssm.selective_scan_fn``."""
    if initial_state is not None:
        raise ValueError("initial_state: mamba_ssm's kernel has no initial state; use "
                         "backend='triton'")
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError as err:
        raise ImportError("backend='mamba_ssm' needs mamba_ssm: pip install 'seqprob[cuda]'"
                          ) from err
    return selective_scan_fn(u, delta, A, B, C, D.float() if D is not None else None, z,
                             delta_bias.float() if delta_bias is not None else None,
                             delta_softplus, return_last_state)
