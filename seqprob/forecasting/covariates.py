"""The covariate term of the neural forecasters: past and future exogenous variables.

:class:`CovariateHead` maps the covariates of a window, ``(B, lookback + H, k)`` (the context
rows, then the H forecast rows), linearly onto every output ``(B, H, width, n_outputs)``. An
output ``h`` sees all past rows and the future rows up to and including ``h`` (a causal mask),
so when a forecast is rolled forward past the requested horizon, the rows after it (never
given) cannot change the steps that are kept.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CovariateHead(nn.Module):
    """Linear effect of ``n_covariates`` exogenous series on ``(H, width, n_outputs)`` outputs.

    The weights start at zero: before training the forecaster is its covariate-free self.
    """

    def __init__(self, lookback: int, output_length: int, n_covariates: int, width: int,
                 n_outputs: int):
        super().__init__()
        self.lookback, self.output_length = lookback, output_length
        self.out_shape = (output_length, width, n_outputs)
        outs = width * n_outputs
        self.past = nn.Linear(lookback * n_covariates, output_length * outs)
        nn.init.zeros_(self.past.weight)
        nn.init.zeros_(self.past.bias)
        # future[h, j]: the weight of future row j on output h, kept only for j <= h
        self.future = nn.Parameter(torch.zeros(output_length, output_length, n_covariates,
                                               outs))
        self.register_buffer("mask", torch.tril(torch.ones(output_length, output_length)),
                             persistent=False)

    def forward(self, covariates: Tensor) -> Tensor:
        """``covariates (B, lookback + H, k)`` -> ``(B, H, width, n_outputs)``."""
        past = covariates[:, : self.lookback].flatten(1)  # (B, L k)
        future = covariates[:, self.lookback:]  # (B, H, k)
        weight = self.future * self.mask[:, :, None, None]  # (H, H, k, outs)
        out = self.past(past).view(len(covariates), self.output_length, -1)  # (B, H, outs)
        out = out + torch.einsum("bjk,hjko->bho", future, weight)
        return out.view(len(covariates), *self.out_shape)
