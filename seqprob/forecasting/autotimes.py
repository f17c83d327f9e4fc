"""AutoTimes (Liu et al., NeurIPS 2024): a frozen LLM as an autoregressive forecaster.

Each channel is its own series (channel independence). A window is z-scored with the
training rows' statistics, then instance-normalized by its context's own mean and standard
deviation, cut into non-overlapping segments of length S, and fed to
:class:`~seqprob.forecasting.autotimes_net.AutoTimesNet`; training minimizes the MSE of the
next segment at every position. Any horizon is forecast by rolling the network forward one
segment at a time on the LLM's KV cache and trimming the overshoot, so one fitted model
serves every horizon — and every lookback up to the trained one. In-context forecasting
prepends prompt segments (earlier rows of the same or another series) to the lookback.
"""

from __future__ import annotations

import os
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import Tensor
from tqdm.auto import tqdm

from seqprob.core.constraints import DeviceString
from seqprob.core.device import resolve_device
from seqprob.core.language import LanguageModel
from seqprob.core.persist import kind_of, load_checkpoint, register
from seqprob.core.validation import check_int
from seqprob.forecasting.autotimes_net import PROJECTORS, AutoTimesNet
from seqprob.forecasting.base import (
    Forecaster,
    _restore_params,
    _series_from_meta,
)
from seqprob.forecasting.series import Series, as_series
from seqprob.forecasting.timestamps import lm_identity, timestamp_embeddings
from seqprob.forecasting.training import train
from seqprob.forecasting.windows import StandardScaler, window_starts

EPS = 1e-5


def resolve_lm(lm: Any) -> LanguageModel | None:
    """A :class:`LanguageModel` from an instance, a ``seqprob.lm.load`` name/path, or None."""
    if lm is None or isinstance(lm, LanguageModel):
        return lm
    if isinstance(lm, (str, Path)):
        from seqprob.lm import load

        return load(lm)
    raise TypeError(f"lm: expected a seqprob LanguageModel, a model name or path for "
                    f"seqprob.lm.load, or None (no LLM), got {type(lm).__name__}")


def instance_normalize(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``x (B, T)`` standardized per row; returns ``(normalized, mean (B, 1), std (B, 1))``."""
    mean = x.mean(dim=1, keepdim=True)
    std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + EPS)
    return (x - mean) / std, mean, std


@register
class AutoTimesForecaster(Forecaster):
    """AutoTimes over any ``seqprob.lm`` language model; see the module docstring.

    Parameters
    ----------
    lm : a LanguageModel, a name or path for :func:`seqprob.lm.load` (default the offline
        SmolLM2-135M), or None: "AutoTimes without the LLM" (the projectors meet directly).
        The LLM is frozen in place (``requires_grad_(False)``).
    segment_length : S, rows per segment (one LLM token).
    lookback : rows of context in training, a multiple of S; forecasts use the last
        ``lookback`` rows of longer histories and all whole segments of shorter ones.
    projector : "mlp" or "linear" in and out projectors; ``projector_hidden``,
        ``projector_layers``, ``dropout`` shape the MLP.
    width : the projectors' embedding width when ``lm`` is None.
    timestamps : mix the LLM embedding of "This is Time Series from {start} to {end}" into
        each segment (needs a datetime index); cached under ``cache_dir``.
    max_epochs, max_steps : training stops at whichever ends first (``max_steps=None``: no
        step limit); Adam with a cosine learning-rate decay (the shared loop,
        :func:`~seqprob.forecasting.training.train`).
    max_seconds : when the first training step's time says the steps would take longer, fewer
        steps are taken (a ``BudgetWarning`` says how many); None: no cap.
    max_val_windows : validation windows (evenly spaced) scored after each epoch, or every
        ``val_every`` optimizer steps (and after the last) when given; the best projectors
        (lowest validation MSE) are kept; ``patience`` validations without a better one stop
        training (None: never).

    After ``fit``: ``network_``, ``scaler_``, ``trainable_fraction_`` (trainable parameters
    over all parameters, LLM included), ``history_`` (one ``{"epoch", "step", "train_loss",
    "val_mse"}`` per validation: the learning curve), ``best_val_mse_``.
    """

    _parameter_constraints: ClassVar[dict] = {
        "lm": "no_validation",  # resolve_lm says what it accepts
        "segment_length": [Interval(Integral, 1, None, closed="left")],
        "lookback": [Interval(Integral, 1, None, closed="left")],
        "projector": [StrOptions(set(PROJECTORS))],
        "projector_hidden": [Interval(Integral, 1, None, closed="left")],
        "projector_layers": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "width": [Interval(Integral, 1, None, closed="left"), None],
        "timestamps": ["boolean"],
        "cache_dir": [str, os.PathLike, None],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "max_steps": [Interval(Integral, 1, None, closed="left"), None],
        "max_seconds": [Interval(Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "max_val_windows": [Interval(Integral, 1, None, closed="left")],
        "val_every": [Interval(Integral, 1, None, closed="left"), None],
        "patience": [Interval(Integral, 1, None, closed="left"), None],
        "inference_batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [DeviceString()],
        "random_state": [Interval(Integral, 0, None, closed="left"), None],
        "verbose": ["verbose"],
    }

    def __init__(self, lm: Any = "smollm2-135m", *, segment_length: int = 96,
                 lookback: int = 672, projector: str = "mlp", projector_hidden: int = 256,
                 projector_layers: int = 2, dropout: float = 0.0, width: int | None = None,
                 timestamps: bool = False, cache_dir: str | None = None, max_epochs: int = 10,
                 max_steps: int | None = None, max_seconds: float | None = None,
                 batch_size: int = 32,
                 learning_rate: float = 1e-3, weight_decay: float = 0.0,
                 max_val_windows: int = 1024, val_every: int | None = None,
                 patience: int | None = None, inference_batch_size: int = 256,
                 device: str = "cpu", random_state: int | None = 0, verbose: bool = True):
        self.lm = lm
        self.segment_length = segment_length
        self.lookback = lookback
        self.projector = projector
        self.projector_hidden = projector_hidden
        self.projector_layers = projector_layers
        self.dropout = dropout
        self.width = width
        self.timestamps = timestamps
        self.cache_dir = cache_dir
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.max_seconds = max_seconds
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.max_val_windows = max_val_windows
        self.val_every = val_every
        self.patience = patience
        self.inference_batch_size = inference_batch_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ---- validation --------------------------------------------------------------------
    def _check_params(self) -> None:
        s, lookback = self.segment_length, self.lookback
        if lookback < s or lookback % s:
            nearest = sorted({max(lookback // s, 1) * s, (lookback // s + 1) * s})
            raise ValueError(f"lookback: expected a multiple of segment_length={s} (AutoTimes "
                             f"cuts the context into whole segments), got {lookback} = "
                             f"{lookback // s} x {s} + {lookback % s}; use "
                             f"{' or '.join(map(str, nearest))}")
        if self.lm is None and self.width is None:
            raise ValueError("width: expected the projectors' embedding width when lm=None "
                             "(AutoTimes without the LLM), got None")

    def _min_history(self) -> int:
        return self.segment_length

    def _min_fit_history(self) -> int:
        return self.lookback + self.segment_length

    # ---- fitting -----------------------------------------------------------------------
    def _fit(self, y, X, y_val):
        self.scaler_ = StandardScaler().fit(y.values)
        self.network_ = self._build(resolve_lm(self.lm))
        self.trainable_fraction_ = self._trainable_fraction()
        self._train(self._windows(y, "y"),
                    None if y_val is None else self._windows(y_val, "y_val",
                                                             limit=self.max_val_windows))

    def _build(self, lm: LanguageModel | None) -> AutoTimesNet:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0 if self.random_state is None else self.random_state)
            net = AutoTimesNet(lm, self.segment_length, width=self.width,
                               projector=self.projector, projector_hidden=self.projector_hidden,
                               projector_layers=self.projector_layers, dropout=self.dropout,
                               timestamps=bool(self.timestamps))
        return net.to(resolve_device(self.device))

    def _trainable_fraction(self) -> float:
        net = self.network_
        if net.lm is not None and any(p.requires_grad for p in net.lm.parameters()):
            raise RuntimeError("lm: AutoTimes keeps the LLM frozen, but some of its parameters "
                               "require gradients")
        trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
        return trainable / sum(p.numel() for p in net.parameters())

    def _windows(self, series: Series, name: str, limit: int | None = None) -> dict[str, Any]:
        """Training windows: z-scored rows, window starts, the timestamp table if used."""
        values = series.values
        starts = window_starts(len(values), self.lookback, self.segment_length)
        n = len(starts) * values.shape[1]
        if limit is not None and n > limit:
            pick = np.linspace(0, n - 1, limit).round().astype(np.int64)
        else:
            pick = np.arange(n)
        return {"values": torch.as_tensor(self.scaler_.transform(values), dtype=torch.float32),
                "starts": torch.as_tensor(starts), "pick": torch.as_tensor(pick),
                "marks": self._marks_table(series.index, name)}

    def _marks_table(self, index: pd.Index, name: str) -> Tensor | None:
        """Timestamp embeddings of every segment start ``(len(index) - S + 1, D)`` or None."""
        if not self.timestamps:
            return None
        if self.network_.lm is None:
            raise ValueError("timestamps: timestamp embeddings come from the LLM, so they need "
                             "lm to be a language model, got lm=None")
        if not isinstance(index, pd.DatetimeIndex):
            raise ValueError(f"{name}: timestamps=True needs time stamps — a pandas or xarray "
                             f"series with a DatetimeIndex — got a {type(index).__name__} "
                             f"(numpy arrays have none); pass such a series or use "
                             f"timestamps=False")
        return timestamp_embeddings(self.network_.lm, index, self.segment_length,
                                    cache_dir=self.cache_dir, verbose=self.verbose)

    def _batch(self, data: dict[str, Any], items: Tensor) -> tuple[Tensor, ...]:
        """Inputs ``(B, N, S)``, targets ``(B, N, S)``, marks, mean and std ``(B, 1, 1)``."""
        s, lookback = self.segment_length, self.lookback
        n_channels = data["values"].shape[1]
        start, channel = data["starts"][items // n_channels], items % n_channels
        rows = start[:, None] + torch.arange(lookback + s)  # (B, L + S)
        window = data["values"][rows, channel[:, None]]  # (B, L + S)
        context, mean, std = instance_normalize(window[:, :lookback])
        x = context.reshape(len(items), -1, s)  # (B, N, S)
        target = window[:, s:].reshape(len(items), -1, s)  # (B, N, S), z-scored scale
        marks = None
        if data["marks"] is not None:
            seg = start[:, None] + s * torch.arange(lookback // s)  # (B, N)
            marks = data["marks"][seg]  # (B, N, D)
        return x, target, marks, mean[:, :, None], std[:, :, None]

    def _loss(self, data: dict[str, Any], items: Tensor) -> Tensor:
        dev = resolve_device(self.device)
        x, target, marks, mean, std = (None if t is None else t.to(dev)
                                       for t in self._batch(data, items))
        pred, _ = self.network_(x, marks=marks)  # (B, N, S)
        return torch.mean((pred * std + mean - target) ** 2)

    def _train(self, data: dict[str, Any], valid: dict[str, Any] | None) -> None:
        """Train the projectors with the shared loop; keep those with the best validation."""
        run = train(self.network_, lambda items: self._loss(data, items), data["pick"],
                    parameters=self.network_.projector_parameters(),
                    batch_size=self.batch_size, max_epochs=self.max_epochs,
                    max_steps=self.max_steps, learning_rate=self.learning_rate,
                    weight_decay=self.weight_decay, cosine_schedule=True,
                    validate=None if valid is None else lambda: self._validate(valid),
                    val_every=self.val_every, patience=self.patience,
                    state=self.network_.projector_state, seed=self.random_state,
                    max_seconds=self.max_seconds, verbose=self.verbose, desc="AutoTimes")
        self.history_, self.best_val_mse_ = run.history, run.best_val_mse

    def _validate(self, data: dict[str, Any]) -> float:
        """Next-segment MSE (every position) over the validation windows."""
        total = 0.0
        with torch.inference_mode():
            for items in data["pick"].split(self.inference_batch_size):
                total += self._loss(data, items).item() * len(items)
        return total / len(data["pick"])

    # ---- forecasting -------------------------------------------------------------------
    def predict(self, horizon: int, X: Any = None, *, prompt: Any = None, y: Any = None
                ) -> Any:
        """Forecast the next ``horizon`` steps; ``prompt`` (rows ``(P, channels)`` of the same
        or another series, P a multiple of S) is prepended to the lookback (in-context);
        ``y``: forecast after this new series instead of the fitted one (same channels)."""
        horizon, _, series, _ = self._prepare(horizon, X, y)
        values = self._rollout(series.values[None], horizon, self._prompt(prompt, 1),
                               self._history_starts(1, series.index))[0]
        return series.wrap(values, series.future_index(horizon))

    def predict_windows(self, contexts: np.ndarray, horizon: int, *, prompt: Any = None,
                        start_times: Any = None) -> np.ndarray:
        """Forecasts ``(n, horizon, channels)`` after each context ``(n, length, channels)``.

        prompt : rows ``(P, channels)`` prepended to every context, or ``(n, P, channels)``
            one per context (in-context forecasting).
        start_times : with ``timestamps=True``, the time stamp of each context's first row
            ``(n,)`` (the fitted series' frequency continues it).
        """
        contexts = self._check_contexts(contexts)
        n = len(contexts)
        return self._rollout(contexts, check_int(horizon, "horizon", minimum=1),
                             self._prompt(prompt, n), self._window_starts(start_times, n))

    def _forecast(self, history, horizon, X_hist, X_future):
        starts = self._history_starts(1)
        return self._rollout(history[None], horizon, None, starts)[0]

    def _prompt(self, prompt: Any, n: int) -> np.ndarray | None:
        """``prompt`` as ``(n, P, channels)`` raw rows, checked, or None."""
        if prompt is None:
            return None
        if self.timestamps:
            raise ValueError("prompt: in-context forecasting is not combined with timestamp "
                             "embeddings; fit with timestamps=False to use prompts")
        s, c = self.segment_length, self.series_.n_channels
        arr = np.asarray(as_series(prompt, "prompt").values if np.ndim(prompt) < 3
                         else prompt, dtype=np.float64)
        arr = np.broadcast_to(arr, (n, *arr.shape)) if arr.ndim == 2 else arr
        if arr.ndim != 3 or arr.shape[0] != n or arr.shape[2] != c or arr.shape[1] % s \
                or arr.shape[1] == 0:
            raise ValueError(f"prompt: expected (P, {c}) or ({n}, P, {c}) rows with P a "
                             f"positive multiple of segment_length={s}, got shape "
                             f"{np.shape(prompt)}")
        if not np.isfinite(arr).all():
            raise ValueError("prompt: expected finite values, got NaN or inf")
        return arr

    # ---- timestamps at forecast time ---------------------------------------------------
    def _history_starts(self, n: int, index: pd.Index | None = None
                        ) -> pd.DatetimeIndex | None:
        """First time stamps of ``n`` histories that start where ``index`` (default: the
        fitted series' index) starts."""
        if not self.timestamps:
            return None
        index = self.series_.index if index is None else index
        if not isinstance(index, pd.DatetimeIndex):
            raise ValueError("y: a model fitted with timestamps=True forecasts a series with a "
                             f"DatetimeIndex, got {type(index).__name__}")
        return index[:1].repeat(n)

    def _window_starts(self, start_times: Any, n: int) -> pd.DatetimeIndex | None:
        if not self.timestamps:
            if start_times is not None:
                raise ValueError("start_times: only used with timestamps=True; pass None")
            return None
        if start_times is None:
            raise ValueError(f"start_times: this model mixes timestamp embeddings, so each "
                             f"context needs the time stamp of its first row; expected {n} "
                             f"time stamps, got None")
        stamps = pd.DatetimeIndex(np.asarray(start_times).reshape(-1))
        if len(stamps) != n:
            raise ValueError(f"start_times: expected {n} time stamps, got {len(stamps)}")
        return stamps

    def _rollout_marks(self, starts: pd.DatetimeIndex, first_row: int, n_seg: int
                       ) -> Tensor:
        """Marks ``(n, n_seg, D)`` of segments beginning ``first_row`` rows after each start."""
        s, freq = self.segment_length, self.series_.index.freq
        begin = starts.min()
        offsets = np.asarray((starts - begin) / freq, dtype=np.int64)  # (n,)
        rows = int(offsets.max()) + first_row + n_seg * s
        timeline = pd.date_range(begin, periods=rows, freq=freq)
        table = timestamp_embeddings(self.network_.lm, timeline, s, cache_dir=self.cache_dir,
                                     verbose=self.verbose)
        seg = offsets[:, None] + first_row + s * np.arange(n_seg)  # (n, n_seg)
        return table[torch.as_tensor(seg)]

    # ---- the rollout -------------------------------------------------------------------
    def _rollout(self, contexts: np.ndarray, horizon: int, prompt: np.ndarray | None,
                 starts: pd.DatetimeIndex | None) -> np.ndarray:
        """Raw contexts ``(n, T, C)`` -> forecasts ``(n, horizon, C)``."""
        s, lookback = self.segment_length, self.lookback
        n, length, c = contexts.shape
        used = min(lookback, length // s * s)
        z = self.scaler_.transform(contexts[:, length - used:])  # (n, used, C)
        if prompt is not None:
            z = np.concatenate([self.scaler_.transform(prompt), z], axis=1)
        series = torch.as_tensor(np.moveaxis(z, 2, 1).reshape(n * c, -1),
                                 dtype=torch.float32)  # (n C, T)
        n_steps = -(-horizon // s)
        marks = None
        if starts is not None:
            n_seg = used // s + n_steps - 1
            marks = self._rollout_marks(starts, length - used, n_seg)  # (n, n_seg, D)
            marks = marks.repeat_interleave(c, dim=0)  # (n C, n_seg, D)
        size = self.inference_batch_size
        out = [self._roll(series[i: i + size], n_steps,
                          None if marks is None else marks[i: i + size])
               for i in tqdm(range(0, n * c, size), desc="AutoTimes forecast", leave=False,
                             disable=not self.verbose or n * c <= size)]
        pred = torch.cat(out)[:, :horizon].double().numpy()  # (n C, horizon)
        pred = np.moveaxis(pred.reshape(n, c, horizon), 1, 2)  # (n, horizon, C)
        return self.scaler_.inverse_transform(pred)

    def _roll(self, series: Tensor, n_steps: int, marks: Tensor | None) -> Tensor:
        """Normalized rollout of ``series (B, T)``: ``n_steps`` segments ``(B, n_steps S)``."""
        dev = resolve_device(self.device)
        s = self.segment_length
        x, mean, std = instance_normalize(series.to(dev))
        n_ctx = x.shape[1] // s
        ctx_marks = None if marks is None else marks[:, :n_ctx].to(dev)
        with torch.inference_mode():
            y, state = self.network_(x.reshape(len(x), n_ctx, s), marks=ctx_marks)
            segs = [y[:, -1]]
            for k in range(1, n_steps):
                mark = None if marks is None else marks[:, n_ctx + k - 1].to(dev)
                nxt, state = self.network_.step(segs[-1], state, mark)
                segs.append(nxt)
        return (torch.cat(segs, dim=1) * std + mean).cpu()

    # ---- persistence -------------------------------------------------------------------
    def to(self, device):
        if hasattr(self, "network_"):
            self.network_.to(resolve_device(device))
        return self

    def _json_params(self) -> dict[str, Any]:
        params = dict(self.get_params(deep=False))
        if isinstance(params["lm"], LanguageModel):
            params["lm"] = {"instance": lm_identity(params["lm"])}
        elif isinstance(params["lm"], Path):
            params["lm"] = str(params["lm"])
        return params

    def _get_state(self):
        tensors = {f"net.{k}": v for k, v in self.network_.projector_state().items()}
        tensors["scaler.mean"] = torch.from_numpy(self.scaler_.mean_)
        tensors["scaler.scale"] = torch.from_numpy(self.scaler_.scale_)
        return tensors, {"width": self.network_.width,
                         "trainable_fraction": self.trainable_fraction_,
                         "best_val_mse": self.best_val_mse_}

    @classmethod
    def load(cls, path: str | os.PathLike, *, lm: Any = None,
             map_location: str | torch.device = "cpu") -> AutoTimesForecaster:
        """Rebuild from the projector checkpoint at ``path``; ``lm`` supplies (or replaces)
        the LLM — required when the model was saved with a LanguageModel instance."""
        tensors, config, _ = load_checkpoint(path, kind=kind_of(cls))
        return cls.from_checkpoint(tensors, config, lm=lm).to(map_location)

    @classmethod
    def from_checkpoint(cls, tensors, config, *, lm: Any = None) -> AutoTimesForecaster:
        params = _restore_params(config["params"])
        if lm is not None:
            params["lm"] = lm
        elif isinstance(params["lm"], dict):
            raise ValueError(f"lm: this checkpoint was saved from a LanguageModel instance "
                             f"({params['lm']['instance']}); pass lm=<that model> to load it")
        model = cls(**params)
        model.series_ = _series_from_meta(config["series"], tensors["series.values"].numpy())
        model.X_ = None
        state = {k.removeprefix("state."): v for k, v in tensors.items()
                 if k.startswith("state.")}
        model._set_state(state, config["state"])
        return model

    def _set_state(self, tensors, state):
        self.scaler_ = StandardScaler()
        self.scaler_.mean_ = tensors.pop("scaler.mean").numpy()
        self.scaler_.scale_ = tensors.pop("scaler.scale").numpy()
        lm = resolve_lm(self.lm)
        if lm is not None and lm.hidden_size != state["width"]:
            raise ValueError(f"lm: the saved projectors map segments to width {state['width']} "
                             f"(the hidden size of the LLM they were trained with), but the "
                             f"given LLM has hidden size {lm.hidden_size}")
        self.network_ = self._build(lm)
        missing, unexpected = self.network_.load_state_dict(
            {k.removeprefix("net."): v for k, v in tensors.items()}, strict=False)
        if unexpected or any(not k.startswith("lm.") for k in missing):
            raise ValueError(f"path: the checkpoint's projectors do not fit this configuration "
                             f"(missing {missing}, unexpected {unexpected})")
        self.trainable_fraction_ = state["trainable_fraction"]
        self.best_val_mse_ = state["best_val_mse"]
        self.network_.eval()
