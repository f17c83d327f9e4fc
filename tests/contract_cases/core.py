"""A minimal diagonal linear RNN: the contract's own smoke model."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from seqprob.core import SequenceModel, State
from tests.contract_cases import ContractCase


@dataclasses.dataclass
class DiagState(State):
    h: Tensor  # (batch, width)


class DiagonalRNN(SequenceModel):
    """h_t = sigmoid(w) * h_{t-1} + x_t W;  y_t = h_t."""

    def __init__(self, d_in: int = 3, width: int = 5):
        super().__init__()
        self.proj = nn.Linear(d_in, width)
        self.logit_decay = nn.Parameter(torch.randn(width))

    def init_state(self, batch_size, *, device=None, dtype=None):
        return DiagState(torch.zeros(batch_size, self.proj.out_features, device=device,
                                     dtype=dtype or torch.float32))

    def forward(self, x, state=None):
        state = state or self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        b = self.proj(x)                                            # (B L W)
        a = torch.sigmoid(self.logit_decay).expand_as(b)
        h, hs = state.h, []
        for t in range(x.shape[1]):
            h = a[:, t] * h + b[:, t]
            hs.append(h)
        return torch.stack(hs, dim=1), DiagState(h)

    def step(self, x_t, state):
        h = torch.sigmoid(self.logit_decay) * state.h + self.proj(x_t)
        return h, DiagState(h)


CASES = [
    ContractCase(
        id="core-diagonal-rnn",
        make_model=lambda: DiagonalRNN(),
        make_input=lambda g: torch.randn(2, 9, 3, generator=g),
    )
]
