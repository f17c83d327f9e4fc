"""Text-quality measures for constrained generation (benchmarks/commongen.py): distinct-n,
Wilson score intervals, and detectors of degenerate outputs.

An output is degenerate when it is not one readable sentence in answer to "write one sentence
with these words": a bare list of the concepts (nothing but concept forms, or all concepts but one
in a row joined by commas and "and"), text running past one
sentence or one paragraph, text cut off by the token budget before its sentence ends, a loop
(the same word 4-gram twice), or an echo of the instruction (five consecutive words of it).
Words are those of :func:`seqprob.control.words.words_of`; concepts match in any inflection.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from statistics import NormalDist

from seqprob.control.words import inflections, words_of

_TERMINAL = re.compile(r"[.!?]+[\"')\]]*")
_ENDED = re.compile(r"[.!?][\"')\]]*$")


def ngrams(words: Sequence[bytes], n: int) -> list[tuple[bytes, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct n-grams over all n-grams of ``texts`` (words, pooled over the texts; 0 when
    there are none)."""
    grams = [g for t in texts for g in ngrams(words_of(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion; ``(0, 1)`` when ``n`` is 0."""
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _forms(concepts: Sequence[str]) -> set[bytes]:
    return {f.encode() for c in concepts for f in inflections(c)}


def bare_list(text: str, concepts: Sequence[str]) -> bool:
    """The concepts listed instead of used in a sentence: the text is nothing but concept forms
    (and "and": "Clap hands singe song."), or it holds all concepts but one (at least three) in
    a row, each after a comma, "and" or "or" ("... these words: jean, shirt, sidewalk, walk").
    "A dog throws a frisbee." and "The bathroom cuts hair with a clipper." are no lists."""
    forms = _forms(concepts)
    words = words_of(text)
    if words and all(w in forms or w == b"and" for w in words):
        return True
    run, need, joined = 0, max(3, len(concepts) - 1), False
    for token in re.findall(rb"[A-Za-z0-9\x80-\xff]+|[,;:]", text.encode().lower()):
        if token in b",;:" or token in (b"and", b"or"):
            joined = True
            continue
        run = (run + 1 if joined and run else 1) if token in forms else 0
        joined = False
        if run >= need:
            return True
    return False


def sentences(text: str) -> int:
    """The number of sentences: stretches ended by terminal punctuation, plus a final one
    without it."""
    parts = [p for p in _TERMINAL.split(text.strip()) if words_of(p)]
    return len(parts)


def run_on(text: str) -> bool:
    """More than one sentence, or more than one paragraph (a line break inside the text)."""
    return "\n" in text.strip() or sentences(text) > 1


def unfinished(text: str) -> bool:
    """The text does not end with terminal punctuation (cut off by the token budget)."""
    return not _ENDED.search(text.strip())


def loop(text: str, n: int = 4) -> bool:
    """Some word ``n``-gram occurs twice."""
    grams = ngrams(words_of(text), n)
    return len(set(grams)) < len(grams)


def echo(text: str, instruction: str, n: int = 5) -> bool:
    """Some ``n`` consecutive words of ``instruction`` occur in the text."""
    return bool(set(ngrams(words_of(text), n)) & set(ngrams(words_of(instruction), n)))


def degenerate(text: str, concepts: Sequence[str], instruction: str) -> list[str]:
    """The names of the detectors that fire on ``text`` (empty: not degenerate)."""
    checks = {"list": bare_list(text, concepts), "run-on": run_on(text),
              "unfinished": unfinished(text), "loop": loop(text),
              "echo": echo(text, instruction)}
    return [name for name, fired in checks.items() if fired]
