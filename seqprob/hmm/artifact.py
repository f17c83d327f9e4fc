"""A compact file for a distilled categorical HMM: fp16 log-probabilities, emissions pruned to
the observed vocabulary.

A distilled HMM's emission matrix is ``(K, V)`` with V the LM's vocabulary (49,152 for
SmolLM2), but the samples it was trained on use only part of it. The artifact keeps the
columns of the observed tokens and, per state, the residual mass of all other tokens as one
shared floor (``log_floor[k]``: the log-probability of each unobserved token), so a keyword
never seen while sampling keeps a non-zero probability (constrained decoding needs that). With
add-pseudocount M-steps every unobserved token of a state has the same probability, so the
floor is exact and the only loss is the fp16 rounding. One safetensors file with a JSON
config, written atomically; loading unpickles nothing.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor

from seqprob.core.persist import load_checkpoint, save_checkpoint
from seqprob.core.validation import check_tensor, describe
from seqprob.hmm.model import HMM

ARTIFACT_KIND = "seqprob.hmm.artifact"


def _log_normalized(x: Tensor) -> Tensor:
    return x - torch.logsumexp(x, dim=-1, keepdim=True)


def save_artifact(hmm: HMM, path: str | os.PathLike, observed: Tensor, *,
                  metadata: dict[str, Any] | None = None) -> Path:
    """Save categorical ``hmm`` pruned to ``observed`` (a bool mask ``(V,)`` or token-count
    vector ``(V,)``: nonzero marks an observed token); ``metadata`` (JSON) goes into the
    config (e.g. the LM fingerprint and the recipe)."""
    if not isinstance(hmm, HMM) or hmm.emission_kind != "categorical":
        raise TypeError(f"hmm: expected a categorical seqprob HMM, got {describe(hmm)}")
    vocab = hmm.emission.n_symbols
    check_tensor(observed, "observed")
    if observed.shape != (vocab,):
        raise ValueError(f"observed: expected shape ({vocab},), got {tuple(observed.shape)}")
    keep = observed.cpu() != 0                                                   # (V)
    ids = keep.nonzero()[:, 0]                                                   # (O)
    log_emit = hmm.emission.log_emission.detach().double().cpu()                 # (K V)
    n_rest = vocab - ids.numel()
    if n_rest:
        log_floor = torch.logsumexp(log_emit[:, ~keep], dim=1) - math.log(n_rest)   # (K)
    else:
        log_floor = torch.full((hmm.n_states,), float("-inf"), dtype=torch.float64)
    tensors = {"log_startprob": hmm.log_startprob.detach().half(),
               "log_transmat": hmm.log_transmat.detach().half(),
               "log_emission_observed": log_emit[:, ids].half(),
               "log_floor": log_floor.float(), "observed_ids": ids.int()}
    config = {"hmm": hmm.get_config(), "n_states": hmm.n_states, "vocab_size": vocab,
              "n_observed": int(ids.numel()), "metadata": dict(metadata or {})}
    return save_checkpoint(path, tensors, kind=ARTIFACT_KIND, config=config)


def artifact_config(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON config of an artifact, read from the file header only."""
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("kind") != ARTIFACT_KIND:
        raise ValueError(f"path: expected an HMM artifact ({ARTIFACT_KIND}), got kind "
                         f"{meta.get('kind')!r} in {str(path)!r}")
    return json.loads(meta["config"])


def load_artifact(path: str | os.PathLike) -> HMM:
    """The full ``HMM`` (K, V) of an artifact, float32, rows renormalized after fp16."""
    tensors, config, _ = load_checkpoint(path, kind=ARTIFACT_KIND)
    k, vocab = config["n_states"], config["vocab_size"]
    ids = tensors["observed_ids"].long()
    log_emit = tensors["log_floor"].double()[:, None].expand(k, vocab).clone()   # (K V)
    log_emit[:, ids] = tensors["log_emission_observed"].double()
    hmm = HMM(**config["hmm"])
    with torch.no_grad():
        hmm.log_startprob.copy_(_log_normalized(tensors["log_startprob"].double()))
        hmm.log_transmat.copy_(_log_normalized(tensors["log_transmat"].double()))
        hmm.emission.log_emission.copy_(_log_normalized(log_emit))
    return hmm


def load_hmm(path: str | os.PathLike) -> HMM:
    """An ``HMM`` from either file format: an artifact (:func:`load_artifact`) or a full
    ``HMM.save`` checkpoint."""
    with safe_open(str(path), framework="pt") as fh:
        kind = (fh.metadata() or {}).get("kind")
    return load_artifact(path) if kind == ARTIFACT_KIND else HMM.load(path)
