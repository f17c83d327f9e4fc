"""mamba_ssm's drop-in forms against mambapy 1.2.0 (the outside oracle): the same weights give
the same outputs, in MambaSimple (mamba_ssm.Mamba's names and forward) and in a MambaLM built
from a MambaLMHeadModel state dict (``state-spaces/mamba-*`` key names, built here)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqprob.ssm import MambaLM, MambaSimple, mamba_lm_from_state_dict

mambapy = pytest.importorskip("mambapy.mamba")


def mambapy_lm(d_model=16, n_layers=2, vocab=300, **config):
    """mambapy's backbone, an embedding and a final norm (``mambapy.lm.LM`` needs einops):
    returns ``(logits_of(ids), MambaLMHeadModel state dict)``."""
    torch.manual_seed(0)
    backbone = mambapy.Mamba(mambapy.MambaConfig(d_model=d_model, n_layers=n_layers,
                                                 **config)).eval()
    with torch.no_grad():
        for name, p in backbone.named_parameters():   # away from the initialization
            if name.endswith(("norm.weight", "D", "conv1d.bias")):
                p.add_(0.1 * torch.randn_like(p))
    norm_f = mambapy.RMSNorm(d_model)
    with torch.no_grad():
        norm_f.weight.add_(0.1 * torch.randn(d_model))
    table = torch.randn(vocab, d_model) * 0.5

    def logits_of(ids):
        return F.linear(norm_f(backbone(F.embedding(ids, table))), table)

    state_dict = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    state_dict.update({"backbone.embedding.weight": table, "lm_head.weight": table.clone(),
                       "backbone.norm_f.weight": norm_f.weight.detach().clone()})
    return logits_of, state_dict


@pytest.mark.parametrize("config", [{}, {"d_state": 8, "dt_rank": 3, "expand_factor": 3,
                                         "d_conv": 3}], ids=["defaults", "sizes"])
@torch.no_grad()
def test_state_dict_gives_mambapys_logits(config):
    logits_of, state_dict = mambapy_lm(**config)
    model = mamba_lm_from_state_dict(state_dict)
    ids = torch.randint(0, 300, (2, 7), generator=torch.Generator().manual_seed(1))
    want = logits_of(ids)
    torch.testing.assert_close(model.run(input_ids=ids).logits, want, rtol=1e-4, atol=1e-4)
    state = model.init_state(2)
    for t in range(ids.shape[1]):
        logits, state = model.step(ids[:, t], state)
        torch.testing.assert_close(logits, want[:, t], rtol=1e-4, atol=1e-4)
    assert model.get_config()["vocab_size"] == 300


def test_state_dict_errors_name_the_key():
    _, state_dict = mambapy_lm()
    with pytest.raises(ValueError, match=r"lm_head.weight: expected the embedding's weights"):
        mamba_lm_from_state_dict({**state_dict, "lm_head.weight": torch.zeros(300, 16)})
    with pytest.raises(ValueError, match=r"unexpected keys \['backbone.layers.0.mixer.extra'\]"):
        mamba_lm_from_state_dict({**state_dict, "backbone.layers.0.mixer.extra": torch.zeros(1)})
    partial = {k: v for k, v in state_dict.items() if k != "backbone.layers.1.mixer.D"}
    with pytest.raises(ValueError, match=r"missing keys \['backbone.layers.1.mixer.D'\]"):
        mamba_lm_from_state_dict(partial)
    with pytest.raises(ValueError, match=r"expected the key 'backbone.embedding.weight'"):
        mamba_lm_from_state_dict({k: v for k, v in state_dict.items() if "embedding" not in k})
    with pytest.raises(ValueError, match=r"got layer indices \[\]"):
        mamba_lm_from_state_dict({})
    without_head = {k: v for k, v in state_dict.items() if k != "lm_head.weight"}
    assert isinstance(mamba_lm_from_state_dict(without_head), MambaLM)


def test_mamba_simple_loads_a_mamba_block_state_dict_and_returns_the_tensor():
    torch.manual_seed(0)
    ref = mambapy.MambaBlock(mambapy.MambaConfig(d_model=12, n_layers=1, d_state=6))
    block = MambaSimple(12, d_state=6)
    assert set(block.state_dict()) == set(ref.state_dict())
    block.load_state_dict(ref.state_dict())
    x = torch.randn(2, 9, 12)
    y = block(x)
    assert isinstance(y, torch.Tensor)
    torch.testing.assert_close(y, ref(x), rtol=1e-4, atol=1e-5)
    y.square().mean().backward()
    assert block.in_proj.weight.grad is not None and block.A_log.grad is not None
    contract_y, _ = block.block(x)                         # the same parameters
    torch.testing.assert_close(contract_y, y)
    with pytest.raises(ValueError, match="inference_params"):
        block(x, inference_params=object())
    with pytest.raises(ValueError, match="dt_init"):
        MambaSimple(12, dt_init="constant")
