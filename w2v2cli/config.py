"""Model configuration: one frozen dataclass that travels with the weights, and its presets. The training
configs (TrainConfig, PretrainConfig, FinetuneConfig, the fine-tuning recipes) are in train/config.py."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from .errors import ConfigError

# (channels, kernel, stride) of the seven conv layers in the paper: 400-sample receptive field, 320-sample hop.
PAPER_CONV_LAYERS: tuple[tuple[int, int, int], ...] = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2

ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu")


def conv_geometry(conv_layers) -> tuple[int, int]:
    """(receptive field, hop) in samples of a stack of (channels, kernel, stride) conv layers."""
    field_, hop = 1, 1
    for _, kernel, stride in conv_layers:
        field_ += (kernel - 1) * hop
        hop *= stride
    return field_, hop


# How training from scratch starts the conv stack (ModelConfig.conv_init; see Wav2Vec2._init_weights).
CONV_INITS = ("kaiming", "envelope")

# Checkpoint families that run on the one model core: the same conv stack, projection and Transformer, with the
# few parts each adds switched on by the fields below. The name is the transformers `model_type`.
FAMILIES = ("wav2vec2", "hubert", "data2vec-audio", "wavlm")


@dataclass(frozen=True)
class ModelConfig:
    # Feature encoder ---------------------------------------------------------------------------------------------
    conv_layers: tuple[tuple[int, int, int], ...] = PAPER_CONV_LAYERS  # (channels, kernel, stride) per layer
    feature_norm: str = "group"  # "group": GroupNorm on layer 0 only (BASE); "layer": LayerNorm every layer (LV-60)
    conv_bias: bool = False  # fairseq conv_bias; True for LARGE-LV60
    sample_rate: int = 16000  # audio is resampled to this rate before the model sees it
    normalize_waveform: bool = False  # zero mean / unit variance per utterance over valid samples, inside forward
    conv_init: str = "kaiming"  # how training from scratch starts the conv stack: "kaiming" or "envelope"
    # Transformer ------------------------------------------------------------------------------------------------
    dim: int = 768  # encoder_embed_dim / hidden_size
    num_layers: int = 12
    num_heads: int = 12
    ffn_dim: int = 3072
    activation: str = "gelu"  # FFN activation; the conv stack and positional conv always use GELU
    layer_norm_first: bool = False  # pre-LN Transformer (LV-60, HF do_stable_layer_norm) instead of post-LN
    layer_norm_eps: float = 1e-5
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    # Regularization (active in training only) ------------------------------------------------------------------
    dropout: float = 0.1  # residual/hidden dropout
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0  # inside the FFN
    feature_dropout: float = 0.1  # fairseq dropout_input: after the feature projection
    final_dropout: float = 0.0  # before the CTC head
    layerdrop: float = 0.05  # probability of skipping a Transformer layer
    # Family (what HuBERT, data2vec-audio, WavLM and MMS add to the core) -----------------------------------------
    family: str = "wav2vec2"  # one of FAMILIES: the checkpoint layout read and written (export --format hf)
    feature_projection_norm: bool = True  # LayerNorm on conv features before the projection (HuBERT may omit it)
    pos_conv_depth: int = 0  # 0: one weight-normed positional conv; N: data2vec-audio's N stacked conv+LayerNorm
    relative_position_buckets: int = 0  # WavLM's gated relative position bias (320 buckets); 0: none
    relative_position_max_distance: int = 800  # WavLM: distance (frames) where the log-spaced buckets end
    adapter_dim: int = 0  # MMS attention adapters (adapter_attn_dim) after each pre-LN layer's FFN; 0: none
    # CTC head -----------------------------------------------------------------------------------------------------
    vocab_size: int = 0  # 0: no CTC head (a pretrained or bare encoder)

    def __post_init__(self):
        layers = tuple(tuple(int(v) for v in layer) for layer in self.conv_layers)
        object.__setattr__(self, "conv_layers", layers)
        problems = []
        if not layers or any(len(layer) != 3 or min(layer) < 1 for layer in layers):
            problems.append("conv_layers must be a non-empty list of positive (channels, kernel, stride)")
        if self.feature_norm not in ("group", "layer"):
            problems.append(f"feature_norm must be 'group' or 'layer', not {self.feature_norm!r}")
        if self.conv_init not in CONV_INITS:
            problems.append(f"conv_init must be one of {', '.join(map(repr, CONV_INITS))}, not {self.conv_init!r}")
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation must be one of {', '.join(ACTIVATIONS)}, not {self.activation!r}")
        if self.dim < 1 or self.num_heads < 1 or self.dim % self.num_heads:
            problems.append(f"dim ({self.dim}) must be a positive multiple of num_heads ({self.num_heads})")
        if self.pos_conv_groups < 1 or self.dim % self.pos_conv_groups:
            problems.append(f"dim ({self.dim}) must be a multiple of pos_conv_groups ({self.pos_conv_groups})")
        if self.family not in FAMILIES:
            problems.append(f"family must be one of {', '.join(FAMILIES)}, not {self.family!r}")
        if min(self.pos_conv_depth, self.relative_position_buckets, self.adapter_dim) < 0:
            problems.append("pos_conv_depth, relative_position_buckets and adapter_dim must be >= 0")
        buckets, distance = self.relative_position_buckets, self.relative_position_max_distance
        if buckets and (buckets < 8 or distance <= buckets // 4):  # the log-spaced buckets start at buckets / 4
            problems.append("relative_position_buckets must be >= 8 and relative_position_max_distance larger than "
                            "a quarter of them")
        if self.adapter_dim and not self.layer_norm_first:
            problems.append("attention adapters (adapter_dim) need a pre-LN Transformer (layer_norm_first)")
        if self.num_layers < 0 or self.ffn_dim < 1 or self.pos_conv_kernel < 1 or self.vocab_size < 0:
            problems.append("num_layers, ffn_dim, pos_conv_kernel and vocab_size must be non-negative sizes")
        if problems:
            raise ConfigError("invalid model config: " + "; ".join(problems))

    @property
    def receptive_field(self) -> int:
        """Samples that one output frame sees (400 for the paper's stack)."""
        return conv_geometry(self.conv_layers)[0]

    @property
    def hop(self) -> int:
        """Samples between consecutive frames (320 = 20 ms at 16 kHz for the paper's stack)."""
        return conv_geometry(self.conv_layers)[1]

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["conv_layers"] = [list(layer) for layer in self.conv_layers]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config fields: {', '.join(unknown)}")
        data = dict(data)
        if "conv_layers" in data:
            data["conv_layers"] = tuple(tuple(layer) for layer in data["conv_layers"])
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"invalid model config: {exc}") from None


# A CPU-sized model (5.2M parameters, about 100x real time on 2 cores): the paper's conv geometry with 128
# channels, a 6 x 256 Transformer (post-LN, as BASE).
_SMALL = ModelConfig(
    conv_layers=((128, 10, 5),) + ((128, 3, 2),) * 4 + ((128, 2, 2),) * 2,
    dim=256, num_layers=6, num_heads=4, ffn_dim=1024, pos_conv_kernel=32, pos_conv_groups=16, layerdrop=0.0,
)

PRESETS: dict[str, ModelConfig] = {
    # fairseq wav2vec2_base: 12 x 768, post-LN, GroupNorm feature encoder (~95M parameters).
    "base": ModelConfig(),
    # fairseq wav2vec2_large (LibriSpeech): 24 x 1024, still post-LN with GroupNorm.
    "large": ModelConfig(dim=1024, num_layers=24, num_heads=16, ffn_dim=4096, layerdrop=0.2),
    # fairseq wav2vec2_large_lv60: LayerNorm conv stack with bias, pre-LN Transformer, normalized input.
    "large-lv60": ModelConfig(
        feature_norm="layer", conv_bias=True, normalize_waveform=True, dim=1024, num_layers=24, num_heads=16,
        ffn_dim=4096, layer_norm_first=True, layerdrop=0.0, feature_dropout=0.1,
    ),
    "small": _SMALL,
    # `small` with a pre-LN Transformer (layer_norm_first, as LARGE-LV60). Trained with CTC from scratch it leaves
    # the blank-only start sooner than post-LN (synthetic-en dev CER 62% against 82% after 250 updates at LR 2e-3)
    # and the two are level from about 1,000 updates on. The embedded default model is one.
    "small-preln": _SMALL.replace(layer_norm_first=True),
    # A small model for CPU tests and quick experiments: same conv geometry, narrow and shallow.
    "tiny": ModelConfig(
        conv_layers=((64, 10, 5),) + ((64, 3, 2),) * 4 + ((64, 2, 2),) * 2,
        dim=64, num_layers=2, num_heads=4, ffn_dim=128, pos_conv_kernel=16, pos_conv_groups=4, layerdrop=0.0,
    ),
}


def preset(name: str, **overrides) -> ModelConfig:
    """The named preset, with field overrides (e.g. vocab_size)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


# The training configs live in train/config.py; the model core (model/quantizer.py, model/finetuning.py) and
# io/checkpoint.py still take these two from here. Imported last: train/config.py needs nothing from this module.
from .train.config import FinetuneConfig, PretrainConfig  # noqa: E402, F401
