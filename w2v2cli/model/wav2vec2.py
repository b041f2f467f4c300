"""The wav2vec 2.0 model: the one model core every command runs on."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from ..text import Vocabulary
from .components import FeatureEncoder, FeatureProjection, Transformer
from .masks import frame_lengths as stack_frame_lengths
from .masks import padding_mask
from .stats import UtteranceStats


def normalize_waveforms(waveforms: torch.Tensor, lengths: torch.Tensor, stats=None, eps: float = 1e-7) -> torch.Tensor:
    """Zero mean, unit variance per utterance over its valid samples; padding stays zero.

    `stats` = (mean, var), each (B, 1), when the rows are windows of longer utterances. Matches Hugging Face's
    Wav2Vec2FeatureExtractor (population variance, eps inside the square root).
    """
    valid = ~padding_mask(lengths, waveforms.shape[1])  # (B, S)
    x = waveforms.float()
    if stats is not None:
        mean, var = (t.float() for t in stats)
    else:
        count = lengths.clamp(min=1).to(x.dtype).unsqueeze(1)  # (B, 1)
        mean = (x * valid).sum(1, keepdim=True) / count
        var = ((x - mean) * valid).pow(2).sum(1, keepdim=True) / count
    return ((x - mean) * torch.rsqrt(var + eps) * valid).to(waveforms.dtype)


def envelope_init_(weight: torch.Tensor, noise: float = 0.1) -> None:
    """Start a conv layer after the first as a per-channel low-pass filter: output channel c averages input channel
    c % C_in over the kernel (binomial weights, which sum to 1), plus `noise` times its Kaiming-random weights.

    With every later layer started this way, the untrained stack outputs the 50 Hz envelopes of the first layer's
    rectified band outputs, a rough spectrogram whose adjacent frames are alike, instead of a random function of
    each 25 ms window (the Kaiming start, where adjacent frames are about as different as unrelated ones).
    """
    out_channels, in_channels, kernel = weight.shape
    taps = torch.tensor([math.comb(kernel - 1, k) for k in range(kernel)], dtype=torch.float64)
    taps = (taps / taps.sum()).to(weight.dtype)
    with torch.no_grad():
        weight.mul_(noise)
        rows = torch.arange(out_channels)
        weight[rows, rows % in_channels, :] += taps


class Wav2Vec2(nn.Module):
    """wav2vec 2.0 encoder with an optional CTC head.

    forward(waveforms (B, S) float32, lengths (B,) int64) -> (logits (B, T, V), frame_lengths (B,));
    without a CTC head (vocab_size 0) the first output is the encoder's hidden states (B, T, D).
    Frames at or beyond an utterance's frame length are padding and hold zeros (or the head's bias).
    """

    def __init__(self, config: ModelConfig, vocab: Vocabulary | None = None):
        super().__init__()
        if vocab is not None and len(vocab) != config.vocab_size:
            raise ConfigError(f"vocabulary has {len(vocab)} tokens but the config's CTC head has {config.vocab_size}")
        self.config = config
        self.vocab = vocab
        self.feature_encoder = FeatureEncoder(config.conv_layers, config.feature_norm, config.conv_bias)
        self.feature_projection = FeatureProjection(
            self.feature_encoder.out_channels, config.dim, config.layer_norm_eps, config.feature_dropout,
            norm=config.feature_projection_norm,
        )
        # Replaces masked frames in pretraining and SpecAugment-style fine-tuning (fairseq mask_emb).
        self.mask_embedding = nn.Parameter(torch.empty(config.dim).uniform_())
        self.transformer = Transformer(config)
        self.final_dropout = nn.Dropout(config.final_dropout)
        self.ctc_head = nn.Linear(config.dim, config.vocab_size) if config.vocab_size else None
        self._init_weights()

    def _init_weights(self) -> None:
        """fairseq's initialization, which training from scratch depends on: Kaiming-normal conv kernels (the
        unnormalized conv layers keep unit-scale activations) and BERT's N(0, 0.02) for the Transformer's linear
        layers. Skipped on the meta device, where a file's weights are about to replace everything."""
        if self.mask_embedding.is_meta:
            return
        for i, layer in enumerate(self.feature_encoder.layers):
            nn.init.kaiming_normal_(layer.conv.weight)
            if i and self.config.conv_init == "envelope":
                envelope_init_(layer.conv.weight)
        for module in self.transformer.layers.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                nn.init.zeros_(module.bias)

    # The stages are public so that training objectives can work between them (masking, quantizer targets).
    def extract_features(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, stats: UtteranceStats | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Conv features (B, T, C) and frame lengths, after waveform normalization if the config asks for it.

        `stats` carries whole-utterance normalization statistics when the rows are windows of longer audio.
        """
        if self.config.normalize_waveform:
            waveforms = normalize_waveforms(waveforms, lengths, stats.wave if stats else None)
        return self.feature_encoder(waveforms, lengths, stats.group if stats else None)

    def encode(self, projected: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """Transformer over projected features (B, T, D) -> hidden states (B, T, D)."""
        return self.transformer(projected, frame_lengths)

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None, stats: UtteranceStats | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if lengths is None:
            lengths = torch.full((waveforms.shape[0],), waveforms.shape[1], dtype=torch.long, device=waveforms.device)
        features, frame_lengths = self.extract_features(waveforms, lengths, stats)
        projected, _ = self.feature_projection(features)
        hidden = self.encode(projected, frame_lengths) if projected.shape[1] else projected
        if self.ctc_head is None:
            return hidden, frame_lengths
        return self.ctc_head(self.final_dropout(hidden)), frame_lengths

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames this model produces for inputs of `lengths` samples."""
        return stack_frame_lengths(lengths, self.config.conv_layers)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_model(config: ModelConfig, vocab: Vocabulary | None = None) -> Wav2Vec2:
    return Wav2Vec2(config, vocab)
