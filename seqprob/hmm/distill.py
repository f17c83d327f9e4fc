"""Distill a categorical HMM from a language model (GeLaTo / Ctrl-G latent-variable
distillation): sample continuations of prompts from the LM (:func:`seqprob.lm.sample`, chat
template applied when the LM has one, so the HMM learns the distribution that chat decoding
draws from), cluster the LM's last hidden state of every sampled token with k-means (cluster =
hidden state), count initial states, transitions and emissions, then refine by stepwise EM on
fresh samples.

End of sequence is explicit, not missing data: every sample is padded after its first EOS
with that EOS up to ``seq_len``, so the HMM is trained on complete sequences and learns an
absorbing "ended" behaviour (states that emit EOS and stay among themselves). This needs no
change to the HMM, its inference or the control tables (a reserved absorbing state would
need a structural zero pattern in every consumer), and it gives constrained decoding the
probability that a text has ended by step t — which it needs to let a text finish with EOS —
while a missing-data treatment would give the HMM no notion of ending at all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from seqprob.core import LanguageModel
from seqprob.core.persist import load_checkpoint, save_checkpoint
from seqprob.core.validation import check_choice, check_float, check_int, describe
from seqprob.hmm.em import Statistics, expected_statistics, maximize, step_size, stepwise_update
from seqprob.hmm.model import HMM
from seqprob.lm import Samples, chat_prompt, instructions, sample

_CHECKPOINT_KIND = "seqprob.hmm.distill"


@dataclasses.dataclass
class Batch:
    """Training sequences ``tokens`` ``(B, T)``, each padded after its end with its EOS (on the
    LM's device); ``lengths`` ``(B,)`` the sampled tokens up to and including EOS; ``hidden``
    ``(B, T, H)`` fp32 on the CPU or ``None``: the LM's last hidden state at each sampled
    token."""

    tokens: Tensor
    lengths: Tensor
    hidden: Tensor | None


@dataclasses.dataclass
class DistillResult:
    """The distilled ``hmm``; held-out log-likelihood per token of the HMM, of the initial
    (counted) HMM, of a unigram and of a bigram model estimated on the same training samples;
    ``history``: the held-out figure after initialization and after each EM step;
    ``token_counts`` ``(V,)``: how often each token occurs in the training samples (zero
    marks the unobserved vocabulary); ``held_out_tokens`` ``(n_held_out, seq_len)``: the
    end-padded held-out samples (to score other models on); ``ended``: their share that reached
    EOS within ``seq_len``."""

    hmm: HMM
    held_out: dict[str, float]
    history: list[float]
    token_counts: Tensor
    held_out_tokens: Tensor
    ended: float


def _seed(random_state: int, purpose: str, index: int) -> int:
    digest = hashlib.sha256(f"{random_state}:{purpose}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def repeat_last(x: Tensor, lengths: Tensor) -> Tensor:
    """``x`` ``(B, T)`` with every position at or after ``lengths`` ``(B,)`` set to the row's
    value at ``lengths - 1`` (for end-padded samples: the EOS that ended the row)."""
    after = torch.arange(x.shape[1], device=x.device)[None] >= lengths[:, None]  # (B T)
    last = x.gather(1, (lengths - 1).clamp_min(0)[:, None])                      # (B 1)
    return torch.where(after, last, x)


def count_init(labels: Tensor, tokens: Tensor, n_states: int, vocab_size: int, *,
               pseudocount: float) -> tuple[Tensor, Tensor, Tensor]:
    """Log initial (K,), transition (K, K) and emission (K, V) probabilities counted from the
    hidden-state ``labels`` (B, T) of ``tokens`` (B, T), each count plus ``pseudocount``."""
    k = n_states
    start = torch.bincount(labels[:, 0], minlength=k).double()
    trans = torch.bincount((labels[:, :-1] * k + labels[:, 1:]).reshape(-1),
                           minlength=k * k).double().reshape(k, k)
    emit = torch.bincount((labels * vocab_size + tokens).reshape(-1),
                          minlength=k * vocab_size).double().reshape(k, vocab_size)

    def normalize(counts: Tensor) -> Tensor:
        counts = counts + pseudocount
        return torch.log(counts / counts.sum(-1, keepdim=True)).float()

    return normalize(start), normalize(trans), normalize(emit)


def _cluster(batch: Batch, n_states: int, max_points: int, random_state: int,
             device: torch.device) -> Tensor:
    """k-means labels (B, T) of the hidden states, fit (scikit-learn, CPU) on at most
    ``max_points`` sampled tokens, assigned to all of them on ``device``; positions after a
    row's end take the label of its EOS."""
    from sklearn.cluster import MiniBatchKMeans

    hidden, lengths = batch.hidden, batch.lengths.cpu()
    valid = torch.arange(hidden.shape[1])[None] < lengths[:, None]              # (B T)
    points = hidden[valid]                                                       # (N H)
    if points.shape[0] < n_states:
        raise ValueError(f"n_states: expected at most the {points.shape[0]} sampled tokens of "
                         f"the initialization, got {n_states}; sample more")
    generator = torch.Generator().manual_seed(random_state)
    subset = torch.randperm(points.shape[0], generator=generator)[:max_points]
    kmeans = MiniBatchKMeans(n_clusters=n_states, random_state=random_state % (2 ** 32),
                             n_init=3, batch_size=4096)
    kmeans.fit(points[subset].numpy())
    centres = torch.from_numpy(kmeans.cluster_centers_).float().to(device)      # (K H)
    flat = hidden.reshape(-1, hidden.shape[-1])
    labels = torch.cat([torch.cdist(chunk.to(device), centres).argmin(-1)
                        for chunk in flat.split(65536)])
    return repeat_last(labels.reshape(hidden.shape[:2]), batch.lengths.to(device))


class NgramBaseline:
    """Unigram and bigram models counted from token batches ``(B, T)`` (kept on the CPU): the
    unigram with add-``pseudocount`` smoothing; the bigram with a Dirichlet prior of strength
    ``vocab_size * pseudocount`` centred on the unigram. Bigram counts are kept sparse (sorted
    pair codes ``a * V + b`` and their counts): a dense (V, V) table would not fit for a real
    vocabulary."""

    def __init__(self, vocab_size: int, pseudocount: float):
        self.vocab_size, self.pseudocount = vocab_size, pseudocount
        self.uni = torch.zeros(vocab_size, dtype=torch.float64)      # (V)
        self.row = torch.zeros(vocab_size, dtype=torch.float64)      # (V) pairs starting at a
        self.pairs = torch.zeros(0, dtype=torch.long)                # (P) sorted codes
        self.pair_counts = torch.zeros(0, dtype=torch.float64)       # (P)

    def _pairs(self, tokens: Tensor) -> Tensor:
        return (tokens[:, :-1] * self.vocab_size + tokens[:, 1:]).reshape(-1)

    def add(self, tokens: Tensor) -> None:
        tokens = tokens.cpu()
        self.uni += torch.bincount(tokens.reshape(-1), minlength=self.vocab_size).double()
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

    def log_likelihoods(self, tokens: Tensor) -> tuple[float, float]:
        """Held-out (unigram, bigram) log-likelihood per token of ``tokens`` ``(B, T)``."""
        tokens = tokens.cpu()
        p_uni = (self.uni + self.pseudocount) / (self.uni.sum() + self.pseudocount
                                                 * self.vocab_size)     # (V)
        strength = self.pseudocount * self.vocab_size
        codes = self._pairs(tokens)
        first, second = codes // self.vocab_size, codes % self.vocab_size
        p_bi = (self._pair_count(codes) + strength * p_uni[second]) / (self.row[first]
                                                                       + strength)
        uni = torch.log(p_uni[tokens]).sum()
        bi = torch.log(p_bi).sum() + torch.log(p_uni[tokens[:, 0]]).sum()
        n = float(tokens.numel())
        return float(uni) / n, float(bi) / n


@torch.no_grad()
def hmm_log_likelihood(hmm: HMM, tokens: Tensor) -> float:
    """Log-likelihood per token of ``tokens`` ``(B, T)`` under ``hmm``."""
    post = hmm.posteriors(tokens.to(hmm.log_startprob.device))
    return float(post.log_likelihood.sum()) / tokens.numel()


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


def _restore(path: Path, settings: dict, device: torch.device
             ) -> tuple[HMM, Statistics, NgramBaseline, int, list[float]]:
    tensors, config, _ = load_checkpoint(path, kind=_CHECKPOINT_KIND)
    if config["settings"] != settings:
        raise ValueError(f"checkpoint: {str(path)!r} was written with other settings "
                         f"({config['settings']}); got {settings}")
    hmm = HMM(**config["hmm"]).to(device)
    with torch.no_grad():
        hmm.log_startprob.copy_(tensors["log_startprob"])
        hmm.log_transmat.copy_(tensors["log_transmat"])
        hmm.emission.log_emission.copy_(tensors["log_emission"])
    stats = [tensors[f"stat_{i}"].to(device) for i in range(5)]
    running = Statistics(stats[0], stats[1], stats[2], {"obs": stats[3]}, stats[4])
    baseline = NgramBaseline(hmm.emission.n_symbols, settings["pseudocount"])
    baseline.uni, baseline.row = tensors["uni"], tensors["row"]
    baseline.pairs, baseline.pair_counts = tensors["pairs"], tensors["pair_counts"]
    return hmm, running, baseline, int(config["step"]), list(config["history"])


def _check(lm, n_states, seq_len, batch_size, n_init_batches, n_em_steps, updates_per_batch,
           n_held_out, pseudocount, max_kmeans_points, autocast_dtype, checkpoint_every,
           random_state) -> None:
    if not isinstance(lm, LanguageModel):
        raise TypeError(f"lm: expected a seqprob LanguageModel, got {describe(lm)}")
    for name, value, low in (("n_states", n_states, 1), ("seq_len", seq_len, 2),
                             ("batch_size", batch_size, 1), ("n_init_batches", n_init_batches, 1),
                             ("n_em_steps", n_em_steps, 0), ("n_held_out", n_held_out, 1),
                             ("max_kmeans_points", max_kmeans_points, 1),
                             ("checkpoint_every", checkpoint_every, 1),
                             ("random_state", random_state, 0)):
        check_int(value, name, minimum=low)
    check_int(updates_per_batch, "updates_per_batch", minimum=1, maximum=batch_size)
    check_float(pseudocount, "pseudocount", low=0.0, low_open=True)
    if autocast_dtype is not None:
        check_choice(autocast_dtype, "autocast_dtype", ("bfloat16", "float16"))


def _prompt_texts(lm: LanguageModel, prompts: Sequence[str] | None, chat: bool) -> list[str]:
    texts = list(instructions()) if prompts is None else prompts
    if isinstance(texts, str) or not texts or not all(isinstance(p, str) and p for p in texts):
        raise ValueError(f"prompts: expected None or a non-empty list of non-empty strings, got "
                         f"{describe(prompts)}")
    return [chat_prompt(lm.tokenizer, p) for p in texts] if chat else list(texts)


def distill(lm: LanguageModel, n_states: int, *, seq_len: int = 32, batch_size: int = 64,
            n_init_batches: int = 4, n_em_steps: int = 20, updates_per_batch: int = 1,
            n_held_out: int = 64, pseudocount: float = 0.01,
            prompts: Sequence[str] | None = None, chat: bool = True,
            max_kmeans_points: int = 100_000, autocast_dtype: str | None = None,
            checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 5,
            sample_cache: dict | None = None, random_state: int = 0,
            verbose: bool = True) -> DistillResult:
    """Distill an ``n_states``-state categorical HMM over ``lm``'s vocabulary.

    Every batch continues ``batch_size`` prompts drawn (with replacement, from the batch's
    seed) from ``prompts`` (default: :func:`seqprob.lm.instructions`, the shipped instruction
    set), each wrapped in the LM's chat template when ``chat`` and the tokenizer has one, by
    ``seq_len`` sampled tokens, end-padded with EOS (see the module docstring).
    ``n_init_batches`` batches initialize the HMM: k-means on the hidden states (fit on at most
    ``max_kmeans_points`` tokens) gives the states, counts (plus ``pseudocount``) the
    parameters. Then ``n_em_steps`` fresh batches each get ``updates_per_batch`` stepwise-EM
    updates on equal slices (large batches sample fast; small updates learn fast). Tensors live
    on ``lm.device`` (EM included); ``autocast_dtype``: see :func:`seqprob.lm.sample`.

    ``checkpoint``: a file written after initialization and every ``checkpoint_every`` EM
    steps, read back to resume (same settings required); a resumed run equals an
    uninterrupted one (every batch is drawn from its own seed). ``sample_cache``: a dict shared
    by calls that differ only in ``n_states`` (or EM settings): each batch is sampled once and
    reused, so several K are compared on one sample set.
    """
    _check(lm, n_states, seq_len, batch_size, n_init_batches, n_em_steps, updates_per_batch,
           n_held_out, pseudocount, max_kmeans_points, autocast_dtype, checkpoint_every,
           random_state)
    texts = _prompt_texts(lm, prompts, chat)
    sampling = {"seq_len": seq_len, "autocast_dtype": autocast_dtype,
                "random_state": random_state, "vocab_size": lm.vocab_size,
                "prompts_sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest()}
    settings = {**sampling, "n_states": n_states, "batch_size": batch_size,
                "n_init_batches": n_init_batches, "pseudocount": pseudocount,
                "updates_per_batch": updates_per_batch, "max_kmeans_points": max_kmeans_points,
                "end": "eos-padded"}
    total = (n_held_out + (n_init_batches + n_em_steps) * batch_size) * seq_len
    progress = tqdm(total=total, desc="distill", unit="tok", unit_scale=True, smoothing=0.05,
                    disable=not verbose)
    draw = _drawer(lm, texts, sampling, sample_cache, progress)
    path = None if checkpoint is None else Path(checkpoint)
    with progress:
        held_out = draw("held_out", 0, n_held_out)
        if path is not None and path.is_file():
            hmm, running, baseline, done, history = _restore(path, settings, lm.device)
            progress.update((n_init_batches + done) * batch_size * seq_len)
        else:
            hmm, running, baseline = _initialize(lm, settings, draw, progress)
            done, history = 0, [hmm_log_likelihood(hmm, held_out.tokens)]
            if path is not None:
                _save(path, hmm, running, baseline, 0, history, settings)
        for step in range(done, n_em_steps):
            batch = draw("em", step, batch_size)
            baseline.add(batch.tokens)
            running = _em_step(hmm, running, batch.tokens, step, updates_per_batch)
            history.append(hmm_log_likelihood(hmm, held_out.tokens))
            progress.set_postfix(held_out=f"{history[-1]:.3f}")
            if path is not None and ((step + 1) % checkpoint_every == 0
                                     or step + 1 == n_em_steps):
                _save(path, hmm, running, baseline, step + 1, history, settings)
    uni, bi = baseline.log_likelihoods(held_out.tokens)
    scores = {"hmm": history[-1], "initial_hmm": history[0], "unigram": uni, "bigram": bi}
    eos = torch.tensor(lm.eos_token_ids, dtype=torch.long, device=held_out.tokens.device)
    ended = float(torch.isin(held_out.tokens[:, -1], eos).float().mean())   # end-padded rows
    return DistillResult(hmm, scores, history, baseline.uni.clone(), held_out.tokens,
                         ended)


def _em_step(hmm: HMM, running: Statistics, tokens: Tensor, step: int, updates: int
             ) -> Statistics:
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    for update, part in enumerate(rows.tensor_split(updates)):
        stats = expected_statistics(hmm, tokens[part])
        running = stepwise_update(running, stats, step_size(step * updates + update))
        maximize(hmm, running)
    return running


def _drawer(lm: LanguageModel, texts: list[str], sampling: dict, cache: dict | None,
            progress) -> Callable[..., Batch]:
    """``draw(purpose, index, n, hidden=False)``: batch ``index`` of ``purpose``, sampled from
    its own seed (prompts and tokens), taken from ``cache`` when it is there."""
    key_prefix = json.dumps(sampling, sort_keys=True)

    def draw(purpose: str, index: int, n: int, hidden: bool = False) -> Batch:
        key = (key_prefix, purpose, index, n, hidden)
        if cache is not None and key in cache:
            progress.update(n * sampling["seq_len"])
            return cache[key]
        seed = _seed(sampling["random_state"], purpose, index)
        picks = torch.randint(len(texts), (n,), generator=torch.Generator().manual_seed(seed))
        out: Samples = sample(lm, [texts[i] for i in picks.tolist()], n, sampling["seq_len"],
                              keep_hidden=hidden, autocast_dtype=sampling["autocast_dtype"],
                              random_state=seed)
        batch = Batch(repeat_last(out.token_ids, out.lengths), out.lengths,
                      None if out.hidden is None else out.hidden.cpu())
        progress.update(n * sampling["seq_len"])
        if cache is not None:
            cache[key] = batch
        return batch

    return draw


def _initialize(lm: LanguageModel, settings: dict, draw, progress
                ) -> tuple[HMM, Statistics, NgramBaseline]:
    """The counted HMM (on ``lm.device``), its E-step statistics on the initialization samples
    (the start of stepwise EM) and the n-gram baselines fed with the same samples."""
    vocab, pseudocount, k = lm.vocab_size, settings["pseudocount"], settings["n_states"]
    batches = [draw("init", i, settings["batch_size"], hidden=True)
               for i in range(settings["n_init_batches"])]
    init = Batch(torch.cat([b.tokens for b in batches]), torch.cat([b.lengths for b in batches]),
                 torch.cat([b.hidden for b in batches]))
    progress.set_postfix_str("k-means")
    labels = _cluster(init, k, settings["max_kmeans_points"], settings["random_state"],
                      lm.device)
    log_start, log_trans, log_emit = count_init(labels, init.tokens, k, vocab,
                                                pseudocount=pseudocount)
    hmm = HMM(k, "categorical", n_symbols=vocab, start_pseudocount=pseudocount,
              trans_pseudocount=pseudocount,
              emission_options={"pseudocount": pseudocount}).to(lm.device)
    with torch.no_grad():
        hmm.log_startprob.copy_(log_start)
        hmm.log_transmat.copy_(log_trans)
        hmm.emission.log_emission.copy_(log_emit)
    baseline = NgramBaseline(vocab, pseudocount)
    baseline.add(init.tokens)
    running = expected_statistics(hmm, init.tokens)
    return hmm, running, baseline
