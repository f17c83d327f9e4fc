"""Default HMMs and attributes for a language model: the HMM shipped with the package for
the LM when there is one (matched by the LM's fingerprint), else built on first use and cached
on disk.

The shipped artifact (``seqprob/control/data/<model>-hmm.safetensors``, see
:mod:`seqprob.hmm.artifact`) is rebuilt exactly by ``seqprob distill --default`` from
:data:`DEFAULT_RECIPE`. The cache folder is ``$SEQPROB_CACHE`` or ``~/.cache/seqprob``; an
entry's file name holds a fingerprint of the LM (class, sizes, a sample of its weights) and of
the build settings, so a different model or different settings never reuse a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from seqprob.control.trace import (
    TokenAttribute,
    fit_from_texts,
    nontoxic_teacher,
    positive_teacher,
)
from seqprob.core import LanguageModel
from seqprob.core.device import fast_autocast_dtype
from seqprob.core.persist import load_checkpoint, save_checkpoint
from seqprob.core.validation import check_choice
from seqprob.hmm import HMM, distill
from seqprob.hmm.artifact import artifact_config, load_artifact
from seqprob.lm import sample

# the fallback for an LM without a shipped HMM: a small HMM that distills on one CPU core in a
# few minutes for a 135M-parameter LM (bf16 sampling, see seqprob.core.device.fast_autocast_dtype;
# about twice that in fp32): 8,192 tokens for the latent-variable initialization, 24,576 for
# stepwise EM in minibatches of 16 samples (large sampling batches are fast, small EM updates
# learn fast); on ~35k tokens 32 states beat 48 and 64 (held-out log-likelihood, BENCHMARKS.md)
DEFAULT_DISTILL = {"n_states": 32, "seq_len": 32, "batch_size": 128, "n_init_batches": 2,
                   "n_em_steps": 6, "updates_per_batch": 8, "n_held_out": 64,
                   "pseudocount": 0.01, "random_state": 0}
# the shipped HMM's recipe (`seqprob distill --default`): 1,048,576 training tokens (64 batches
# of 512 prompted samples of 32 tokens; 8 batches initialize, 56 refine in 448 stepwise-EM
# updates of 64 samples), 16,384 held-out tokens; K = 512 was best by held-out log-likelihood
# among 256 / 512 / 1024 on the same samples (BENCHMARKS.md, distilled on an H200)
DEFAULT_RECIPE = {"n_states": 512, "seq_len": 32, "batch_size": 512, "n_init_batches": 8,
                  "n_em_steps": 56, "updates_per_batch": 8, "n_held_out": 512,
                  "pseudocount": 0.01, "max_kmeans_points": 100_000, "random_state": 0}
DEFAULT_MODEL = "smollm2-135m"
ARTIFACT_DIR = Path(__file__).parent / "data"
TEACHERS = {"nontoxic": nontoxic_teacher, "positive": positive_teacher}
_ATTRIBUTE_KIND = "seqprob.control.attribute"


def cache_dir() -> Path:
    """``$SEQPROB_CACHE`` or ``~/.cache/seqprob``."""
    return Path(os.environ.get("SEQPROB_CACHE") or Path.home() / ".cache" / "seqprob")


@torch.no_grad()
def lm_fingerprint(lm: LanguageModel) -> str:
    """A short hash of the LM's class, sizes and a sample of its weights."""
    digest = hashlib.sha256(f"{type(lm).__name__}:{lm.vocab_size}:{lm.hidden_size}".encode())
    for p in list(lm.parameters())[:2] + list(lm.parameters())[-1:]:
        digest.update(p.detach().reshape(-1)[:4096].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _key(lm: LanguageModel, settings: dict) -> str:
    text = json.dumps(settings, sort_keys=True)
    return f"{lm_fingerprint(lm)}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def artifact_path(model: str) -> Path:
    """Where the shipped HMM artifact of a known model lives (it may not exist yet)."""
    return ARTIFACT_DIR / f"{model}-hmm.safetensors"


def shipped_hmm_path(lm: LanguageModel) -> Path | None:
    """The shipped artifact distilled from ``lm`` (same fingerprint), or ``None``."""
    if not ARTIFACT_DIR.is_dir():
        return None
    fingerprint = lm_fingerprint(lm)
    for path in sorted(ARTIFACT_DIR.glob("*-hmm.safetensors")):
        if artifact_config(path)["metadata"].get("lm_fingerprint") == fingerprint:
            return path
    return None


def default_hmm(lm: LanguageModel, *, verbose: bool = True, **settings) -> HMM:
    """The HMM for ``lm``: without ``settings``, the shipped artifact when one was distilled
    from this LM; otherwise (or with ``settings``) the cached HMM distilled from ``lm`` with
    :data:`DEFAULT_DISTILL` updated by ``settings`` (keyword arguments of
    :func:`seqprob.hmm.distill`; ``autocast_dtype`` defaults to
    :func:`~seqprob.core.device.fast_autocast_dtype`), distilled and saved on first use."""
    shipped = None if settings else shipped_hmm_path(lm)
    if shipped is not None:
        return load_artifact(shipped)
    settings = {**DEFAULT_DISTILL, "autocast_dtype": fast_autocast_dtype(lm.device),
                **settings}
    path = cache_dir() / f"hmm-{_key(lm, settings)}.safetensors"
    if path.is_file():
        return HMM.load(path)
    result = distill(lm, verbose=verbose, **settings)
    if verbose:
        scores = ", ".join(f"{k} {v:.3f}" for k, v in result.held_out.items())
        print(f"distilled HMM, held-out log-likelihood per token: {scores}")
    result.hmm.save(path)
    return result.hmm


def default_attribute(lm: LanguageModel, name: str, *, n_texts: int = 64, length: int = 24,
                      random_state: int = 0, verbose: bool = True) -> TokenAttribute:
    """A token-factorized attribute ``name`` (``"nontoxic"``, ``"positive"``) fit to
    ``n_texts`` samples of ``length`` tokens from ``lm`` and to every vocabulary token's text
    (``fit_from_texts(..., lexicon=True)``), scored by the offline teacher; cached."""
    check_choice(name, "attribute", tuple(TEACHERS))
    settings = {"name": name, "n_texts": n_texts, "length": length,
                "random_state": random_state, "lexicon": True}
    path = cache_dir() / f"attribute-{_key(lm, settings)}.safetensors"
    if path.is_file():
        tensors, _, _ = load_checkpoint(path, kind=_ATTRIBUTE_KIND)
        return TokenAttribute(tensors["weights"], name)
    if verbose:
        print(f"fitting attribute {name!r} on {n_texts} samples from the LM")
    samples = sample(lm, None, n_texts, length, random_state=random_state, verbose=verbose)
    texts = [lm.tokenizer.decode(row[:n].tolist(), skip_special_tokens=True)
             for row, n in zip(samples.token_ids, samples.lengths.tolist(), strict=True)]
    attribute = fit_from_texts(texts, lm.tokenizer, TEACHERS[name], vocab_size=lm.vocab_size,
                               name=name, lexicon=True)
    save_checkpoint(path, {"weights": attribute.weights}, kind=_ATTRIBUTE_KIND,
                    config=settings)
    return attribute
