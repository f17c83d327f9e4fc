import json
import os

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from seqprob.core import Persistable, load, load_checkpoint, register, save_checkpoint
from seqprob.core.persist import atomic_path


@register
class _Tiny(Persistable):
    def __init__(self, width: int = 3):
        super().__init__()
        self.width = width
        self.lin = nn.Linear(width, width)

    def get_config(self):
        return {"width": self.width}


def test_round_trip_by_class_and_by_kind(tmp_path):
    model = _Tiny(4)
    path = model.save(tmp_path / "m.safetensors")
    for loaded in (_Tiny.load(path), load(path)):
        assert isinstance(loaded, _Tiny) and loaded.width == 4
        torch.testing.assert_close(loaded.lin.weight, model.lin.weight)


def test_save_is_atomic_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, {"a": torch.ones(2)}, kind="x", config={"v": 1})

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("seqprob.core.persist.save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"a": torch.zeros(2)}, kind="x", config={"v": 2})
    tensors, config, _ = load_checkpoint(path)
    torch.testing.assert_close(tensors["a"], torch.ones(2))
    assert config == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="path: no checkpoint"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", {"a": torch.ones(100)}, kind="x", config={})
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(ValueError, match="truncated or not safetensors"):
        load_checkpoint(path)


def test_wrong_version_and_foreign_files(tmp_path):
    path = tmp_path / "v.safetensors"
    save_file({"a": torch.ones(1)}, str(path), metadata={"seqprob_format": "99", "kind": "x"})
    with pytest.raises(ValueError, match="format version 99"):
        load_checkpoint(path)
    save_file({"a": torch.ones(1)}, str(path))
    with pytest.raises(ValueError, match="without seqprob metadata"):
        load_checkpoint(path)


def test_wrong_kind_and_unregistered_kind(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", {}, kind="other.Thing", config={})
    with pytest.raises(ValueError, match="expected a checkpoint of kind"):
        _Tiny.load(path)
    with pytest.raises(ValueError, match="not a registered seqprob model"):
        load(path)


def test_config_must_be_json():
    with pytest.raises(TypeError, match="config: expected JSON"):
        save_checkpoint("/tmp/never.safetensors", {}, kind="x", config={"f": object()})
    assert json.loads(json.dumps({"ok": 1}))


# ---- hostile files ----------------------------------------------------------------------------
def test_a_kind_naming_a_module_never_imports_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "seqprob.cli.demo", raising=False)
    path = save_checkpoint(tmp_path / "m.safetensors", {}, kind="seqprob.cli.demo.Anything",
                           config={})
    with pytest.raises(ValueError, match="not a registered seqprob model"):
        load(path)
    assert "seqprob.cli.demo" not in sys.modules


def test_a_huge_config_with_tiny_tensors_is_refused_before_allocating(tmp_path):
    from seqprob.hmm import HMM

    small = HMM(2, "categorical", n_symbols=3)
    config = {**small.get_config(), "n_states": 10**7}  # 4e14 bytes if allocated
    path = save_checkpoint(tmp_path / "m.safetensors", small.state_dict(),
                           kind="seqprob.hmm.model.HMM", config=config)
    for loader in (load, HMM.load):
        with pytest.raises(ValueError, match="'log_startprob' has shape \\(2,\\)"):
            loader(path)


def test_config_with_an_unknown_argument_or_a_bad_value_is_refused(tmp_path):
    model = _Tiny(2)
    path = save_checkpoint(tmp_path / "m.safetensors", model.state_dict(),
                           kind="tests.test_persist._Tiny", config={"width": 2, "self": 1})
    with pytest.raises(ValueError, match=r"config: _Tiny takes no argument\(s\) \['self'\]"):
        load(path)
    path = save_checkpoint(tmp_path / "m.safetensors", {**model.state_dict(), "x": torch.ones(1)},
                           kind="tests.test_persist._Tiny", config={"width": 2})
    with pytest.raises(ValueError, match=r"unexpected \['x'\]"):
        load(path)


def test_config_that_is_not_an_object_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"a": torch.ones(1)}, str(path),
              metadata={"seqprob_format": "1", "kind": "x", "config": "[1, 2]"})
    with pytest.raises(ValueError, match="config that is a list"):
        load_checkpoint(path)
    save_file({"a": torch.ones(1)}, str(path),
              metadata={"seqprob_format": "1", "kind": "x", "config": "{nope"})
    with pytest.raises(ValueError, match="config that is not JSON"):
        load_checkpoint(path)


def test_every_registered_model_builds_on_meta_for_the_shape_check():
    import tests.test_contract as contract

    for case in contract.CASES:
        model = case.make_model()
        if isinstance(model, Persistable):
            rebuilt = type(model).from_checkpoint(model.state_dict(), model.get_config())
            for name, value in model.state_dict().items():
                torch.testing.assert_close(rebuilt.state_dict()[name], value)


def test_a_model_file_with_nan_parameters_is_refused(tmp_path):
    from seqprob.hmm import HMM

    model = HMM(2, "gaussian", n_features=1)
    tensors = model.state_dict()
    tensors["emission.means"] = torch.tensor([[float("nan")], [0.0]])
    path = save_checkpoint(tmp_path / "m.safetensors", tensors, kind="seqprob.hmm.model.HMM",
                           config=model.get_config())
    with pytest.raises(ValueError, match="'emission.means' holds NaN"):
        load(path)


def test_atomic_path_keeps_the_suffix_and_the_umask_mode(tmp_path):
    path = tmp_path / "out.csv"
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".csv" and tmp != path
        tmp.write_text("a\n")
        assert not path.exists()  # nothing visible until the block succeeds
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_text() == "a\n" and path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_path_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError, match="writer failed"), atomic_path(path) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("writer failed")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    with pytest.raises(IsADirectoryError), atomic_path(tmp_path):
        pass
