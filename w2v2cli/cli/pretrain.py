"""`w2v2 pretrain`: self-supervised pretraining on unlabeled audio, on one device or many (torchrun)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..config import CONV_INITS, PRESETS
from ..errors import ConfigError
from ..train.config import PretrainConfig, TrainConfig
from . import app
from .common import DEVICE, PRECISION, QUIET, THREADS, resolve_model, set_threads, subset_hours
from .data_options import ALLOW_COMMANDS, DATA_FORMAT, SPLIT, TEXT_COLUMN, DataFormat, data_spec
from .training import TrainingDisplay, errors_with_options, is_main_process, option_names, tensorboard_available

_T = TrainConfig()
_P = PretrainConfig()


@app.command()
def pretrain(
    ctx: typer.Context,
    train: str = typer.Option(..., "--train", help="Unlabeled audio: a folder (recursive), or any data source "
                                                   "finetune reads: manifests, Kaldi dirs, Hugging Face datasets "
                                                   "(docs/training.md, Data)."),
    output: Path = typer.Option(..., "--output", "-o", help="Run folder: checkpoints, metrics.jsonl and "
                                                            "model.safetensors. Rerunning resumes from it."),
    valid: list[str] = typer.Option([], "--valid", help="Validation data, same formats (repeatable)."),
    config: str = typer.Option(None, "--config", help=f"New model: {', '.join(PRESETS)} (default base)."),
    init: str = typer.Option(None, "--init", help="Continue from a model file, a Hugging Face folder, a name from "
                                                  "`w2v2 models` or a Hub repo id org/name or org/name@revision."),
    conv_init: str = typer.Option(None, "--conv-init", help="With a new model: how the conv stack starts, "
                                  "kaiming (default) or envelope (a rough spectrogram; docs/training.md, "
                                  "Pretraining)."),
    hours: float = typer.Option(None, "--hours", help="Train on a seeded subset of this many hours."),
    minutes: float = typer.Option(None, "--minutes", help="The same in minutes (a short bootstrap run on a "
                                                          "few utterances; docs/training.md, Subsets)."),
    max_updates: int = typer.Option(_T.max_updates, "--max-updates", help="Updates to train for."),
    schedule_updates: int = typer.Option(None, "--schedule-updates",
                                         help="Lay the LR schedule out over this many updates (default: "
                                              "--max-updates), to stop part-way or extend a run."),
    max_tokens: int = typer.Option(_T.max_tokens, "--max-tokens", help="Padded samples per batch and device."),
    max_sample_size: int = typer.Option(_T.max_sample_size, "--max-sample-size",
                                        help="Longer utterances are randomly cropped to this many samples."),
    min_sample_size: int = typer.Option(_T.min_sample_size, "--min-sample-size",
                                        help="Shorter utterances are left out."),
    update_freq: int = typer.Option(_T.update_freq, "--update-freq", help="Batches accumulated per update."),
    lr: float = typer.Option(_T.lr, "--lr", help="Peak learning rate."),
    warmup: float = typer.Option(_T.warmup, "--warmup", help="Warm-up, as a fraction of --max-updates."),
    weight_decay: float = typer.Option(_T.weight_decay, "--weight-decay", help="AdamW weight decay."),
    clip_norm: float = typer.Option(_T.clip_norm, "--clip-norm", help="Gradient norm clipping (0: off)."),
    mask_prob: float = typer.Option(_P.mask_prob, "--mask-prob", help="Span starts per frame x span length."),
    mask_length: int = typer.Option(_P.mask_length, "--mask-length", help="Masked span length in frames."),
    num_negatives: int = typer.Option(None, "--num-negatives",
                                      help="Distractors per target (default: 100; 20 for tiny)."),
    diversity_weight: float = typer.Option(_P.diversity_weight, "--diversity-weight",
                                           help="Weight of the diversity loss that keeps codebook entries in use."),
    latent_temp: tuple[float, float, float] = typer.Option(
        (_P.temp_start, _P.temp_end, _P.temp_decay), "--latent-temp",
        help="Gumbel temperature START END DECAY: max(START x DECAY^update, END). DECAY = (END/START)^(1/N) "
             "reaches END after N updates."),
    save_every: int = typer.Option(_T.save_every, "--save-every", help="Checkpoint every N updates."),
    keep_last: int = typer.Option(_T.keep_last, "--keep-last", help="Checkpoints kept."),
    log_every: int = typer.Option(_T.log_every, "--log-every", help="Metrics every N updates."),
    valid_every: int = typer.Option(_T.valid_every, "--valid-every", help="Validate every N updates."),
    max_bad_updates: int = typer.Option(_T.max_bad_updates, "--max-bad-updates",
                                        help="Stop after this many non-finite updates in a row."),
    data_format: DataFormat = DATA_FORMAT,
    split: str = SPLIT,
    text_column: str = TEXT_COLUMN,
    allow_commands: bool = ALLOW_COMMANDS,
    device: str = DEVICE,
    precision: str = PRECISION,
    num_workers: int = typer.Option(_T.num_workers, "--num-workers", help="Data loading processes per device."),
    seed: int = typer.Option(_T.seed, "--seed", help="Seed of weights, data order, crops and masks."),
    activation_checkpointing: bool = typer.Option(False, "--activation-checkpointing",
                                                  help="Recompute Transformer activations in backward (less "
                                                       "memory, ~30% more compute)."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also write TensorBoard events."),
    threads: int = THREADS,
    quiet: bool = QUIET,
):
    """Pretrain wav2vec 2.0 on unlabeled audio (contrastive + diversity loss, Gumbel quantizer).

    Multi-GPU: torchrun --nproc-per-node N -m w2v2cli pretrain ... ; the final model is OUTPUT/model.safetensors.
    """
    from ..train.pretrain import pretrain as run_pretrain

    options = option_names(ctx, temp_start="--latent-temp", temp_end="--latent-temp", temp_decay="--latent-temp")
    with errors_with_options(options):
        if config is not None and config not in PRESETS:
            raise ConfigError(f"--config {config!r}: choose one of {', '.join(PRESETS)}")
        hours = subset_hours(hours, minutes)
        if conv_init is not None and conv_init not in CONV_INITS:
            raise ConfigError(f"--conv-init {conv_init!r}: choose {' or '.join(CONV_INITS)}")
        if not diversity_weight >= 0:
            raise ConfigError(f"--diversity-weight {diversity_weight}: must be >= 0")
        start, end, decay = latent_temp
        if not (0 < end <= start and 0 < decay <= 1):
            raise ConfigError(f"--latent-temp {start:g} {end:g} {decay:g}: needs 0 < END <= START and "
                              "0 < DECAY <= 1")
        if tensorboard:
            tensorboard_available()
        set_threads(threads)
        if init is not None:
            init = resolve_model(init, quiet=quiet or not is_main_process())
        train_cfg = TrainConfig(
            max_updates=max_updates, schedule_updates=schedule_updates, max_tokens=max_tokens,
            max_sample_size=max_sample_size, min_sample_size=min_sample_size, update_freq=update_freq, lr=lr,
            warmup=warmup, weight_decay=weight_decay,
            clip_norm=clip_norm, save_every=save_every, keep_last=keep_last, log_every=log_every,
            valid_every=valid_every, max_bad_updates=max_bad_updates, device=device, precision=precision,
            num_workers=num_workers, seed=seed,
            activation_checkpointing=activation_checkpointing, tensorboard=tensorboard,
        )
        overrides = {"mask_prob": mask_prob, "mask_length": mask_length, "diversity_weight": diversity_weight,
                     "temp_start": start, "temp_end": end, "temp_decay": decay}
        if num_negatives is not None:
            overrides["num_negatives"] = num_negatives
        train_data, *valid_data = [data_spec(path, data_format, split, text_column, allow_commands)
                                   for path in (train, *valid)]
        with TrainingDisplay(quiet=quiet or not is_main_process(), options=options) as display:
            summary = run_pretrain(train_data, output, valid_data, config=config, init=init, train_config=train_cfg,
                                   pretrain_overrides=overrides, on_event=display, hours=hours,
                                   conv_init=conv_init)
    if is_main_process():
        keys = ("model", "update", "skipped_files", "skipped_updates", "world_size", "ranks_in_sync")
        print(json.dumps({k: summary[k] for k in keys}))
