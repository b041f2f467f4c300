"""Model FLOPs of wav2vec 2.0, counted from the config (a multiply-add is 2 FLOPs).

Per utterance of S samples (T frames): the conv stack (sum over layers of 2 C_in C_out k frames_i), the feature
projection (2 C D T), the positional conv (2 D (D / groups) kernel T), and per Transformer layer the QKV, output
and FFN matmuls (2 T (3D^2 + D^2 + 2 D F)) plus attention itself (4 T^2 D: scores and the weighted sum).
For BASE that is about 4.9 GFLOP per audio second in the conv stack, 0.5 in the positional conv, 8.5 in the
Transformer's matmuls and 0.9-1.4 in attention (10-15 s utterances): 14.8-15.3 GFLOP per audio second forward.
Training costs 3x forward (backward is two matmuls per forward one); norms, activations and the losses are
left out, as is customary for MFU.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..model.masks import conv_output_lengths


def forward_flops(config: ModelConfig, num_samples: int) -> float:
    """Forward FLOPs of the encoder for one utterance of `num_samples` samples."""
    flops, length, in_channels = 0.0, torch.tensor(num_samples), 1
    for channels, kernel, stride in config.conv_layers:
        length = conv_output_lengths(length, kernel, stride)  # each layer's frames, as the model counts them
        flops += 2.0 * in_channels * channels * kernel * int(length)
        in_channels = channels
    T, D = int(length), config.dim
    flops += 2.0 * in_channels * D * T  # feature projection
    pos_convs = max(1, config.pos_conv_depth)  # data2vec-audio stacks several
    flops += pos_convs * 2.0 * D * (D // config.pos_conv_groups) * config.pos_conv_kernel * T  # positional conv
    per_layer = 2.0 * T * (4 * D * D + 2 * D * config.ffn_dim) + 4.0 * T * T * D
    if config.adapter_dim:  # MMS adapters: two projections per layer
        per_layer += 2.0 * T * 2 * D * config.adapter_dim
    return flops + config.num_layers * per_layer


def train_flops_per_audio_second(config: ModelConfig, utterance_seconds: float) -> float:
    """Training FLOPs (3x forward) per second of audio for utterances of the given length."""
    samples = int(utterance_seconds * config.sample_rate)
    return 3.0 * forward_flops(config, samples) / utterance_seconds
