"""A Mamba language model on the ``LanguageModel`` contract (decoding, distillation).

Embedding -> ``n_layers`` residual blocks ``h + mixer(RMSNorm(h))`` -> RMSNorm -> LM head tied
to the embedding. The mixer is a :class:`~seqprob.ssm.mamba.Mamba` block, or an
:class:`~seqprob.ssm.layers.S4D` layer with ``mixer="s4d"``. The generation cache is the
:class:`LMState`: one per-layer state (Mamba: conv and SSM state).
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqprob.core.contract import State
from seqprob.core.language import LanguageModel, LMOutput
from seqprob.core.persist import Persistable, register
from seqprob.core.scan import block_step_backend
from seqprob.core.validation import check_choice, check_int, check_shape, check_tensor, describe
from seqprob.kernels.limits import LINEAR_MAX_ROWS
from seqprob.ssm.checks import check_sequence
from seqprob.ssm.layers import S4D
from seqprob.ssm.mamba import Mamba
from seqprob.ssm.tokenizer import ByteTokenizer


@dataclasses.dataclass
class LMState(State):
    """The generation cache: one state per layer."""

    layers: tuple[State, ...]


class RMSNorm(nn.Module):
    """``x / rms(x) * weight`` over the last dimension."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


class ResidualBlock(nn.Module):
    """``h + mixer(norm(h))`` in parallel or step mode, on inputs and states the language
    model has checked (the mixers' unchecked cores)."""

    def __init__(self, mixer: nn.Module, d_model: int):
        super().__init__()
        self.norm = RMSNorm(d_model)
        self.mixer = mixer

    def forward(self, h: Tensor, state: State | None, mask: Tensor | None
                ) -> tuple[Tensor, State]:
        y, state = self.mixer.forward_unchecked(self.norm(h), state, mask)
        return h + y, state

    def step(self, h: Tensor, state: State) -> tuple[Tensor, State]:
        if isinstance(self.mixer, Mamba):       # norm, mixer and residual fused on CPU
            return self.mixer.step_residual_unchecked(h, state, self.norm.weight,
                                                      self.norm.eps)
        y, state = self.mixer.step_unchecked(self.norm(h), state)
        return h + y, state


@register
class MambaLM(LanguageModel, Persistable):
    """Mamba language model; ``tokenizer="bytes"`` uses :class:`ByteTokenizer`.

    ``vocab_size`` defaults to the tokenizer's length, padded up to a multiple of 8.
    ``mixer="s4d"`` swaps every Mamba block for an S4D layer (same interface).
    """

    def __init__(self, d_model: int = 128, n_layers: int = 2, *, vocab_size: int | None = None,
                 d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", mixer: str = "mamba", tokenizer: str = "bytes",
                 backend: str = "auto", random_state: int | None = None):
        super().__init__()
        check_int(d_model, "d_model", minimum=1)
        check_int(n_layers, "n_layers", minimum=1)
        check_choice(mixer, "mixer", ("mamba", "s4d"))
        check_int(d_state, "d_state", minimum=1)
        if mixer == "s4d" and d_state % 2:
            raise ValueError(f"d_state: expected an even size with mixer='s4d' (S4D's modes come "
                             f"in conjugate pairs), got {d_state}")
        check_choice(tokenizer, "tokenizer", ("bytes",))
        self.tokenizer = ByteTokenizer()
        vocab = -(-len(self.tokenizer) // 8) * 8 if vocab_size is None else vocab_size
        check_int(vocab, "vocab_size", minimum=len(self.tokenizer))
        self._config = dict(d_model=d_model, n_layers=n_layers, vocab_size=vocab,
                            d_state=d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank,
                            mixer=mixer,
                            tokenizer=tokenizer, backend=backend, random_state=random_state)
        seed = None if random_state is None else int(random_state)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.embedding = nn.Embedding(vocab, d_model)
            nn.init.normal_(self.embedding.weight, std=0.02)
        self.layers = nn.ModuleList(
            ResidualBlock(self._mixer(mixer, d_model, d_state, d_conv, expand, dt_rank,
                                      backend, None if seed is None else seed + 1 + i),
                          d_model)
            for i in range(n_layers))
        self.norm_f = RMSNorm(d_model)
        self._issued: tuple[weakref.ref[LMState], int] | None = None  # last state returned

    @staticmethod
    def _mixer(kind: str, d_model: int, d_state: int, d_conv: int, expand: int,
               dt_rank: int | str, backend: str, seed: int | None) -> nn.Module:
        if kind == "s4d":
            return S4D(d_model, d_state, random_state=seed)
        return Mamba(d_model, d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank,
                     backend=backend, random_state=seed)

    def get_config(self) -> dict[str, Any]:
        return dict(self._config)

    @property
    def vocab_size(self) -> int:
        return self.embedding.num_embeddings

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    @property
    def hidden_size(self) -> int:
        return self.embedding.embedding_dim

    def embed(self, input_ids: Tensor) -> Tensor:
        self._check_ids(input_ids, "input_ids", rank=2)
        return self.embedding(input_ids)

    def _check_ids(self, ids: Tensor, name: str, rank: int) -> None:
        check_tensor(ids, name)
        check_shape(ids, name, ["batch", "length"][:rank])
        if ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"{name}: expected integer token ids (int64), got {describe(ids)}")
        if ids.numel():
            low, high = (int(v) for v in torch.stack(torch.aminmax(ids)).tolist())
            if low < 0 or high >= self.vocab_size:
                raise ValueError(f"{name}: expected ids in [0, {self.vocab_size}), got values "
                                 f"in [{low}, {high}]")

    def init_state(self, batch_size: int, *, device: Any = None, dtype: Any = None) -> LMState:
        device = device or self.embedding.weight.device
        return LMState(tuple(block.mixer.init_state(batch_size, device=device, dtype=dtype)
                             for block in self.layers))

    def _layer_states(self, state: State | None, batch: int) -> tuple[State | None, ...]:
        """The per-layer states, checked once (class, layer count, every tensor's shape); the
        state this model returned last (token-by-token generation) is known to be valid."""
        if state is None:
            return (None,) * len(self.layers)
        if self._issued is not None and self._issued[0]() is state and self._issued[1] == batch:
            return state.layers
        if not isinstance(state, LMState) or len(state.layers) != len(self.layers):
            got = (f"{len(state.layers)} layers" if isinstance(state, LMState)
                   else type(state).__name__)
            raise ValueError(f"state: expected an LMState with {len(self.layers)} layers from "
                             f"MambaLM.init_state, got {got} (a state from a different model)")
        return tuple(block.mixer.checked_state(layer_state, batch)
                     for block, layer_state in zip(self.layers, state.layers, strict=True))

    def run(self, *, input_ids: Tensor | None = None, inputs_embeds: Tensor | None = None,
            state: State | None = None, attention_mask: Tensor | None = None) -> LMOutput:
        """Logits ``(B, L, vocab)`` fp32, last hidden states ``(B, L, d_model)`` and state.

        ``attention_mask`` ``(B, L)``: left padding (0) feeds nothing into any layer's state.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("input_ids, inputs_embeds: expected exactly one of them")
        h = self.embed(input_ids) if input_ids is not None else inputs_embeds
        check_sequence(h, "inputs_embeds", self.hidden_size, None)
        if h.dtype != self.embedding.weight.dtype:
            raise TypeError(f"inputs_embeds: expected dtype {self.embedding.weight.dtype} (the "
                            f"model's), got {h.dtype}")
        if attention_mask is not None:
            check_shape(attention_mask, "attention_mask", tuple(h.shape[:2]))
        states = []
        layer_states = self._layer_states(state, h.shape[0])
        for block, layer_state in zip(self.layers, layer_states, strict=True):
            h, layer_state = block(h, layer_state, attention_mask)
            states.append(layer_state)
        hidden = self.norm_f(h)
        logits = (hidden @ self.embedding.weight.T).float()                       # (B L V)
        return LMOutput(logits=logits, hidden=hidden, state=self._issue(states, h.shape[0]))

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, LMState]:
        """``x_t`` ``(B,)`` ids -> logits ``(B, vocab)`` by each layer's recurrence."""
        self._check_ids(x_t, "x_t", rank=1)
        h = self.embedding(x_t)
        if state is None:
            raise TypeError("state: expected an LMState from MambaLM.init_state, got None")
        states = []
        layer_states = self._layer_states(state, x_t.shape[0])
        for block, layer_state in zip(self.layers, layer_states, strict=True):
            h, layer_state = block.step(h, layer_state)
            states.append(layer_state)
        return self._head(self.norm_f(h)).float(), self._issue(states, x_t.shape[0])

    def _head(self, hidden: Tensor) -> Tensor:
        """Logits of one position ``(B, d_model)`` -> ``(B, vocab)`` by the tied head: the
        numba GEMV (:func:`~seqprob.kernels.cpu_step.linear_cpu`) where the layers take the
        fused CPU step and the batch is small, torch's matmul otherwise."""
        weight = self.embedding.weight
        grad = torch.is_grad_enabled() and (weight.requires_grad or hidden.requires_grad)
        if (hidden.dtype in (torch.float32, torch.float64) and hidden.dtype == weight.dtype
                and block_step_backend(self._config["backend"], hidden, grad) == "cpu"
                and hidden.shape[0] <= LINEAR_MAX_ROWS):
            from seqprob.kernels.cpu_step import linear_cpu
            return linear_cpu(hidden, weight)
        return hidden @ weight.T

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_issued": None}            # a weak reference never pickles

    def _issue(self, states: list[State], batch: int) -> LMState:
        """The returned state, remembered (weakly) so that passing it back skips the check."""
        state = LMState(tuple(states))
        self._issued = (weakref.ref(state), batch)
        return state
