"""CTC decoding of model outputs to text."""

from __future__ import annotations

import torch

from .text import Vocabulary


def greedy_ids(logits: torch.Tensor, frame_lengths: torch.Tensor) -> list[list[int]]:
    """Best path per utterance: argmax per frame, repeats collapsed, blanks kept (the caller drops them)."""
    best = logits.argmax(-1).cpu()  # (B, T)
    out = []
    for row, n in zip(best, frame_lengths.tolist()):
        out.append(torch.unique_consecutive(row[:n]).tolist())
    return out


def greedy_decode(logits: torch.Tensor, frame_lengths: torch.Tensor, vocab: Vocabulary) -> list[str]:
    """Greedy CTC transcripts of a padded batch of logits (B, T, V)."""
    return [vocab.ids_to_text(ids) for ids in greedy_ids(logits, frame_lengths)]
