"""Training objectives for the one loop in trainer.py: what differs between pretraining and fine-tuning."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import FinetuneConfig, PretrainConfig
from ..decode import greedy_decode
from ..io.checkpoint import PRETRAINING_PREFIX, save_model
from ..model import Wav2Vec2
from ..model.finetuning import Wav2Vec2ForCtcTraining
from ..model.quantizer import PretrainingHead, Wav2Vec2ForPretraining
from ..scoring import ErrorCounts, error_counts
from .flops import train_flops_per_audio_second
from .trainer import StepResult


class PretrainObjective:
    """Contrastive + diversity + feature-penalty loss (paper eq. 2; fairseq wav2vec criterion).

    Per update: L = sum_targets L_m / N + alpha L_d + lambda L_f, N the masked targets of the whole update over
    all processes; the loop divides the summed loss by N, so the extra terms are weighted by each batch's N.
    """

    name = "pretrain"

    def __init__(self, model: Wav2Vec2, cfg: PretrainConfig, head_state: dict[str, torch.Tensor] | None = None,
                 utterance_seconds: float = 15.6):
        self.model, self.cfg, self.head_state = model, cfg, head_state
        self.utterance_seconds = utterance_seconds
        self.temperature = cfg.temp_start

    def build(self) -> nn.Module:
        head = PretrainingHead(self.model.feature_encoder.out_channels, self.model.config.dim, self.cfg)
        if self.head_state is not None:
            head.load_state_dict(self.head_state)
        module = Wav2Vec2ForPretraining(self.model, self.cfg, head)
        return module

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

    def validate(self, module: nn.Module, batches, device) -> dict[str, float]:
        totals: dict[str, float] = {}
        for batch in batches:
            for key, value in self.step(module, batch).sums.items():
                totals[key] = totals.get(key, 0.0) + value
        return totals

    def train_flops_per_audio_second(self) -> float:
        return train_flops_per_audio_second(self.model.config, self.utterance_seconds)

    def save_model(self, module: nn.Module, path: Path) -> None:
        """The encoder as a normal model file; the head rides along under `pretraining.` so that pretraining
        can continue from it (`pretrain --init`); loading for inference ignores it."""
        head = {PRETRAINING_PREFIX + k: v for k, v in module.head.state_dict().items()}
        save_model(module.model, path, extra_metadata={"pretrain_config": self.cfg.to_json()}, extra_tensors=head)


class CtcObjective:
    """CTC fine-tuning: loss per utterance (fairseq sentence_avg), greedy WER/CER in validation, and the best
    model by the first validation set's WER kept as the run's model file."""

    name = "finetune"
    crop = False  # a transcript covers its whole utterance: never cropped

    def __init__(self, model: Wav2Vec2, cfg: FinetuneConfig, targets: dict[str, list[int]],
                 references: dict[str, str], validates: bool, sample_rate: int = 16000,
                 utterance_seconds: float = 12.0):
        self.model, self.cfg = model, cfg
        self.targets, self.references = targets, references
        self.validates = validates
        self.sample_rate = sample_rate
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
        self.update = update

    def _targets(self, ids: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
        labels = [self.targets.get(i, []) for i in ids]
        lengths = torch.tensor([len(x) for x in labels], dtype=torch.long)
        padded = torch.zeros(len(labels), max([1, *lengths.tolist()]), dtype=torch.long)  # (B, L)
        for row, x in zip(padded, labels):
            row[: len(x)] = torch.tensor(x, dtype=torch.long)
        return padded.to(device), lengths.to(device)

    def step(self, module: nn.Module, batch) -> StepResult:
        targets, target_lengths = self._targets(batch.ids or [""] * len(batch.lengths), batch.waveforms.device)
        terms = module(batch.waveforms, batch.lengths, targets, target_lengths)
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

    def validate(self, module: nn.Module, batches, device) -> dict[str, float]:
        totals = {k: 0.0 for k in ("loss", "sentences", "samples", "word_errors", "words", "char_errors", "chars")}
        vocab = self.model.vocab
        for batch in batches:
            targets, target_lengths = self._targets(batch.ids, device)
            terms = module(batch.waveforms, batch.lengths, targets, target_lengths)
            totals["loss"] += float(terms.loss)
            totals["sentences"] += len(batch.ids)
            totals["samples"] += float(batch.lengths.sum())
            for uid, hypothesis in zip(batch.ids, greedy_decode(terms.log_probs, terms.frame_lengths, vocab)):
                counts = error_counts(self.references.get(uid, ""), hypothesis)
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
