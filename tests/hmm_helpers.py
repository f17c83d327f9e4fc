"""Shared helpers for the HMM tests: random models and brute-force enumeration of paths."""

from __future__ import annotations

import itertools

import torch


def random_model(k: int, *, seed: int = 0, dtype=torch.float64, zeros: bool = False):
    """(log_init (K,), log_trans (K, K)); ``zeros`` adds structural zeros off the cycle."""
    g = torch.Generator().manual_seed(seed)
    init = torch.rand(k, generator=g, dtype=dtype) + 0.1
    trans = torch.rand(k, k, generator=g, dtype=dtype) + 0.05
    if zeros:
        keep = torch.eye(k, dtype=torch.bool) | torch.eye(k, dtype=torch.bool).roll(1, 1)
        trans = trans * keep
    return torch.log(init / init.sum()), torch.log(trans / trans.sum(1, keepdim=True))


def all_paths(log_init, log_trans, loglik_row, length):
    """Every path of ``length`` states with its log joint probability: (paths, log_probs)."""
    k = log_init.shape[0]
    paths = torch.tensor(list(itertools.product(range(k), repeat=length)))   # (P L)
    scores = log_init[paths[:, 0]] + loglik_row[0, paths[:, 0]]
    for t in range(1, length):
        scores = scores + log_trans[paths[:, t - 1], paths[:, t]] + loglik_row[t, paths[:, t]]
    return paths, scores
