"""The numba kernels follow torch's thread setting and leave it as they found it."""

import numba
import pytest
import torch

from seqprob.core.scan import selective_scan
from seqprob.kernels.hmm_cpu import forward_backward
from seqprob.kernels.threads import launch_threads, parallel_launch


def _selective(grad: bool):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(1, 4, 70, generator=g, requires_grad=grad)
    out = selective_scan(u, torch.rand(1, 4, 70, generator=g), -torch.rand(4, 3, generator=g),
                         torch.randn(1, 3, 70, generator=g), torch.randn(1, 3, 70, generator=g),
                         backend="cpu")
    if grad:
        out.sum().backward()


@pytest.mark.parametrize("run", [
    lambda: _selective(False),
    lambda: _selective(True),
    lambda: forward_backward(torch.full((2, 3), 1 / 3, dtype=torch.float64),
                             torch.full((3, 3), 1 / 3, dtype=torch.float64),
                             torch.rand(2, 5, 3, dtype=torch.float64), torch.tensor([5, 3])),
], ids=["selective-fwd", "selective-fwd-bwd", "hmm-fused"])
def test_kernels_keep_torch_thread_count(one_thread, run):
    run()
    assert torch.get_num_threads() == 1
    assert numba.get_num_threads() == 1


def test_parallel_launch_caps_at_numba_pool(one_thread):
    torch.set_num_threads(numba.config.NUMBA_NUM_THREADS + 3)
    assert launch_threads() == numba.config.NUMBA_NUM_THREADS
    with parallel_launch(10) as threads:
        assert threads == numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    assert torch.get_num_threads() == numba.config.NUMBA_NUM_THREADS + 3
