"""``seqprob generate``: continue prompts with a language model, one JSON line per prompt."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seqprob.cli.files import output_file, text_output
from seqprob.core import resolve_device


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="continue prompts with a language model (JSON lines out)",
        description="Continue each prompt with a language model; print one JSON object a "
                    "line: prompt, text, token ids, per-token log-probs.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    source.add_argument("--prompts-file", type=Path,
                        help="a text file with one prompt a line ('-': standard input)")
    parser.add_argument("--model", default="smollm2-135m",
                        help="a known model name, a local transformers folder, or a "
                             "seqprob LM saved with .save() such as a MambaLM "
                             "(.safetensors)")
    parser.add_argument("--chat", action="store_true",
                        help="wrap each prompt in the tokenizer's chat template as a user turn")
    parser.add_argument("--max-new-tokens", type=int, default=32,
                        help="at most this many tokens per continuation")
    parser.add_argument("--min-new-tokens", type=int, default=0,
                        help="no end-of-sequence before this many tokens")
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="--sample: divide the logits by this")
    parser.add_argument("--top-k", type=int, default=None,
                        help="--sample: only from the k most likely tokens (default: all)")
    parser.add_argument("--top-p", type=float, default=1.0,
                        help="--sample: only from the smallest set of tokens of this mass")
    parser.add_argument("--num-beams", type=int, default=1, help="beam search with this many "
                        "beams (1: greedy or sampling)")
    parser.add_argument("--length-penalty", type=float, default=1.0,
                        help="beam search: scores are divided by length to this power")
    parser.add_argument("--ban", action="append", default=[], metavar="WORD",
                        help="never generate this word, in any inflection or tokenization "
                             "(repeatable; guaranteed: tokens that would spell it are "
                             "masked, no HMM needed; with --keywords/--avoid/--attribute "
                             "it joins --avoid)")
    parser.add_argument("--keywords", action="append", metavar="WORDS",
                        help="comma-separated words that must all appear, in any inflection "
                             "(once for every prompt, or once per prompt in order)")
    parser.add_argument("--avoid", action="append", default=[], metavar="WORD",
                        help="a word that must not appear in any inflection or tokenization "
                             "(repeatable; "
                             "guaranteed, steered by the HMM's lookahead)")
    parser.add_argument("--min-words", type=int, help="at least this many words (guaranteed)")
    parser.add_argument("--max-words", type=int, help="at most this many words (guaranteed)")
    parser.add_argument("--suffix", help="the text must end with this string (guaranteed)")
    parser.add_argument("--one-sentence", action="store_true",
                        help="the text is one sentence on one line, ending at its first . ! "
                             "or ? (guaranteed)")
    parser.add_argument("--attribute", action="append", choices=["nontoxic", "positive"],
                        help="steer toward this attribute (TRACE; repeatable)")
    parser.add_argument("--strength", type=float, default=1.0, help="attribute strength")
    parser.add_argument("--hmm", type=Path, help="the HMM of --keywords/--avoid/--attribute "
                        "(default: distilled from the model on first use and cached)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for --sample")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts decoded together")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--output", type=output_file,
                        help="write JSON lines here instead of stdout")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from seqprob.core.validation import check_int
    from seqprob.lm import chat_prompt, generate, has_chat_template

    prompts = args.prompt or _read_prompts(args.prompts_file)
    batch_size = check_int(args.batch_size, "--batch-size", minimum=1)
    lm = _load_lm(args.model).to(resolve_device(args.device))
    if args.chat and not has_chat_template(lm.tokenizer):
        raise ValueError("--chat: this model's tokenizer has no chat template")
    texts = [chat_prompt(lm.tokenizer, p) for p in prompts] if args.chat else prompts
    generator = torch.Generator(device=lm.device).manual_seed(args.seed)
    counts = (args.min_words, args.max_words)
    if (args.keywords or args.avoid or args.attribute or args.suffix is not None
            or args.one_sentence or counts != (None, None)):
        return _run_controlled(args, lm, prompts, texts, generator)
    processors = [_ban_mask(lm, args.ban, args.max_new_tokens)] if args.ban else []
    with text_output(args.output) as out:
        for start in range(0, len(texts), batch_size):
            result = generate(
                lm, texts[start:start + batch_size], args.max_new_tokens,
                min_new_tokens=args.min_new_tokens, do_sample=args.sample,
                temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                num_beams=args.num_beams, length_penalty=args.length_penalty,
                logits_processors=processors, random_state=generator, verbose=args.progress)
            for i, text in enumerate(result.texts):
                n = int(result.lengths[i])
                record = {"prompt": prompts[start + i], "text": text,
                          "token_ids": result.token_ids[i, :n].tolist(),
                          "logprobs": [round(x, 5) for x in result.logprobs[i, :n].tolist()]}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
    return 0


def _run_controlled(args, lm, prompts, texts, generator) -> int:
    """Keywords, avoided and banned words, word counts, a suffix and attributes through
    :func:`seqprob.control.generate` (an HMM steers them)."""
    from seqprob.control import generate as controlled
    from seqprob.hmm.artifact import load_hmm

    keywords = None
    if args.keywords:
        lists = [[w.strip() for w in item.split(",") if w.strip()] for item in args.keywords]
        if len(lists) not in (1, len(prompts)):
            raise ValueError(f"--keywords: expected once or once per prompt ({len(prompts)}), "
                             f"got {len(lists)} times")
        keywords = lists * len(prompts) if len(lists) == 1 else lists
    hmm = load_hmm(args.hmm) if args.hmm is not None else None
    result = controlled(
        lm, texts, hmm, keywords=keywords, avoid=[*args.avoid, *args.ban],
        min_words=args.min_words, max_words=args.max_words, suffix=args.suffix,
        one_sentence=args.one_sentence, attributes=args.attribute,
        strength=args.strength, max_new_tokens=args.max_new_tokens, verbose=args.progress,
        do_sample=args.sample, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, num_beams=args.num_beams, length_penalty=args.length_penalty,
        min_new_tokens=args.min_new_tokens, random_state=generator)
    with text_output(args.output) as out:
        for i, text in enumerate(result.texts):
            record = {"prompt": prompts[i], "text": text, "token_ids": result.token_ids[i],
                      "logprobs": [round(x, 5) for x in result.logprobs[i]],
                      "keywords": keywords[i] if keywords else [],
                      "satisfied": result.satisfied[i]}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0


def _load_lm(name: str):
    """A seqprob language model saved with ``save`` (``.safetensors``, e.g. a MambaLM), else
    ``seqprob.lm.load`` (known names, transformers folders, GGUF files)."""
    from seqprob.core import LanguageModel
    from seqprob.core import load as load_saved
    from seqprob.lm import load

    path = Path(name).expanduser()
    if path.suffix != ".safetensors" or not path.is_file():
        return load(name)
    model = load_saved(path)
    if not isinstance(model, LanguageModel):
        raise ValueError(f"--model: {name!r} holds a {type(model).__name__}, not a language model")
    return model.eval()


def _read_prompts(path: Path) -> list[str]:
    text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    prompts = [line for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"--prompts-file: {str(path)!r} holds no non-blank line")
    return prompts


def _ban_mask(lm, words: list[str], max_new_tokens: int):
    """A :class:`~seqprob.control.constrained.DFAMask` that keeps ``words`` out of the text
    in any inflection and tokenization (the avoided-words automaton over the LM's tokens, as
    ``--avoid`` uses it)."""
    from seqprob.control import avoided, compile_tokens, to_bytes, token_bytes
    from seqprob.control.constrained import DFAMask

    eos = lm.eos_token_ids[0] if lm.eos_token_ids else None
    dfa = compile_tokens(to_bytes(avoided(*words)), token_bytes(lm.tokenizer, lm.vocab_size),
                         eos_token_id=eos)
    return DFAMask(dfa, max_new_tokens=max_new_tokens)
