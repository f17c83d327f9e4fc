"""``seqprob distill``: distill an HMM from a language model; save it and print a JSON summary
(held-out log-likelihood per token of the HMM and of unigram/bigram baselines)."""

from __future__ import annotations

import json

from seqprob.cli.files import output_file
from seqprob.core import resolve_device
from seqprob.core.device import fast_autocast_dtype


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "distill", help="distill an HMM from a language model (for constrained decoding)",
        description="Sample text from a language model, initialize an HMM by clustering its "
                    "hidden states, refine it by stepwise EM; save it and print a JSON summary.")
    parser.add_argument("--model", default="smollm2-135m",
                        help="a known model name or a local transformers folder")
    # the defaults are seqprob.control.DEFAULT_DISTILL's (the default HMM for constrained decoding)
    parser.add_argument("-n", "--n-hidden", type=int, default=32, help="HMM hidden states")
    parser.add_argument("--seq-len", type=int, default=32, help="tokens per sample")
    parser.add_argument("--batch-size", type=int, default=128, help="samples per batch")
    parser.add_argument("--init-batches", type=int, default=2,
                        help="batches whose hidden states initialize the HMM")
    parser.add_argument("--em-steps", type=int, default=6, help="fresh batches for stepwise EM")
    parser.add_argument("--updates-per-batch", type=int, default=8,
                        help="stepwise-EM updates per batch (on equal slices of it)")
    parser.add_argument("--held-out", type=int, default=64, help="held-out samples")
    parser.add_argument("--autocast", choices=("auto", "bfloat16", "float16", "none"),
                        default="auto", help="dtype of the LM while sampling (auto: bfloat16 "
                        "on a CPU with bf16 instructions, else fp32)")
    parser.add_argument("--pseudocount", type=float, default=0.01,
                        help="added to every expected count in the M-step")
    parser.add_argument("--prompt", action="append", help="sample from these prompts "
                        "(repeatable; default: from BOS)")
    parser.add_argument("--checkpoint", type=output_file,
                        help="resumable checkpoint file (written during EM, read to resume)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the sampling")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--output", type=output_file, default="hmm.safetensors",
                        help="where to save the HMM")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args) -> int:
    from seqprob.hmm import distill
    from seqprob.lm import load

    lm = load(args.model).to(resolve_device(args.device))
    autocast = {"auto": fast_autocast_dtype(lm.device), "none": None}.get(args.autocast,
                                                                          args.autocast)
    result = distill(lm, args.n_hidden, seq_len=args.seq_len, batch_size=args.batch_size,
                     n_init_batches=args.init_batches, n_em_steps=args.em_steps,
                     updates_per_batch=args.updates_per_batch, n_held_out=args.held_out,
                     pseudocount=args.pseudocount, autocast_dtype=autocast,
                     prompts=args.prompt, checkpoint=args.checkpoint, random_state=args.seed,
                     verbose=not args.quiet)
    path = result.hmm.save(args.output)
    summary = {"output": str(path), "n_hidden": args.n_hidden, "vocab_size": lm.vocab_size,
               "held_out_log_likelihood_per_token": {k: round(v, 4) for k, v in
                                                     result.held_out.items()}}
    print(json.dumps(summary))
    return 0
