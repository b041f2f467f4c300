"""Model configuration: one frozen dataclass that travels with the weights, and its presets."""

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

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["conv_layers"] = [list(layer) for layer in self.conv_layers]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
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


@dataclass(frozen=True)
class PretrainConfig:
    """The self-supervised objective (paper section 3.2-3.3; fairseq names in comments). Defaults are BASE's.

    The quantizer's sizes travel with the pretraining head's weights; the rest are training choices.
    """

    # Masking of the projected features (mask_prob, mask_length): ~49% of frames for 0.65 x 10.
    mask_prob: float = 0.65
    mask_length: int = 10
    # Contrastive task (num_negatives, logit_temp): distractors come from other masked frames of the utterance.
    num_negatives: int = 100
    logit_temp: float = 0.1
    # Gumbel product quantizer over the CNN features (latent_groups, latent_vars, latent_dim).
    codebook_groups: int = 2
    codebook_entries: int = 320
    codevector_dim: int = 256  # G x d: each group's codewords have codevector_dim / codebook_groups values
    final_dim: int = 256  # context and quantized vectors are compared in this space
    # Gumbel temperature, annealed per update: max(start * decay**update, end) (latent_temp).
    temp_start: float = 2.0
    temp_end: float = 0.5
    temp_decay: float = 0.999995
    # Loss weights (loss_weights [0.1, 10]) and regularization.
    diversity_weight: float = 0.1
    feature_penalty_weight: float = 10.0
    feature_grad_mult: float = 0.1  # gradient reaching the feature encoder is scaled by this
    target_dropout: float = 0.1  # dropout_features: on the quantizer's input

    def __post_init__(self):
        problems = []
        if not 0.0 <= self.mask_prob < 1.0:
            problems.append(f"mask_prob must be in [0, 1), not {self.mask_prob}")
        if self.mask_length < 1 or self.num_negatives < 1:
            problems.append("mask_length and num_negatives must be >= 1")
        if self.codebook_groups < 1 or self.codebook_entries < 2 or self.codevector_dim % self.codebook_groups:
            problems.append("codevector_dim must be a multiple of codebook_groups, with >= 2 entries per group")
        if not 0 < self.temp_end <= self.temp_start or not 0 < self.temp_decay <= 1:
            problems.append("Gumbel temperatures need 0 < temp_end <= temp_start and 0 < temp_decay <= 1")
        if self.logit_temp <= 0:
            problems.append("logit_temp must be > 0")
        for name in ("diversity_weight", "feature_penalty_weight"):
            if not getattr(self, name) >= 0:  # also refuses NaN
                problems.append(f"{name} must be >= 0, not {getattr(self, name)}")
        if problems:
            raise ConfigError("invalid pretraining config: " + "; ".join(problems))

    def temperature(self, update: int) -> float:
        """Gumbel-softmax temperature after `update` updates: annealed on a schedule, never learned."""
        return max(self.temp_start * self.temp_decay**update, self.temp_end)

    def replace(self, **changes) -> "PretrainConfig":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "PretrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ConfigError(f"invalid pretraining config: {exc}") from None


_SMALL_HEAD = PretrainConfig(codevector_dim=128, final_dim=128, num_negatives=50)

# Pretraining heads per model preset (fairseq: final_dim 256 / latent_dim 0 -> final_dim for BASE, 768 for LARGE).
PRETRAIN_PRESETS: dict[str, PretrainConfig] = {
    "base": PretrainConfig(),
    "large": PretrainConfig(codevector_dim=768, final_dim=768),
    "large-lv60": PretrainConfig(codevector_dim=768, final_dim=768),
    "small": _SMALL_HEAD,
    "small-preln": _SMALL_HEAD,
    "tiny": PretrainConfig(codevector_dim=64, final_dim=32, num_negatives=20),
}


@dataclass(frozen=True)
class TrainConfig:
    """The training loop's settings, shared by pretraining and fine-tuning (defaults: fairseq BASE pretraining)."""

    max_updates: int = 400_000
    # The LR schedule's length when it differs from max_updates (fairseq keeps the two apart): a run can stop
    # part-way through a longer schedule and still follow it exactly, or be extended without changing its LR.
    schedule_updates: int | None = None
    max_tokens: int = 1_400_000  # padded samples per batch and process
    max_sample_size: int = 250_000  # longer utterances are randomly cropped to this many samples
    min_sample_size: int = 32_000  # shorter utterances are left out (fairseq min_sample_size; 2 s)
    update_freq: int = 1  # batches accumulated per update
    # Optimizer: AdamW; biases, norms, the mask embedding and codebooks get no weight decay.
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.01
    clip_norm: float = 10.0  # 0: no clipping (the norm is still measured and logged)
    # LR schedule: "linear" (warm-up then linear decay to 0) or "tri_stage" (warm-up, hold, exponential decay).
    schedule: str = "linear"
    warmup: float = 0.08  # fraction of max_updates
    hold: float = 0.0  # tri_stage only
    init_lr_scale: float = 0.01  # tri_stage: the warm-up starts at lr * this
    final_lr_scale: float = 0.05  # tri_stage: the decay ends at lr * this
    # Runtime.
    seed: int = 1
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; master weights are always fp32
    num_workers: int = 2
    activation_checkpointing: bool = False
    # Bookkeeping.
    save_every: int = 1000
    keep_last: int = 3
    log_every: int = 100
    valid_every: int = 10_000
    max_bad_updates: int = 10  # consecutive updates skipped for a non-finite loss or gradient before giving up
    tensorboard: bool = False

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        problems = []
        for name in ("max_updates", "max_tokens", "max_sample_size", "update_freq", "save_every", "keep_last",
                     "log_every", "valid_every", "max_bad_updates"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be >= 1, not {getattr(self, name)}")
        if self.schedule_updates is not None and self.schedule_updates < 1:
            problems.append(f"--schedule-updates must be >= 1, not {self.schedule_updates}")
        if self.num_workers < 0 or self.min_sample_size < 0:
            problems.append("--num-workers and --min-sample-size must be >= 0")
        if self.max_sample_size > self.max_tokens:
            problems.append(f"--max-sample-size ({self.max_sample_size}) must not exceed --max-tokens "
                            f"({self.max_tokens}): one cropped utterance must fit in a batch")
        if self.min_sample_size > self.max_sample_size:
            problems.append(f"--min-sample-size ({self.min_sample_size}) exceeds --max-sample-size "
                            f"({self.max_sample_size})")
        if self.lr <= 0 or self.eps <= 0 or self.weight_decay < 0 or self.clip_norm < 0:
            problems.append("--lr and eps must be > 0, weight decay and --clip-norm >= 0")
        if self.schedule not in ("linear", "tri_stage"):
            problems.append(f"schedule must be 'linear' or 'tri_stage', not {self.schedule!r}")
        if not (0 <= self.warmup <= 1 and 0 <= self.hold <= 1 and self.warmup + self.hold <= 1):
            problems.append("warm-up and hold are fractions of the updates and must sum to at most 1")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            problems.append(f"--precision must be auto, fp32, bf16 or fp16, not {self.precision!r}")
        if problems:
            raise ConfigError("; ".join(problems))

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out


@dataclass(frozen=True)
class FinetuneConfig:
    """CTC fine-tuning (fairseq wav2vec_ctc; defaults: its BASE 1 h recipe)."""

    mask_prob: float = 0.65  # 0.065 span starts per frame x 10 frames (fairseq mask_prob 0.65): ~48% of frames
    mask_length: int = 10
    mask_channel_prob: float = 0.25  # channel spans per channel x 64 channels, the same for every frame
    mask_channel_length: int = 64
    freeze_updates: int = 10_000  # only the CTC head trains before this update (freeze_finetune_updates)
    train_feature_encoder: bool = False  # fairseq feature_grad_mult 0: the pretrained CNN stays as it is
    layerdrop: float = 0.1
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.1
    feature_dropout: float = 0.0  # fairseq dropout_input
    final_dropout: float = 0.0
    # Transformer layers at the top that start from fresh weights instead of the pretrained ones: the top layers
    # of a pretrained wav2vec 2.0 serve the contrastive task more than recognition (Pasad et al., 2021).
    reinit_layers: int = 0

    def __post_init__(self):
        for name in ("mask_prob", "mask_channel_prob", "layerdrop", "dropout", "attention_dropout",
                     "activation_dropout", "feature_dropout", "final_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name.replace('_', '-')} must be in [0, 1), not {getattr(self, name)}")
        for name, least in (("mask_length", 1), ("mask_channel_length", 1), ("freeze_updates", 0),
                            ("reinit_layers", 0)):
            if getattr(self, name) < least:
                raise ConfigError(f"{name.replace('_', '-')} must be >= {least}, not {getattr(self, name)}")

    def replace(self, **changes) -> "FinetuneConfig":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclass(frozen=True)
class FinetuneRecipe:
    """fairseq's BASE fine-tuning recipes (examples/wav2vec/config/finetuning/base_*.yaml). Their updates cover
    8 x 3.2M samples (2 GPUs x update_freq 4 x max_tokens 3.2M); `finetune` keeps that batch by raising
    --update-freq on fewer devices."""

    name: str
    max_updates: int
    lr: float
    freeze_updates: int
    mask_channel_prob: float
    layerdrop: float
    valid_every: int


FINETUNE_RECIPES: tuple[FinetuneRecipe, ...] = (
    FinetuneRecipe("10m", 13_000, 5e-5, 10_000, 0.25, 0.1, 1000),
    FinetuneRecipe("1h", 13_000, 5e-5, 10_000, 0.25, 0.1, 1000),
    FinetuneRecipe("10h", 20_000, 5e-5, 10_000, 0.5, 0.05, 1000),
    FinetuneRecipe("100h", 80_000, 3e-5, 0, 0.5, 0.1, 1000),
)


def recipe_for_hours(hours: float) -> FinetuneRecipe:
    """The recipe of the nearest labeled-data size on a log scale (10 min, 1 h, 10 h, 100 h)."""
    import math

    sizes = {"10m": 1 / 6, "1h": 1.0, "10h": 10.0, "100h": 100.0}
    name = min(sizes, key=lambda k: abs(math.log(max(hours, 1e-6)) - math.log(sizes[k])))
    return next(r for r in FINETUNE_RECIPES if r.name == name)
