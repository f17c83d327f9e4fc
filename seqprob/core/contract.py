"""The sequence-model contract shared by HMMs, LM adapters, SSM layers and forecasters.

Shape convention (stated once, used everywhere): batch first. A sequence ``x`` is
``(batch, length, ...)``; one position ``x_t`` is ``(batch, ...)``; every tensor of a
``State`` has the batch as its first dimension.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

S = TypeVar("S", bound="State")


def _map_value(value: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, State):
        return value.map_tensors(fn)
    if isinstance(value, tuple):
        return tuple(_map_value(v, fn) for v in value)
    return value


def _leaves(value: Any, prefix: str) -> list[tuple[str, Tensor]]:
    if isinstance(value, Tensor):
        return [(prefix, value)]
    if isinstance(value, State):
        return value.named_tensors(prefix)
    if isinstance(value, tuple):
        out: list[tuple[str, Tensor]] = []
        for i, v in enumerate(value):
            out.extend(_leaves(v, f"{prefix}.{i}"))
        return out
    return []


@dataclasses.dataclass
class State:
    """Base of every recurrent state: a dataclass whose fields are batch-first tensors.

    Fields may also be nested ``State`` objects, fixed-size tuples of those (one per
    layer, say), ``None``, or plain Python scalars (position counters). A state never
    holds lists that grow with time. Subclasses declare their fields with shapes.
    """

    def map_tensors(self: S, fn: Callable[[Tensor], Tensor]) -> S:
        """A copy with ``fn`` applied to every tensor (recursively)."""
        changes = {f.name: _map_value(getattr(self, f.name), fn) for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **changes)

    def named_tensors(self, prefix: str = "") -> list[tuple[str, Tensor]]:
        """Every tensor in the state with a dotted name, in field order."""
        out: list[tuple[str, Tensor]] = []
        for f in dataclasses.fields(self):
            name = f"{prefix}.{f.name}" if prefix else f.name
            out.extend(_leaves(getattr(self, f.name), name))
        return out

    def reorder(self: S, index: Tensor) -> S:
        """Select rows ``index`` (shape ``(new_batch,)``) of every tensor: beam search."""
        return self.map_tensors(lambda t: t.index_select(0, index.to(t.device)))

    def detach(self: S) -> S:
        """A copy cut from the autograd graph (truncated backpropagation, streaming)."""
        return self.map_tensors(Tensor.detach)

    def to(self: S, *args: Any, **kwargs: Any) -> S:
        """Move every tensor (``Tensor.to`` arguments); integer tensors keep their dtype."""
        def move(t: Tensor) -> Tensor:
            if t.is_floating_point() or t.is_complex():
                return t.to(*args, **kwargs)
            return t.to(device=kwargs.get("device", args[0] if args else None))

        return self.map_tensors(move)

    @property
    def batch_size(self) -> int:
        """Rows of the state (the first dimension shared by all its tensors)."""
        tensors = self.named_tensors()
        if not tensors:
            raise ValueError(f"{type(self).__name__} holds no tensors, so it has no batch size")
        return tensors[0][1].shape[0]


class SequenceModel(nn.Module, abc.ABC):
    """A model that runs in parallel over a sequence or one position at a time.

    The law (checked for every subclass by ``tests/test_contract.py``): stepping through
    ``x`` position by position gives the outputs and final state of ``forward(x)``, and
    ``forward`` over two chunks with the state carried equals ``forward`` over the whole.
    """

    @abc.abstractmethod
    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Run over ``x`` of shape ``(batch, length, ...)``, continuing from ``state``.

        Returns ``(y, final_state)`` with ``y`` of shape ``(batch, length, ...)``.
        """

    @abc.abstractmethod
    def init_state(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        """The state before the first position, for ``batch_size`` rows."""

    @abc.abstractmethod
    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """Consume one position ``x_t`` of shape ``(batch, ...)``; return ``(y_t, state)``."""
