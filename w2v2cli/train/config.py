"""Training configuration: frozen dataclasses on one base (Settings) with one JSON round trip and one way of
refusing bad values. The model's own config and presets stay in w2v2cli/config.py.

    TrainConfig      the loop: optimizer, LR schedule, batching, devices, bookkeeping (pretraining and fine-tuning)
    PretrainConfig   the self-supervised objective and the pretraining head's sizes (PRETRAIN_PRESETS per preset)
    FinetuneConfig   CTC fine-tuning: masking, dropouts, the frozen warm-up
    FinetuneRecipe   fairseq's fine-tuning recipes by amount of labeled data (recipe_for_hours)

Messages name settings by their field names (max_tokens, reinit_layers); the command line maps them to its
options (cli/training.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from ..errors import ConfigError


@dataclass(frozen=True)
class Settings:
    """Base of the training configs. Subclasses list their problems in `problems()`; construction refuses a
    config with any, naming every one in a single ConfigError."""

    kind: ClassVar[str] = "settings"  # how messages call this config: "invalid {kind}: ..."

    def __post_init__(self):
        problems = list(self.problems())
        if problems:
            raise ConfigError(f"invalid {self.kind}: " + "; ".join(problems))

    def problems(self) -> Iterator[str]:
        """One message per bad value, each starting with the field's name."""
        return iter(())

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def to_json(self) -> str:
        """Sorted keys: the text is part of a run's identity (a checkpoint resumes only under the same one)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict):
        """The config a dict (e.g. a model file's stored JSON) describes. Unknown keys are refused, not dropped:
        no field was ever renamed or removed, so an unknown key is a newer file or not one of ours, and silently
        dropping it would train with a setting other than the one written down."""
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"invalid {cls.kind}: unknown fields {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"invalid {cls.kind}: {exc}") from None


def _at_least(config: Settings, least: int | float, names: tuple[str, ...]) -> Iterator[str]:
    for name in names:
        value = getattr(config, name)
        if not value >= least:  # also refuses NaN
            yield f"{name} must be >= {least}, not {value}"


def _fractions(config: Settings, names: tuple[str, ...]) -> Iterator[str]:
    for name in names:
        value = getattr(config, name)
        if not 0.0 <= value < 1.0:
            yield f"{name} must be in [0, 1), not {value}"


@dataclass(frozen=True)
class PretrainConfig(Settings):
    """The self-supervised objective (paper section 3.2-3.3; fairseq names in comments). Defaults are BASE's.

    The quantizer's sizes travel with the pretraining head's weights; the rest are training choices.
    """

    kind: ClassVar[str] = "pretraining config"

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

    def problems(self) -> Iterator[str]:
        yield from _fractions(self, ("mask_prob",))
        yield from _at_least(self, 1, ("mask_length", "num_negatives", "codebook_groups"))
        if self.codebook_entries < 2 or self.codevector_dim % max(self.codebook_groups, 1):
            yield (f"codevector_dim ({self.codevector_dim}) must be a multiple of codebook_groups "
                   f"({self.codebook_groups}), with >= 2 codebook_entries per group ({self.codebook_entries})")
        if not 0 < self.temp_end <= self.temp_start or not 0 < self.temp_decay <= 1:
            yield (f"temp_start, temp_end, temp_decay ({self.temp_start}, {self.temp_end}, {self.temp_decay}) "
                   "need 0 < temp_end <= temp_start and 0 < temp_decay <= 1")
        if not self.logit_temp > 0:
            yield f"logit_temp must be > 0, not {self.logit_temp}"
        yield from _at_least(self, 0, ("diversity_weight", "feature_penalty_weight"))

    def temperature(self, update: int) -> float:
        """Gumbel-softmax temperature after `update` updates: annealed on a schedule, never learned."""
        return max(self.temp_start * self.temp_decay**update, self.temp_end)


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
class TrainConfig(Settings):
    """The training loop's settings, shared by pretraining and fine-tuning (defaults: fairseq BASE pretraining)."""

    kind: ClassVar[str] = "training config"

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
        try:
            object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        except (TypeError, ValueError):
            raise ConfigError(f"invalid {self.kind}: betas must be two numbers, not {self.betas!r}") from None
        super().__post_init__()

    def problems(self) -> Iterator[str]:
        yield from _at_least(self, 1, ("max_updates", "max_tokens", "max_sample_size", "update_freq", "save_every",
                                       "keep_last", "log_every", "valid_every", "max_bad_updates"))
        if self.schedule_updates is not None:
            yield from _at_least(self, 1, ("schedule_updates",))
        yield from _at_least(self, 0, ("num_workers", "min_sample_size", "seed"))
        if self.max_sample_size > self.max_tokens:
            yield (f"max_sample_size ({self.max_sample_size}) must not exceed max_tokens ({self.max_tokens}): "
                   "one cropped utterance must fit in a batch")
        if self.min_sample_size > self.max_sample_size:
            yield f"min_sample_size ({self.min_sample_size}) exceeds max_sample_size ({self.max_sample_size})"
        for name in ("lr", "eps"):
            if not getattr(self, name) > 0:
                yield f"{name} must be > 0, not {getattr(self, name)}"
        yield from _at_least(self, 0, ("weight_decay", "clip_norm"))
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            yield f"betas must be two numbers in [0, 1), not {self.betas}"
        if self.schedule not in ("linear", "tri_stage"):
            yield f"schedule must be 'linear' or 'tri_stage', not {self.schedule!r}"
        if not (0 <= self.warmup <= 1 and 0 <= self.hold <= 1 and self.warmup + self.hold <= 1):
            yield (f"warmup and hold ({self.warmup}, {self.hold}) are fractions of the updates and must sum to "
                   "at most 1")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            yield f"precision must be auto, fp32, bf16 or fp16, not {self.precision!r}"


@dataclass(frozen=True)
class FinetuneConfig(Settings):
    """CTC fine-tuning (fairseq wav2vec_ctc; defaults: its BASE 1 h recipe)."""

    kind: ClassVar[str] = "fine-tuning config"

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
    # Adapter fine-tuning (MMS): a language code trains only the attention adapters and the CTC head, for that
    # language; the rest of the model stays bit-identical. A model without adapters gets fresh ones this wide.
    adapter: str = ""
    adapter_dim: int = 16  # MMS's adapter_attn_dim

    def problems(self) -> Iterator[str]:
        yield from _fractions(self, ("mask_prob", "mask_channel_prob", "layerdrop", "dropout", "attention_dropout",
                                     "activation_dropout", "feature_dropout", "final_dropout"))
        yield from _at_least(self, 1, ("mask_length", "mask_channel_length", "adapter_dim"))
        yield from _at_least(self, 0, ("freeze_updates", "reinit_layers"))
        if self.adapter and not all(c.isalnum() or c in "-_" for c in self.adapter):
            yield f"adapter must be a language code (letters, digits, - or _), not {self.adapter!r}"


@dataclass(frozen=True)
class FinetuneRecipe(Settings):
    """fairseq's BASE fine-tuning recipes (examples/wav2vec/config/finetuning/base_*.yaml). Their updates cover
    8 x 3.2M samples (2 GPUs x update_freq 4 x max_tokens 3.2M); `finetune` keeps that batch by raising
    update_freq on fewer devices."""

    kind: ClassVar[str] = "fine-tuning recipe"

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
    sizes = {"10m": 1 / 6, "1h": 1.0, "10h": 10.0, "100h": 100.0}
    name = min(sizes, key=lambda k: abs(math.log(max(hours, 1e-6)) - math.log(sizes[k])))
    return next(r for r in FINETUNE_RECIPES if r.name == name)
