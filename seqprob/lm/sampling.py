"""Ancestral sampling from a language model, with the LM's hidden state at each sampled token
when asked (HMM distillation clusters them): :func:`seqprob.lm.generate`'s loop with
``do_sample=True`` at temperature 1, fixed length, under optional ``torch.autocast``."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from seqprob.core import LanguageModel
from seqprob.core.validation import check_choice, check_int, describe
from seqprob.lm.decoding import DecodingOptions, encode_prompts
from seqprob.lm.generate import _decode, _generator


@dataclasses.dataclass
class Samples:
    """``token_ids`` ``(n, length)`` int64, the pad id after a row's end; ``lengths`` ``(n,)``
    new tokens up to and including the first EOS; ``hidden`` ``(n, length, hidden_size)``
    fp32 or ``None``: the LM's last hidden state after each sampled token (zeros after a row's
    end). All on the LM's device."""

    token_ids: Tensor
    lengths: Tensor
    hidden: Tensor | None


@torch.no_grad()
def sample(lm: LanguageModel, prompts: Sequence[str] | Sequence[Sequence[int]] | None,
           n: int, length: int, *, keep_hidden: bool = False, autocast_dtype: str | None = None,
           eos_token_id: int | Sequence[int] | None = None,
           random_state: int | torch.Generator | None = None,
           verbose: bool = False) -> Samples:
    """``n`` ancestral samples of up to ``length`` new tokens (temperature 1, no truncation),
    row ``r`` continuing ``prompts[r % len(prompts)]`` (texts or token-id lists; ``None``: the
    BOS token, or EOS without one). Same tokens as ``seqprob.lm.generate(lm, rows, length,
    do_sample=True, random_state=...)`` on the same rows; rows stop at ``eos_token_id``
    (default: the model's EOS). ``autocast_dtype`` (``"bfloat16"``, ``"float16"``): the LM runs
    under ``torch.autocast`` in that dtype (about twice the fp32 throughput on a CPU with bf16
    instructions; the usual choice on CUDA)."""
    if not isinstance(lm, LanguageModel):
        raise TypeError(f"lm: expected a seqprob LanguageModel, got {describe(lm)}")
    n = check_int(n, "n", minimum=1)
    if autocast_dtype is not None:
        check_choice(autocast_dtype, "autocast_dtype", ("bfloat16", "float16"))
    rows = _rows(lm, prompts, n)
    options = DecodingOptions.build(
        lm, max_new_tokens=length, min_new_tokens=0, do_sample=True, temperature=1.0,
        top_k=None, top_p=1.0, num_beams=1, length_penalty=1.0, eos_token_id=eos_token_id)
    ids, mask = encode_prompts(lm, rows, options)
    generator = _generator(random_state, ids.device)
    autocast = (contextlib.nullcontext() if autocast_dtype is None else
                torch.autocast(lm.device.type, dtype=getattr(torch, autocast_dtype)))
    progress = tqdm(total=length, desc="sample", disable=not verbose, leave=False)
    with progress, autocast:
        out = _decode(lm, ids, mask, options, (), generator, progress, keep_hidden)
    tokens = ids.new_full((n, length), options.pad)                              # (n T)
    tokens[:, :out.tokens.shape[1]] = out.tokens
    hidden = None
    if keep_hidden:
        hidden = out.hidden.new_zeros(n, length, out.hidden.shape[-1])          # (n T H)
        hidden[:, :out.hidden.shape[1]] = out.hidden
    return Samples(tokens, out.lengths, hidden)


def _rows(lm: LanguageModel, prompts, n: int) -> list:
    if prompts is None:
        tok = lm.tokenizer
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if start is None:
            raise ValueError("prompts: the tokenizer has neither BOS nor EOS to start from; "
                             "give prompts")
        return [[int(start)]] * n
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
        raise ValueError(f"prompts: expected None or a non-empty list of strings or token-id "
                         f"lists, got {describe(prompts)}")
    return [prompts[r % len(prompts)] for r in range(n)]
