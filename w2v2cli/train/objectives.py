"""Training objectives for the one loop in trainer.py: what differs between pretraining and fine-tuning."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import PretrainConfig
from ..io.checkpoint import save_model
from ..model import Wav2Vec2
from ..model.quantizer import PretrainingHead, Wav2Vec2ForPretraining
from .flops import train_flops_per_audio_second
from .trainer import StepResult

PRETRAINING_PREFIX = "pretraining."


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
            "loss": float(loss.detach()),
            "contrastive": float(terms.contrastive.detach()),
            "diversity": float(terms.diversity.detach()) * n,
            "feature_penalty": float(terms.feature_penalty.detach()) * n,
            "targets": float(n),
            "correct": float(terms.correct),
            "code_perplexity": terms.code_perplexity,
            "prob_perplexity": terms.prob_perplexity,
            "masked_fraction": terms.masked_fraction,
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
