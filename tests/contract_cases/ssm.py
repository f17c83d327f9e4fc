"""Contract cases for the state-space layers and models (seqprob.ssm)."""

from __future__ import annotations

import torch

from seqprob.core.scan import backend_status
from seqprob.ssm import S4, S4D, CompanionSSM, Mamba, MambaLM
from seqprob.ssm.spacetime import SpaceTimeEncoder
from tests.contract_cases import ContractCase

BACKENDS = [name for name, available, _ in backend_status() if available]


def _features(d):
    return lambda g: torch.randn(2, 11, d, generator=g)


CASES = [
    ContractCase("ssm-s4d-zoh-inv", lambda: S4D(4, 8, random_state=0), _features(4)),
    ContractCase("ssm-s4d-bilinear-lin",
                 lambda: S4D(4, 6, init="lin", discretization="bilinear", random_state=0),
                 _features(4)),
    ContractCase("ssm-s4-dplr", lambda: S4(3, 8, l_max=16, random_state=0), _features(3),
                 rtol=1e-4, atol=2e-5),
    ContractCase("ssm-companion", lambda: CompanionSSM(3, 5, l_max=16, random_state=0),
                 _features(3)),
    ContractCase("ssm-companion-heads",
                 lambda: CompanionSSM(4, 5, l_max=16, n_heads=2, random_state=0), _features(4)),
    ContractCase("ssm-spacetime-encoder",
                 lambda: SpaceTimeEncoder(2, 6, 4, 2, 16, ("diff0", "diff1", "ma3"), 0,
                                          n_heads=3, dropout=0.25), _features(2)),
    ContractCase("ssm-spacetime-encoder-linear",
                 lambda: SpaceTimeEncoder(3, 4, 4, 1, 16, ("diff2", "ma5"), 0,
                                          embedding="linear", n_heads=2), _features(3)),
    *[ContractCase(f"ssm-mamba-{backend}",
                   lambda backend=backend: Mamba(8, 4, backend=backend, random_state=0),
                   _features(8))
      for backend in BACKENDS],
    ContractCase("ssm-mamba-lm", lambda: MambaLM(16, 2, d_state=4, random_state=0),
                 lambda g: torch.randint(0, 259, (2, 9), generator=g)),
    ContractCase("ssm-mamba-lm-s4d", lambda: MambaLM(16, 2, d_state=4, mixer="s4d",
                                                     random_state=0),
                 lambda g: torch.randint(0, 259, (2, 9), generator=g)),
]
