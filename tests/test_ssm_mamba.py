"""Mamba block and MambaLM against mambapy 1.2.0 (same weights), masks, backends, compile."""

from __future__ import annotations

import pytest
import torch

from seqprob.core import load
from seqprob.core.scan import backend_status
from seqprob.ssm import ByteTokenizer, Mamba, MambaLM
from seqprob.ssm.mamba import inverse_softplus

mambapy = pytest.importorskip("mambapy.mamba")

BACKENDS = [name for name, available, _ in backend_status() if available]


def _copy_block(ours: Mamba, ref) -> None:
    """Parameter names agree one to one (in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj)."""
    theirs = ref.state_dict()
    ours.load_state_dict({name: theirs[name] for name in ours.state_dict()})


@pytest.mark.parametrize("d_conv,expand", [(4, 2), (2, 1)])
@torch.no_grad()
def test_block_equals_mambapy(d_conv, expand):
    torch.manual_seed(0)
    cfg = mambapy.MambaConfig(d_model=16, n_layers=1, d_state=8, d_conv=d_conv,
                              expand_factor=expand)
    ref = mambapy.Mamba(cfg).layers[0].mixer
    ours = Mamba(16, 8, d_conv=d_conv, expand=expand, backend="reference", random_state=0)
    _copy_block(ours, ref)
    x = torch.randn(2, 13, 16)
    y, _ = ours(x)
    torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-5)
    # Step mode against mambapy's step with its (h, inputs) cache.
    cache = (torch.zeros(2, ref.config.d_inner, 8), torch.zeros(2, ref.config.d_inner, d_conv - 1))
    state = ours.init_state(2)
    for t in range(13):
        want, cache = ref.step(x[:, t], cache)
        got, state = ours.step(x[:, t], state)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state.ssm, cache[0], rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_language_model_equals_mambapy_lm():
    torch.manual_seed(0)
    ours = MambaLM(16, 2, d_state=4, random_state=0)
    cfg = mambapy.MambaConfig(d_model=16, n_layers=2, d_state=4)
    stack, norm_f = mambapy.Mamba(cfg), mambapy.RMSNorm(16)
    weights = ours.state_dict()
    stack.load_state_dict({k: weights[k] for k in stack.state_dict()})
    norm_f.load_state_dict({"weight": weights["norm_f.weight"]})
    ids = torch.randint(0, 259, (2, 12))
    out = ours.run(input_ids=ids)
    emb = ours.embedding.weight
    want = norm_f(stack(emb[ids])) @ emb.T                   # tied head
    torch.testing.assert_close(out.logits, want, rtol=1e-5, atol=1e-5)
    assert out.hidden.shape == (2, 12, 16)


def test_init_follows_mamba():
    torch.manual_seed(0)
    block = Mamba(32, 16, dt_min=1e-3, dt_max=1e-1, random_state=3)
    torch.testing.assert_close(-torch.exp(block.A_log),
                               -torch.arange(1, 17.0).expand(64, 16))         # S4D-Real
    dt = torch.nn.functional.softplus(block.dt_proj.bias)
    assert dt.min() >= 1e-3 - 1e-7 and dt.max() <= 1e-1 + 1e-7
    y = torch.tensor([1e-4, 0.01, 3.0])
    torch.testing.assert_close(torch.nn.functional.softplus(inverse_softplus(y)), y)
    same = Mamba(32, 16, random_state=3)
    torch.testing.assert_close(same.in_proj.weight, block.in_proj.weight)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_agree_with_reference_including_gradients(backend):
    torch.manual_seed(0)
    ref = Mamba(8, 4, backend="reference", random_state=0)
    other = Mamba(8, 4, backend=backend, random_state=0)
    x = torch.randn(2, 10, 8, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y_ref, s_ref = ref(x)
    y, s = other(x2)
    torch.testing.assert_close(y, y_ref, rtol=6e-4, atol=2e-3)
    torch.testing.assert_close(s.ssm, s_ref.ssm, rtol=6e-4, atol=2e-3)
    y_ref.square().sum().backward()
    y.square().sum().backward()
    torch.testing.assert_close(x2.grad, x.grad, rtol=6e-4, atol=2e-3)
    for (name, p), q in zip(ref.named_parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=6e-4, atol=2e-3, msg=name)


@pytest.mark.parametrize("mixer", ["mamba", "s4d"])
@torch.no_grad()
def test_left_padding_leaves_state_untouched(mixer):
    lm = MambaLM(16, 2, d_state=4, mixer=mixer, random_state=0)
    tok = ByteTokenizer()
    batch = tok(["hello there", "hi"], padding=True, return_tensors="pt")
    out = lm.run(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    for row, text in enumerate(["hello there", "hi"]):
        ids = torch.tensor([tok.encode(text)])
        alone = lm.run(input_ids=ids)
        n = ids.shape[1]
        torch.testing.assert_close(out.logits[row, -n:], alone.logits[0], rtol=1e-4, atol=1e-5)
        for got, want in zip(out.state.reorder(torch.tensor([row])).named_tensors(),
                             alone.state.named_tensors(), strict=True):
            torch.testing.assert_close(got[1], want[1], rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_inputs_embeds_equals_input_ids_and_save_load(tmp_path):
    lm = MambaLM(16, 1, d_state=4, random_state=0)
    ids = torch.randint(0, 259, (2, 5))
    a = lm.run(input_ids=ids)
    b = lm.run(inputs_embeds=lm.embed(ids))
    torch.testing.assert_close(a.logits, b.logits)
    lm.save(tmp_path / "lm.safetensors")
    again = load(tmp_path / "lm.safetensors")
    assert isinstance(again, MambaLM)
    torch.testing.assert_close(again.run(input_ids=ids).logits, a.logits)


def test_byte_tokenizer_round_trip():
    tok = ByteTokenizer()
    text = "naïve ∑ café"
    ids = tok.encode(text)
    assert ids[0] == tok.bos_token_id and len(tok) == 259
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.decode(ids) == "<bos>" + text
    batch = tok(["ab", "abcd"], padding=True, return_tensors="pt")
    assert batch["input_ids"][0].tolist() == [258, 258, 256, 97, 98]
    assert batch["attention_mask"][0].tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="ids"):
        tok.decode([999])


@pytest.mark.slow
def test_torch_compile_mamba_block_matches_eager():
    block = Mamba(8, 4, backend="reference", random_state=0)
    x = torch.randn(2, 6, 8)
    compiled = torch.compile(block)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x)[0], block(x)[0], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_generate_greedy_equals_manual_step_loop():
    from seqprob.lm import generate

    lm = MambaLM(16, 2, d_state=4, random_state=0).eval()
    prompts = ["hello", "a longer prompt"]
    out = generate(lm, prompts, max_new_tokens=8, eos_token_id=())
    for row, prompt in enumerate(prompts):
        ids = torch.tensor([lm.tokenizer.encode(prompt)])
        state = lm.init_state(1)
        for t in range(ids.shape[1]):
            logits, state = lm.step(ids[:, t], state)
        tokens = []
        for _ in range(8):
            nxt = logits.argmax(-1)
            tokens.append(int(nxt))
            logits, state = lm.step(nxt, state)
        assert out.token_ids[row, :8].tolist() == tokens


def test_cli_generate_with_a_saved_mamba_lm(tmp_path, capsys):
    import json

    from seqprob.cli import main

    lm = MambaLM(16, 1, d_state=4, random_state=0)
    path = lm.save(tmp_path / "lm.safetensors")
    assert main(["generate", "--model", str(path), "--prompt", "hi", "--max-new-tokens", "4"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert record["prompt"] == "hi" and len(record["token_ids"]) <= 4
