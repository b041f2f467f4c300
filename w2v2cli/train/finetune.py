"""CTC fine-tuning for speech recognition: data subset, vocabulary, preflight, then the one training loop."""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..config import PRESETS, ModelConfig, preset
from ..data import DataSource, LabeledUtterance, Utterance, read_source
from ..data.subset import SUBSET_FILE, select_hours, write_manifest
from ..errors import ConfigError
from ..io.checkpoint import load_model
from ..model import Wav2Vec2, build_model
from ..model.masks import num_frames
from ..text import Vocabulary, encode_transcript, training_characters
from .config import FinetuneConfig, TrainConfig, recipe_for_hours
from .objectives import CtcObjective
from .trainer import Trainer, check_output_dir


def recipe_defaults(hours: float, world_size: int | None = None) -> tuple[TrainConfig, FinetuneConfig]:
    """fairseq's BASE recipe for this much labeled data, for this many processes (same samples per update)."""
    recipe = recipe_for_hours(hours)
    world = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    train = TrainConfig(
        max_updates=recipe.max_updates, lr=recipe.lr, max_tokens=3_200_000, max_sample_size=3_200_000,
        min_sample_size=0, update_freq=max(1, 8 // world), eps=1e-8, weight_decay=0.0, schedule="tri_stage",
        warmup=0.1, hold=0.4, init_lr_scale=0.01, final_lr_scale=0.05, valid_every=recipe.valid_every,
        save_every=1000, log_every=200,
    )
    tune = FinetuneConfig(freeze_updates=recipe.freeze_updates, mask_channel_prob=recipe.mask_channel_prob,
                          layerdrop=recipe.layerdrop)
    return train, tune


def with_ctc_head(model: Wav2Vec2, vocab: Vocabulary, tune: FinetuneConfig, seed: int) -> Wav2Vec2:
    """A training copy of `model` with fine-tuning's dropouts and a CTC head over `vocab` (kept when the model
    already has a head over the same vocabulary, else new: Xavier-uniform weights, zero bias). The top
    `tune.reinit_layers` Transformer layers keep the fresh weights drawn from `seed` instead of `model`'s."""
    config = model.config.replace(
        vocab_size=len(vocab), dropout=tune.dropout, attention_dropout=tune.attention_dropout,
        activation_dropout=tune.activation_dropout, feature_dropout=tune.feature_dropout,
        final_dropout=tune.final_dropout, layerdrop=tune.layerdrop,
    )
    torch.manual_seed(seed)
    tuned = build_model(config, vocab)
    nn.init.xavier_uniform_(tuned.ctc_head.weight)
    nn.init.zeros_(tuned.ctc_head.bias)
    state = model.state_dict()
    if model.vocab != vocab:
        state = {k: v for k, v in state.items() if not k.startswith("ctc_head.")}
    layers = model.config.num_layers
    fresh = tuple(f"transformer.layers.{i}." for i in range(layers - tune.reinit_layers, layers))
    state = {k: v for k, v in state.items() if not k.startswith(fresh)}  # startswith(()) is False
    tuned.load_state_dict(state, strict=False)
    return tuned.train()


def with_adapters(model: Wav2Vec2, tune: FinetuneConfig, seed: int) -> Wav2Vec2:
    """`model` ready for adapter fine-tuning: as it is when it has attention adapters, else with fresh ones
    (`tune.adapter_dim` wide) whose up-projections start at zero, so that its outputs are unchanged until the
    adapters learn."""
    cfg = model.config
    if tune.reinit_layers:
        raise ConfigError("reinit_layers does not go with adapter: adapter fine-tuning keeps every layer as it is")
    if cfg.family != "wav2vec2":
        raise ConfigError(f"adapter: attention adapters exist for wav2vec 2.0 models, not {cfg.family}")
    if not cfg.layer_norm_first:
        raise ConfigError("adapter: attention adapters need a pre-LN (stable layer norm) model, as MMS and "
                          "LARGE-LV60 are")
    if cfg.adapter_dim:
        return model
    torch.manual_seed(seed)
    fresh = build_model(cfg.replace(adapter_dim=tune.adapter_dim), model.vocab)
    for layer in fresh.transformer.layers:
        nn.init.zeros_(layer.adapter.up.weight)
        nn.init.zeros_(layer.adapter.up.bias)
    fresh.load_state_dict(model.state_dict(), strict=False)  # everything but the new adapters
    return fresh


def write_adapter(model_file: Path, language: str) -> list[Path]:
    """Beside a trained model file: adapter.LANG.safetensors (transformers' load_adapter layout) and
    vocab.LANG.json, the language's entry for an MMS vocab.json ({token: id})."""
    from ..io.atomic import atomic_open
    from ..io.hf import save_adapter
    from ..io.native import load_native

    model = load_native(model_file)
    folder = model_file.parent
    adapter = save_adapter(model, folder / f"adapter.{language}.safetensors")
    vocab_file = folder / f"vocab.{language}.json"
    with atomic_open(vocab_file) as f:
        json.dump({t: i for i, t in enumerate(model.vocab.tokens)}, f, ensure_ascii=False, indent=1)
    return [adapter, vocab_file]


def _adapter_vocabulary(base: Wav2Vec2, utterances: list[Utterance]) -> Vocabulary | None:
    """The vocabulary adapter fine-tuning keeps: the model's when it spells every transcript, else None (a new
    one is built from the transcripts, with a new CTC head)."""
    if base.vocab is None:
        return None
    for u in utterances:
        if encode_transcript(u.text or "", base.vocab)[2]:  # characters the vocabulary cannot spell
            return None
    return base.vocab


def build_vocabulary(utterances: list[Utterance]) -> tuple[Vocabulary, Counter]:
    chars: set[str] = set()
    dropped: Counter = Counter()
    for u in utterances:
        text, lost = training_characters(u.text or "")
        chars.update(text.replace(" ", ""))
        dropped.update(lost)
    if not chars:
        raise ConfigError("the training transcripts hold no letters or digits to build a vocabulary from")
    return Vocabulary.from_characters(sorted(chars)), dropped


def ctc_frames_needed(ids: list[int]) -> int:
    """CTC needs one frame per label plus a blank between each pair of equal neighbours."""
    return len(ids) + sum(a == b for a, b in itertools.pairwise(ids))


def prepare(source: DataSource, vocab: Vocabulary, model_config: ModelConfig, max_samples: int,
            emit) -> tuple[list[LabeledUtterance], Counter]:
    """The utterances of a labeled source that can be trained on, each with its CTC targets (encoded here, once
    per utterance), and the characters dropped from the transcripts. Unusable utterances are skipped, named."""
    kept, dropped = [], Counter()
    for u in source.utterances:
        ids, _, lost = encode_transcript(u.text or "", vocab)
        dropped.update(lost)
        reason = _unusable(u, ids, model_config, max_samples)
        if reason:
            emit({"event": "skipped_file", "item": f"{source.name}: {u.id} ({u.path})", "reason": reason})
            continue
        kept.append(LabeledUtterance.of(u, ids))
    return kept, dropped


def _unusable(u: Utterance, ids: list[int], model_config: ModelConfig, max_samples: int) -> str | None:
    """Why an utterance with these targets cannot be trained on; None when it can."""
    frames = num_frames(u.num_samples, model_config.conv_layers)
    if not ids:
        return "transcript has no character of the vocabulary"
    if frames < ctc_frames_needed(ids):
        return (f"{frames} frames cannot fit {len(ids)} labels ({ctc_frames_needed(ids)} frames needed with "
                "repeats): audio too short for its transcript")
    if u.num_samples > max_samples:
        return f"longer than max_tokens ({u.num_samples} > {max_samples} samples)"
    return None


def finetune(
    train,
    output,
    valid=(),
    init=None,
    config: str | None = None,
    hours: float | None = None,
    train_config: TrainConfig | None = None,
    finetune_config: FinetuneConfig | None = None,
    on_event: Callable[[dict], None] | None = None,
    configure: Callable[[float], tuple[TrainConfig, FinetuneConfig]] | None = None,
    conv_init: str | None = None,
) -> dict:
    """Fine-tune with CTC on labeled data; returns the run's summary. `init` is a model file, a Hugging Face
    folder or "scratch" (with `config`, a preset: the no-pretraining baseline). `hours` selects a seeded subset
    of the training data. Defaults follow fairseq's BASE recipe for the amount of data (recipe_defaults);
    `configure(hours)`, when given, returns the configs for the hours of data actually trained on. `conv_init`
    (with scratch) picks how the conv stack starts (ModelConfig.conv_init)."""
    emit = on_event or (lambda event: None)
    output = Path(output)
    _check_arguments(init, config, conv_init, hours)
    scratch = str(init) == "scratch"
    # The model, or for scratch its config, comes before the data: audio is counted at the model's sample rate.
    base = None if scratch else load_model(init)
    model_config = preset(config, **({"conv_init": conv_init} if conv_init else {})) if scratch else base.config
    rate = model_config.sample_rate
    train_source = _read(train, rate, emit)
    valid_sources = [_read(v, rate, emit) for v in valid]
    data_hours = hours if hours is not None else train_source.hours(rate)
    if configure is not None:
        cfg, tune = configure(data_hours)
    else:
        defaults = recipe_defaults(data_hours)
        cfg, tune = train_config or defaults[0], finetune_config or defaults[1]
    if scratch:
        if tune.reinit_layers:
            raise ConfigError("reinit_layers only goes with a pretrained model: init scratch is all fresh")
        # The seed fixes the initial weights too: two scratch runs with the same seed start from the same model.
        torch.manual_seed(cfg.seed)
        base = build_model(model_config)
        # Nothing pretrained to keep: a frozen random CNN would cap the baseline, so it trains with the rest.
        tune = tune.replace(train_feature_encoder=True)
    elif tune.reinit_layers > base.config.num_layers:
        raise ConfigError(f"reinit_layers {tune.reinit_layers}: {init} has {base.config.num_layers} "
                          "Transformer layers")
    utterances = _subset(train_source, hours, cfg.seed, rate, output, emit)
    kept_vocab = base.vocab
    if tune.adapter:
        base = with_adapters(base, tune, cfg.seed)
        kept_vocab = _adapter_vocabulary(base, utterances)
    new_vocabulary = kept_vocab is None
    vocab, dropped_building = build_vocabulary(utterances) if new_vocabulary else (kept_vocab, Counter())
    kept, dropped_encoding = prepare(DataSource(train_source.name, utterances, []), vocab, model_config,
                                     cfg.max_tokens, emit)
    if not kept:
        raise ConfigError(f"train {train_source.name}: no utterance can be trained on (see the warnings above)")
    valid_sets = [_valid_set(source, vocab, model_config, cfg.max_tokens, emit) for source in valid_sources]
    dropped = dropped_building if new_vocabulary else dropped_encoding
    emit({"event": "text_report", "vocab_size": len(vocab), "new_vocabulary": new_vocabulary,
          "dropped": dict(dropped.most_common())})

    model = with_ctc_head(base, vocab, tune, cfg.seed)
    objective = CtcObjective(model, tune, validates=bool(valid_sets))
    summary = Trainer(objective, DataSource(train_source.name, kept, []), cfg, output, valid_sets, on_event).run()
    summary.update(vocab_size=len(vocab), train_utterances=len(kept),
                   best_wer=objective.best_wer, best_update=objective.best_update)
    if tune.adapter and os.environ.get("RANK", "0") == "0":
        summary["adapter_files"] = [str(p) for p in write_adapter(output / "model.safetensors", tune.adapter)]
    return summary


def _check_arguments(init, config: str | None, conv_init: str | None, hours: float | None) -> None:
    if init is None:
        raise ConfigError("init is required: a pretrained model, a Hugging Face folder, or scratch with a config")
    scratch = str(init) == "scratch"
    if scratch and config is None:
        raise ConfigError(f"config: init scratch needs a preset ({', '.join(PRESETS)})")
    if not scratch and config is not None:
        raise ConfigError("config only goes with init scratch: a model's configuration comes with the model")
    if conv_init is not None and not scratch:
        raise ConfigError("conv_init only goes with init scratch: a model's weights come with the model")
    if hours is not None and hours <= 0:
        raise ConfigError(f"hours must be > 0, not {hours:g}")


def _read(spec, sample_rate: int, emit) -> DataSource:
    source = read_source(spec, sample_rate=sample_rate, need_text=True)
    for problem in source.problems:
        emit({"event": "data_problem", "source": source.name, "problem": problem})
    return source


def _subset(source: DataSource, hours: float | None, seed: int, sample_rate: int, output: Path,
            emit) -> list[Utterance]:
    """The training utterances: all of them, or a seeded subset of `hours`, listed in the output folder."""
    if hours is None:
        check_output_dir(output)
        return source.utterances
    utterances = select_hours(source.utterances, hours, seed, sample_rate)
    check_output_dir(output)
    write_manifest(utterances, output / SUBSET_FILE, sample_rate)
    emit({"event": "subset", "utterances": len(utterances), "path": str(output / SUBSET_FILE),
          "hours": sum(u.num_samples for u in utterances) / sample_rate / 3600})
    return utterances


def _valid_set(source: DataSource, vocab: Vocabulary, model_config: ModelConfig, max_samples: int,
               emit) -> DataSource:
    items, _ = prepare(source, vocab, model_config, max_samples, emit)
    if not items:
        raise ConfigError(f"valid {source.name}: no usable utterance")
    return DataSource(source.name, items, [])
