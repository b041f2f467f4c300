"""`w2v2 finetune`: CTC fine-tuning for speech recognition, with fairseq's low-resource recipes as defaults."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..config import CONV_INITS, PRESETS
from ..errors import ConfigError
from . import app
from .common import DEVICE, PRECISION, QUIET, THREADS, resolve_model, set_threads, subset_hours
from .data_options import ALLOW_COMMANDS, DATA_FORMAT, SPLIT, TEXT_COLUMN, DataFormat, data_spec
from .training import TrainingDisplay, errors_with_options, is_main_process, option_names, tensorboard_available

RECIPE = "default: the recipe for the data size"


@app.command()
def finetune(
    ctx: typer.Context,
    init: str = typer.Option(..., "--init", help="A pretrained model file, a Hugging Face folder, a name from "
                                                 "`w2v2 models`, a Hub repo id (org/name or org/name@revision), or "
                                                 "scratch (with --config: no pretraining)."),
    train: str = typer.Option(..., "--train", help="Labeled audio: a .jsonl/.json (NeMo too), .csv, fairseq or "
                                                   "Common Voice .tsv or lhotse cuts.jsonl.gz manifest, a Kaldi "
                                                   "dir, an audiofolder, a Hugging Face dataset (folder, .parquet, "
                                                   ".arrow) or a LibriSpeech tree (docs/training.md, Data)."),
    output: Path = typer.Option(..., "--output", "-o", help="Run folder: model.safetensors (best by WER), "
                                                            "checkpoints, metrics.jsonl. Rerunning resumes."),
    valid: list[str] = typer.Option([], "--valid", help="Validation data (repeatable); the first one picks "
                                                        "the best model."),
    config: str = typer.Option(None, "--config", help=f"With --init scratch: {', '.join(PRESETS)}."),
    conv_init: str = typer.Option(None, "--conv-init", help="With a new model: how the conv stack starts, "
                                  "kaiming (default) or envelope (a rough spectrogram; docs/training.md, "
                                  "Pretraining)."),
    hours: float = typer.Option(None, "--hours", help="Train on a seeded subset of this many hours."),
    minutes: float = typer.Option(None, "--minutes", help="Same, in minutes."),
    max_updates: int = typer.Option(None, "--max-updates", help=f"Updates ({RECIPE})."),
    schedule_updates: int = typer.Option(None, "--schedule-updates",
                                         help="Lay the LR schedule out over this many updates (default: "
                                              "--max-updates), to stop part-way or extend a run."),
    lr: float = typer.Option(None, "--lr", help=f"Peak learning rate ({RECIPE})."),
    freeze_updates: int = typer.Option(None, "--freeze-updates", help=f"Updates that train only the CTC head "
                                                                      f"({RECIPE})."),
    mask_prob: float = typer.Option(None, "--mask-prob", help="Time-mask span starts per frame x span length "
                                                              "(default 0.65: 0.065 x 10)."),
    mask_length: int = typer.Option(None, "--mask-length", help="Time-mask span length in frames (default 10)."),
    mask_channel_prob: float = typer.Option(None, "--mask-channel-prob", help=f"Channel masking ({RECIPE})."),
    mask_channel_length: int = typer.Option(None, "--mask-channel-length",
                                            help="Channel-mask span length (default 64; 1/12 of the width for "
                                                 "models narrower than 768)."),
    dropout: float = typer.Option(None, "--dropout", help="Dropout in the Transformer (default 0)."),
    attention_dropout: float = typer.Option(None, "--attention-dropout", help="Attention dropout (default 0)."),
    activation_dropout: float = typer.Option(None, "--activation-dropout",
                                             help="Dropout after the feed-forward activation (default 0.1)."),
    feature_dropout: float = typer.Option(None, "--feature-dropout",
                                          help="Dropout on the projected features (default 0)."),
    final_dropout: float = typer.Option(None, "--final-dropout", help="Dropout before the CTC head (default 0)."),
    reinit_layers: int = typer.Option(None, "--reinit-layers",
                                      help="Start the top N Transformer layers from fresh weights instead of "
                                           "the pretrained ones (default 0). They stay frozen with the rest "
                                           "during --freeze-updates."),
    adapter: str = typer.Option(None, "--adapter", metavar="LANG",
                                help="Train only attention adapters and the CTC head for language LANG (MMS "
                                     "style; the rest stays as it is) and write OUTPUT/adapter.LANG.safetensors, "
                                     "which transformers' load_adapter and --language LANG read. A pre-LN model "
                                     "without adapters gets fresh ones."),
    adapter_dim: int = typer.Option(None, "--adapter-dim", help="Width of fresh adapters (default 16)."),
    layerdrop: float = typer.Option(None, "--layerdrop", help=f"Transformer layerdrop ({RECIPE})."),
    train_feature_encoder: bool = typer.Option(
        None, "--train-feature-encoder/--freeze-feature-encoder",
        help="Train the conv feature encoder too (default: frozen, as fairseq does for pretrained models; "
             "trained with --init scratch)."),
    max_tokens: int = typer.Option(None, "--max-tokens", help="Padded samples per batch and device "
                                                              "(default 3.2M)."),
    update_freq: int = typer.Option(None, "--update-freq", help="Batches per update (default: 8 / devices, "
                                                                "fairseq's batch)."),
    clip_norm: float = typer.Option(None, "--clip-norm", help="Gradient norm clipping (default 10; 0: off)."),
    valid_every: int = typer.Option(None, "--valid-every", help="Validate every N updates (default 1000)."),
    save_every: int = typer.Option(None, "--save-every", help="Checkpoint every N updates (default 1000)."),
    keep_last: int = typer.Option(None, "--keep-last", help="Checkpoints kept (default 3)."),
    log_every: int = typer.Option(None, "--log-every", help="Metrics every N updates (default 200)."),
    max_bad_updates: int = typer.Option(None, "--max-bad-updates",
                                        help="Stop after this many non-finite updates in a row (default 10)."),
    data_format: DataFormat = DATA_FORMAT,
    split: str = SPLIT,
    text_column: str = TEXT_COLUMN,
    allow_commands: bool = ALLOW_COMMANDS,
    device: str = DEVICE,
    precision: str = PRECISION,
    num_workers: int = typer.Option(2, "--num-workers", help="Data loading processes per device."),
    seed: int = typer.Option(1, "--seed",
                             help="Seed of the subset, initial weights (scratch) and head, data order and masks."),
    activation_checkpointing: bool = typer.Option(False, "--activation-checkpointing",
                                                  help="Recompute Transformer activations in backward."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also write TensorBoard events."),
    threads: int = THREADS,
    quiet: bool = QUIET,
):
    """Fine-tune a model with CTC on transcribed speech (w2v2 finetune --init pretrained.safetensors --hours 1).

    Validation prints greedy WER/CER per --valid set; OUTPUT/model.safetensors is the best model by the first
    set's WER (the last one without validation data).
    """
    from ..train.finetune import finetune as run_finetune
    from ..train.finetune import recipe_defaults

    options = option_names(ctx)
    with errors_with_options(options):
        hours = subset_hours(hours, minutes)
        if conv_init is not None and conv_init not in CONV_INITS:
            raise ConfigError(f"--conv-init {conv_init!r}: choose {' or '.join(CONV_INITS)}")
        if config is not None and config not in PRESETS:
            raise ConfigError(f"--config {config!r}: choose one of {', '.join(PRESETS)}")
        if tensorboard:
            tensorboard_available()
        set_threads(threads)
        if init != "scratch":
            init = resolve_model(init, quiet=quiet or not is_main_process())
        given = {k: v for k, v in {
            "max_updates": max_updates, "schedule_updates": schedule_updates, "lr": lr, "max_tokens": max_tokens,
            "update_freq": update_freq, "clip_norm": clip_norm,
            "valid_every": valid_every, "save_every": save_every, "keep_last": keep_last, "log_every": log_every,
            "max_bad_updates": max_bad_updates,
        }.items() if v is not None}
        if "max_tokens" in given:
            given["max_sample_size"] = given["max_tokens"]
        tune_given = {k: v for k, v in {
            "freeze_updates": freeze_updates, "mask_prob": mask_prob, "mask_length": mask_length,
            "mask_channel_prob": mask_channel_prob, "mask_channel_length": mask_channel_length, "layerdrop": layerdrop,
            "dropout": dropout, "attention_dropout": attention_dropout, "activation_dropout": activation_dropout,
            "feature_dropout": feature_dropout, "final_dropout": final_dropout,
            "train_feature_encoder": train_feature_encoder, "reinit_layers": reinit_layers, "adapter": adapter,
            "adapter_dim": adapter_dim,
        }.items() if v is not None}

        def configs(data_hours: float):
            train_cfg, tune_cfg = recipe_defaults(data_hours)
            train_cfg = train_cfg.replace(device=device, precision=precision, num_workers=num_workers, seed=seed,
                                          activation_checkpointing=activation_checkpointing,
                                          tensorboard=tensorboard, **given)
            return train_cfg, tune_cfg.replace(**tune_given)

        train_data, *valid_data = [data_spec(path, data_format, split, text_column, allow_commands)
                                   for path in (train, *valid)]
        with TrainingDisplay(quiet=quiet or not is_main_process(), options=options) as display:
            summary = run_finetune(train_data, output, valid_data, init=init, config=config, hours=hours,
                                   configure=configs, on_event=display, conv_init=conv_init)
    if is_main_process():
        keys = ("model", "update", "best_wer", "best_update", "vocab_size", "train_utterances", "skipped_files",
                "skipped_updates") + (("adapter_files",) if "adapter_files" in summary else ())
        print(json.dumps({k: summary.get(k) for k in keys}))
