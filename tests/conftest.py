"""Session-wide test set-up and shared fixtures.

Without a GPU, Triton kernels run in Triton's CPU interpreter. Triton reads TRITON_INTERPRET
when it is first imported (transformers and torch may import it long before test_scan.py), so
the variable is set here, before any test module is collected.
"""

import os

import pytest
import torch
from hypothesis import settings

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# CI (.ci/run sets HYPOTHESIS_PROFILE=ci) draws the same examples every run, so a landing never
# hinges on a new random draw; local runs keep exploring fresh examples.
settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def one_thread():
    """One torch thread for the test (tiny ops: no spin-waiting on a shared machine), restored
    afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
