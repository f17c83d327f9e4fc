"""``seqprob distill`` and ``seqprob generate --keywords/--avoid/--attribute`` on a tiny LM."""

import json
import re

import pytest

from seqprob.cli import main
from seqprob.control.words import keyword
from seqprob.hmm import HMM
from seqprob.lm import tiny_lm


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama-control")
    lm = tiny_lm(random_state=5)
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def hmm_path(folder, tmp_path_factory):
    path = tmp_path_factory.mktemp("hmm") / "hmm.safetensors"
    assert main(["distill", "--model", str(folder), "-n", "6", "--seq-len", "12",
                 "--batch-size", "8", "--init-batches", "2", "--em-steps", "2",
                 "--held-out", "8", "--output", str(path), "--quiet"]) == 0
    return path


def test_distill_writes_a_loadable_hmm(hmm_path, capsys):
    hmm = HMM.load(hmm_path)
    assert hmm.n_states == 6 and hmm.emission.n_symbols == 259


def test_distill_prints_a_summary(folder, tmp_path, capsys):
    out = tmp_path / "h.safetensors"
    assert main(["distill", "--model", str(folder), "-n", "4", "--seq-len", "8",
                 "--batch-size", "4", "--updates-per-batch", "2", "--init-batches", "2",
                 "--em-steps", "1",
                 "--held-out", "4", "--output", str(out), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary["held_out_log_likelihood_per_token"]) == {
        "hmm", "initial_hmm", "unigram", "bigram"}


def test_generate_with_keywords_and_avoid(folder, hmm_path, tmp_path):
    out = tmp_path / "out.jsonl"
    assert main(["generate", "--model", str(folder), "--hmm", str(hmm_path), "--prompt", "ab",
                 "--prompt", "cd", "--keywords", "dog,sun", "--keywords", "run",
                 "--avoid", "cat", "--max-new-tokens", "20", "--output", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["keywords"] for r in records] == [["dog", "sun"], ["run"]]
    for r in records:
        assert r["satisfied"] is True
        assert all(keyword(w).accepts_text(r["text"]) for w in r["keywords"])


def test_generate_bad_keywords_is_an_error(folder, hmm_path, capsys):
    assert main(["generate", "--model", str(folder), "--hmm", str(hmm_path), "--prompt", "a",
                 "--keywords", "dog", "--avoid", "dogs"]) == 2
    assert "required but avoid bans" in capsys.readouterr().err
    assert main(["generate", "--model", str(folder), "--hmm", str(hmm_path), "--prompt", "a",
                 "--prompt", "b", "--prompt", "c", "--keywords", "x", "--keywords", "y"]) == 2


def test_ban_guarantees_absence_and_lines_carry_logprobs(folder, tmp_path):
    """Ban a word the model does produce: it is gone (in any spelling), without an HMM."""
    from seqprob.control.words import words_of

    free, banned = tmp_path / "free.jsonl", tmp_path / "banned.jsonl"
    common = ["generate", "--model", str(folder), "--prompt", "ab", "--prompt", "x y",
              "--max-new-tokens", "24"]
    assert main([*common, "--output", str(free)]) == 0
    records = [json.loads(line) for line in free.read_text().splitlines()]
    words = [w.decode() for r in records for w in words_of(r["text"])
             if w.isascii() and w.isalpha()]
    assert words, "the tiny model wrote no word to ban"
    assert main([*common, "--ban", words[0], "--output", str(banned)]) == 0
    for r in (json.loads(line) for line in banned.read_text().splitlines()):
        assert words[0].encode() not in words_of(r["text"])
        assert len(r["logprobs"]) == len(r["token_ids"]) > 0


def test_one_sentence_is_guaranteed(folder, hmm_path, tmp_path):
    out = tmp_path / "out.jsonl"
    assert main(["generate", "--model", str(folder), "--hmm", str(hmm_path), "--prompt", "ab",
                 "--one-sentence", "--max-new-tokens", "16", "--output", str(out)]) == 0
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["satisfied"] is True
    assert re.fullmatch(r"[^\n\r.!?]*[.!?]", record["text"]), record["text"]


def test_controlled_lines_carry_logprobs_and_word_limits(folder, hmm_path, tmp_path):
    out = tmp_path / "out.jsonl"
    assert main(["generate", "--model", str(folder), "--hmm", str(hmm_path), "--prompt", "ab",
                 "--max-words", "3", "--suffix", "!", "--max-new-tokens", "16",
                 "--output", str(out)]) == 0
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["satisfied"] is True and record["text"].endswith("!")
    assert len(record["logprobs"]) == len(record["token_ids"])
