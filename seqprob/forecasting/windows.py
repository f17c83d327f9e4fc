"""Training windows, the ETT protocol splits and a scaler fitted on the training rows only."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from seqprob.core.validation import check_int

# Row borders of the ETT benchmark protocol (Informer / Autoformer / DLinear / AutoTimes):
# 12 months train, 4 validation, 4 test; hourly files, and x4 for the 15-minute files.
ETT_BORDERS = {"h": (8640, 11520, 14400), "m": (34560, 46080, 57600)}


def window_starts(n_time: int, lookback: int, horizon: int, stride: int = 1) -> np.ndarray:
    """First rows of every (lookback + horizon) window of an ``n_time`` series, ``stride`` apart.

    Every window that fits is counted, the last one included (no dropped remainder batch).
    """
    check_int(lookback, "lookback", minimum=1)
    check_int(horizon, "horizon", minimum=1)
    check_int(stride, "stride", minimum=1)
    span = lookback + horizon
    if n_time < span:
        raise ValueError(f"y: expected a series of at least lookback + horizon = {lookback} + "
                         f"{horizon} = {span} time steps, got {n_time}")
    return np.arange(0, n_time - span + 1, stride)


class WindowDataset(torch.utils.data.Dataset):
    """(context, target) pairs cut from a ``(time, channels)`` array without copying it.

    Item ``i`` is ``(context (lookback, c), target (horizon, c))`` where ``c`` is the number of
    channels, or 1 when ``channel_independent`` (each channel of each window is its own item,
    as in DLinear / PatchTST). ``contexts(idx)``/``targets(idx)`` fetch whole batches.
    """

    def __init__(self, values: np.ndarray | Tensor, lookback: int, horizon: int, *,
                 stride: int = 1, channel_independent: bool = False):
        data = torch.as_tensor(np.asarray(values, dtype=np.float32))
        if data.dim() != 2:
            raise ValueError(f"values: expected (time, channels), got shape {tuple(data.shape)}")
        self.lookback, self.horizon = lookback, horizon
        self.starts = torch.as_tensor(window_starts(len(data), lookback, horizon, stride))
        self.channel_independent = channel_independent
        self.n_channels = data.shape[1]
        # every window start: (time - span + 1, channels, span), a strided view, no copy
        self._windows = data.unfold(0, lookback + horizon, 1)

    def __len__(self) -> int:
        return len(self.starts) * (self.n_channels if self.channel_independent else 1)

    def _rows(self, idx: Tensor) -> Tensor:
        """Windows ``(batch, lookback + horizon, c)`` for item indices ``idx (batch,)``."""
        if self.channel_independent:
            win, chan = idx // self.n_channels, idx % self.n_channels
            rows = self._windows[self.starts[win], chan]  # (B, L + H)
            return rows.unsqueeze(-1)
        return self._windows[self.starts[idx]].transpose(1, 2)

    def batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """``(contexts (B, lookback, c), targets (B, horizon, c))`` for ``idx (B,)``."""
        rows = self._rows(torch.as_tensor(idx))
        return rows[:, : self.lookback], rows[:, self.lookback:]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        context, target = self.batch(torch.tensor([i]))
        return context[0], target[0]


def segments(values: np.ndarray, length: int) -> np.ndarray:
    """Non-overlapping segments ``(n, length, channels)`` of ``values (time, channels)``.

    The series is cut from its end, so the most recent rows are always in a full segment and
    the ``time % length`` oldest rows are left out.
    """
    check_int(length, "length", minimum=1)
    values = np.asarray(values)
    n = len(values) // length
    if n == 0:
        raise ValueError(f"values: expected at least one segment of {length} rows, got "
                         f"{len(values)} rows")
    return values[len(values) - n * length:].reshape(n, length, *values.shape[1:])


def ett_split(values: np.ndarray, lookback: int, freq: str = "h"
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The protocol's (train, validation, test) rows of an ETT table ``(time, channels)``.

    Hourly: train ``[0, 8640)``, validation ``[8640 - lookback, 11520)``, test
    ``[11520 - lookback, 14400)``; ``freq="m"`` (15-minute files) multiplies the borders by 4.
    The validation and test slices begin ``lookback`` rows early so their first window's
    target starts exactly at the split border.
    """
    if freq not in ETT_BORDERS:
        raise ValueError(f"freq: expected one of {tuple(ETT_BORDERS)}, got {freq!r}")
    train_end, val_end, test_end = ETT_BORDERS[freq]
    check_int(lookback, "lookback", minimum=1, maximum=train_end)
    if len(values) < test_end:
        raise ValueError(f"values: expected at least {test_end} rows for the ETT protocol, "
                         f"got {len(values)}")
    return (values[:train_end], values[train_end - lookback: val_end],
            values[val_end - lookback: test_end])


class StandardScaler:
    """Per-channel z-score; ``fit`` on the training rows only, then transform anything.

    mean_, scale_ : arrays of shape (channels,). A constant channel gets scale 1.
    """

    def fit(self, values: np.ndarray) -> StandardScaler:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or len(values) == 0:
            raise ValueError(f"values: expected a non-empty (time, channels) array, got shape "
                             f"{values.shape}")
        self.mean_ = values.mean(axis=0)
        std = values.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def _check(self, values: np.ndarray) -> np.ndarray:
        if not hasattr(self, "mean_"):
            raise ValueError("StandardScaler: call fit before transform")
        values = np.asarray(values, dtype=np.float64)
        if values.shape[-1] != len(self.mean_):
            raise ValueError(f"values: expected {len(self.mean_)} channels (last axis), got "
                             f"shape {values.shape}")
        return values

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (self._check(values) - self.mean_) / self.scale_

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        return self._check(values) * self.scale_ + self.mean_
