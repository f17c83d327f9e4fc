"""The transformers adapter: any decoder-only ``AutoModelForCausalLM`` behind
:class:`~seqprob.core.LanguageModel`, with its KV cache carried in a :class:`KVState`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seqprob.core import LanguageModel, LMOutput, State

INSTALL_LM = "pip install 'seqprob[lm]'"
_NO_POSITIONS = torch.empty(0, dtype=torch.long)  # logits_to_keep selecting no position


def require_transformers() -> Any:
    """The ``transformers`` module, or an ImportError that names the extra to install."""
    try:
        import transformers
    except ImportError as err:
        raise ImportError(f"seqprob.lm needs transformers: {INSTALL_LM}") from err
    return transformers


@dataclasses.dataclass
class KVState(State):
    """The attention cache of a decoder after ``length`` positions (real or left padding).

    ``keys[i]`` and ``values[i]`` are layer ``i``'s ``(batch, kv_heads, length, head_dim)``;
    ``mask`` ``(batch, length)`` int64 marks real tokens (1) and padding (0). The position id
    of a row's next token is its number of real tokens, so a left-padded row continues exactly
    as it would alone.
    """

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    mask: Tensor

    @property
    def length(self) -> int:
        """Cached positions (real and padding)."""
        return self.mask.shape[1]


class TransformersLM(LanguageModel):
    """A Hugging Face causal LM (GPT-2, Llama, Qwen2, SmolLM2, ...) under the LM contract.

    ``model`` is the wrapped ``PreTrainedModel`` (a submodule, so ``.to``/``.eval`` reach it);
    ``tokenizer`` its tokenizer. Models whose cache is not plain full attention (sliding
    windows, linear attention, shared KV) are refused.
    """

    def __init__(self, model: Any, tokenizer: Any):
        super().__init__()
        require_transformers()
        self.model = model
        self.tokenizer = tokenizer
        self._text_config = model.config.get_text_config(decoder=True)
        _check_full_attention(self._text_config)

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, gguf_file: str | None = None,
                        device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None) -> TransformersLM:
        """Load model and tokenizer from a local folder (optionally a GGUF file inside it)."""
        transformers = require_transformers()
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"folder: expected a local model folder, got {str(folder)!r}")
        kwargs: dict[str, Any] = {"local_files_only": True}
        if gguf_file is not None:
            kwargs["gguf_file"] = gguf_file
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, **kwargs)
        if dtype is not None:
            kwargs["dtype"] = dtype
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, **kwargs)
        if device is not None:
            model = model.to(device)
        return cls(model.eval(), tokenizer)

    def __reduce__(self) -> tuple:
        """Pickle and deep-copy as model class, configs, weights and tokenizer.

        The bytes depend on the content alone (torch's own tensor pickling embeds memory
        addresses, so equal models would hash differently), and the output-capturing
        forward hooks transformers installs on a first ``output_hidden_states`` call (local
        closures, unpicklable) are left behind; a copy reinstalls them when it needs them.
        """
        model = self.model
        weights = {name: _tensor_bytes(t) for name, t in model.state_dict().items()}
        frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
        return (_rebuild, (type(self), type(model), model.config, model.generation_config,
                           weights, frozen, self.tokenizer, (self.training, model.training),
                           str(self.device)))

    @property
    def vocab_size(self) -> int:
        return int(self._text_config.vocab_size)

    @property
    def hidden_size(self) -> int:
        return int(self._text_config.hidden_size)

    @property
    def context_length(self) -> int | None:
        return getattr(self._text_config, "max_position_embeddings", None)

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            return super().eos_token_ids
        return tuple(eos) if isinstance(eos, (list, tuple)) else (int(eos),)

    def embed(self, input_ids: Tensor) -> Tensor:
        return self.model.get_input_embeddings()(input_ids)

    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> KVState:
        cfg = self._text_config
        heads = cfg.num_attention_heads
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        device = self.device if device is None else device
        dtype = dtype or self.dtype

        def empty() -> Tensor:
            return torch.zeros(batch_size, kv_heads, 0, head_dim, device=device, dtype=dtype)

        layers = range(cfg.num_hidden_layers)
        return KVState(keys=tuple(empty() for _ in layers), values=tuple(empty() for _ in layers),
                       mask=torch.zeros(batch_size, 0, dtype=torch.long, device=device))

    def run(self, *, input_ids: Tensor | None = None, inputs_embeds: Tensor | None = None,
            state: KVState | None = None, attention_mask: Tensor | None = None,
            logits: bool = True) -> LMOutput:
        """See :meth:`LanguageModel.run`; ``logits=False`` skips the vocabulary projection
        (the output's ``logits`` then has length 0) for callers that need only ``hidden``."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("run: pass exactly one of input_ids (batch, length) or "
                             "inputs_embeds (batch, length, hidden_size)")
        out, new_state = self._call(input_ids, inputs_embeds, state, attention_mask, True,
                                    logits)
        return LMOutput(logits=out.logits.float(), hidden=out.hidden_states[-1],
                        state=new_state)

    def step(self, x_t: Tensor, state: KVState) -> tuple[Tensor, KVState]:
        out, new_state = self._call(x_t[:, None], None, state, None, False)
        return out.logits[:, 0].float(), new_state

    def prefill(self, input_ids: Tensor, *, attention_mask: Tensor | None = None,
                state: KVState | None = None) -> tuple[Tensor, KVState]:
        out, new_state = self._call(input_ids, None, state, attention_mask, False)
        return out.logits[:, -1].float(), new_state

    def _call(self, input_ids: Tensor | None, inputs_embeds: Tensor | None,
              state: KVState | None, attention_mask: Tensor | None, full: bool,
              logits: bool = True) -> tuple[Any, KVState]:
        """The wrapped model's output and the new state; ``full``: logits at every position
        (none when not ``logits``) and hidden states, else only the last position's logits."""
        x = input_ids if input_ids is not None else inputs_embeds
        batch, length = x.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, dtype=torch.long, device=x.device)
        elif attention_mask.shape != (batch, length):
            raise ValueError(f"attention_mask: expected shape {(batch, length)}, got "
                             f"{tuple(attention_mask.shape)}")
        past = 0 if state is None else state.length
        if self.context_length is not None and past + length > self.context_length:
            raise ValueError(f"input_ids: {past} cached + {length} new positions exceed the "
                             f"model's context of {self.context_length}")
        mask = attention_mask.long()
        full_mask = mask if state is None else torch.cat([state.mask, mask], dim=1)  # (B P+L)
        seen = 0 if state is None else state.mask.sum(1, keepdim=True)              # (B 1)
        positions = (seen + mask.cumsum(1) - 1).masked_fill(mask == 0, 0)           # (B L)
        cache = self._to_cache(state)
        # Without padding anywhere, the model's own causal mask is the same and cheaper.
        padded = not bool(full_mask.all())
        out = self.model(input_ids=input_ids, inputs_embeds=inputs_embeds, cache=cache,
                         attention_mask=full_mask if padded else None, position_ids=positions,
                         use_cache=True, output_hidden_states=full,
                         logits_to_keep=(0 if logits else _NO_POSITIONS) if full else 1)
        new_state = KVState(keys=tuple(layer.keys for layer in out.cache.layers),
                            values=tuple(layer.values for layer in out.cache.layers),
                            mask=full_mask)
        return out, new_state

    def _to_cache(self, state: KVState | None) -> Any:
        """A transformers ``DynamicCache`` holding ``state``'s tensors (no copy)."""
        from transformers.cache_utils import DynamicCache, DynamicLayer

        cache = DynamicCache()
        if state is None or state.length == 0:
            return cache
        for keys, values in zip(state.keys, state.values, strict=True):
            layer = DynamicLayer()
            layer.lazy_initialization(keys, values)
            layer.keys, layer.values = keys, values
            cache.layers.append(layer)
        return cache


def _tensor_bytes(t: Tensor) -> tuple[str, tuple[int, ...], Any]:
    """``(dtype name, shape, raw bytes as a uint8 numpy array)`` of ``t``: any dtype, bf16
    included, as content-determined bytes."""
    flat = t.detach().cpu().contiguous().reshape(-1)
    return str(t.dtype).removeprefix("torch."), tuple(t.shape), flat.view(torch.uint8).numpy()


def _rebuild(cls: type[TransformersLM], model_cls: type, config: Any, generation_config: Any,
             weights: dict[str, tuple], frozen: list[str], tokenizer: Any,
             training: tuple[bool, bool], device: str) -> TransformersLM:
    """The inverse of :meth:`TransformersLM.__reduce__`; the global RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        model = model_cls(config)
    if set(model.state_dict()) != set(weights):
        raise ValueError(f"weights: expected the entries of a {model_cls.__name__} state dict, "
                         f"got {sorted(set(weights) ^ set(model.state_dict()))[:5]} differing")
    targets = {**dict(model.named_parameters(remove_duplicate=False)),
               **dict(model.named_buffers(remove_duplicate=False))}
    for name, (dtype, shape, data) in weights.items():
        # tied parameters share one Parameter, so assigning its data keeps the tie
        targets[name].data = torch.from_numpy(data).view(getattr(torch, dtype)).reshape(shape)
    for name in frozen:
        targets[name].requires_grad_(False)
    model.generation_config = generation_config
    model.train(training[1])
    lm = cls(model.to(device), tokenizer)
    lm.training = training[0]
    return lm


def _check_full_attention(config: Any) -> None:
    from transformers.cache_utils import get_layer_types_and_kwargs

    other = sorted(set(get_layer_types_and_kwargs(config)[0]) - {"full_attention"})
    if other:
        raise ValueError(f"model: only full-attention decoders are supported; this one has "
                         f"cache layers of type {other}")
