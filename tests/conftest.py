"""Session-wide test set-up and shared fixtures.

Without a GPU, Triton kernels run in Triton's CPU interpreter. Triton reads TRITON_INTERPRET
when it is first imported (transformers and torch may import it long before test_scan.py), so
the variable is set here, before any test module is collected.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def one_thread():
    """One torch thread for the test (tiny ops: no spin-waiting on a shared machine), restored
    afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
