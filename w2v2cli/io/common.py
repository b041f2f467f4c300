"""What every model loader shares: safe reading of weight files, an empty model from a config and vocabulary, a
strict state-dict load with a readable error, and importing an optional package with a one-line error.

The loaders (`io/native.py`, `io/hf.py`, `onnx_model.py`) import from here and from nowhere else in `io/`;
`io/checkpoint.py` imports the loaders and picks one by what a path is.

Nothing here ever runs code from a file: safetensors holds only tensors and strings, and PyTorch files are read
with `torch.load(weights_only=True)`, which refuses any object that is not a tensor or a plain container.
"""

from __future__ import annotations

import importlib
import json
import pickle
import re

import torch

from ..config import ModelConfig
from ..errors import ConfigError, ModelFileError, UnsafeCheckpointError
from ..model import Wav2Vec2, build_model
from ..text import Vocabulary

EXPORT_EXTRA = "install the export extra: pip install 'w2v2cli[export]'"


class MissingDependencyError(ConfigError):
    """An optional package a command needs cannot be imported (absent, or broken by another package's version);
    the message names the package, the error and the command that installs it."""


def import_optional(module: str, install: str = EXPORT_EXTRA):
    """`module`, imported, or a MissingDependencyError that says what failed and then `install` (how to fix it).

    Any exception counts, not only ImportError: a package beside an incompatible one can fail inside its own
    import (onnx with ml-dtypes 0.7 and numpy 1.26 raises `SystemError: <built-in function __import__> returned
    a result with an exception set`)."""
    try:
        return importlib.import_module(module)
    except Exception as exc:
        reason = (str(exc).splitlines() or [""])[0]
        message = f"{module} cannot be imported ({type(exc).__name__}: {reason}): {install}"
        raise MissingDependencyError(message) from None


def safe_torch_load(path) -> object:
    """torch.load restricted to tensors and plain containers; anything needing code execution is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)|global '?([\w.]+)", str(exc))
        what = f" (it references {found.group(1) or found.group(2)})" if found else ""
        raise UnsafeCheckpointError(
            path,
            "refused: reading this file needs arbitrary unpickling, which can run code from the file"
            f"{what}; only weights-only checkpoints (.safetensors, or plain tensors in .pt/.bin) are loaded",
        ) from None
    except Exception as exc:  # torch raises RuntimeError/EOFError/ValueError for corrupt archives
        raise ModelFileError(path, f"not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None


def read_safetensors(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, header metadata) of a safetensors file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    metadata = read_safetensors_metadata(path)
    try:
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(path, f"not a readable safetensors file ({exc})") from None


def read_safetensors_metadata(path) -> dict[str, str]:
    """The header's metadata only, without reading the tensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(path, f"not a readable safetensors file ({exc})") from None


def parse_description(path, config_json, vocab_json) -> tuple[ModelConfig, Vocabulary | None]:
    """The config and vocabulary stored with a model (JSON text or already-parsed dicts; no vocabulary for an
    encoder), or a ModelFileError naming `path`."""
    try:
        config = ModelConfig.from_dict(json.loads(config_json) if isinstance(config_json, str) else config_json)
        vocab = None
        if vocab_json:
            vocab = Vocabulary.from_dict(json.loads(vocab_json) if isinstance(vocab_json, str) else vocab_json)
    except (ConfigError, TypeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise ModelFileError(path, f"invalid model description: {exc}") from None
    return config, vocab


def build_empty(config: ModelConfig, vocab: Vocabulary | None) -> Wav2Vec2:
    """A model whose parameters take no memory and no init time yet, to be filled by `load_state`."""
    with torch.device("meta"):
        return build_model(config, vocab)


def load_state(model: Wav2Vec2, state_dict: dict[str, torch.Tensor], path) -> None:
    """Strict load with a readable error instead of PyTorch's multi-line report."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict) if expected[k].shape != state_dict[k].shape)
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise ModelFileError(path, "weights do not match the model config: " + ", ".join(parts))
    # assign=True adopts the loaded tensors instead of copying them into freshly allocated ones.
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state_dict.items()}, assign=True)


def build_loaded(path, config: ModelConfig, vocab: Vocabulary | None, state_dict: dict[str, torch.Tensor]) -> Wav2Vec2:
    """A model of `config` holding `state_dict`; errors name `path`."""
    try:
        model = build_empty(config, vocab)
    except ConfigError as exc:  # e.g. a vocabulary whose size is not the config's
        raise ModelFileError(path, f"invalid model description: {exc}") from None
    load_state(model, state_dict, path)
    return model
