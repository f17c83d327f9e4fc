"""Beam search over a :class:`~seqprob.core.LanguageModel`, batched over prompts.

Each prompt keeps ``num_beams`` running hypotheses. At every step the best
``max(2, 1 + n_eos) * num_beams`` continuations (by summed log-prob) are taken; among the first
``num_beams`` of them, those ending in EOS (or reaching ``max_new_tokens``) enter the prompt's
pool of finished hypotheses, scored by summed log-prob over ``length ** length_penalty``;
the best ``num_beams`` others keep running, and the model state and the processor states
follow them through ``State.reorder``. A prompt is done when its pool is full and its best
running hypothesis, normalized at the current length, cannot beat the pool's worst (the
usual heuristic, as in transformers with ``early_stopping=False``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor

from seqprob.core import LanguageModel
from seqprob.lm.decoding import DecodingOptions, Scorer, length_normalized
from seqprob.lm.processors import LogitsProcessor


@dataclasses.dataclass
class _Hypotheses:
    """Histories of ``n`` hypotheses per prompt."""

    tokens: Tensor     # (batch, n, steps) int64
    lp: Tensor         # (batch, n, steps)
    model_lp: Tensor   # (batch, n, steps)

    def take(self, index: Tensor) -> _Hypotheses:
        """Hypotheses ``index`` ``(batch, m)`` of each prompt (copies)."""
        def pick(t: Tensor) -> Tensor:
            return t.gather(1, index[:, :, None].expand(-1, -1, t.shape[2]))
        return _Hypotheses(pick(self.tokens), pick(self.lp), pick(self.model_lp))

    def cat(self, other: _Hypotheses) -> _Hypotheses:
        return _Hypotheses(*(torch.cat([a, b], dim=1) for a, b in
                             zip(dataclasses.astuple(self), dataclasses.astuple(other),
                                 strict=True)))


def beam_search(lm: LanguageModel, ids: Tensor, mask: Tensor, options: DecodingOptions,
                processors: Sequence[LogitsProcessor], progress
                ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Best hypothesis per prompt of ``ids`` ``(batch, prompt)``: tokens, decoding and model
    log-probs ``(batch, new)``, lengths and length-penalized scores ``(batch,)``."""
    batch, beams, steps = ids.shape[0], options.num_beams, options.max_new_tokens
    device = ids.device
    expand = torch.arange(batch, device=device).repeat_interleave(beams)          # (R)
    logits, state = lm.prefill(ids, attention_mask=mask)                          # (B V)
    logits, state = logits.index_select(0, expand), state.reorder(expand)         # (R V)
    scorer = Scorer(processors, options, ids.index_select(0, expand), mask.index_select(0, expand))
    eos = torch.tensor(options.eos, dtype=torch.long, device=device)
    keep = min(max(2, 1 + len(options.eos)) * beams, beams * logits.shape[1])
    rank_ok = torch.arange(keep, device=device) < beams                           # (K)
    offsets = torch.arange(batch, device=device)[:, None] * beams                 # (B 1)

    def empty(n: int) -> _Hypotheses:
        return _Hypotheses(ids.new_full((batch, n, steps), options.pad),
                           torch.zeros(batch, n, steps, device=device),
                           torch.zeros(batch, n, steps, device=device))

    running = torch.full((batch, beams), float("-inf"), device=device)            # (B nb)
    running[:, 0] = 0.0
    hyps, pool = empty(beams), empty(beams)
    pool_scores = torch.full((batch, beams), float("-inf"), device=device)        # (B nb)
    pool_lengths = torch.zeros(batch, beams, dtype=torch.long, device=device)     # (B nb)
    open_ = torch.ones(batch, dtype=torch.bool, device=device)                    # (B)
    for t in range(steps):
        lp, model_lp = scorer(logits, t)                                          # (R V)
        flat_lp, flat_model_lp = lp.view(batch, -1), model_lp.view(batch, -1)     # (B nb*V)
        top, idx = (running.view(-1, 1) + lp).view(batch, -1).topk(keep)          # (B K)
        source, token = idx // lp.shape[1], idx % lp.shape[1]                     # (B K)
        cands = hyps.take(source)
        cands.tokens[:, :, t] = token
        cands.lp[:, :, t] = flat_lp.gather(1, idx)
        cands.model_lp[:, :, t] = flat_model_lp.gather(1, idx)
        hits = torch.isin(token, eos) | (t + 1 == steps)                          # (B K)

        finished = hits & rank_ok & open_[:, None]
        new_scores = length_normalized(top, t + 1, options.length_penalty)
        merged = torch.cat([pool_scores, new_scores.masked_fill(~finished, float("-inf"))], 1)
        pool_scores, best = merged.topk(beams)                                     # (B nb)
        pool = pool.cat(cands).take(best)
        pool_lengths = torch.cat([pool_lengths, torch.full_like(top, t + 1, dtype=torch.long)],
                                 1).gather(1, best)

        running, chosen = top.masked_fill(hits, float("-inf")).topk(beams)        # (B nb)
        hyps = cands.take(chosen)
        worst = pool_scores.min(1).values
        best_possible = length_normalized(running[:, 0], t + 1, options.length_penalty)
        open_ &= ~(torch.isfinite(pool_scores).all(1) & (best_possible <= worst))
        progress.update()
        if t + 1 == steps or not bool(open_.any()):
            break
        beam_index = (source.gather(1, chosen) + offsets).view(-1)                  # (R)
        next_tokens = token.gather(1, chosen).view(-1)                              # (R)
        scorer.advance(next_tokens, beam_index)
        logits, state = lm.step(next_tokens, state.reorder(beam_index))
    lengths = pool_lengths[:, 0]
    n = int(lengths.max())
    return (pool.tokens[:, 0, :n], pool.lp[:, 0, :n], pool.model_lp[:, 0, :n], lengths,
            pool_scores[:, 0])
