"""Training objectives for the one loop in trainer.py: what differs between pretraining and fine-tuning.

`Objective` is what the loop asks of one; its hooks have no-op defaults. `PretrainObjective` (contrastive) and
`CtcObjective` (fine-tuning) are the two there are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..decode import greedy_decode
from ..io.checkpoint import PRETRAINING_PREFIX, save_model
from ..model import Wav2Vec2
from ..model.finetuning import Wav2Vec2ForCtcTraining
from ..model.quantizer import PretrainingHead, Wav2Vec2ForPretraining
from ..scoring import ErrorCounts, error_counts
from .config import FinetuneConfig, PretrainConfig
from .flops import train_flops_per_audio_second


@dataclass
class StepResult:
    """One batch's contribution: `loss` is a sum over the batch's `sample_size` units (targets, frames...)."""

    loss: torch.Tensor
    sample_size: float
    # Additive figures for logging, named in the objective's `train_sums`: numbers or 0-d tensors, which stay on
    # the device until the loop reads them all at once per update (one synchronization, not one per figure).
    sums: dict[str, float | torch.Tensor] = field(default_factory=dict)


class Objective:
    """What the training loop asks of an objective. Subclasses hold `model` (the Wav2Vec2 being trained) and
    implement build, identity, step, summarize and save_model; every other method is a hook whose default does
    nothing.

    `train_sums` and `valid_sums` name the figures `step` and `validate` add up. Every process sums the same
    names in the same order, whatever its batches held (a missing figure counts 0), so that the loop's
    all-reduce of them is the same collective on every rank.
    """

    name: str = ""
    model: Wav2Vec2
    crop = True  # utterances longer than max_sample_size are cut to a random window of it
    train_sums: tuple[str, ...] = ()
    valid_sums: tuple[str, ...] = ()

    @property
    def sample_rate(self) -> int:
        return self.model.config.sample_rate

    def build(self) -> nn.Module:
        """The module the loop trains: the model plus whatever head the objective needs."""
        raise NotImplementedError

    def identity(self) -> dict:
        """Settings that must match for a run to resume from a checkpoint."""
        raise NotImplementedError

    def step(self, module: nn.Module, batch) -> StepResult:
        raise NotImplementedError

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        """Figures to log from sums over a log interval or a validation set."""
        raise NotImplementedError

    def save_model(self, module: nn.Module, path: Path) -> None:
        raise NotImplementedError

    def start_update(self, module: nn.Module, update: int) -> None:
        """Called before each update with the number of finished updates."""

    def validate(self, module: nn.Module, batches) -> dict[str, float]:
        """Sums over a validation set's batches (this process's share); by default the training figures."""
        totals: dict[str, float] = {}
        for batch in batches:
            for key, value in self.step(module, batch).sums.items():
                totals[key] = totals.get(key, 0.0) + value
        return totals

    def after_validation(self, results: list[dict], module: nn.Module, output: Path) -> None:
        """Called on the main process with each validation's results (one record per set)."""

    def state_dict(self) -> dict:
        """What the objective itself must carry across a resume."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def train_flops_per_audio_second(self) -> float | None:
        """Model FLOPs per second of training audio, for the logged MFU (None: not logged)."""
        return None


class PretrainObjective(Objective):
    """Contrastive + diversity + feature-penalty loss (paper eq. 2; fairseq wav2vec criterion).

    Per update: L = sum_targets L_m / N + alpha L_d + lambda L_f, N the masked targets of the whole update over
    all processes; the loop divides the summed loss by N, so the extra terms are weighted by each batch's N.
    """

    name = "pretrain"
    train_sums = valid_sums = ("loss", "contrastive", "diversity", "feature_penalty", "targets", "correct",
                               "code_perplexity", "prob_perplexity", "masked_fraction", "context_cosine",
                               "target_cosine", "batches")

    def __init__(self, model: Wav2Vec2, cfg: PretrainConfig, head_state: dict[str, torch.Tensor] | None = None,
                 utterance_seconds: float = 15.6):
        self.model, self.cfg, self.head_state = model, cfg, head_state
        self.utterance_seconds = utterance_seconds
        self.temperature = cfg.temp_start

    def build(self) -> nn.Module:
        head = PretrainingHead(self.model.feature_encoder.out_channels, self.model.config.dim, self.cfg)
        if self.head_state is not None:
            head.load_state_dict(self.head_state)
        return Wav2Vec2ForPretraining(self.model, self.cfg, head)

    def identity(self) -> dict:
        return {"objective": self.name, "model": self.model.config.to_dict(), "pretrain": self.cfg.to_json()}

    def start_update(self, module: nn.Module, update: int) -> None:
        module.set_update(update)
        self.temperature = self.cfg.temperature(update)

    def step(self, module: nn.Module, batch) -> StepResult:
        terms = module(batch.waveforms, batch.lengths)
        n = terms.num_targets
        extra = self.cfg.diversity_weight * terms.diversity + self.cfg.feature_penalty_weight * terms.feature_penalty
        loss = terms.contrastive + n * extra
        sums = {
            "loss": loss.detach(),
            "contrastive": terms.contrastive.detach(),
            "diversity": terms.diversity.detach() * n,
            "feature_penalty": terms.feature_penalty.detach() * n,
            "targets": float(n),
            "correct": terms.correct,
            "code_perplexity": terms.code_perplexity,
            "prob_perplexity": terms.prob_perplexity,
            "masked_fraction": terms.masked_fraction,
            "context_cosine": terms.context_cosine,
            "target_cosine": terms.target_cosine,
            "batches": 1.0,
        }
        return StepResult(loss, float(n), sums)

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        """Per-target means over a log interval (natural-log loss; fairseq prints it in bits)."""
        n = max(sums.get("targets", 0.0), 1.0)
        batches = max(sums.get("batches", 0.0), 1.0)
        return {
            "loss": sums.get("loss", 0.0) / n,
            "contrastive": sums.get("contrastive", 0.0) / n,
            "diversity": sums.get("diversity", 0.0) / n,
            "feature_penalty": sums.get("feature_penalty", 0.0) / n,
            "accuracy": sums.get("correct", 0.0) / n,
            "code_perplexity": sums.get("code_perplexity", 0.0) / batches,
            "prob_perplexity": sums.get("prob_perplexity", 0.0) / batches,
            "masked_fraction": sums.get("masked_fraction", 0.0) / batches,
            "context_cosine": sums.get("context_cosine", 0.0) / batches,
            "target_cosine": sums.get("target_cosine", 0.0) / batches,
            "temperature": self.temperature,
        }

    def train_flops_per_audio_second(self) -> float:
        return train_flops_per_audio_second(self.model.config, self.utterance_seconds)

    def save_model(self, module: nn.Module, path: Path) -> None:
        """The encoder as a normal model file; the head rides along under `pretraining.` so that pretraining
        can continue from it (`pretrain --init`); loading for inference ignores it."""
        head = {PRETRAINING_PREFIX + k: v for k, v in module.head.state_dict().items()}
        save_model(module.model, path, extra_metadata={"pretrain_config": self.cfg.to_json()}, extra_tensors=head)


class CtcObjective(Objective):
    """CTC fine-tuning: loss per utterance (fairseq sentence_avg), greedy WER/CER in validation, and the best
    model by the first validation set's WER kept as the run's model file. Batches carry their CTC targets
    (train/finetune.py encodes each transcript once); validation scores against the text the targets spell."""

    name = "finetune"
    crop = False  # a transcript covers its whole utterance: never cropped
    train_sums = ("loss", "sentences", "frames", "samples")
    valid_sums = ("loss", "sentences", "samples", "word_errors", "words", "char_errors", "chars")

    def __init__(self, model: Wav2Vec2, cfg: FinetuneConfig, validates: bool, utterance_seconds: float = 12.0):
        self.model, self.cfg = model, cfg
        self.validates = validates
        self.utterance_seconds = utterance_seconds
        self.best_wer: float | None = None
        self.best_update: int | None = None

    def build(self) -> nn.Module:
        return Wav2Vec2ForCtcTraining(self.model, self.cfg)

    def identity(self) -> dict:
        return {"objective": self.name, "model": self.model.config.to_dict(), "vocab": list(self.model.vocab.tokens),
                "finetune": self.cfg.to_json()}

    def start_update(self, module: nn.Module, update: int) -> None:
        module.set_update(update)

    def step(self, module: nn.Module, batch) -> StepResult:
        terms = module(batch.waveforms, batch.lengths, batch.targets, batch.target_lengths)
        n = float(len(batch.ids))
        sums = {"loss": terms.loss.detach(), "sentences": n, "frames": terms.frame_lengths.sum(),
                "samples": batch.lengths.sum()}
        return StepResult(terms.loss, n, sums)

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums.get("sentences", 0.0), 1.0)
        out = {"loss": sums.get("loss", 0.0) / n}
        if "words" in sums:
            errors = ErrorCounts(int(sums["word_errors"]), int(sums["words"]), int(sums["char_errors"]),
                                 int(sums["chars"]))
            out.update(wer=errors.wer, cer=errors.cer, utterances=sums["sentences"],
                       hours=sums["samples"] / self.sample_rate / 3600)
        return out

    def validate(self, module: nn.Module, batches) -> dict[str, float]:
        totals = dict.fromkeys(self.valid_sums, 0.0)
        vocab = self.model.vocab
        for batch in batches:
            terms = module(batch.waveforms, batch.lengths, batch.targets, batch.target_lengths)
            totals["loss"] += float(terms.loss)
            totals["sentences"] += len(batch.ids)
            totals["samples"] += float(batch.lengths.sum())
            hypotheses = greedy_decode(terms.log_probs, terms.frame_lengths, vocab)
            labels = zip(batch.targets.tolist(), batch.target_lengths.tolist())
            for (ids, length), hypothesis in zip(labels, hypotheses):
                counts = error_counts(vocab.ids_to_text(ids[:length]), hypothesis)
                totals["word_errors"] += counts.word_errors
                totals["words"] += counts.words
                totals["char_errors"] += counts.char_errors
                totals["chars"] += counts.chars
        return totals

    def after_validation(self, results: list[dict], module: nn.Module, output: Path) -> None:
        first = results[0]
        if self.best_wer is None or first["wer"] < self.best_wer:
            self.best_wer, self.best_update = first["wer"], first["update"]
            save_model(module.model, output / "model.safetensors",
                       extra_metadata={"best_wer": f"{self.best_wer:.6f}", "update": str(self.best_update)})
        first["best_wer"] = self.best_wer

    def state_dict(self) -> dict:
        return {"best_wer": self.best_wer, "best_update": self.best_update}

    def load_state_dict(self, state: dict) -> None:
        self.best_wer, self.best_update = state.get("best_wer"), state.get("best_update")

    def train_flops_per_audio_second(self) -> float:
        return train_flops_per_audio_second(self.model.config, self.utterance_seconds)

    def save_model(self, module: nn.Module, path: Path) -> None:
        """With validation sets the run's model file is the best one (written by after_validation); the latest
        weights go beside it as last.safetensors."""
        save_model(module.model, path.with_name("last.safetensors") if self.validates else path)
