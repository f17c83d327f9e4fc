"""Contract cases: every SequenceModel in seqprob registers one here.

Each module in this package defines ``CASES``, a list of :class:`ContractCase`;
``tests/test_contract.py`` collects them all. Add a module per family (``hmm.py``,
``ssm.py``, ``lm.py``, ...) rather than editing another family's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from seqprob.core import SequenceModel


@dataclasses.dataclass(frozen=True)
class ContractCase:
    """A model factory and an input factory ``(batch, length, ...)`` for the contract test."""

    id: str
    make_model: Callable[[], SequenceModel]
    make_input: Callable[[torch.Generator], torch.Tensor]
    rtol: float = 1e-4
    atol: float = 1e-5
