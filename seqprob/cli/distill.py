"""``seqprob distill``: distill an HMM from a language model; save it and print a JSON summary
(held-out log-likelihood per token of the HMM and of unigram/bigram baselines).

``seqprob distill --default`` rebuilds the HMM shipped with the package
(``seqprob.control.defaults.DEFAULT_RECIPE``, saved as a pruned fp16 artifact, resumable)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from seqprob.cli.files import output_file
from seqprob.core import resolve_device
from seqprob.core.device import fast_autocast_dtype

# flag -> keyword of seqprob.hmm.distill; unset flags take DEFAULT_DISTILL's value, or
# DEFAULT_RECIPE's under --default
_RECIPE_FLAGS = {"n_states": int, "seq_len": int, "batch_size": int, "init_batches": int,
                 "em_steps": int, "updates_per_batch": int, "held_out": int,
                 "pseudocount": float, "kmeans_points": int, "seed": int}
_KEYWORDS = {"init_batches": "n_init_batches", "em_steps": "n_em_steps",
             "held_out": "n_held_out", "kmeans_points": "max_kmeans_points",
             "seed": "random_state"}
_HELP = {"n_states": "HMM hidden states", "seq_len": "tokens per sample",
         "batch_size": "samples per batch",
         "init_batches": "batches whose hidden states initialize the HMM",
         "em_steps": "fresh batches for stepwise EM",
         "updates_per_batch": "stepwise-EM updates per batch (on equal slices of it)",
         "held_out": "held-out samples", "pseudocount": "added to every count",
         "kmeans_points": "sampled tokens the k-means initialization is fit on (at most)",
         "seed": "sampling and k-means seed"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "distill", help="distill an HMM from a language model (for constrained decoding)",
        description="Sample continuations of instructions (chat template applied) from a "
                    "language model, initialize an HMM by clustering its hidden states, refine "
                    "it by stepwise EM; save it and print a JSON summary.")
    parser.add_argument("--default", action="store_true",
                        help="rebuild the HMM shipped with seqprob (its model and recipe; "
                             "writes the pruned fp16 artifact, resumable)")
    parser.add_argument("--model", help="a known model name or a local transformers folder "
                        "(default: smollm2-135m)")
    for name, kind in _RECIPE_FLAGS.items():
        flags = ["-n", "--n-states"] if name == "n_states" else [f"--{name.replace('_', '-')}"]
        parser.add_argument(*flags, dest=name, type=kind, help=_HELP[name])
    parser.add_argument("--n-hidden", dest="n_hidden", type=int,
                        help="deprecated alias of --n-states")
    parser.add_argument("--autocast", choices=("auto", "bfloat16", "float16", "none"),
                        default="auto", help="dtype of the LM while sampling (auto: bfloat16 "
                        "on CUDA and on a CPU with bf16 instructions, else fp32)")
    parser.add_argument("--prompt", action="append", help="continue these prompts "
                        "(repeatable; default: the shipped instruction set)")
    parser.add_argument("--no-chat", action="store_true",
                        help="do not wrap prompts in the model's chat template")
    parser.add_argument("--artifact", action="store_true",
                        help="save the pruned fp16 artifact instead of the full HMM")
    parser.add_argument("--checkpoint", type=output_file, help="resumable checkpoint file "
                        "(written during EM, read to resume; --default: <output>.checkpoint)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--output", type=output_file, help="where to save the HMM (default: "
                        "hmm.safetensors; --default: the package's artifact file)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def settings_from(args) -> dict:
    """The keyword arguments of ``seqprob.hmm.distill`` that the flags select."""
    from seqprob.control.defaults import DEFAULT_DISTILL, DEFAULT_RECIPE

    if args.n_hidden is not None:
        print("seqprob distill: --n-hidden is deprecated, use --n-states", file=sys.stderr)
        if args.n_states is None:
            args.n_states = args.n_hidden
    settings = dict(DEFAULT_RECIPE if args.default else DEFAULT_DISTILL)
    for name in _RECIPE_FLAGS:
        if getattr(args, name) is not None:
            settings[_KEYWORDS.get(name, name)] = getattr(args, name)
    return settings


def run(args) -> int:
    from seqprob.control.defaults import DEFAULT_MODEL, artifact_path, lm_fingerprint
    from seqprob.hmm import distill
    from seqprob.hmm.artifact import save_artifact
    from seqprob.lm import load

    settings = settings_from(args)
    model = args.model or DEFAULT_MODEL
    output = args.output or (artifact_path(model) if args.default else Path("hmm.safetensors"))
    checkpoint = args.checkpoint or (output.with_name(output.name + ".checkpoint")
                                     if args.default else None)
    lm = load(model).to(resolve_device(args.device))
    autocast = {"auto": fast_autocast_dtype(lm.device), "none": None}.get(args.autocast,
                                                                          args.autocast)
    start = time.perf_counter()
    result = distill(lm, **settings, prompts=args.prompt, chat=not args.no_chat,
                     autocast_dtype=autocast, checkpoint=checkpoint, verbose=not args.quiet)
    seconds = time.perf_counter() - start
    held_out = {k: round(v, 4) for k, v in result.held_out.items()}
    if args.default or args.artifact:
        meta = {"model": model, "lm_fingerprint": lm_fingerprint(lm), "recipe": settings,
                "autocast_dtype": autocast, "held_out_log_likelihood_per_token": held_out}
        path = save_artifact(result.hmm, output, result.token_counts, metadata=meta)
    else:
        path = result.hmm.save(output)
    if checkpoint is not None and args.default:
        checkpoint.unlink(missing_ok=True)
    summary = {"output": str(path), "n_states": settings["n_states"],
               "vocab_size": lm.vocab_size, "device": str(lm.device), "autocast": autocast,
               "observed_tokens": int((result.token_counts > 0).sum()),
               "ended_within_seq_len": round(result.ended, 4), "seconds": round(seconds, 1),
               "held_out_log_likelihood_per_token": held_out}
    print(json.dumps(summary))
    return 0
