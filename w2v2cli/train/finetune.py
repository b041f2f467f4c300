"""CTC fine-tuning for speech recognition: data subset, vocabulary, preflight, then the one training loop."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..config import PRESETS, FinetuneConfig, TrainConfig, preset, recipe_for_hours
from ..data import DataSource, Utterance, read_source
from ..data.subset import SUBSET_FILE, select_hours, write_manifest
from ..errors import ConfigError
from ..io.checkpoint import load_model
from ..model import Wav2Vec2, build_model
from ..model.masks import frame_lengths as stack_frame_lengths
from ..text import Vocabulary, encode_transcript, training_characters
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
    return len(ids) + sum(a == b for a, b in zip(ids, ids[1:]))


def prepare(source: DataSource, vocab: Vocabulary, model_config, max_samples: int, emit) -> tuple[
        list[Utterance], dict[str, list[int]], dict[str, str], Counter]:
    """Targets and references of a labeled source; utterances that cannot be trained on are skipped, named."""
    kept, targets, references, dropped = [], {}, {}, Counter()
    for u in source.utterances:
        ids, normalized, lost = encode_transcript(u.text or "", vocab)
        dropped.update(lost)
        frames = int(stack_frame_lengths(torch.tensor([u.num_samples]), model_config.conv_layers))
        reason = None
        if not ids:
            reason = "transcript has no character of the vocabulary"
        elif frames < ctc_frames_needed(ids):
            reason = (f"{frames} frames cannot fit {len(ids)} labels ({ctc_frames_needed(ids)} frames needed with "
                      "repeats): audio too short for its transcript")
        elif u.num_samples > max_samples:
            reason = f"longer than --max-tokens ({u.num_samples} > {max_samples} samples)"
        if reason:
            emit({"event": "skipped_file", "item": f"{source.name}: {u.id} ({u.path})", "reason": reason})
            continue
        kept.append(u)
        targets[u.id], references[u.id] = ids, normalized
    return kept, targets, references, dropped


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
    if init is None:
        raise ConfigError("--init is required: a pretrained model, a Hugging Face folder, or scratch with --config")
    if str(init) == "scratch" and config is None:
        raise ConfigError(f"--init scratch needs --config ({', '.join(PRESETS)})")
    if str(init) != "scratch" and config is not None:
        raise ConfigError("--config only goes with --init scratch; a model's config comes with the model")
    if conv_init is not None and str(init) != "scratch":
        raise ConfigError("--conv-init only goes with --init scratch: a model's weights come with the model")
    if hours is not None and hours <= 0:
        raise ConfigError(f"--hours must be > 0, not {hours:g}")
    train_source = read_source(train, need_text=True)
    valid_sources = [read_source(v, need_text=True) for v in valid]
    for source in (train_source, *valid_sources):
        for problem in source.problems:
            emit({"event": "data_problem", "source": source.name, "problem": problem})
    data_hours = hours if hours is not None else train_source.hours()
    if configure is not None:
        cfg, tune = configure(data_hours)
    else:
        defaults = recipe_defaults(data_hours)
        cfg, tune = train_config or defaults[0], finetune_config or defaults[1]
    if str(init) == "scratch" and tune.reinit_layers:
        raise ConfigError("--reinit-layers only goes with a pretrained --init: a scratch model is all fresh")
    if str(init) == "scratch":
        # The seed fixes the initial weights too: two scratch runs with the same --seed start from the same model.
        torch.manual_seed(cfg.seed)
        base = build_model(preset(config, **({"conv_init": conv_init} if conv_init else {})))
    else:
        base = load_model(init)
    if tune.reinit_layers > base.config.num_layers:
        raise ConfigError(f"--reinit-layers {tune.reinit_layers}: {init} has {base.config.num_layers} "
                          "Transformer layers")
    utterances = train_source.utterances
    if hours is not None:
        utterances = select_hours(utterances, hours, cfg.seed)
    check_output_dir(output)
    if hours is not None:
        write_manifest(utterances, output / SUBSET_FILE)
        emit({"event": "subset", "utterances": len(utterances), "path": str(output / SUBSET_FILE),
              "hours": sum(u.num_samples for u in utterances) / 16000 / 3600})

    if base.vocab is not None:
        vocab, dropped_building = base.vocab, Counter()
    else:
        vocab, dropped_building = build_vocabulary(utterances)
    subset = DataSource(train_source.name, utterances, [])
    kept, targets, references, dropped = prepare(subset, vocab, base.config, cfg.max_tokens, emit)
    if not kept:
        raise ConfigError(f"--train {train_source.name}: no utterance can be trained on (see the warnings above)")
    valid_kept = []
    for number, source in enumerate(valid_sources):
        # Targets are looked up by utterance id: validation ids get their set's prefix so that a file in two
        # sets (training WER on the training data, say) never mixes up transcripts.
        renamed = DataSource(source.name, [dataclasses.replace(u, id=f"valid{number}:{u.id}")
                                           for u in source.utterances], [])
        items, t, r, _ = prepare(renamed, vocab, base.config, cfg.max_tokens, emit)
        if not items:
            raise ConfigError(f"--valid {source.name}: no usable utterance")
        targets.update(t)
        references.update(r)
        valid_kept.append(DataSource(source.name, items, []))
    emit({"event": "text_report", "vocab_size": len(vocab), "new_vocabulary": base.vocab is None,
          "dropped": dict((dropped_building if base.vocab is None else dropped).most_common())})

    if str(init) == "scratch":
        # Nothing pretrained to keep: a frozen random CNN would cap the baseline, so it trains with the rest.
        tune = tune.replace(train_feature_encoder=True)
    model = with_ctc_head(base, vocab, tune, cfg.seed)
    objective = CtcObjective(model, tune, targets, references, validates=bool(valid_kept),
                             sample_rate=model.config.sample_rate)
    trainer = Trainer(objective, DataSource(train_source.name, kept, []), cfg, output, valid_kept, on_event,
                      model.config.sample_rate)
    summary = trainer.run()
    summary.update(vocab_size=len(vocab), train_utterances=len(kept),
                   best_wer=objective.best_wer, best_update=objective.best_update)
    return summary
