"""One batched decoding loop for every :class:`~seqprob.core.LanguageModel`: greedy,
sampling and beam search, with logits processors that keep per-row state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from seqprob.core import LanguageModel
from seqprob.core.validation import describe
from seqprob.lm.beam import beam_search
from seqprob.lm.decoding import DecodingOptions, GenerationResult, Scorer, encode_prompts, warp
from seqprob.lm.processors import LogitsProcessor


@torch.no_grad()
def generate(lm: LanguageModel, prompts: Sequence[str] | Sequence[Sequence[int]],
             max_new_tokens: int = 32, *, do_sample: bool = False, temperature: float = 1.0,
             top_k: int | None = None, top_p: float = 1.0, num_beams: int = 1,
             length_penalty: float = 1.0, min_new_tokens: int = 0,
             eos_token_id: int | Sequence[int] | None = None,
             logits_processors: Sequence[LogitsProcessor] = (),
             random_state: int | torch.Generator | None = None,
             verbose: bool = False) -> GenerationResult:
    """Continue each prompt (a string, or a list of token ids) by up to ``max_new_tokens``.

    Prompts are batched with left padding. Greedy by default; ``do_sample`` draws from the
    distribution after ``temperature``, ``top_k`` and ``top_p`` (in that order); ``num_beams``
    > 1 runs beam search, scoring finished hypotheses by summed log-prob over
    ``length ** length_penalty``. A row stops at any of ``eos_token_id`` (default: the model's
    EOS; ``()`` never stops) once ``min_new_tokens`` are out. ``logits_processors`` reweight
    the normalized next-token log-probs in order (see :class:`LogitsProcessor`).
    """
    if not isinstance(lm, LanguageModel):
        raise TypeError(f"lm: expected a seqprob LanguageModel, got {describe(lm)}")
    options = DecodingOptions.build(
        lm, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=do_sample,
        temperature=temperature, top_k=top_k, top_p=top_p, num_beams=num_beams,
        length_penalty=length_penalty, eos_token_id=eos_token_id)
    ids, mask = encode_prompts(lm, prompts, options)
    generator = _generator(random_state, ids.device) if do_sample else None
    progress = tqdm(total=options.max_new_tokens, desc="generate", disable=not verbose,
                    leave=False)
    with progress:
        if options.num_beams > 1:
            tokens, lp, model_lp, lengths, scores = beam_search(
                lm, ids, mask, options, logits_processors, progress)
        else:
            tokens, lp, model_lp, lengths, _ = _decode(lm, ids, mask, options,
                                                       logits_processors, generator, progress)
            scores = lp.sum(1)
    texts = [lm.tokenizer.decode(row[:n].tolist(), skip_special_tokens=True)
             for row, n in zip(tokens, lengths.tolist(), strict=True)]
    return GenerationResult(texts=texts, token_ids=tokens, logprobs=lp,
                            model_logprobs=model_lp, lengths=lengths, scores=scores)


class Decoded(NamedTuple):
    """What :func:`_decode` returns: tokens, decoding and model log-probs ``(batch, new)``,
    lengths ``(batch,)`` (EOS included) and, when kept, the LM's last hidden state after each
    new token ``(batch, new, hidden)`` fp32."""

    tokens: Tensor
    logprobs: Tensor
    model_logprobs: Tensor
    lengths: Tensor
    hidden: Tensor | None


def _generator(random_state: int | torch.Generator | None, device: torch.device):
    if random_state is None or isinstance(random_state, torch.Generator):
        return random_state
    if isinstance(random_state, bool) or not isinstance(random_state, int):
        raise TypeError(f"random_state: expected an int, a torch.Generator or None, got "
                        f"{describe(random_state)}")
    return torch.Generator(device=device).manual_seed(random_state)


def _decode(lm: LanguageModel, ids: Tensor, mask: Tensor, options: DecodingOptions,
            processors: Sequence[LogitsProcessor], generator: torch.Generator | None,
            progress, keep_hidden: bool = False) -> Decoded:
    """Greedy or sampled decoding of ``ids`` ``(batch, prompt)`` with the KV cache; stops
    early once every row has ended."""
    batch, steps = ids.shape[0], options.max_new_tokens
    scorer = Scorer(processors, options, ids)
    eos = torch.tensor(options.eos, dtype=torch.long, device=ids.device)
    tokens = ids.new_full((batch, steps), options.pad)                            # (B T)
    lps = torch.zeros(batch, steps, device=ids.device)                            # (B T)
    model_lps = torch.zeros(batch, steps, device=ids.device)                      # (B T)
    hidden = (torch.zeros(batch, steps, lm.hidden_size, device=ids.device)
              if keep_hidden else None)                                           # (B T H)
    done = torch.zeros(batch, dtype=torch.bool, device=ids.device)                # (B)
    lengths = torch.zeros(batch, dtype=torch.long, device=ids.device)             # (B)
    logits, state = lm.prefill(ids, attention_mask=mask)                          # (B V)
    for t in range(steps):
        lp, model_lp = scorer(logits, t)                                          # (B V)
        if options.do_sample:
            lp = warp(lp, options)
            token = torch.multinomial(lp.exp(), 1, generator=generator)[:, 0]     # (B)
        else:
            token = lp.argmax(-1)                                                 # (B)
        token = token.masked_fill(done, options.pad)
        tokens[:, t] = token
        lps[:, t] = lp.gather(1, token[:, None])[:, 0].masked_fill(done, 0.0)
        model_lps[:, t] = model_lp.gather(1, token[:, None])[:, 0].masked_fill(done, 0.0)
        lengths += ~done
        done |= torch.isin(token, eos)
        scorer.advance(token)
        progress.update()
        last = t + 1 == steps or bool(done.all())
        if keep_hidden:
            out = lm.run(input_ids=token[:, None], state=state)      # the sampled token's state
            logits, state = out.logits[:, -1], out.state
            hidden[:, t] = out.hidden[:, -1].float()
        elif not last:
            logits, state = lm.step(token, state)
        if last:
            break
    n = t + 1
    return Decoded(tokens[:, :n], lps[:, :n], model_lps[:, :n], lengths,
                   None if hidden is None else hidden[:, :n])
