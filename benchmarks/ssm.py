"""State-space layers, side by side with their peers (CPU, fp32), one command:

    python benchmarks/ssm.py [--repeats 3] [--threads 2] [--quick]

1. Mamba block (d_model 768, L 1024, batch 2, d_state 16): forward+backward seconds and
   generation tokens/second (step mode, batch 2) — seqprob (scan backend "auto") vs mambapy
   1.2.0 (pscan; its step for generation).
2. S4D layer at L = 16384 (H = 64, N = 64, batch 2): seqprob (chunked Vandermonde GEMM
   kernel, final state included) vs a straightforward PyTorch S4D that materializes the
   (H, N, L) Vandermonde tensor.
3. SpaceTime companion kernel at d = 64, l = 720 (H = 64): the O(d + l) FFT algorithm vs the
   dense Krylov kernel C A^l B.

Prints medians in a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning, so the numba scan's thread pool does not
# slow down the small torch ops timed after it (set before torch loads its runtime).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqprob.core.scan import backend_status
from seqprob.ssm import S4D, Mamba
from seqprob.ssm.kernels import CompanionKernel, companion_kernel, companion_matrix
from seqprob.ssm.lti import DenseTransition, fft_conv, impulse_response


def median_time(fn, repeats: int, budget: float = 60.0) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one untimed warm-up (JIT
    compilation of the numba kernels); stops early once ``budget`` seconds are spent (a
    sequential-loop reference can take minutes per run)."""
    fn()
    times: list[float] = []
    while len(times) < repeats and sum(times) < budget:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mamba_pair(d_model: int):
    from mambapy.mamba import Mamba as RefMamba
    from mambapy.mamba import MambaConfig

    ref = RefMamba(MambaConfig(d_model=d_model, n_layers=1, d_state=16)).layers[0].mixer
    ours = Mamba(d_model, 16, backend="auto", random_state=0)
    ours.load_state_dict({k: ref.state_dict()[k] for k in ours.state_dict()})
    return ours, ref


def fwd_bwd(model, x):
    def run():
        model.zero_grad(set_to_none=True)
        out = model(x)
        (out[0] if isinstance(out, tuple) else out).square().mean().backward()
    return run


def generation(ours, ref, batch: int, tokens: int, repeats: int) -> tuple[float, float]:
    x = torch.randn(batch, tokens, ours.d_model)

    def run_ours():
        state = ours.init_state(batch)
        for t in range(tokens):
            _, state = ours.step(x[:, t], state)

    def run_ref():
        cache = (torch.zeros(batch, ref.config.d_inner, 16),
                 torch.zeros(batch, ref.config.d_inner, ref.config.d_conv - 1))
        for t in range(tokens):
            _, cache = ref.step(x[:, t], cache)

    with torch.no_grad():
        return (batch * tokens / median_time(run_ours, repeats),
                batch * tokens / median_time(run_ref, repeats))


def naive_s4d(layer: S4D, x: torch.Tensor) -> torch.Tensor:
    """Textbook S4D forward: the whole (H, N, L) Vandermonde tensor, then FFT convolution."""
    log_da, db, c = layer.kernel.discrete()
    length = x.shape[1]
    vander = torch.exp(log_da[..., None] * torch.arange(length))                # (H N L)
    kernel = torch.einsum("hn,hnl->hl", c * db, vander).real
    u = x.mT
    return layer.post((fft_conv(u, kernel) + layer.D[:, None] * u).mT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small shapes (smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    d_model, length, s4_len = (64, 128, 2048) if args.quick else (768, 1024, 16384)
    auto = [n for n, ok, _ in backend_status() if ok]
    rows = []

    ours, ref = mamba_pair(d_model)
    x = torch.randn(2, length, d_model)
    t_ours = median_time(fwd_bwd(ours, x), args.repeats)
    t_ref = median_time(fwd_bwd(ref, x), args.repeats)
    rows.append((f"Mamba block fwd+bwd, d {d_model}, L {length}, B 2 (s)", t_ours, t_ref))
    with torch.no_grad():
        f_ours = median_time(lambda: ours(x), args.repeats)
        f_ref = median_time(lambda: ref(x), args.repeats)
    rows.append((f"Mamba block forward, d {d_model}, L {length}, B 2 (s)", f_ours, f_ref))
    tok_ours, tok_ref = generation(ours, ref, 2, 64 if args.quick else 256, args.repeats)
    rows.append(("Mamba block generation, B 2 (tokens/s)", tok_ours, tok_ref))

    layer = S4D(64, 64, random_state=0)
    xs = torch.randn(2, s4_len, 64)
    with torch.no_grad():
        torch.testing.assert_close(layer(xs)[0], naive_s4d(layer, xs), rtol=1e-3, atol=1e-4)
        s_ours = median_time(lambda: layer(xs), args.repeats)
        s_ref = median_time(lambda: naive_s4d(layer, xs), args.repeats)
    rows.append((f"S4D layer forward, H 64, N 64, L {s4_len}, B 2 (s)", s_ours, s_ref))
    s_ours = median_time(fwd_bwd(layer, xs), args.repeats)
    s_ref = median_time(lambda: naive_s4d(layer, xs).square().mean().backward(), args.repeats)
    rows.append((f"S4D layer fwd+bwd, L {s4_len} (s)", s_ours, s_ref))

    kern = CompanionKernel(64, 64, l_max=720, random_state=0)
    with torch.no_grad():
        trans = DenseTransition(companion_matrix(kern.a))
        c = kern.unfold(kern.c_tilde)
        fast = lambda: companion_kernel(kern.a, kern.b, kern.c_tilde, 720)  # noqa: E731
        dense = lambda: impulse_response(trans, kern.b, c, 720)  # noqa: E731
        torch.testing.assert_close(fast(), dense(), rtol=1e-3, atol=1e-4)
        k_ours = median_time(fast, 5 * args.repeats)
        k_ref = median_time(dense, 5 * args.repeats)
    rows.append(("SpaceTime kernel, H 64, d 64, l 720 (ms)", 1e3 * k_ours, 1e3 * k_ref))

    print(f"scan backends available: {auto}; torch threads {args.threads}")
    print("| measurement | seqprob | peer | ratio |")
    print("|---|---|---|---|")
    for name, ours_v, peer_v in rows:
        better = ours_v / peer_v if "tokens/s" in name else peer_v / ours_v
        print(f"| {name} | {ours_v:.4g} | {peer_v:.4g} | {better:.2f}x |")


if __name__ == "__main__":
    main()
