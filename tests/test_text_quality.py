"""benchmarks/text_quality.py: the degenerate-output detectors on real outputs of SmolLM2 (the
CommonGen benchmark's), distinct-n by hand, Wilson intervals against statsmodels."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "text_quality.py"
spec = importlib.util.spec_from_file_location("text_quality", SCRIPT)
tq = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tq)

INSTRUCTION = ("Write one short sentence describing a common everyday scene that uses all of "
               "these words: ")
JEAN = ["jean", "shirt", "sidewalk", "walk"]


@pytest.mark.parametrize(("text", "concepts", "fired"), [
    ("The air jumped out of my arms, spreading legs across the ground.",
     ["air", "arm", "jump", "leg", "spread"], []),
    ("Air jumping leg spread.", ["air", "arm", "jump", "leg", "spread"], ["list"]),
    ("A man in jeans and a white shirt walks down the sidewalk.", JEAN, []),
    ("It uses these words: jeans, shirt, sidewalk, walk.", JEAN, ["list"]),
    ("Jean walks the sidewalk, shirt, and shoes.", JEAN, []),
    ("A ball thrown by a kid in a bunch of kids.", ["ball", "bunch", "kid", "throw"], []),
    ("Backstroke swimmer competing spectators cheer.",
     ["backstroke", "cheer", "compete", "spectator", "swimmer"], ["list"]),
    ("A bathroom clipper cutting hair is a common everyday scene that uses all of these words.",
     ["bathroom", "clipper", "cut", "hair"], ["echo"]),
    ("The bathroom cuts hair with a clipper.", ["bathroom", "clipper", "cut", "hair"], []),
    ("Clap hands and singe song.", ["clap", "hand", "singe", "song"], ["list"]),
    ("A dog throws a frisbee.", ["dog", "frisbee", "throw"], []),
    ("A phone and shirt walking down a sidewalk.\n\nThis sentence uses all of the words.",
     ["phone", "shirt", "sidewalk", "talk", "walk"], ["run-on"]),
    ("Air jumping leg spread. This scene is a classic example of a scene.",
     ["air", "arm", "jump", "leg", "spread"], ["run-on"]),
    ("A walk through a sidewalk, a walk through a walk, a walk through a sidewalk, a walk",
     ["phone", "shirt", "sidewalk", "talk", "walk"], ["unfinished", "loop"]),
    ('She said "walk on the sidewalk in jeans and a shirt!"', JEAN, []),
])
def test_degenerate_detectors_on_real_outputs(text, concepts, fired):
    assert tq.degenerate(text, concepts, INSTRUCTION + ", ".join(concepts)) == fired


def test_sentences_count_stretches_ended_by_terminal_punctuation():
    assert tq.sentences("One. Two! Three?") == 3
    assert tq.sentences("One... and two") == 2
    assert tq.sentences("No end") == 1 and tq.sentences("") == 0


def test_distinct_n_pools_ngrams_over_texts():
    texts = ["a b a b", "a b c"]
    # unigrams: a b a b a b c -> {a, b, c} of 7; bigrams: ab ba ab ab bc -> {ab, ba, bc} of 5
    assert tq.distinct_n(texts, 1) == pytest.approx(3 / 7)
    assert tq.distinct_n(texts, 2) == pytest.approx(3 / 5)
    assert tq.distinct_n([], 2) == 0.0


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (121, 150)])
def test_wilson_matches_statsmodels(k, n):
    from statsmodels.stats.proportion import proportion_confint

    assert tq.wilson(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"))
    assert tq.wilson(0, 0) == (0.0, 1.0)
