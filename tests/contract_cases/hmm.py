"""Contract cases for HMMs: categorical (with missing tokens), Gaussian and Gaussian mixture
(with NaN rows), multinomial counts."""

from __future__ import annotations

import torch

from seqprob.hmm import HMM
from tests.contract_cases import ContractCase


def _categorical() -> HMM:
    model = HMM(4, "categorical", n_symbols=11)
    with torch.no_grad():
        model.log_transmat.copy_(torch.log_softmax(torch.randn(4, 4), 1))
        model.log_startprob.copy_(torch.log_softmax(torch.randn(4), 0))
        model.emission.log_emission.copy_(torch.log_softmax(torch.randn(4, 11), 1))
    return model


def _tokens(g: torch.Generator) -> torch.Tensor:
    x = torch.randint(0, 11, (3, 10), generator=g)
    x[1, 4] = -1                                                            # missing
    return x


def _gaussian() -> HMM:
    model = HMM(3, "gaussian", n_features=2, covariance_type="full")
    with torch.no_grad():
        model.log_transmat.copy_(torch.log_softmax(torch.randn(3, 3), 1))
        model.emission.means.copy_(torch.randn(3, 2))
    return model


def _features(g: torch.Generator) -> torch.Tensor:
    x = torch.randn(2, 8, 2, generator=g)
    x[0, 2] = torch.nan                                                     # missing row
    return x


def _mixture() -> HMM:
    model = HMM(3, "gmm", n_features=2, covariance_type="tied", emission_options={"n_mix": 2})
    with torch.no_grad():
        model.log_transmat.copy_(torch.log_softmax(torch.randn(3, 3), 1))
        model.emission.components.means.copy_(torch.randn(6, 2))
        model.emission.log_weights.copy_(torch.log_softmax(torch.randn(3, 2), 1))
    return model


def _multinomial() -> HMM:
    model = HMM(3, "multinomial", n_features=4)
    with torch.no_grad():
        model.log_transmat.copy_(torch.log_softmax(torch.randn(3, 3), 1))
        model.emission.log_emission.copy_(torch.log_softmax(torch.randn(3, 4), 1))
    return model


def _counts(g: torch.Generator) -> torch.Tensor:
    x = torch.randint(0, 4, (2, 8, 4), generator=g).double()
    x[1, 5] = torch.nan                                                     # missing row
    return x


CASES = [
    ContractCase(id="hmm-categorical", make_model=_categorical, make_input=_tokens),
    ContractCase(id="hmm-gaussian-full", make_model=_gaussian, make_input=_features),
    ContractCase(id="hmm-gmm-tied", make_model=_mixture, make_input=_features),
    ContractCase(id="hmm-multinomial", make_model=_multinomial, make_input=_counts),
]
