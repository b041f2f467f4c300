"""The model core in CTC fine-tuning: frozen feature encoder, time and channel masking, a frozen-encoder
warm-up during which only the CTC head learns, and the CTC loss."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import FinetuneConfig
from .masks import span_mask


@dataclass
class CtcTerms:
    loss: torch.Tensor  # () sum over utterances of the CTC loss (-log p(transcript | audio))
    log_probs: torch.Tensor  # (B, T, V) fp32, detached
    frame_lengths: torch.Tensor  # (B,)


class Wav2Vec2ForCtcTraining(nn.Module):
    def __init__(self, model, cfg: FinetuneConfig):
        super().__init__()
        self.model, self.cfg = model, cfg
        self.freeze_encoder = cfg.freeze_updates > 0 and not cfg.adapter
        for p in model.feature_encoder.parameters():  # feature_grad_mult 0: the CNN stays as pretrained
            p.requires_grad_(cfg.train_feature_encoder)
        if cfg.adapter:  # adapter fine-tuning: the adapters and the CTC head learn, nothing else moves
            for name, p in model.named_parameters():
                p.requires_grad_(name.startswith("ctc_head.") or ".adapter." in name)

    def set_update(self, update: int) -> None:
        # The adapters sit inside the encoder: with them, it is never run without gradients.
        self.freeze_encoder = update < self.cfg.freeze_updates and not self.cfg.adapter

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
                target_lengths: torch.Tensor) -> CtcTerms:
        """targets: (B, L) padded label ids; target_lengths: (B,)."""
        model = self.model
        frozen = self.freeze_encoder and self.training
        with torch.no_grad() if not self.cfg.train_feature_encoder else contextlib.nullcontext():
            features, frame_lengths = model.extract_features(waveforms, lengths)  # (B, T, C)
        with torch.no_grad() if frozen else contextlib.nullcontext():
            projected, _ = model.feature_projection(features)  # (B, T, D)
            if self.training:
                projected = self._mask(projected, frame_lengths)
            hidden = model.encode(projected, frame_lengths)
        logits = model.ctc_head(model.final_dropout(hidden))  # (B, T, V)
        log_probs = F.log_softmax(logits.float(), dim=-1)  # fp32 whatever the autocast dtype
        loss = F.ctc_loss(
            log_probs.transpose(0, 1), targets, frame_lengths, target_lengths, blank=model.vocab.blank,
            reduction="sum", zero_infinity=True,
        )
        return CtcTerms(loss, log_probs.detach(), frame_lengths)

    def _mask(self, x: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        B, T, D = x.shape
        if cfg.mask_prob > 0:
            time = span_mask(frame_lengths, T, cfg.mask_prob, cfg.mask_length)  # (B, T)
            x = torch.where(time.unsqueeze(-1), self.model.mask_embedding.to(x.dtype), x)
        if cfg.mask_channel_prob > 0:
            # Spans of 64 channels for BASE and LARGE; narrower models get spans of 1/12 of their width, so
            # that a span never blanks every channel at once.
            span = max(1, min(cfg.mask_channel_length, D // 12))
            channels = span_mask(torch.full((B,), D, device=x.device), D, cfg.mask_channel_prob,
                                 span)  # (B, D), the same channels for every frame
            x = x.masked_fill(channels.unsqueeze(1), 0.0)
        return x
