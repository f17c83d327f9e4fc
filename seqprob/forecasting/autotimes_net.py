"""The AutoTimes network: segments in, a frozen LLM over them, next segments out.

:class:`AutoTimesNet` is a :class:`~seqprob.core.SequenceModel` over segments: ``x`` of shape
``(batch, n_segments, S)`` (already instance-normalized by the caller) maps to the predicted
next segment at every position ``(batch, n_segments, S)``; ``step`` consumes one segment.
The state is the LLM's (its KV cache), so chunked runs equal a whole run. The in-projector
maps a segment to the LLM's embedding width, optionally mixed with a timestamp embedding
(both L2-normalized, the timestamp scaled by a learned scalar, as in AutoTimes); the
out-projector maps each final hidden state to the next segment. Only the projectors train.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from seqprob.core.contract import SequenceModel, State
from seqprob.core.language import LanguageModel
from seqprob.core.validation import check_choice, check_int

PROJECTORS = ("mlp", "linear")


def make_projector(kind: str, d_in: int, d_out: int, hidden: int, layers: int,
                   dropout: float) -> nn.Module:
    """``"linear"``: one ``nn.Linear``; ``"mlp"``: ``layers`` hidden GELU layers of width
    ``hidden`` with dropout, then a linear output."""
    check_choice(kind, "projector", PROJECTORS)
    if kind == "linear":
        return nn.Linear(d_in, d_out)
    check_int(layers, "projector_layers", minimum=1)
    check_int(hidden, "projector_hidden", minimum=1)
    blocks: list[nn.Module] = []
    width = d_in
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
        width = hidden
    return nn.Sequential(*blocks, nn.Linear(width, d_out))


def lm_hidden(lm: LanguageModel, **kwargs) -> tuple[Tensor, State]:
    """``lm.run(**kwargs)``'s last hidden states and state, skipping the vocabulary
    projection where the adapter allows it (transformers models)."""
    from seqprob.lm.hf import TransformersLM

    if isinstance(lm, TransformersLM):
        kwargs["logits"] = False
    out = lm.run(**kwargs)
    return out.hidden, out.state


@dataclasses.dataclass
class AutoTimesState(State):
    """``lm``: the LLM's state after the segments seen (``None`` without an LLM, whose
    identity stand-in keeps nothing)."""

    lm: State | None


class AutoTimesNet(SequenceModel):
    """Projectors around a frozen LLM; see the module docstring.

    lm : a :class:`LanguageModel` (frozen here: ``requires_grad_(False)``, ``eval()``), or
        ``None`` for the "without the LLM" ablation (the projectors meet directly, width
        ``width``).
    timestamps : learn the scale that mixes timestamp embeddings into segment embeddings.
    """

    def __init__(self, lm: LanguageModel | None, segment_length: int, *, width: int | None = None,
                 projector: str = "mlp", projector_hidden: int = 256, projector_layers: int = 2,
                 dropout: float = 0.0, timestamps: bool = False):
        super().__init__()
        self.segment_length = check_int(segment_length, "segment_length", minimum=1)
        if lm is not None:
            lm.requires_grad_(False)
            lm.eval()
            width = lm.hidden_size
        elif width is None:
            raise ValueError("width: expected the embedding width of the projectors when "
                             "lm=None, got None")
        self.lm = lm
        self.width = check_int(width, "width", minimum=1)
        self.encoder = make_projector(projector, segment_length, width, projector_hidden,
                                      projector_layers, dropout)
        self.decoder = make_projector(projector, width, segment_length, projector_hidden,
                                      projector_layers, dropout)
        self.mark_scale = nn.Parameter(torch.ones(())) if timestamps else None

    def train(self, mode: bool = True) -> AutoTimesNet:
        """Projectors follow ``mode``; the frozen LLM stays in eval mode."""
        super().train(mode)
        if self.lm is not None:
            self.lm.eval()
        return self

    def projector_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters: both projectors and the timestamp scale."""
        return [p for name, p in self.named_parameters() if not name.startswith("lm.")]

    def projector_state(self) -> dict[str, Tensor]:
        """The projectors' ``state_dict`` entries (the LLM's left out)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("lm.")}

    def embed_segments(self, x: Tensor, marks: Tensor | None = None) -> Tensor:
        """Segment embeddings ``(B, N, D)`` of ``x (B, N, S)``, mixed with ``marks (B, N, D)``."""
        tokens = self.encoder(x)  # (B, N, D)
        if self.mark_scale is None:
            if marks is not None:
                raise ValueError("marks: this network was built without timestamps; pass None")
            return tokens
        if marks is None:
            raise ValueError("marks: this network mixes timestamp embeddings; expected a "
                             f"tensor (batch, n_segments, {self.width}), got None")
        tokens = tokens / tokens.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        marks = marks / marks.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        return tokens + self.mark_scale * marks  # (B, N, D)

    def init_state(self, batch_size, *, device=None, dtype=None) -> AutoTimesState:
        if self.lm is None:
            return AutoTimesState(lm=None)
        return AutoTimesState(lm=self.lm.init_state(batch_size, device=device))

    def forward(self, x: Tensor, state: AutoTimesState | None = None,
                marks: Tensor | None = None) -> tuple[Tensor, AutoTimesState]:
        """``x (B, N, S)`` -> next-segment predictions ``(B, N, S)`` and the state."""
        if x.dim() != 3 or x.shape[-1] != self.segment_length:
            raise ValueError(f"x: expected (batch, n_segments, {self.segment_length}), got "
                             f"shape {tuple(x.shape)}")
        tokens = self.embed_segments(x, marks)  # (B, N, D)
        if self.lm is None:
            return self.decoder(tokens), AutoTimesState(lm=None)
        hidden, lm_state = lm_hidden(self.lm, inputs_embeds=tokens.to(self.lm.dtype),
                                     state=None if state is None else state.lm)
        return self.decoder(hidden.to(x.dtype)), AutoTimesState(lm=lm_state)  # (B, N, S)

    def step(self, x_t: Tensor, state: AutoTimesState, marks_t: Tensor | None = None
             ) -> tuple[Tensor, AutoTimesState]:
        """One segment ``x_t (B, S)`` -> the next segment ``(B, S)`` and the state."""
        y, state = self.forward(x_t[:, None], state,
                                None if marks_t is None else marks_t[:, None])
        return y[:, 0], state
