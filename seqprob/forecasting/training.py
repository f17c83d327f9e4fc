"""The torch training loop every neural forecaster shares (NeuralForecaster, AutoTimes).

:func:`train` runs Adam over minibatches of training item ids for an epoch or step budget,
validates after every epoch (or every ``val_every`` steps and after the last), keeps the
state with the lowest validation score, stops after ``patience`` validations without
improvement, restores the best state and returns the learning curve. A model supplies only
``loss(items) -> scalar`` and ``validate() -> float``; arguments are trusted (the
forecasters validate their parameters once in ``fit``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm


class BudgetWarning(UserWarning):
    """Training was capped to fewer steps to fit ``max_seconds`` (see :func:`train`)."""


@dataclasses.dataclass
class Training:
    """What :func:`train` did.

    history : one ``{"epoch", "step", "train_loss", "val_mse"}`` per validation (the
        learning curve; ``train_loss`` is the mean over the items since the last one,
        ``val_mse`` NaN without a validation function).
    best_val_mse : the lowest validation score (inf without validation).
    steps : optimizer steps taken; stopped_early : True when patience ran out.
    """

    history: list[dict[str, float]]
    best_val_mse: float
    steps: int
    stopped_early: bool


def train(network: nn.Module, loss: Callable[[Tensor], Tensor], items: Tensor, *,
          batch_size: int, max_epochs: int, learning_rate: float,
          parameters: Iterable[nn.Parameter] | None = None, weight_decay: float = 0.0,
          max_steps: int | None = None, max_batches_per_epoch: int | None = None,
          cosine_schedule: bool = False, validate: Callable[[], float] | None = None,
          val_every: int | None = None, patience: int | None = None,
          state: Callable[[], dict[str, Tensor]] | None = None, seed: int | None = 0,
          max_seconds: float | None = None, verbose: bool = False,
          desc: str = "training") -> Training:
    """Train ``network`` in place and return the learning curve.

    loss : item ids ``(B,)`` -> the scalar training loss of that minibatch.
    items : training item ids ``(N,)``; each epoch visits them in a new random order,
        ``batch_size`` at a time, at most ``max_batches_per_epoch`` batches.
    max_epochs, max_steps : the budget (whichever ends first; ``max_steps=None``: epochs only).
    parameters : what Adam updates (default every parameter of ``network``).
    cosine_schedule : decay the learning rate to 0 over the budget (cosine).
    validate : -> the validation MSE (any score to minimize), called in eval mode without
        gradients after every epoch, or every ``val_every`` steps and after the last step.
    patience : stop after that many validations without a new best (None: never).
    state : -> the tensors to keep for the best score (default ``network.state_dict()``);
        restored with ``load_state_dict(strict=False)`` at the end.
    seed : seeds the batch order and the global torch RNG (dropout) for the run; the
        caller's RNG state is restored afterwards.
    max_seconds : when the first step's time says the budget's steps would take longer, the
        budget is cut to the steps that fit (the cosine schedule follows) with a
        :class:`BudgetWarning`; None: no cap.
    """
    per_epoch = math.ceil(len(items) / batch_size)
    if max_batches_per_epoch is not None:
        per_epoch = min(per_epoch, max_batches_per_epoch)
    total = max_epochs * per_epoch if max_steps is None else min(max_epochs * per_epoch,
                                                                 max_steps)
    params = list(network.parameters() if parameters is None else parameters)
    opt = torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total) \
        if cosine_schedule else None
    snapshot = state or network.state_dict
    gen = torch.Generator().manual_seed(0 if seed is None else seed)
    run = _Run(validate, patience, snapshot)
    bar = tqdm(total=total, desc=desc, disable=not verbose, leave=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 if seed is None else seed)
        for epoch in range(max_epochs):
            order = items[torch.randperm(len(items), generator=gen)]
            for batch in order.split(batch_size)[:per_epoch]:
                began = time.perf_counter()
                run.step(network, opt, sched, loss, batch)
                if run.steps == 1 and max_seconds is not None:
                    total = _capped(total, time.perf_counter() - began, max_seconds, desc)
                    bar.total = total
                    if sched is not None:
                        sched.T_max = total
                bar.update()
                bar.set_postfix(loss=f"{run.loss_sum / run.loss_count:.4f}")
                if val_every is not None and (run.steps % val_every == 0 or run.steps == total):
                    run.record(network, epoch, bar)
                if run.stopped or run.steps == total:
                    break
            if val_every is None:
                run.record(network, epoch, bar)
            if run.stopped or run.steps == total:
                break
    bar.close()
    if run.best_state is not None:
        network.load_state_dict(run.best_state, strict=False)
    network.eval()
    return Training(run.history, run.best, run.steps, run.stopped)


def _capped(total: int, step_seconds: float, max_seconds: float, desc: str) -> int:
    """The steps of ``total`` that fit ``max_seconds`` at ``step_seconds`` each (at least 1;
    a :class:`BudgetWarning` when that is fewer)."""
    fits = max(1, int(max_seconds / step_seconds))
    if fits < total:
        warnings.warn(f"{desc}: the first training step took {step_seconds:.2f} s, so "
                      f"{total} steps would take about {total * step_seconds / 60:.1f} min; "
                      f"training stops after {fits} steps (max_seconds={max_seconds:g})",
                      BudgetWarning, stacklevel=3)
    return min(total, fits)


class _Run:
    """The mutable state of one :func:`train` call."""

    def __init__(self, validate, patience, snapshot):
        self.validate, self.patience, self.snapshot = validate, patience, snapshot
        self.history: list[dict[str, float]] = []
        self.best, self.best_state, self.waited = np.inf, None, 0
        self.steps, self.stopped = 0, False
        self.loss_sum, self.loss_count = 0.0, 0

    def step(self, network, opt, sched, loss, batch) -> None:
        network.train()
        value = loss(batch)
        opt.zero_grad()
        value.backward()
        opt.step()
        if sched is not None:
            sched.step()
        self.steps += 1
        self.loss_sum += value.item() * len(batch)
        self.loss_count += len(batch)

    def record(self, network, epoch: int, bar: Any) -> None:
        """Validate, append to the history, keep the best state, count patience."""
        score = np.nan
        if self.validate is not None:
            network.eval()
            with torch.no_grad():
                score = float(self.validate())
        self.history.append({"epoch": epoch, "step": self.steps,
                             "train_loss": self.loss_sum / max(self.loss_count, 1),
                             "val_mse": score})
        bar.set_postfix(train=f"{self.history[-1]['train_loss']:.4f}", val=f"{score:.4f}")
        self.loss_sum, self.loss_count = 0.0, 0
        if self.validate is None:
            return
        if score < self.best:
            self.best, self.waited = score, 0
            self.best_state = copy.deepcopy(self.snapshot())
        else:
            self.waited += 1
            self.stopped = self.patience is not None and self.waited >= self.patience
