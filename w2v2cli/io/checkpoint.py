"""`load_model`: one entry point for every kind of model, which picks the loader by what the path is.

A model name (`base-960h`, `org/name@revision`) is first resolved to a local path by hub.resolve: downloaded once
into huggingface_hub's cache, then loaded as the Hugging Face folder it is.

    native file (.safetensors, or a weights-only .pt/.pth/.bin/.ckpt)  ->  io/native.py
    Hugging Face folder (config.json + weights)                         ->  io/hf.py
    exported ONNX file (.onnx)                                          ->  onnx_model.py

The loaders share their helpers through io/common.py and never import this module, so imports run one way.
The names other modules import from here (`save_model`, `safe_torch_load`, ...) are the loaders' and common's.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..config import PretrainConfig
from ..errors import ConfigError, ModelFileError
from ..hub import resolve
from ..model import Wav2Vec2
from ..onnx_model import OnnxModel
from .common import build_empty, read_safetensors, read_safetensors_metadata, safe_torch_load
from .hf import load_hf_folder, load_hf_pretraining_head
from .native import PRETRAINING_PREFIX, SUFFIXES, load_native, load_native_pretraining_head, save_model

__all__ = [
    "PRETRAINING_PREFIX", "build_empty", "load_model", "load_native", "load_pretraining_head", "read_safetensors",
    "read_safetensors_metadata", "safe_torch_load", "save_model",
]


def load_model(spec, device="cpu", *, language: str | None = None) -> Wav2Vec2 | OnnxModel:
    """A model ready for inference (eval mode, on `device`) from a native file, a Hugging Face folder or an
    exported `.onnx` file (which runs on the CPU whatever `device` says).

    `language` picks the adapter and vocabulary of an MMS-style folder (`adapter.LANG.safetensors`); a name is
    resolved with it, so a Hub model's adapter is fetched too.

    `spec` is a path (a `Path`, or a string naming an existing file or folder) or, as a string, a model name as
    `--model` takes it: an alias from hub.MODELS or `org/name[@revision]`, downloaded on first use (progress bars
    on stderr). A `Path` is always a path, never looked up on the Hub.
    """
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but CUDA is not available on this machine")
    path = Path(spec) if isinstance(spec, os.PathLike) else resolve(spec, language=language)
    if not path.exists():
        raise ModelFileError(path, "no such file or directory")
    if path.is_dir():
        model = load_hf_folder(path, language)
    elif language is not None:
        raise ModelFileError(path, f"--language {language}: only a Hugging Face folder with language adapters "
                                   "(MMS) has languages to choose from")
    elif path.suffix == ".onnx":
        return OnnxModel(path)
    elif path.suffix in SUFFIXES:
        model = load_native(path)
    else:
        raise ModelFileError(
            path, "unknown model file type; expected a .safetensors/.pt model file, a Hugging Face folder or an "
            "exported .onnx file"
        )
    return model.to(device).eval()


def load_pretraining_head(path) -> tuple[dict[str, torch.Tensor], str] | None:
    """(head state, pretraining config JSON) stored in a native model file by `pretrain` or in a Hugging Face
    Wav2Vec2ForPreTraining folder, or None."""
    path = Path(path)
    if not path.is_dir():
        return load_native_pretraining_head(path)
    found = load_hf_pretraining_head(path)
    return None if found is None else (found[0], PretrainConfig().replace(**found[1]).to_json())
