"""Lengths and masks: the only place where padding masks are made."""

from __future__ import annotations

import torch


def conv_output_lengths(lengths: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Valid output frames of an unpadded conv: floor((L - k) / s) + 1, clamped at 0 for inputs shorter than k."""
    return (torch.div(lengths - kernel, stride, rounding_mode="floor") + 1).clamp(min=0)


def frame_lengths(lengths: torch.Tensor, conv_layers) -> torch.Tensor:
    """Frames the whole conv stack produces for inputs of `lengths` samples."""
    for _, kernel, stride in conv_layers:
        lengths = conv_output_lengths(lengths, kernel, stride)
    return lengths


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) bool, True where a position is padding (index >= length)."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) >= lengths.unsqueeze(1)
