"""Lengths and masks: the only place where padding masks are made."""

from __future__ import annotations

import torch

from ..config import conv_geometry


def conv_output_lengths(lengths: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Valid output frames of an unpadded conv: floor((L - k) / s) + 1, clamped at 0 for inputs shorter than k."""
    return (torch.div(lengths - kernel, stride, rounding_mode="floor") + 1).clamp(min=0)


def frame_lengths(lengths: torch.Tensor, conv_layers) -> torch.Tensor:
    """Frames the whole conv stack produces for inputs of `lengths` samples."""
    for _, kernel, stride in conv_layers:
        lengths = conv_output_lengths(lengths, kernel, stride)
    return lengths


def num_frames(num_samples: int, conv_layers) -> int:
    """`frame_lengths` of one plain length, as an int (e.g. the frames of a padded batch's width)."""
    return int(frame_lengths(torch.tensor([num_samples]), conv_layers)[0])


def samples_for_frames(num_frames: int, conv_layers) -> int:
    """The fewest samples for which `frame_lengths` gives `num_frames` (>= 1) frames: the receptive field plus
    a hop per further frame."""
    field, hop = conv_geometry(conv_layers)
    return field + (num_frames - 1) * hop


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) bool, True where a position is padding (index >= length)."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) >= lengths.unsqueeze(1)


def span_mask(
    lengths: torch.Tensor, max_len: int, prob: float, span: int, min_spans: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, T) bool, True where a frame is masked: spans of `span` frames whose starts are drawn without
    replacement from the valid frames, so padding is never masked.

    Each row gets floor(prob * length / span + u), u ~ U(0, 1), spans (at least `min_spans`), as in fairseq's
    compute_mask_indices; spans may overlap, so 0.65 x 10 masks about 49% of frames. Runs on lengths' device.
    Also used for channel masking, with lengths = the number of channels.
    """
    device = lengths.device
    B = lengths.shape[0]
    if B == 0 or max_len == 0 or prob <= 0:
        return torch.zeros(B, max_len, dtype=torch.bool, device=device)
    # A span may start where it ends inside the utterance: `length - span + 1` choices (at least one).
    num_starts = (lengths - span + 1).clamp(min=1)  # (B,)
    uniform = torch.rand(B, device=device, generator=generator)
    num_spans = torch.floor(prob * lengths.float() / span + uniform).long().clamp(min=min_spans)
    num_spans = torch.minimum(num_spans, num_starts) * (lengths > 0)  # (B,)
    # Drawing starts without replacement = the first num_spans positions of a random ranking of valid starts.
    scores = torch.rand(B, max_len, device=device, generator=generator)
    positions = torch.arange(max_len, device=device)
    scores = scores.masked_fill(positions.unsqueeze(0) >= num_starts.unsqueeze(1), 2.0)  # invalid starts last
    ranks = scores.argsort(dim=1).argsort(dim=1)  # (B, T): rank of each position
    starts = ranks < num_spans.unsqueeze(1)  # (B, T) bool
    # Dilate each start over its span with a 1-D max over the previous span - 1 positions.
    mask = torch.nn.functional.max_pool1d(
        torch.nn.functional.pad(starts.float().unsqueeze(1), (span - 1, 0)), span, stride=1
    ).squeeze(1).bool()  # (B, T)
    return mask & ~padding_mask(lengths, max_len)


def sample_negatives(
    counts: torch.Tensor, num_negatives: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Distractor indices for targets stored flat, utterance by utterance (`counts[b]` targets for row b).

    Returns (N, K) long, N = counts.sum(): for each target, K indices drawn uniformly with replacement from
    the *other* targets of its own utterance (never itself, never another utterance, never padding).
    Utterances with fewer than 2 targets have no valid distractor; callers drop them beforehand.
    """
    device = counts.device
    N = int(counts.sum())
    utterance = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)  # (N,)
    offsets = (torch.cumsum(counts, 0) - counts)[utterance]  # (N,) first flat index of each target's row
    own = torch.arange(N, device=device) - offsets  # (N,) index within its utterance
    others = (counts[utterance] - 1).clamp(min=1)  # (N,) how many other targets there are
    draw = torch.floor(torch.rand(N, num_negatives, device=device, generator=generator) * others.unsqueeze(1))
    draw = draw.long()  # (N, K) in [0, others)
    draw = draw + (draw >= own.unsqueeze(1)).long()  # skip the target itself
    return offsets.unsqueeze(1) + draw
