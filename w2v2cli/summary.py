"""Plain-data descriptions of models, for `w2v2 info` and for anyone scripting against the library."""

from __future__ import annotations

import json
from pathlib import Path

from .config import PRESETS, ModelConfig
from .model import Wav2Vec2

# Fields that define the architecture (the rest are training-time regularization or the head size).
_ARCHITECTURE_FIELDS = (
    "conv_layers", "feature_norm", "conv_bias", "dim", "num_layers", "num_heads", "ffn_dim", "activation",
    "layer_norm_first", "pos_conv_kernel", "pos_conv_groups", "family", "feature_projection_norm", "pos_conv_depth",
    "relative_position_buckets", "adapter_dim",
)

_FAMILY_NAMES = {"wav2vec2": "wav2vec 2.0", "hubert": "HuBERT", "data2vec-audio": "data2vec-audio", "wavlm": "WavLM"}


def family_name(config: ModelConfig) -> str:
    """The model family as people name it ("WavLM"; "wav2vec 2.0 + MMS adapters")."""
    name = _FAMILY_NAMES[config.family]
    return f"{name} + MMS adapters" if config.adapter_dim else name


def architecture_name(config: ModelConfig) -> str:
    """The preset whose architecture this config has, or "custom"."""
    for name, candidate in PRESETS.items():
        if all(getattr(config, f) == getattr(candidate, f) for f in _ARCHITECTURE_FIELDS):
            return name
    return "custom"


def source_format(path) -> str:
    path = Path(path)
    if path.is_dir():
        return "Hugging Face folder"
    return {".safetensors": "w2v2 safetensors", ".onnx": "ONNX (w2v2 export)"}.get(
        path.suffix, "PyTorch weights-only file")


PROVENANCE_KEY = "provenance"  # safetensors metadata: JSON saying what a model is and how it was trained


def read_provenance(path) -> dict | None:
    """The provenance a w2v2 .safetensors file carries (the embedded model has one), or None."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    from .io.checkpoint import read_safetensors_metadata

    text = read_safetensors_metadata(path).get(PROVENANCE_KEY)
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return {"description": text}


def describe_model(model: Wav2Vec2, path=None) -> dict:
    cfg = model.config
    if not isinstance(model, Wav2Vec2):  # an exported model (OnnxModel): count on a weightless twin
        from .io.checkpoint import build_empty

        model = build_empty(cfg, model.vocab)

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters()) if module is not None else 0

    info = {
        "family": family_name(cfg),
        "architecture": architecture_name(cfg),
        "parameters": {
            "total": model.num_parameters(),
            "feature_encoder": count(model.feature_encoder),
            "feature_projection": count(model.feature_projection),
            "transformer": count(model.transformer),
            "ctc_head": count(model.ctc_head),
        },
        "frames": {
            "receptive_field_samples": cfg.receptive_field,
            "hop_samples": cfg.hop,
            "frame_rate_hz": cfg.sample_rate / cfg.hop,
        },
        "config": cfg.to_dict(),
        "vocab": None,
    }
    if path is not None:
        info = {"source": str(path), "format": source_format(path), **info}
        if Path(path).is_dir():
            from .io.hf import model_languages

            languages = model_languages(path)
            if languages:  # an MMS-style folder: --language picks one
                info["languages"] = languages
        provenance = read_provenance(path)
        if provenance is not None:
            info["provenance"] = provenance
    if model.vocab is not None:
        info["vocab"] = {"size": len(model.vocab), **model.vocab.to_dict()}
    return info
