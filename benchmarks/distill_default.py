"""Pick the shipped HMM's number of states by held-out log-likelihood in one run: distill
several K from ONE shared sample set (``seqprob.control.defaults.DEFAULT_RECIPE``, i.e. the
recipe of ``seqprob distill --default``, otherwise) and print, per K, the held-out
log-likelihood per token of the HMM, of its counted initialization, of unigram and bigram
baselines on the same samples, and of the HMM after a round trip through the pruned fp16
artifact (the file that ships), the artifact's size (raw and zlib-compressed), and EM seconds;
then the LM's sampling throughput (tokens/s).

Each K's artifact is written to ``--output-dir`` as ``<model>-hmm-k<K>.safetensors`` with the
recipe and seeds of ``seqprob distill --default --n-states K`` (the same samples on the same
device), so the chosen file can be copied to ``seqprob/control/data/<model>-hmm.safetensors``
(with ``DEFAULT_RECIPE["n_states"]`` set to K).

    PYTHONPATH=. python benchmarks/distill_default.py --device cuda --n-states 256 512 1024
    # a small CPU check of the same code path (tiny random LM, tiny recipe):
    PYTHONPATH=. python benchmarks/distill_default.py --model tiny --n-states 4 8 \\
        --set batch_size=16 --set n_init_batches=2 --set n_em_steps=2 --set n_held_out=16
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path

from seqprob.control.defaults import DEFAULT_MODEL, DEFAULT_RECIPE, lm_fingerprint
from seqprob.core import resolve_device
from seqprob.core.device import fast_autocast_dtype
from seqprob.hmm import distill
from seqprob.hmm.artifact import load_artifact, save_artifact
from seqprob.hmm.distill import hmm_log_likelihood
from seqprob.lm import load, tiny_lm


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="a known model, a local folder, or 'tiny' (seqprob.lm.tiny_lm)")
    parser.add_argument("--n-states", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--autocast", choices=("auto", "bfloat16", "float16", "none"),
                        default="auto")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a DEFAULT_RECIPE entry (e.g. n_em_steps=8)")
    parser.add_argument("--output-dir", type=Path, default=Path("distill-sweep"))
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def recipe(overrides: list[str]) -> dict:
    out = dict(DEFAULT_RECIPE)
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in out:
            raise SystemExit(f"--set: unknown recipe key {key!r}; expected one of {sorted(out)}")
        out[key] = type(out[key])(value)
    return out


def main(argv=None) -> list[dict]:
    args = parse(argv)
    lm = tiny_lm(random_state=0) if args.model == "tiny" else load(args.model)
    lm = lm.to(resolve_device(args.device))
    autocast = {"auto": fast_autocast_dtype(lm.device), "none": None}.get(args.autocast,
                                                                          args.autocast)
    settings = recipe(args.set)
    cache: dict = {}
    rows, first_seconds = [], None
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for k in args.n_states:
        start = time.perf_counter()
        result = distill(lm, **{**settings, "n_states": k}, autocast_dtype=autocast,
                         sample_cache=cache, verbose=not args.quiet)
        seconds = time.perf_counter() - start
        first_seconds = seconds if first_seconds is None else first_seconds
        held_out = {key: round(v, 4) for key, v in result.held_out.items()}
        path = args.output_dir / f"{args.model}-hmm-k{k}.safetensors"
        meta = {"model": args.model, "lm_fingerprint": lm_fingerprint(lm),
                "recipe": {**settings, "n_states": k}, "autocast_dtype": autocast,
                "held_out_log_likelihood_per_token": held_out}
        save_artifact(result.hmm, path, result.token_counts, metadata=meta)
        shipped = load_artifact(path).to(lm.device)
        row = {"n_states": k, "held_out": held_out,
               "artifact_held_out": round(hmm_log_likelihood(shipped,
                                                             result.held_out_tokens), 4),
               "artifact_mb": round(path.stat().st_size / 2 ** 20, 3),
               "artifact_zlib_mb": round(len(zlib.compress(path.read_bytes(), 6)) / 2 ** 20, 3),
               "observed_tokens": int((result.token_counts > 0).sum()),
               "ended_within_seq_len": round(result.ended, 4),
               "seconds": round(seconds, 1), "artifact": str(path)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    # the first K's time included sampling; the same K again from the cache is EM alone
    start = time.perf_counter()
    distill(lm, **{**settings, "n_states": args.n_states[0]}, autocast_dtype=autocast,
            sample_cache=cache, verbose=False)
    sampling = first_seconds - (time.perf_counter() - start)
    tokens = (settings["n_held_out"] + (settings["n_init_batches"] + settings["n_em_steps"])
              * settings["batch_size"]) * settings["seq_len"]
    best = max(rows, key=lambda r: r["held_out"]["hmm"])
    print(json.dumps({"device": str(lm.device), "autocast": autocast, "sampled_tokens": tokens,
                      "sampling_seconds": round(sampling, 1),
                      "sampling_tokens_per_s": round(tokens / max(sampling, 1e-9), 1),
                      "best_n_states": best["n_states"],
                      "recipe": {k: v for k, v in settings.items() if k != "n_states"}}),
          flush=True)
    return rows


if __name__ == "__main__":
    main()
