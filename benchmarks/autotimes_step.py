"""The cost of one AutoTimes training step on CPU, and whether bf16 autocast keeps it right.

One step = the in-projector, the frozen LLM forward over ``batch x 7`` segment tokens with
gradients flowing back through it to the in-projector, the out-projector, backward, Adam.
For each batch size: the median seconds per step in fp32 and with the LLM under
``torch.autocast("cpu", dtype=torch.bfloat16)``; then, on one batch, how far bf16's loss, last
hidden states and gradients are from fp32's (cosine per projector: the in-projector's
gradient has passed back through every LLM layer).

    python benchmarks/autotimes_step.py                 # SmolLM2-135M, ETTh1 windows
    python benchmarks/autotimes_step.py --batch-sizes 16 32 64 --repeats 5
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from seqprob.forecasting.autotimes import AutoTimesForecaster, resolve_lm
from seqprob.forecasting.autotimes_net import lm_hidden
from seqprob.forecasting.evaluation import _ett_data
from seqprob.forecasting.windows import StandardScaler


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lm", default="smollm2-135m")
    p.add_argument("--lookback", type=int, default=672)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def setup(args) -> tuple[AutoTimesForecaster, dict]:
    """An unfitted-but-built forecaster on ETTh1's training rows and its window table."""
    train, _, _ = _ett_data("ETTh1", args.lookback, None)
    model = AutoTimesForecaster(args.lm, lookback=args.lookback, verbose=False)
    model.scaler_ = StandardScaler().fit(train)
    model.network_ = model._build(resolve_lm(args.lm))
    model.network_.train()
    return model, model._windows(train, None, "y")


def loss_and_grads(model: AutoTimesForecaster, data: dict, items: torch.Tensor, bf16: bool
                   ) -> tuple[float, torch.Tensor, dict[str, torch.Tensor]]:
    """One forward/backward: loss, last hidden states ``(B, N, D)``, gradients by name."""
    net = model.network_
    net.zero_grad()
    x, target, _, mean, std = model._batch(data, items)
    tokens = net.encoder(x)  # (B, N, D)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        hidden, _ = lm_hidden(net.lm, inputs_embeds=tokens)  # (B, N, D)
    loss = torch.mean((net.decoder(hidden.float()) * std + mean - target) ** 2)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in net.named_parameters() if p.requires_grad}
    return loss.item(), hidden.detach().float(), grads


def step_seconds(model, data, batch: int, bf16: bool, repeats: int) -> float:
    opt = torch.optim.Adam(model.network_.projector_parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        items = data["pick"][torch.randint(len(data["pick"]), (batch,), generator=gen)]
        start = time.perf_counter()
        loss_and_grads(model, data, items, bf16)
        opt.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def agreement(model, data, batch: int) -> None:
    items = data["pick"][torch.randint(len(data["pick"]), (batch,),
                                       generator=torch.Generator().manual_seed(1))]
    loss32, hidden32, grads32 = loss_and_grads(model, data, items, False)
    loss16, hidden16, grads16 = loss_and_grads(model, data, items, True)
    print(f"bf16 vs fp32 on {batch} windows: loss {loss16:.5f} vs {loss32:.5f}; last hidden "
          f"states relative error {(hidden16 - hidden32).norm() / hidden32.norm():.3f}")
    for part in ("encoder", "decoder"):
        names = [n for n in grads32 if n.startswith(part)]
        a = torch.cat([grads32[n].flatten() for n in names])
        b = torch.cat([grads16[n].flatten() for n in names])
        cos = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
        print(f"  {part} gradient: cosine(bf16, fp32) {cos:+.3f}, relative error "
              f"{(b - a).norm() / a.norm():.3f}")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    model, data = setup(args)
    print(f"trainable fraction {model._trainable_fraction():.4f}")
    print("| batch | fp32 s/step | fp32 ms/window | bf16 s/step | bf16 ms/window |")
    print("| --- | --- | --- | --- | --- |")
    for batch in args.batch_sizes:
        fp32, bf16 = (step_seconds(model, data, batch, b, args.repeats) for b in (False, True))
        print(f"| {batch} | {fp32:.3f} | {1e3 * fp32 / batch:.1f} | {bf16:.3f} | "
              f"{1e3 * bf16 / batch:.1f} |", flush=True)
    agreement(model, data, args.batch_sizes[0])


if __name__ == "__main__":
    main()
