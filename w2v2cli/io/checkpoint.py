"""Model files: the native single-file `.safetensors` format, safe reading of PyTorch pickles, and `load_model`.

Nothing here ever runs code from a file: safetensors holds only tensors and strings, and PyTorch files are read
with `torch.load(weights_only=True)`, which refuses any object that is not a tensor or a plain container.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch

from ..config import ModelConfig
from ..errors import ConfigError, ModelFileError, UnsafeCheckpointError
from ..model import Wav2Vec2, build_model
from ..text import Vocabulary
from .atomic import atomic_path

FORMAT_NAME = "w2v2"
FORMAT_VERSION = "1"
# Tensors stored beside a model's own weights (a pretraining head) that inference does not load.
PRETRAINING_PREFIX = "pretraining."
EXTRA_PREFIXES = (PRETRAINING_PREFIX,)


def save_model(
    model: Wav2Vec2, path, extra_metadata: dict[str, str] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write `model` as one `.safetensors` file whose metadata carries its config and vocabulary.

    `extra_tensors` (e.g. a pretraining head under `pretraining.`) are stored beside the model's weights and
    skipped by `load_model`."""
    from safetensors.torch import save_file

    path = Path(path)
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "config": model.config.to_json()}
    if model.vocab is not None:
        metadata["vocab"] = model.vocab.to_json()
    metadata.update(extra_metadata or {})
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tensors.update({k: v.detach().to("cpu").contiguous() for k, v in (extra_tensors or {}).items()})
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
    except OSError as exc:
        raise ModelFileError(path, f"cannot write: {exc.strerror or exc}") from None
    return path


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


def _build(path, config_json, vocab_json, state_dict) -> Wav2Vec2:
    try:
        config = ModelConfig.from_dict(json.loads(config_json) if isinstance(config_json, str) else config_json)
        vocab = None
        if vocab_json:
            vocab = Vocabulary.from_dict(json.loads(vocab_json) if isinstance(vocab_json, str) else vocab_json)
        model = build_empty(config, vocab)
    except (ConfigError, ValueError, json.JSONDecodeError) as exc:
        raise ModelFileError(path, f"invalid model description: {exc}") from None
    load_state(model, state_dict, path)
    return model


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


def load_native(path) -> Wav2Vec2:
    path = Path(path)
    if path.suffix == ".safetensors":
        tensors, metadata = read_safetensors(path)
        if metadata.get("format") != FORMAT_NAME or "config" not in metadata:
            raise ModelFileError(
                path, "a safetensors file without a w2v2 model config; for a Hugging Face model pass its folder"
            )
        tensors = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIXES)}
        return _build(path, metadata["config"], metadata.get("vocab"), tensors)
    data = safe_torch_load(path)
    if not (isinstance(data, dict) and "config" in data and "state_dict" in data):
        raise ModelFileError(
            path, "a PyTorch file without a w2v2 model config; for a Hugging Face model pass its folder"
        )
    return _build(path, data["config"], data.get("vocab"), data["state_dict"])


def load_model(path, device="cpu") -> Wav2Vec2:
    """A model ready for inference (eval mode, on `device`) from a native file or a Hugging Face folder."""
    path = Path(path)
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but CUDA is not available on this machine")
    if not path.exists():
        raise ModelFileError(path, "no such file or directory")
    if path.is_dir():
        from .hf import load_hf_folder

        model = load_hf_folder(path)
    elif path.suffix == ".onnx":
        from ..onnx_model import OnnxModel

        return OnnxModel(path).to(device)
    elif path.suffix in (".safetensors", ".pt", ".pth", ".bin", ".ckpt"):
        model = load_native(path)
    else:
        raise ModelFileError(
            path, "unknown model file type; expected a .safetensors/.pt model file or a Hugging Face folder"
        )
    return model.to(device).eval()


def load_pretraining_head(path) -> tuple[dict[str, torch.Tensor], str] | None:
    """(head state, pretraining config JSON) stored in a native model file by `pretrain` or in a Hugging Face
    Wav2Vec2ForPreTraining folder, or None."""
    path = Path(path)
    if path.is_dir():
        from ..config import PretrainConfig
        from .hf import load_hf_pretraining_head

        found = load_hf_pretraining_head(path)
        return None if found is None else (found[0], PretrainConfig().replace(**found[1]).to_json())
    if path.suffix != ".safetensors":
        return None
    tensors, metadata = read_safetensors(path)
    head = {k.removeprefix(PRETRAINING_PREFIX): v for k, v in tensors.items() if k.startswith(PRETRAINING_PREFIX)}
    if not head or "pretrain_config" not in metadata:
        return None
    return head, metadata["pretrain_config"]
