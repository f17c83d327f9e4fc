"""Session-wide test set-up.

Without a GPU, Triton kernels run in Triton's CPU interpreter. Triton reads TRITON_INTERPRET
when it is first imported (transformers and torch may import it long before test_scan.py), so
the variable is set here, before any test module is collected.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
