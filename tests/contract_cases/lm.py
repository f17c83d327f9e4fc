"""Language-model adapters: next-token logits and the KV cache in a KVState."""

from __future__ import annotations

import torch

from tests.contract_cases import ContractCase
from tests.lm_models import ARCHITECTURES

CASES = [
    ContractCase(
        id=f"lm-tiny-{name}",
        make_model=make,
        make_input=lambda g: torch.randint(3, 259, (2, 9), generator=g),
    )
    for name, make in ARCHITECTURES.items()
]
