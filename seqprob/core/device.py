"""Device and dtype helpers."""

from __future__ import annotations

from pathlib import Path

import torch


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when visible, else CPU; otherwise ``torch.device(device)``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
                         ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} was requested but no CUDA device is visible")
    return resolved


def fast_autocast_dtype(device: torch.device) -> str | None:
    """``"bfloat16"`` on a CUDA device that supports it and on a CPU with bf16 instructions
    (AVX512-BF16 or AMX: about twice the fp32 throughput of a small LM's forward under
    ``torch.autocast``), else ``None`` (fp32)."""
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else None
    if device.type != "cpu":
        return None
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else None
