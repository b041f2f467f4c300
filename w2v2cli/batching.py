"""Length-sorted batching shared by training (sampler) and inference (windows)."""

from __future__ import annotations

from collections.abc import Sequence


def cut_batches(sizes: Sequence[int], max_padded: int, max_rows: int | None = None) -> list[list[int]]:
    """Positions 0..n-1 of `sizes`, in the given order, cut greedily into consecutive batches whose padded size
    (rows x longest row) stays within `max_padded` and rows within `max_rows`; a lone item too large for the
    budget still forms a batch. Callers sort first, so neighbours have similar sizes and padding stays small."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for position, size in enumerate(sizes):
        widest = max(longest, size)
        if current and ((len(current) + 1) * widest > max_padded or (max_rows and len(current) >= max_rows)):
            batches.append(current)
            current, widest = [], size
        current.append(position)
        longest = widest
    if current:
        batches.append(current)
    return batches
