"""AutoTimes as a SequenceModel over segments: step = one segment, state = the LLM's KV cache."""

from __future__ import annotations

import torch

from seqprob.forecasting.autotimes_net import AutoTimesNet
from seqprob.lm import tiny_lm
from tests.contract_cases import ContractCase

S = 6


def _net(projector: str) -> AutoTimesNet:
    return AutoTimesNet(tiny_lm(random_state=3), S, projector=projector, projector_hidden=16)


CASES = [
    ContractCase(
        id=f"autotimes-{projector}",
        make_model=lambda projector=projector: _net(projector),
        make_input=lambda g: torch.randn(2, 5, S, generator=g),
    )
    for projector in ("mlp", "linear")
]
