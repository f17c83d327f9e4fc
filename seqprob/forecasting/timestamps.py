"""AutoTimes' textual timestamps: one LLM embedding per segment, cached on disk.

Segment ``i`` of a series with time stamps ``index`` covers rows ``[i, i + S)``; its text is
``"This is Time Series from {index[i]} to {index[i + S - 1]}"`` and its embedding is the
LLM's final hidden state at the text's last token (Liu et al., AutoTimes, NeurIPS 2024).
The table of every segment start is computed once per (time stamps, LLM, S) and kept in a
safetensors file named by a hash of the three, so custom data sets need no separate
preprocessing step.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from seqprob.core.language import LanguageModel
from seqprob.core.persist import load_checkpoint, save_checkpoint
from seqprob.forecasting.autotimes_net import lm_hidden

TEMPLATE = "This is Time Series from {start} to {end}"
KIND = "seqprob.forecasting.timestamps"


def default_cache_dir() -> Path:
    """``$SEQPROB_CACHE/autotimes`` or ``~/.cache/seqprob/autotimes``."""
    root = os.environ.get("SEQPROB_CACHE") or Path.home() / ".cache" / "seqprob"
    return Path(root) / "autotimes"


def segment_texts(index: pd.DatetimeIndex, segment_length: int) -> list[str]:
    """The text of every segment start ``0 .. len(index) - S``."""
    stamps = index.astype(str)
    return [TEMPLATE.format(start=stamps[i], end=stamps[i + segment_length - 1])
            for i in range(len(index) - segment_length + 1)]


def lm_identity(lm: LanguageModel) -> str:
    """A string that changes with the LLM's class, sizes and input-embedding weights."""
    n = min(lm.vocab_size, 64)
    with torch.inference_mode():
        rows = lm.embed(torch.arange(n, device=lm.device)[None]).float().cpu().numpy()
    digest = hashlib.sha256(rows.tobytes()).hexdigest()[:16]
    return f"{type(lm).__name__}-{lm.vocab_size}-{lm.hidden_size}-{digest}"


def cache_key(index: pd.DatetimeIndex, lm: LanguageModel, segment_length: int) -> str:
    """Hash of the time stamps (ns), the LLM's identity and ``segment_length``."""
    h = hashlib.sha256(np.asarray(index.asi8).tobytes())
    h.update(f"|{lm_identity(lm)}|{segment_length}|{TEMPLATE}".encode())
    return h.hexdigest()[:32]


def timestamp_embeddings(lm: LanguageModel, index: pd.DatetimeIndex, segment_length: int, *,
                         cache_dir: str | os.PathLike | None = None, batch_size: int = 64,
                         verbose: bool = True) -> Tensor:
    """Embeddings ``(len(index) - S + 1, hidden_size)`` (fp32, CPU) of every segment start.

    Read from ``cache_dir`` (default :func:`default_cache_dir`) when present, otherwise
    computed under ``torch.inference_mode`` and written there.
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"index: expected a pandas DatetimeIndex, got {type(index).__name__}")
    if len(index) < segment_length:
        raise ValueError(f"index: expected at least segment_length={segment_length} time "
                         f"stamps, got {len(index)}")
    folder = default_cache_dir() if cache_dir is None else Path(cache_dir)
    path = folder / f"{cache_key(index, lm, segment_length)}.safetensors"
    if path.is_file():
        return load_checkpoint(path, kind=KIND)[0]["embeddings"]
    texts = segment_texts(index, segment_length)
    table = embed_texts(lm, texts, batch_size=batch_size, verbose=verbose)
    save_checkpoint(path, {"embeddings": table}, kind=KIND,
                    config={"segment_length": segment_length, "lm": lm_identity(lm),
                            "first": texts[0], "count": len(texts)})
    return table


def embed_texts(lm: LanguageModel, texts: list[str], *, batch_size: int = 64,
                verbose: bool = True) -> Tensor:
    """Final hidden state at each text's last token: ``(len(texts), hidden_size)``, fp32."""
    out = []
    for start in tqdm(range(0, len(texts), batch_size), desc="timestamp embeddings",
                      disable=not verbose, leave=False):
        ids, mask = _left_padded(lm, texts[start: start + batch_size])
        with torch.inference_mode():
            hidden, _ = lm_hidden(lm, input_ids=ids, attention_mask=mask)  # (B, T, D)
        out.append(hidden[:, -1].float().cpu())
    return torch.cat(out)


def _left_padded(lm: LanguageModel, texts: list[str]) -> tuple[Tensor, Tensor]:
    """Token ids and mask ``(B, T)``, left-padded so every text ends at the last column."""
    encoded = [lm.tokenizer.encode(t) for t in texts]
    width = max(len(e) for e in encoded)
    pad = lm.tokenizer.pad_token_id
    pad = 0 if pad is None else pad
    ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=lm.device)
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded],
                        device=lm.device)
    return ids, mask
