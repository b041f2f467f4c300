"""The native model file: one `.safetensors` file whose metadata carries the config and vocabulary (or a
weights-only PyTorch file holding the same three things), so every model file can rebuild itself."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelFileError
from ..model import Wav2Vec2
from .atomic import atomic_path
from .common import build_loaded, parse_description, read_safetensors, safe_torch_load

FORMAT_NAME = "w2v2"
FORMAT_VERSION = "1"
# Tensors stored beside a model's own weights (a pretraining head) that inference does not load.
PRETRAINING_PREFIX = "pretraining."
EXTRA_PREFIXES = (PRETRAINING_PREFIX,)
SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def save_model(
    model: Wav2Vec2, path, extra_metadata: dict[str, str] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write `model` as one `.safetensors` file whose metadata carries its config and vocabulary.

    `extra_tensors` (e.g. a pretraining head under `pretraining.`) are stored beside the model's weights and
    skipped by `load_native`."""
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


def load_native(path) -> Wav2Vec2:
    """A model (on the CPU, as stored) from a native `.safetensors` file or a weights-only PyTorch file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        tensors, metadata = read_safetensors(path)
        if metadata.get("format") != FORMAT_NAME or "config" not in metadata:
            raise ModelFileError(
                path, "a safetensors file without a w2v2 model config; for a Hugging Face model pass its folder"
            )
        tensors = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIXES)}
        config, vocab = parse_description(path, metadata["config"], metadata.get("vocab"))
        return build_loaded(path, config, vocab, tensors)
    data = safe_torch_load(path)
    if not (isinstance(data, dict) and "config" in data and "state_dict" in data):
        raise ModelFileError(
            path, "a PyTorch file without a w2v2 model config; for a Hugging Face model pass its folder"
        )
    config, vocab = parse_description(path, data["config"], data.get("vocab"))
    return build_loaded(path, config, vocab, data["state_dict"])


def load_native_pretraining_head(path) -> tuple[dict[str, torch.Tensor], str] | None:
    """(head state, pretraining config JSON) stored beside the model by `pretrain`, or None."""
    if Path(path).suffix != ".safetensors":
        return None
    tensors, metadata = read_safetensors(path)
    head = {k.removeprefix(PRETRAINING_PREFIX): v for k, v in tensors.items() if k.startswith(PRETRAINING_PREFIX)}
    if not head or "pretrain_config" not in metadata:
        return None
    return head, metadata["pretrain_config"]
