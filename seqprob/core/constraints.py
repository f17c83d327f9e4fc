"""scikit-learn parameter constraints (``_parameter_constraints``) shared by the estimators."""

from __future__ import annotations

from typing import Any

import torch
from sklearn.utils._param_validation import Options


class DeviceString(Options):
    """``"auto"`` or a string ``torch.device`` parses (``"cpu"``, ``"cuda"``, ``"cuda:1"``),
    so a typo fails when ``fit`` starts; whether CUDA is visible is checked when it is used
    (:func:`~seqprob.core.device.resolve_device`). An ``Options`` subclass because
    scikit-learn accepts only its own constraint types in ``_parameter_constraints``."""

    def __init__(self):
        super().__init__(str, {"auto"})

    def is_satisfied_by(self, val: Any) -> bool:
        if not isinstance(val, str):
            return False
        if val == "auto":
            return True
        try:
            torch.device(val)
        except (RuntimeError, TypeError):
            return False
        return True

    def __str__(self) -> str:
        return "'auto' or a torch device string such as 'cpu', 'cuda' or 'cuda:0'"
