"""mamba_ssm's drop-in forms beside the contract form.

- :class:`MambaSimple`: ``mamba_ssm.Mamba``'s constructor and ``forward(x) -> y`` (the tensor
  only), with its parameter names (``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj``,
  ``out_proj``, ``A_log``, ``D``), so its state dicts load as they are. It shares its
  parameters with a :class:`~seqprob.ssm.mamba.Mamba` block (``.block``) for the contract's
  ``forward(x, state)``/``step``.
- :func:`mamba_lm_from_state_dict`: a :class:`~seqprob.ssm.lm.MambaLM` from a
  ``MambaLMHeadModel`` state dict (``state-spaces/mamba-*`` checkpoints); the sizes are read
  from the tensors' shapes. Token ids are the checkpoint's tokenizer's (the model's own
  tokenizer is the byte tokenizer, so decode ids with the checkpoint's tokenizer).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from seqprob.core.validation import check_tensor
from seqprob.ssm.lm import MambaLM
from seqprob.ssm.mamba import Mamba

MIXER_PARAMETERS = ("in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight",
                    "dt_proj.weight", "dt_proj.bias", "out_proj.weight", "A_log", "D")


class MambaSimple(nn.Module):
    """``mamba_ssm.Mamba``'s drop-in: ``(batch, length, d_model)`` -> same shape.

    ``dt_init``, ``dt_scale``, ``use_fast_path``, ``layer_idx``, ``device`` and ``dtype`` are
    accepted as mamba_ssm takes them; the backend is chosen by ``backend`` (``"auto"``: the
    mamba_ssm CUDA kernel when installed and on CUDA).
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init: str = "random", dt_scale: float = 1.0, dt_init_floor: float = 1e-4,
                 conv_bias: bool = True, bias: bool = False, use_fast_path: bool = True,
                 layer_idx: int | None = None, device: Any = None, dtype: Any = None, *,
                 backend: str = "auto", random_state: int | None = None):
        super().__init__()
        if dt_init != "random" or dt_scale != 1.0:
            raise ValueError(f"dt_init, dt_scale: only mamba_ssm's defaults ('random', 1.0) "
                             f"are supported, got {dt_init!r}, {dt_scale!r}")
        block = Mamba(d_model, d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank,
                      dt_min=dt_min, dt_max=dt_max, dt_init_floor=dt_init_floor,
                      conv_bias=conv_bias, bias=bias, backend=backend,
                      random_state=random_state).to(device=device, dtype=dtype)
        self.layer_idx = layer_idx
        for name in ("in_proj", "conv1d", "x_proj", "dt_proj", "out_proj", "A_log", "D"):
            setattr(self, name, getattr(block, name))          # the same parameter objects
        object.__setattr__(self, "block", block)               # not a second registration

    def forward(self, hidden_states: Tensor, inference_params: Any = None) -> Tensor:
        """``(batch, length, d_model)`` -> ``(batch, length, d_model)`` from the zero state
        (``inference_params`` must be None: generate with ``.block.step``)."""
        if inference_params is not None:
            raise ValueError("inference_params: not supported; generate with the contract "
                             "form, MambaSimple.block.step(x_t, state)")
        return self.block.outputs(hidden_states)


def _layer_count(state_dict: Mapping[str, Tensor]) -> int:
    indices = {int(m.group(1)) for key in state_dict
               if (m := re.match(r"backbone\.layers\.(\d+)\.", key))}
    if not indices or indices != set(range(max(indices) + 1)):
        raise ValueError(f"state_dict: expected keys backbone.layers.{{0..n-1}}.* (a "
                         f"MambaLMHeadModel state dict), got layer indices {sorted(indices)}")
    return max(indices) + 1


def _sizes(state_dict: Mapping[str, Tensor]) -> dict[str, int]:
    """MambaLM's constructor sizes from the shapes of the first layer's tensors."""
    for key in ("backbone.embedding.weight", "backbone.layers.0.mixer.in_proj.weight",
                "backbone.layers.0.mixer.conv1d.weight", "backbone.layers.0.mixer.A_log",
                "backbone.layers.0.mixer.dt_proj.weight"):
        if key not in state_dict:
            raise ValueError(f"state_dict: expected the key {key!r} (a MambaLMHeadModel state "
                             "dict)")
        check_tensor(state_dict[key], f"state_dict[{key!r}]")
    vocab, d_model = state_dict["backbone.embedding.weight"].shape
    d_inner, d_state = state_dict["backbone.layers.0.mixer.A_log"].shape
    if d_inner % d_model:
        raise ValueError(f"state_dict: the inner width {d_inner} is not a multiple of d_model "
                         f"{d_model}")
    rank = state_dict["backbone.layers.0.mixer.dt_proj.weight"].shape[1]
    return dict(d_model=d_model, vocab_size=vocab, d_state=d_state, expand=d_inner // d_model,
                d_conv=state_dict["backbone.layers.0.mixer.conv1d.weight"].shape[-1],
                dt_rank="auto" if rank == math.ceil(d_model / 16) else rank)


def mamba_lm_from_state_dict(state_dict: Mapping[str, Tensor], *, backend: str = "auto"
                             ) -> MambaLM:
    """A :class:`MambaLM` holding a ``MambaLMHeadModel`` state dict's weights.

    Keys: ``backbone.embedding.weight``, ``backbone.layers.{i}.mixer.{in_proj, conv1d,
    x_proj, dt_proj, out_proj}.*``, ``...mixer.A_log``, ``...mixer.D``,
    ``backbone.layers.{i}.norm.weight``, ``backbone.norm_f.weight`` and ``lm_head.weight``
    (tied: equal to the embedding, or absent). Unknown or missing keys raise.
    """
    n_layers = _layer_count(state_dict)
    model = MambaLM(n_layers=n_layers, backend=backend, random_state=0,
                    **_sizes(state_dict))
    ours = {"embedding.weight": "backbone.embedding.weight",
            "norm_f.weight": "backbone.norm_f.weight"}
    for i in range(n_layers):
        ours[f"layers.{i}.norm.weight"] = f"backbone.layers.{i}.norm.weight"
        ours.update({f"layers.{i}.mixer.{p}": f"backbone.layers.{i}.mixer.{p}"
                     for p in MIXER_PARAMETERS})
    head = state_dict.get("lm_head.weight")
    if head is not None and not head.equal(state_dict["backbone.embedding.weight"]):
        raise ValueError("lm_head.weight: expected the embedding's weights (MambaLM ties its "
                         "head to the embedding), got different values")
    unknown = sorted(set(state_dict) - set(ours.values()) - {"lm_head.weight"})
    missing = sorted(set(ours.values()) - set(state_dict))
    if unknown or missing:
        raise ValueError(f"state_dict: unexpected keys {unknown[:5]}, missing keys "
                         f"{missing[:5]} (a MambaLMHeadModel state dict of plain Mamba "
                         "blocks was expected)")
    model.load_state_dict({k: state_dict[v] for k, v in ours.items()})
    return model
