"""Distill a categorical HMM from a language model (GeLaTo / Ctrl-G latent-variable
distillation): sample text from the LM with its KV cache, cluster the LM's last hidden state
of every sampled token with k-means (cluster = hidden state), count initial states,
transitions and emissions, then refine by stepwise EM on fresh samples.

Only :class:`seqprob.core.LanguageModel` is used (``run`` with a state), so the HMM layer does
not depend on ``seqprob.lm``; the sampling loop here is the short one distillation needs
(ancestral sampling, fixed length, hidden states kept), not the general decoder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from seqprob.core import LanguageModel
from seqprob.core.persist import load_checkpoint, save_checkpoint
from seqprob.core.validation import check_choice, check_float, check_int, describe
from seqprob.hmm.em import Statistics, expected_statistics, maximize, step_size, stepwise_update
from seqprob.hmm.model import HMM

_CHECKPOINT_KIND = "seqprob.hmm.distill"


@dataclasses.dataclass
class Samples:
    """Sampled token ids ``tokens`` (B, T), ``-1`` after the first EOS; ``lengths`` (B,)
    (the EOS included); ``hidden`` (B, T, H) or ``None``: the LM's last hidden state at each
    sampled token."""

    tokens: Tensor
    lengths: Tensor
    hidden: Tensor | None


@dataclasses.dataclass
class DistillResult:
    """The distilled ``hmm``; held-out log-likelihood per token of the HMM, of the initial
    (counted) HMM, of a unigram and of a bigram model estimated on the same training samples;
    ``history``: the held-out figure after each EM step."""

    hmm: HMM
    held_out: dict[str, float]
    history: list[float]


def _seed(random_state: int, purpose: str, index: int) -> int:
    digest = hashlib.sha256(f"{random_state}:{purpose}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _prompt_ids(lm: LanguageModel, prompts: Sequence[str] | None, batch_size: int
                ) -> tuple[Tensor, Tensor]:
    """Left-padded prompt ids and mask (B, P): the BOS token (or EOS) without prompts, else the
    prompts in turn."""
    tok = lm.tokenizer
    if prompts is None:
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if start is None:
            raise ValueError("prompts: the tokenizer has neither BOS nor EOS; give prompts")
        rows = [[int(start)]] * batch_size
    else:
        encoded = [tok.encode(p) for p in prompts]
        if not encoded or not all(encoded):
            raise ValueError(f"prompts: expected non-empty strings, got {describe(prompts)}")
        rows = [encoded[i % len(encoded)] for i in range(batch_size)]
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(r)) + list(r) for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids.to(lm.device), mask.to(lm.device)


@torch.no_grad()
def sample(lm: LanguageModel, batch_size: int, length: int, *, prompts: Sequence[str] | None
           = None, keep_hidden: bool = False, autocast_dtype: str | None = None,
           random_state: int = 0) -> Samples:
    """``batch_size`` ancestral samples of ``length`` tokens from ``lm`` (temperature 1), one
    KV-cached step per token; tokens after a row's first EOS are marked missing (-1).
    ``autocast_dtype`` (``"bfloat16"``, ``"float16"``): run the LM under ``torch.autocast`` in
    that dtype (about twice the CPU throughput where the CPU has bf16 instructions)."""
    if autocast_dtype is None:
        return _sample(lm, batch_size, length, prompts, keep_hidden, random_state)
    check_choice(autocast_dtype, "autocast_dtype", ("bfloat16", "float16"))
    with torch.autocast(lm.device.type, dtype=getattr(torch, autocast_dtype)):
        return _sample(lm, batch_size, length, prompts, keep_hidden, random_state)


def _sample(lm: LanguageModel, batch_size: int, length: int, prompts: Sequence[str] | None,
            keep_hidden: bool, random_state: int) -> Samples:
    generator = torch.Generator(device=lm.device).manual_seed(random_state)
    ids, mask = _prompt_ids(lm, prompts, batch_size)
    out = lm.run(input_ids=ids, attention_mask=mask)
    logits, state = out.logits[:, -1], out.state                                 # (B V)
    tokens, hidden = [], []
    for _ in range(length):
        token = torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=generator)
        out = lm.run(input_ids=token, state=state)                               # (B 1 V)
        logits, state = out.logits[:, -1], out.state
        tokens.append(token[:, 0])
        if keep_hidden:
            hidden.append(out.hidden[:, -1].float().cpu())
    tokens = torch.stack(tokens, 1).cpu()                                       # (B T)
    is_eos = torch.isin(tokens, torch.tensor(lm.eos_token_ids, dtype=torch.long))
    after = (is_eos.long().cumsum(1) - is_eos.long()) > 0                       # (B T)
    tokens = tokens.masked_fill(after, -1)
    lengths = (~after).sum(1)
    return Samples(tokens, lengths, torch.stack(hidden, 1) if keep_hidden else None)


def count_init(labels: Tensor, tokens: Tensor, lengths: Tensor, n_hidden: int,
               vocab_size: int, *, pseudocount: float) -> tuple[Tensor, Tensor, Tensor]:
    """Log initial (K,), transition (K, K) and emission (K, V) probabilities counted from the
    hidden-state ``labels`` (B, T) of ``tokens`` (B, T) with valid prefixes ``lengths`` (B,),
    each count plus ``pseudocount``."""
    valid = torch.arange(tokens.shape[1])[None] < lengths[:, None]              # (B T)
    start = torch.bincount(labels[:, 0], minlength=n_hidden).double()
    pair = valid[:, 1:] & valid[:, :-1]
    trans = torch.bincount((labels[:, :-1] * n_hidden + labels[:, 1:])[pair],
                           minlength=n_hidden * n_hidden).double().reshape(n_hidden, n_hidden)
    emit = torch.bincount((labels * vocab_size + tokens.clamp_min(0))[valid],
                          minlength=n_hidden * vocab_size).double().reshape(n_hidden, vocab_size)

    def normalize(counts: Tensor) -> Tensor:
        counts = counts + pseudocount
        return torch.log(counts / counts.sum(-1, keepdim=True)).float()

    return normalize(start), normalize(trans), normalize(emit)


def _cluster(hidden: Tensor, valid: Tensor, n_hidden: int, random_state: int) -> Tensor:
    """k-means labels (B, T) of the hidden states (B, T, H) (invalid positions get the
    nearest centre too, and are ignored by the counts)."""
    from sklearn.cluster import MiniBatchKMeans

    points = hidden[valid].numpy()
    if points.shape[0] < n_hidden:
        raise ValueError(f"n_hidden: expected at most the {points.shape[0]} sampled tokens of "
                         f"the initialization, got {n_hidden}; sample more")
    kmeans = MiniBatchKMeans(n_clusters=n_hidden, random_state=random_state % (2 ** 32),
                             n_init=3, batch_size=4096)
    kmeans.fit(points)
    flat = kmeans.predict(hidden.reshape(-1, hidden.shape[-1]).numpy())
    return torch.from_numpy(flat).long().reshape(hidden.shape[:2])


class NgramBaseline:
    """Unigram and bigram models counted from samples: the unigram with add-``pseudocount``
    smoothing; the bigram with a Dirichlet prior of strength ``vocab_size * pseudocount``
    centred on the unigram. Bigram counts are kept sparse (sorted pair codes ``a * V + b``
    and their counts): a dense (V, V) table would not fit for a real vocabulary."""

    def __init__(self, vocab_size: int, pseudocount: float):
        self.vocab_size, self.pseudocount = vocab_size, pseudocount
        self.uni = torch.zeros(vocab_size, dtype=torch.float64)      # (V)
        self.row = torch.zeros(vocab_size, dtype=torch.float64)      # (V) pairs starting at a
        self.pairs = torch.zeros(0, dtype=torch.long)                # (P) sorted codes
        self.pair_counts = torch.zeros(0, dtype=torch.float64)       # (P)

    def _pairs(self, tokens: Tensor) -> Tensor:
        valid = tokens >= 0
        pair = valid[:, 1:] & valid[:, :-1]
        return (tokens[:, :-1] * self.vocab_size + tokens[:, 1:])[pair]

    def add(self, samples: Samples) -> None:
        tokens = samples.tokens
        self.uni += torch.bincount(tokens[tokens >= 0], minlength=self.vocab_size).double()
        codes = self._pairs(tokens)
        self.row += torch.bincount(codes // self.vocab_size, minlength=self.vocab_size).double()
        merged = torch.cat([self.pairs, codes])
        weights = torch.cat([self.pair_counts, torch.ones(codes.shape[0], dtype=torch.float64)])
        self.pairs, inverse = torch.unique(merged, sorted=True, return_inverse=True)
        self.pair_counts = torch.zeros(self.pairs.shape[0], dtype=torch.float64).index_add_(
            0, inverse, weights)

    def _pair_count(self, codes: Tensor) -> Tensor:
        if self.pairs.numel() == 0:
            return torch.zeros(codes.shape[0], dtype=torch.float64)
        at = torch.searchsorted(self.pairs, codes).clamp(max=self.pairs.shape[0] - 1)
        return torch.where(self.pairs[at] == codes, self.pair_counts[at], 0.0)

    def log_likelihoods(self, samples: Samples) -> tuple[float, float]:
        """Held-out (unigram, bigram) log-likelihood per token of ``samples``."""
        tokens, valid = samples.tokens, samples.tokens >= 0
        p_uni = (self.uni + self.pseudocount) / (self.uni.sum() + self.pseudocount
                                                 * self.vocab_size)     # (V)
        strength = self.pseudocount * self.vocab_size
        codes = self._pairs(tokens)
        first, second = codes // self.vocab_size, codes % self.vocab_size
        p_bi = (self._pair_count(codes) + strength * p_uni[second]) / (self.row[first]
                                                                       + strength)
        uni = torch.log(p_uni[tokens[valid]]).sum()
        starts = torch.log(p_uni[tokens[:, 0][valid[:, 0]]]).sum()
        bi = torch.log(p_bi).sum() + starts
        n = float(valid.sum())
        return float(uni) / n, float(bi) / n


@torch.no_grad()
def hmm_log_likelihood(hmm: HMM, samples: Samples) -> float:
    """Log-likelihood per token of ``samples`` under ``hmm``."""
    post = hmm.posteriors(samples.tokens, samples.lengths)
    return float(post.log_likelihood.sum()) / float(samples.lengths.sum())


def _save(path: Path, hmm: HMM, running: Statistics, baseline: NgramBaseline, step: int,
          history: list[float], settings: dict) -> None:
    tensors = {"log_startprob": hmm.log_startprob, "log_transmat": hmm.log_transmat,
               "log_emission": hmm.emission.log_emission, "uni": baseline.uni,
               "row": baseline.row, "pairs": baseline.pairs,
               "pair_counts": baseline.pair_counts,
               **{f"stat_{i}": t for i, t in enumerate(running.tensors())}}
    save_checkpoint(path, tensors, kind=_CHECKPOINT_KIND,
                    config={"step": step, "history": history, "settings": settings,
                            "hmm": hmm.get_config()})


def _restore(path: Path, settings: dict) -> tuple[HMM, Statistics, NgramBaseline, int,
                                                   list[float]]:
    tensors, config, _ = load_checkpoint(path, kind=_CHECKPOINT_KIND)
    if config["settings"] != settings:
        raise ValueError(f"checkpoint: {str(path)!r} was written with other settings "
                         f"({config['settings']}); got {settings}")
    hmm = HMM(**config["hmm"])
    with torch.no_grad():
        hmm.log_startprob.copy_(tensors["log_startprob"])
        hmm.log_transmat.copy_(tensors["log_transmat"])
        hmm.emission.log_emission.copy_(tensors["log_emission"])
    stats = [tensors[f"stat_{i}"] for i in range(5)]
    running = Statistics(stats[0], stats[1], stats[2], {"obs": stats[3]}, stats[4])
    baseline = NgramBaseline(hmm.emission.n_symbols, settings["pseudocount"])
    baseline.uni, baseline.row = tensors["uni"], tensors["row"]
    baseline.pairs, baseline.pair_counts = tensors["pairs"], tensors["pair_counts"]
    return hmm, running, baseline, int(config["step"]), list(config["history"])


def distill(lm: LanguageModel, n_hidden: int, *, seq_len: int = 32, batch_size: int = 64,
            n_init_batches: int = 4, n_em_steps: int = 20, updates_per_batch: int = 1,
            n_held_out: int = 64, pseudocount: float = 0.01,
            prompts: Sequence[str] | None = None, autocast_dtype: str | None = None,
            checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 5,
            random_state: int = 0, verbose: bool = True) -> DistillResult:
    """Distill an ``n_hidden``-state categorical HMM over ``lm``'s vocabulary.

    Samples ``n_init_batches`` batches of ``batch_size`` sequences of ``seq_len`` tokens
    (from BOS, or from ``prompts`` in turn), clusters their hidden states into ``n_hidden``
    states and counts the initial HMM (``pseudocount`` added); then draws ``n_em_steps``
    fresh batches and makes ``updates_per_batch`` stepwise-EM updates on equal slices of each
    (large batches sample fast; small updates learn fast). ``autocast_dtype``: see
    :func:`sample`. ``checkpoint``: a file written every
    ``checkpoint_every`` steps and read back to resume (same settings required); a resumed
    run equals an uninterrupted one (every batch is drawn from its own seed).
    """
    if not isinstance(lm, LanguageModel):
        raise TypeError(f"lm: expected a seqprob LanguageModel, got {describe(lm)}")
    for name, value, low in (("n_hidden", n_hidden, 1), ("seq_len", seq_len, 2),
                             ("batch_size", batch_size, 1), ("n_init_batches", n_init_batches, 1),
                             ("n_em_steps", n_em_steps, 0), ("n_held_out", n_held_out, 1),
                             ("checkpoint_every", checkpoint_every, 1),
                             ("random_state", random_state, 0)):
        check_int(value, name, minimum=low)
    check_int(updates_per_batch, "updates_per_batch", minimum=1, maximum=batch_size)
    check_float(pseudocount, "pseudocount", low=0.0, low_open=True)
    if autocast_dtype is not None:
        check_choice(autocast_dtype, "autocast_dtype", ("bfloat16", "float16"))
    settings = {"n_hidden": n_hidden, "seq_len": seq_len, "batch_size": batch_size,
                "n_init_batches": n_init_batches, "pseudocount": pseudocount,
                "updates_per_batch": updates_per_batch, "autocast_dtype": autocast_dtype,
                "prompts": None if prompts is None else list(prompts),
                "random_state": random_state, "vocab_size": lm.vocab_size}
    path = None if checkpoint is None else Path(checkpoint)

    def draw(purpose: str, index: int, n: int, hidden: bool = False) -> Samples:
        return sample(lm, n, seq_len, prompts=prompts, keep_hidden=hidden,
                      autocast_dtype=autocast_dtype,
                      random_state=_seed(random_state, purpose, index))

    held_out = draw("held_out", 0, n_held_out)
    if path is not None and path.is_file():
        hmm, running, baseline, done, history = _restore(path, settings)
        init_ll = history[0]
    else:
        hmm, running, baseline = _initialize(lm, n_hidden, settings, draw, verbose)
        init_ll = hmm_log_likelihood(hmm, held_out)
        done, history = 0, [init_ll]
    for step in tqdm(range(done, n_em_steps), desc="distill EM", disable=not verbose,
                     initial=done, total=n_em_steps):
        batch = draw("em", step, batch_size)
        baseline.add(batch)
        for update, rows in enumerate(torch.arange(batch_size).tensor_split(updates_per_batch)):
            stats = expected_statistics(hmm, batch.tokens[rows], batch.lengths[rows])
            running = stepwise_update(running, stats,
                                      step_size(step * updates_per_batch + update))
            maximize(hmm, running)
        history.append(hmm_log_likelihood(hmm, held_out))
        if path is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == n_em_steps):
            _save(path, hmm, running, baseline, step + 1, history, settings)
    uni, bi = baseline.log_likelihoods(held_out)
    scores = {"hmm": history[-1], "initial_hmm": init_ll, "unigram": uni, "bigram": bi}
    return DistillResult(hmm, scores, history)


def _initialize(lm: LanguageModel, n_hidden: int, settings: dict, draw, verbose: bool
                ) -> tuple[HMM, Statistics, NgramBaseline]:
    """The counted HMM, its E-step statistics on the initialization samples (the start of
    stepwise EM) and the n-gram baselines fed with the same samples."""
    vocab, pseudocount = lm.vocab_size, settings["pseudocount"]
    batches = [draw("init", i, settings["batch_size"], hidden=True)
               for i in tqdm(range(settings["n_init_batches"]), desc="distill sampling",
                             disable=not verbose)]
    tokens = torch.cat([b.tokens for b in batches])                             # (N T)
    lengths = torch.cat([b.lengths for b in batches])                           # (N)
    hidden = torch.cat([b.hidden for b in batches])                             # (N T H)
    valid = torch.arange(tokens.shape[1])[None] < lengths[:, None]
    labels = _cluster(hidden, valid, n_hidden, settings["random_state"])
    log_start, log_trans, log_emit = count_init(labels, tokens, lengths, n_hidden, vocab,
                                                pseudocount=pseudocount)
    hmm = HMM(n_hidden, "categorical", n_symbols=vocab, start_pseudocount=pseudocount,
              trans_pseudocount=pseudocount, emission_options={"pseudocount": pseudocount})
    with torch.no_grad():
        hmm.log_startprob.copy_(log_start)
        hmm.log_transmat.copy_(log_trans)
        hmm.emission.log_emission.copy_(log_emit)
    baseline = NgramBaseline(vocab, pseudocount)
    baseline.add(Samples(tokens, lengths, None))
    running = expected_statistics(hmm, tokens, lengths)
    return hmm, running, baseline
