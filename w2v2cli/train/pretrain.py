"""Self-supervised pretraining: the contrastive objective on the one training loop."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import PRETRAIN_PRESETS, PretrainConfig, TrainConfig, preset
from ..data import DataSource, read_source
from ..data.subset import SUBSET_FILE, select_hours, write_manifest
from ..errors import ConfigError
from ..io.checkpoint import load_model, load_pretraining_head
from ..model import Wav2Vec2, build_model
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
    (`--init`). `conv_init` (with `config`) picks how the conv stack starts (ModelConfig.conv_init).
    Rerunning with the same `output` resumes the run.
    """
    cfg = train_config or TrainConfig()
    if config is not None and init is not None:
        raise ConfigError("give either --config (a new model) or --init (continue from a model), not both")
    if conv_init is not None and init is not None:
        raise ConfigError("--conv-init only goes with a new model (--config): --init's weights come with it")
    if hours is not None and hours <= 0:
        raise ConfigError(f"--hours/--minutes must be > 0, not {hours:g} h")
    output = Path(output)
    # Everything a user can get wrong is checked before any work.
    train_source = read_source(train)
    valid_sources = [read_source(v) for v in valid]
    check_output_dir(output)
    if hours is not None:
        chosen = select_hours(train_source.utterances, hours, cfg.seed)
        write_manifest(chosen, output / SUBSET_FILE)
        train_source = DataSource(train_source.name, chosen, train_source.problems)
        if on_event is not None:
            on_event({"event": "subset", "utterances": len(chosen), "path": str(output / SUBSET_FILE),
                      "hours": sum(u.num_samples for u in chosen) / 16000 / 3600})

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
        torch.manual_seed(cfg.seed)
        model = build_model(preset(name, **({"conv_init": conv_init} if conv_init else {})))
        pretrain_cfg = PRETRAIN_PRESETS.get(name, PretrainConfig())
    if pretrain_overrides:
        pretrain_cfg = pretrain_cfg.replace(**pretrain_overrides)
        if head_state is not None and any(k.startswith("codebook") or k.endswith("_dim") for k in pretrain_overrides):
            raise ConfigError("the quantizer's sizes come from --init's pretraining head and cannot be changed")
    objective = PretrainObjective(model, pretrain_cfg, head_state,
                                  utterance_seconds=cfg.max_sample_size / model.config.sample_rate)
    if on_event is not None:
        for source in (train_source, *valid_sources):
            for problem in source.problems:
                on_event({"event": "data_problem", "source": source.name, "problem": problem})
    trainer = Trainer(objective, train_source, cfg, output, valid_sources, on_event, model.config.sample_rate)
    summary = trainer.run()
    summary["data_problems"] = sum(len(s.problems) for s in (train_source, *valid_sources))
    return summary


def _default_pretrain_config(dim: int) -> PretrainConfig:
    """BASE's head for models up to 768 wide, LARGE's beyond (fairseq's final_dim choices)."""
    return PRETRAIN_PRESETS["base"] if dim <= 768 else PRETRAIN_PRESETS["large"]
