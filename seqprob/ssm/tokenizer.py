"""A byte-level tokenizer with the Hugging Face tokenizer interface (no files, no training).

Ids 0-255 are the UTF-8 bytes; then ``<bos>`` (256), ``<eos>`` (257) and ``<pad>`` (258).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from seqprob.core.validation import check_choice, describe

SPECIAL = ("<bos>", "<eos>", "<pad>")


class ByteTokenizer:
    """UTF-8 bytes as tokens; ``encode``/``decode``/``__call__`` as in Hugging Face."""

    bos_token_id = 256
    eos_token_id = 257
    pad_token_id = 258
    padding_side = "left"

    def __len__(self) -> int:
        return 256 + len(SPECIAL)

    @property
    def vocab_size(self) -> int:
        return len(self)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """``[<bos>] + bytes`` (``<bos>`` only with ``add_special_tokens``)."""
        if not isinstance(text, str):
            raise TypeError(f"text: expected a str, got {describe(text)}")
        ids = list(text.encode("utf-8"))
        return [self.bos_token_id, *ids] if add_special_tokens else ids

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        """Bytes back to text (invalid UTF-8 replaced); special ids spelled or skipped."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out, raw = [], bytearray()
        for i in ids:
            if not 0 <= int(i) < len(self):
                raise ValueError(f"ids: expected ids in [0, {len(self)}), got {i}")
            if i < 256:
                raw.append(int(i))
                continue
            out.append(raw.decode("utf-8", errors="replace"))
            raw = bytearray()
            if not skip_special_tokens:
                out.append(SPECIAL[int(i) - 256])
        out.append(raw.decode("utf-8", errors="replace"))
        return "".join(out)

    def batch_decode(self, rows: Sequence[Sequence[int]] | torch.Tensor,
                     skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(r, skip_special_tokens=skip_special_tokens) for r in rows]

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [SPECIAL[i - 256] if i >= 256 else self.decode([i]) for i in ids]

    def __call__(self, text: str | Sequence[str], *, add_special_tokens: bool = True,
                 padding: bool | str = False, return_tensors: str | None = None
                 ) -> dict[str, Any]:
        """``{"input_ids", "attention_mask"}``; a list of texts is left-padded when ``padding``
        (needed for ``return_tensors="pt"`` with unequal lengths)."""
        single = isinstance(text, str)
        rows = [self.encode(t, add_special_tokens) for t in ([text] if single else text)]
        if return_tensors is not None:
            check_choice(return_tensors, "return_tensors", ("pt",))
        if padding or return_tensors == "pt":
            width = max(map(len, rows), default=0)
            if not padding and any(len(r) != width for r in rows):
                raise ValueError("padding: texts of unequal length need padding=True for "
                                 "return_tensors='pt'")
            masks = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
            rows = [[self.pad_token_id] * (width - len(r)) + r for r in rows]
        else:
            masks = [[1] * len(r) for r in rows]
        if return_tensors == "pt":
            return {"input_ids": torch.tensor(rows, dtype=torch.long),
                    "attention_mask": torch.tensor(masks, dtype=torch.long)}
        if single:
            return {"input_ids": rows[0], "attention_mask": masks[0]}
        return {"input_ids": rows, "attention_mask": masks}
