"""Self-supervised pretraining: the contrastive objective on the one training loop."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import preset
from ..data import DataSource, read_source
from ..data.subset import SUBSET_FILE, select_hours, write_manifest
from ..errors import ConfigError
from ..io.checkpoint import load_model, load_pretraining_head
from ..model import Wav2Vec2, build_model
from .config import PRETRAIN_PRESETS, PretrainConfig, TrainConfig
from .objectives import PretrainObjective
from .trainer import Trainer, check_output_dir


def encoder_only(model: Wav2Vec2) -> Wav2Vec2:
    """`model` without its CTC head (pretraining continues from fine-tuned models too), in training mode."""
    if model.ctc_head is None:
        return model.train()
    bare = build_model(model.config.replace(vocab_size=0))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("ctc_head.")}
    bare.load_state_dict(state)
    return bare.train()


def pretrain(
    train,
    output,
    valid=(),
    config: str | None = None,
    init=None,
    train_config: TrainConfig | None = None,
    pretrain_overrides: dict | None = None,
    on_event: Callable[[dict], None] | None = None,
    hours: float | None = None,
    conv_init: str | None = None,
) -> dict:
    """Pretrain a model on unlabeled audio; returns the run's summary (final update, model path, validation).

    `config` names a preset for a new model; `init` continues from a model file or Hugging Face folder (its
    pretraining head too when the file has one). `hours` trains on a seeded subset of the training audio (the
    same selection as `finetune --hours`, written to OUTPUT/train_subset.jsonl): a few utterances can take a
    model off the contrastive chance plateau by memorizing them before a second run continues on everything
    (`init`). `conv_init` (with `config`) picks how the conv stack starts (ModelConfig.conv_init).
    Rerunning with the same `output` resumes the run.
    """
    cfg = train_config or TrainConfig()
    emit = on_event or (lambda event: None)
    if config is not None and init is not None:
        raise ConfigError("config (a new model) and init (continue from a model) exclude each other: give one, "
                          "not both")
    if conv_init is not None and init is not None:
        raise ConfigError("conv_init only goes with a new model (config): init's weights come with it")
    if hours is not None and hours <= 0:
        raise ConfigError(f"hours must be > 0, not {hours:g}")
    output = Path(output)
    # The model comes before the data: audio is counted at its sample rate.
    model, pretrain_cfg, head_state = _model_and_head(config, init, conv_init, cfg.seed, pretrain_overrides)
    rate = model.config.sample_rate
    train_source = read_source(train, sample_rate=rate)
    valid_sources = [read_source(v, sample_rate=rate) for v in valid]
    chosen = None if hours is None else select_hours(train_source.utterances, hours, cfg.seed, rate)
    check_output_dir(output)
    if chosen is not None:
        write_manifest(chosen, output / SUBSET_FILE, rate)
        train_source = DataSource(train_source.name, chosen, train_source.problems)
        emit({"event": "subset", "utterances": len(chosen), "path": str(output / SUBSET_FILE),
              "hours": sum(u.num_samples for u in chosen) / rate / 3600})
    for source in (train_source, *valid_sources):
        for problem in source.problems:
            emit({"event": "data_problem", "source": source.name, "problem": problem})
    objective = PretrainObjective(model, pretrain_cfg, head_state, utterance_seconds=cfg.max_sample_size / rate)
    summary = Trainer(objective, train_source, cfg, output, valid_sources, on_event).run()
    summary["data_problems"] = sum(len(s.problems) for s in (train_source, *valid_sources))
    return summary


def _model_and_head(config: str | None, init, conv_init: str | None, seed: int,
                    overrides: dict | None) -> tuple[Wav2Vec2, PretrainConfig, dict | None]:
    """The model to pretrain, its pretraining config and the head's weights to start from (None: fresh): a new
    model from a preset (its initial weights drawn from `seed`), or `init`'s, with the head it carries."""
    head_state = None
    if init is not None:
        model = encoder_only(load_model(init))
        stored = load_pretraining_head(init)
        if stored is not None:
            head_state, stored_json = stored
            pretrain_cfg = PretrainConfig.from_dict(json.loads(stored_json))
        else:
            pretrain_cfg = _default_pretrain_config(model.config.dim)
    else:
        name = config or "base"
        torch.manual_seed(seed)
        model = build_model(preset(name, **({"conv_init": conv_init} if conv_init else {})))
        pretrain_cfg = PRETRAIN_PRESETS.get(name, PretrainConfig())
    if overrides:
        pretrain_cfg = pretrain_cfg.replace(**overrides)
        fixed = sorted(k for k in overrides if k.startswith("codebook") or k.endswith("_dim"))
        if head_state is not None and fixed:
            raise ConfigError(f"{', '.join(fixed)}: the quantizer's sizes come with the pretraining head of init "
                              "and cannot be changed")
    return model, pretrain_cfg, head_state


def _default_pretrain_config(dim: int) -> PretrainConfig:
    """BASE's head for models up to 768 wide, LARGE's beyond (fairseq's final_dim choices)."""
    return PRETRAIN_PRESETS["base"] if dim <= 768 else PRETRAIN_PRESETS["large"]
