"""Length-bucketed batches filled up to a budget of padded samples, sharded across DDP processes, resumable mid-epoch.

Batches hold a varying number of utterances so that `len(batch) * longest <= max_tokens`: similar lengths are grouped
(little padding) and memory per step is bounded, which fixed-size batches cannot give with utterances from 1 s to 15 s.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ..batching import cut_batches
from ..errors import ConfigError


class BucketBatchSampler:
    """Batches of utterance indices filled by total padded samples.

    Every epoch's batches are a pure function of (sizes, max_tokens, seed, epoch, num_replicas, rank), drawn from a
    numpy Generator seeded with (seed, epoch): the sampler never touches torch's global RNG, which the trainer
    checkpoints, and every process computes the same global batch list without communicating.

    Iterating does not move the stored position. A DataLoader pulls indices ahead of what the trainer has consumed
    (prefetching), so only the trainer knows which batch was the last one used; it records that with `set_position`
    (every `Batch` carries its epoch and position). A fresh `iter()` — e.g. a resumed run — starts at the stored
    position, so no prefetched-but-unused batch is skipped.
    """

    def __init__(self, sizes: Sequence[int], max_tokens: int, seed: int = 1, shuffle: bool = True,
                 num_replicas: int = 1, rank: int = 0):
        """`sizes` are the sizes batches will actually have, i.e. already cropped: min(num_samples, max_sample_size).

        An utterance longer than `max_tokens` gets a batch of its own and exceeds the budget; the caller prevents it
        by checking max_sample_size <= max_tokens (or by dropping such utterances when finetuning without cropping).
        """
        if max_tokens <= 0:
            raise ConfigError(f"max tokens must be positive, got {max_tokens}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not one of {num_replicas} replicas")
        if seed < 0:
            raise ConfigError(f"seed must be non-negative, got {seed}")
        self.sizes = np.asarray(sizes, dtype=np.int64)  # (N,)
        if self.sizes.ndim != 1 or len(self.sizes) == 0:
            raise ConfigError("no utterances to sample batches from")
        if (self.sizes <= 0).any():
            raise ValueError(f"utterance sizes must be positive (index {int(np.argmax(self.sizes <= 0))})")
        self.max_tokens = int(max_tokens)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.num_replicas = num_replicas
        self.rank = rank
        # The batch count is the same every epoch: greedy cutting sees the same ascending size sequence whatever the
        # tie-breaking permutation, so the count is fixed and can be checked once here.
        self.num_global_batches = len(self._cut(np.argsort(self.sizes, kind="stable")))
        if self.num_global_batches < num_replicas:
            raise ConfigError(f"not enough data for {num_replicas} processes: {len(self.sizes)} utterances make only "
                              f"{self.num_global_batches} batches of at most {self.max_tokens} samples (use fewer "
                              "processes, a smaller max tokens, or more data)")
        self._epoch = 0
        self._position = 0

    def __len__(self) -> int:
        """Batches per epoch for this rank, the same on every rank (the surplus global batches are dropped)."""
        return self.num_global_batches // self.num_replicas

    def batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of `epoch`, in the order they are produced.

        Global batches are dealt round robin (batch i to rank i % num_replicas) after dropping the last
        `num_global_batches % num_replicas`, so every rank takes the same number of steps and no utterance is seen
        twice in an epoch. The batch order is shuffled per epoch, so the dropped batches differ from epoch to epoch.
        """
        rng = np.random.default_rng([self.seed, epoch])
        if self.shuffle:
            # lexsort: last key is primary. Equal sizes are ordered by a random permutation, so batches of equal-length
            # utterances (common in fairseq-cropped pretraining) get different members every epoch.
            order = np.lexsort((rng.permutation(len(self.sizes)), self.sizes))
        else:
            order = np.argsort(self.sizes, kind="stable")
        batches = self._cut(order)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        kept = len(self) * self.num_replicas
        return batches[self.rank:kept:self.num_replicas]

    def _cut(self, order: np.ndarray) -> list[list[int]]:
        """Batches of consecutive indices of `order` (ascending sizes) within the padded-size budget."""
        return [[int(order[i]) for i in batch] for batch in cut_batches(self.sizes[order].tolist(), self.max_tokens)]

    def __iter__(self) -> Iterator[tuple[int, int, list[int]]]:
        """(epoch, position, indices) from the stored position on, through the following epochs, forever."""
        epoch, position = self._epoch, self._position
        while True:
            batches = self.batches(epoch)
            for index in range(position, len(batches)):
                yield epoch, index, batches[index]
            epoch, position = epoch + 1, 0

    def state_dict(self) -> dict:
        """{"epoch", "position"}: the next batch a fresh iteration produces."""
        return {"epoch": self._epoch, "position": self._position}

    def load_state_dict(self, state: dict) -> None:
        epoch, position = int(state["epoch"]), int(state["position"])
        if position > len(self):
            raise ConfigError(f"cannot resume at batch {position} of epoch {epoch}: this run has only {len(self)} "
                              "batches per epoch (different data, max tokens or number of processes?)")
        self.set_position(epoch, position)

    def set_position(self, epoch: int, position: int) -> None:
        """Where the next iteration starts; `position == len(self)` is the start of the next epoch (the trainer
        passes the batch after the last one consumed, which is past the end after an epoch's last batch)."""
        if epoch < 0 or not 0 <= position <= len(self):
            raise ValueError(f"no batch {position} in epoch {epoch} (an epoch has {len(self)} batches)")
        if position == len(self):
            epoch, position = epoch + 1, 0
        self._epoch, self._position = epoch, position
