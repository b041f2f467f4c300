"""Whole-utterance normalization statistics.

Two parts of wav2vec 2.0 look at a whole utterance at once: waveform normalization (zero mean, unit variance)
and, in group-norm (BASE) models, the first conv layer's GroupNorm, which normalizes each channel over time.
When long audio is processed in windows, each window must be normalized with the statistics of the whole file,
or the windows' features differ from the unwindowed ones. These statistics are cheap to compute in one
streaming pass (the first conv layer is ~0.2% of the model's work) and are passed to `Wav2Vec2.forward`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class UtteranceStats:
    """Per-utterance statistics for a batch; fields are None where the model does not use them."""

    wave_mean: torch.Tensor | None = None  # (B, 1)
    wave_var: torch.Tensor | None = None  # (B, 1)
    group_mean: torch.Tensor | None = None  # (B, C, 1)
    group_var: torch.Tensor | None = None  # (B, C, 1)

    @property
    def wave(self):
        return None if self.wave_mean is None else (self.wave_mean, self.wave_var)

    @property
    def group(self):
        return None if self.group_mean is None else (self.group_mean, self.group_var)

    @staticmethod
    def stack(items: list[UtteranceStats]) -> UtteranceStats:
        """Concatenate batch-of-one statistics along the batch axis."""
        def cat(name):
            parts = [getattr(s, name) for s in items]
            return None if parts[0] is None else torch.cat(parts)

        return UtteranceStats(cat("wave_mean"), cat("wave_var"), cat("group_mean"), cat("group_var"))

    def to(self, device) -> UtteranceStats:
        def move(t):
            return None if t is None else t.to(device)

        return UtteranceStats(move(self.wave_mean), move(self.wave_var), move(self.group_mean), move(self.group_var))


@torch.inference_mode()
def utterance_stats(model, waveform: torch.Tensor) -> UtteranceStats:
    """Statistics of one whole utterance (S,), computed block by block so memory stays bounded."""
    cfg = model.config
    stats = UtteranceStats()
    num_samples = waveform.shape[0]
    block = cfg.sample_rate * 60  # a minute of samples per pass
    if cfg.normalize_waveform:
        total = sum(waveform[i:i + block].double().sum() for i in range(0, num_samples, block))
        mean = total / max(num_samples, 1)
        sq = sum((waveform[i:i + block].double() - mean).square().sum() for i in range(0, num_samples, block))
        stats.wave_mean = mean.float().view(1, 1)
        stats.wave_var = (sq / max(num_samples, 1)).float().view(1, 1)
    if cfg.feature_norm == "group":
        mean, var = model.feature_encoder.first_layer_stats(waveform[None], torch.tensor([num_samples]), stats.wave)
        stats.group_mean, stats.group_var = mean.cpu(), var.cpu()
    return stats
