"""State-space layers, side by side with their peers (CPU, fp32), one command:

    python benchmarks/ssm.py [--repeats 3] [--threads 2] [--quick]
                             [--only mamba lm s4d spacetime] [--clock wall|cpu]

1. Mamba block (d_model 768, L 1024, batch 2, d_state 16): forward+backward seconds and
   generation tokens/second (step mode, batch 2) — seqprob (scan backend "auto") vs mambapy
   1.2.0 (pscan; its step for generation). A row times the block's dense projections alone
   (GEMMs mambapy runs too): mambapy's fwd+bwd over that time bounds any block's speed-up.
2. Mamba language model generation, batch 1 (tokens/second, ``MambaLM.step`` vs mambapy's
   ``LM.step`` with the same weights): d_model 256 with 4 layers, and mamba-130m's shape
   (d_model 768, 24 layers, vocabulary 50,280).
3. S4D layer at L = 16384 (H = 64, N = 64, batch 2): seqprob (chunked Vandermonde GEMM
   kernel, final state included) vs a straightforward PyTorch S4D that materializes the
   (H, N, L) Vandermonde tensor.
4. SpaceTime companion kernel at d = 64, l = 720 (H = 64): the O(d + l) FFT algorithm vs the
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
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqprob.core.scan import backend_status
from seqprob.ssm import S4D, Mamba
from seqprob.ssm.conv_kernels import CompanionKernel, companion_kernel, companion_matrix
from seqprob.ssm.lti import DenseTransition, fft_conv, impulse_response

PARTS = ("mamba", "lm", "s4d", "spacetime")
Rows = list[tuple[str, float, float]]


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK = CLOCKS["wall"]


def median_time(fn, repeats: int, budget: float = 60.0) -> float:
    """Median time of ``fn`` over ``repeats`` runs after one untimed warm-up (JIT
    compilation of the numba kernels); stops early once ``budget`` seconds are spent (a
    sequential-loop reference can take minutes per run). Wall clock, or process CPU time
    (all threads) with ``--clock cpu``: steadier on a machine shared with other jobs."""
    fn()
    times: list[float] = []
    while len(times) < repeats and sum(times) < budget:
        start = CLOCK()
        fn()
        times.append(CLOCK() - start)
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


def lm_pair(d_model: int, n_layers: int, vocab: int):
    """Our MambaLM and mambapy's LM step with the same weights: ``mambapy.lm.LM.step``
    (embedding, ``Mamba.step``, final RMSNorm, head) spelled out, since importing
    ``mambapy.lm`` needs einops for its Mamba-2."""
    from mambapy.mamba import Mamba as RefMamba
    from mambapy.mamba import MambaConfig, RMSNorm

    from seqprob.ssm import MambaLM

    ours = MambaLM(d_model, n_layers, vocab_size=vocab, random_state=0).eval()
    backbone = RefMamba(MambaConfig(d_model=d_model, n_layers=n_layers, d_state=16)).eval()
    backbone.load_state_dict({k: v for k, v in ours.state_dict().items()
                              if k.startswith("layers.")})
    norm_f = RMSNorm(d_model)
    norm_f.load_state_dict(ours.norm_f.state_dict())
    table = ours.embedding.weight.detach().clone()

    def ref_step(token, caches):
        h, caches = backbone.step(F.embedding(token, table), caches)
        return F.linear(norm_f(h), table), caches

    return ours, ref_step


def lm_generation(d_model: int, n_layers: int, vocab: int, tokens: int, repeats: int
                  ) -> tuple[float, float, float]:
    """Tokens/second of feeding ``tokens`` ids one at a time (batch 1), both models (after
    checking that they give the same logits), and of the model's GEMVs alone as torch runs
    them (the four projections per layer and the head, which mambapy runs too: the bound of a
    step built on torch's GEMVs; the fused CPU step runs its own, faster at batch 1)."""
    ours, ref = lm_pair(d_model, n_layers, vocab)
    ids = torch.randint(0, vocab, (tokens, 1), generator=torch.Generator().manual_seed(0))

    def run_ours():
        state = ours.init_state(1)
        for t in range(tokens):
            logits, state = ours.step(ids[t], state)
        return logits

    def run_ref():
        caches = [(torch.zeros(1, 2 * d_model, 16), torch.zeros(1, 2 * d_model, 3))
                  for _ in range(n_layers)]
        for t in range(tokens):
            logits, caches = ref(ids[t], caches)
        return logits

    def run_gemvs():
        for t in range(tokens):
            h = ours.embedding(ids[t])
            for block in ours.layers:
                mixer = block.mixer
                u = mixer.in_proj(h)[:, :mixer.d_inner]
                F.linear(mixer.x_proj(u)[:, :mixer.dt_rank], mixer.dt_proj.weight)
                h = mixer.out_proj(u)
            h @ ours.embedding.weight.T

    with torch.no_grad():
        torch.testing.assert_close(run_ours(), run_ref(), rtol=1e-3, atol=1e-3)
        return (tokens / median_time(run_ours, repeats), tokens / median_time(run_ref, repeats),
                tokens / median_time(run_gemvs, repeats))


def bench_lm(repeats: int, quick: bool) -> Rows:
    """Mamba LM generation rows (tokens/s)."""
    shapes = [(256, 4, 264)] + ([] if quick else [(768, 24, 50280)])
    rows = []
    for d_model, n_layers, vocab in shapes:
        ours, peer, gemvs = lm_generation(d_model, n_layers, vocab, 32 if quick else 128,
                                          repeats)
        rows.append((f"Mamba LM generation, d {d_model}, {n_layers} layers, vocab {vocab}, "
                     "B 1 (tokens/s)", ours, peer))
        rows.append(("  its GEMVs alone in torch (tokens/s)", gemvs, peer))
    return rows


def naive_s4d(layer: S4D, x: torch.Tensor) -> torch.Tensor:
    """Textbook S4D forward: the whole (H, N, L) Vandermonde tensor, then FFT convolution."""
    log_da, db, c = layer.kernel.discrete()
    length = x.shape[1]
    vander = torch.exp(log_da[..., None] * torch.arange(length))                # (H N L)
    kernel = torch.einsum("hn,hnl->hl", c * db, vander).real
    u = x.mT
    return layer.post((fft_conv(u, kernel) + layer.D[:, None] * u).mT)


def projections(block: Mamba, x: torch.Tensor):
    """fwd+bwd of the block's dense projections alone (in_proj, x_proj, dt_proj, out_proj on
    the block's shapes, with the same gradients: in_proj's weight only, the others' weights
    and inputs), wired by two additions instead of the convolution and the scan. mambapy runs
    these GEMMs too, so ``mambapy fwd+bwd / this`` bounds any Mamba block's speed-up."""
    def run():
        block.zero_grad(set_to_none=True)
        xs, z = block.in_proj(x).chunk(2, dim=-1)                                 # (B L Di)
        dt = block.x_proj(xs)[..., :block.dt_rank]                               # (B L R)
        y = F.linear(dt, block.dt_proj.weight) + z                                # (B L Di)
        block.out_proj(y).square().mean().backward()
    return run


def bench_mamba(d_model: int, length: int, repeats: int, quick: bool) -> Rows:
    """Mamba block fwd+bwd, projections alone (the bound), forward and generation rows."""
    rows = []
    ours, ref = mamba_pair(d_model)
    x = torch.randn(2, length, d_model)
    t_ours = median_time(fwd_bwd(ours, x), repeats)
    t_ref = median_time(fwd_bwd(ref, x), repeats)
    t_proj = median_time(projections(ours, x), repeats)
    rows.append((f"Mamba block fwd+bwd, d {d_model}, L {length}, B 2 (s)", t_ours, t_ref))
    rows.append(("  its dense projections alone, fwd+bwd (s): the bound", t_proj, t_ref))
    with torch.no_grad():
        f_ours = median_time(lambda: ours(x), repeats)
        f_ref = median_time(lambda: ref(x), repeats)
    rows.append((f"Mamba block forward, d {d_model}, L {length}, B 2 (s)", f_ours, f_ref))
    tok_ours, tok_ref = generation(ours, ref, 2, 64 if quick else 256, repeats)
    rows.append(("Mamba block generation, B 2 (tokens/s)", tok_ours, tok_ref))
    return rows


def bench_s4d(s4_len: int, repeats: int) -> Rows:
    """S4D layer forward and fwd+bwd rows."""
    rows = []
    layer = S4D(64, 64, random_state=0)
    xs = torch.randn(2, s4_len, 64)
    with torch.no_grad():
        torch.testing.assert_close(layer(xs)[0], naive_s4d(layer, xs), rtol=1e-3, atol=1e-4)
        s_ours = median_time(lambda: layer(xs), repeats)
        s_ref = median_time(lambda: naive_s4d(layer, xs), repeats)
    rows.append((f"S4D layer forward, H 64, N 64, L {s4_len}, B 2 (s)", s_ours, s_ref))
    s_ours = median_time(fwd_bwd(layer, xs), repeats)
    s_ref = median_time(lambda: naive_s4d(layer, xs).square().mean().backward(), repeats)
    rows.append((f"S4D layer fwd+bwd, L {s4_len} (s)", s_ours, s_ref))
    return rows


def bench_spacetime(repeats: int) -> Rows:
    """SpaceTime kernel row."""
    rows = []
    kern = CompanionKernel(64, 64, l_max=720, random_state=0)
    with torch.no_grad():
        trans = DenseTransition(companion_matrix(kern.a))
        c = kern.unfold(kern.c_tilde)
        fast = lambda: companion_kernel(kern.a, kern.b, kern.c_tilde, 720)  # noqa: E731
        dense = lambda: impulse_response(trans, kern.b, c, 720)  # noqa: E731
        torch.testing.assert_close(fast(), dense(), rtol=1e-3, atol=1e-4)
        k_ours = median_time(fast, 5 * repeats)
        k_ref = median_time(dense, 5 * repeats)
    rows.append(("SpaceTime kernel, H 64, d 64, l 720 (ms)", 1e3 * k_ours, 1e3 * k_ref))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small shapes (smoke run)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS),
                        help="which benchmarks to run (default: all)")
    parser.add_argument("--clock", choices=CLOCKS, default="wall",
                        help="wall clock, or process CPU time (loaded machines)")
    args = parser.parse_args()
    global CLOCK
    CLOCK = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    d_model, length, s4_len = (64, 128, 2048) if args.quick else (768, 1024, 16384)
    auto = [n for n, ok, _ in backend_status() if ok]
    rows = []

    if "mamba" in args.only:
        rows += bench_mamba(d_model, length, args.repeats, args.quick)
    if "lm" in args.only:
        rows += bench_lm(args.repeats, args.quick)
    if "s4d" in args.only:
        rows += bench_s4d(s4_len, args.repeats)
    if "spacetime" in args.only:
        rows += bench_spacetime(args.repeats)
    print(f"scan backends available: {auto}; {args.threads} threads (torch; numba follows); "
          f"{args.clock} clock")
    print("| measurement | seqprob | peer | ratio |")
    print("|---|---|---|---|")
    for name, ours_v, peer_v in rows:
        better = ours_v / peer_v if "tokens/s" in name else peer_v / ours_v
        print(f"| {name} | {ours_v:.4g} | {peer_v:.4g} | {better:.2f}x |")


if __name__ == "__main__":
    main()
