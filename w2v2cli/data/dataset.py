"""Decoding, cropping and padding of the batches the sampler chooses: `(waveforms, lengths, targets,
target_lengths)` plus what the trainer needs to report and resume (ids, skipped files, epoch, position).

A whole batch is one dataset item (the sampler yields index lists and the DataLoader runs with batch_size=None), so
a worker decodes a batch end to end and a file that fails to decode can be dropped from it instead of raising
inside a worker, which would kill the run.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import ModelConfig
from ..errors import AudioError, ConfigError
from ..io.audio import load_audio
from .sampler import BucketBatchSampler
from .utterance import Utterance


@dataclass(frozen=True)
class LabeledUtterance(Utterance):
    """An utterance with its CTC targets, encoded once when the data is prepared (train/finetune.py)."""

    targets: tuple[int, ...] = ()

    @classmethod
    def of(cls, utterance: Utterance, targets) -> LabeledUtterance:
        return cls(**{f.name: getattr(utterance, f.name) for f in fields(Utterance)}, targets=tuple(targets))


@dataclass
class Batch:
    """One training batch. Utterances that failed to decode are left out and listed in `skipped`."""

    waveforms: torch.Tensor  # (B, S) float32, zero padded after each utterance's length
    lengths: torch.Tensor  # (B,) int64
    targets: torch.Tensor | None  # (B, L) int64 CTC labels, zero padded; None for unlabeled audio
    target_lengths: torch.Tensor | None  # (B,) int64
    ids: list[str]
    skipped: list[tuple[str, str]]  # (utterance id, reason) for each file of this batch that failed to decode
    epoch: int  # where the batch sits in the sampler's sequence: the trainer's resume point
    position: int

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True) in its pinning thread, so host-to-GPU copies can be asynchronous."""
        return self._map(lambda t: t.pin_memory())

    def to(self, device, non_blocking: bool = False) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def _map(self, move) -> Batch:
        labels = {} if self.targets is None else {"targets": move(self.targets),
                                                  "target_lengths": move(self.target_lengths)}
        return replace(self, waveforms=move(self.waveforms), lengths=move(self.lengths), **labels)

    @property
    def num_samples(self) -> int:
        """Real (unpadded) samples in the batch, e.g. for throughput and loss normalization."""
        return int(self.lengths.sum())


class AudioBatchDataset(Dataset):
    """Map-style dataset whose items are whole batches: `dataset[(epoch, position, indices)] -> Batch`.

    With `crop`, an utterance longer than `max_sample_size` is cut to a random window of that size, as fairseq does
    for pretraining. The window offset comes from numpy.random.default_rng([seed, epoch, utterance_index]), so it is
    the same in any worker, process or resumed run, and no global RNG is used. Without `crop` (finetuning, where the
    transcript covers the whole file) utterances are returned whole; the caller then keeps long utterances out of
    the sampler or accepts that their batches exceed max_tokens.

    When every utterance is a LabeledUtterance, batches carry their padded targets; otherwise targets are None.
    """

    def __init__(self, utterances: list[Utterance], sample_rate: int = ModelConfig.sample_rate,
                 max_sample_size: int | None = None, seed: int = 1, crop: bool = True):
        if max_sample_size is not None and max_sample_size <= 0:
            raise ConfigError(f"max sample size must be positive, got {max_sample_size}")
        if seed < 0:
            raise ConfigError(f"seed must be non-negative, got {seed}")
        self.utterances = list(utterances)
        self.sample_rate = sample_rate
        self.max_sample_size = max_sample_size
        self.seed = seed
        self.crop = crop
        self.labeled = bool(self.utterances) and all(isinstance(u, LabeledUtterance) for u in self.utterances)

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, item: tuple[int, int, list[int]]) -> Batch:
        epoch, position, indices = item
        waves: list[torch.Tensor] = []
        kept: list[Utterance] = []
        skipped: list[tuple[str, str]] = []
        for index in indices:
            utt = self.utterances[index]
            try:
                wave = load_audio(utt.audio, self.sample_rate)  # (S,): the file, or only its segment
            except AudioError as exc:
                skipped.append((utt.id, exc.reason))
                continue
            except Exception as exc:  # a decoder bug or I/O error must not kill a worker and with it the whole run
                skipped.append((utt.id, f"{type(exc).__name__}: {exc}"))
                continue
            waves.append(self._crop(wave, epoch, index))
            kept.append(utt)
        targets, target_lengths = _pad_targets([u.targets for u in kept]) if self.labeled else (None, None)
        return Batch(*_pad(waves), targets, target_lengths, [u.id for u in kept], skipped, epoch, position)

    def _crop(self, wave: torch.Tensor, epoch: int, index: int) -> torch.Tensor:
        size = self.max_sample_size
        if not self.crop or size is None or len(wave) <= size:
            return wave
        offset = int(np.random.default_rng([self.seed, epoch, index]).integers(0, len(wave) - size + 1))
        return wave[offset:offset + size]


def _pad(waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.int64)  # (B,)
    waveforms = torch.zeros(len(waves), int(lengths.max()) if waves else 0, dtype=torch.float32)  # (B, S)
    for row, wave in enumerate(waves):
        waveforms[row, :len(wave)] = wave
    return waveforms, lengths


def _pad_targets(labels: list[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) zero-padded targets, at least one column wide (the CTC loss wants a 2-d tensor), and (B,) lengths."""
    lengths = torch.tensor([len(x) for x in labels], dtype=torch.int64)  # (B,)
    padded = torch.zeros(len(labels), max([1, *lengths.tolist()]), dtype=torch.int64)  # (B, L)
    for row, x in zip(padded, labels):
        row[: len(x)] = torch.tensor(x, dtype=torch.int64)
    return padded, lengths


def _unwrap(batch: Batch) -> Batch:
    """collate_fn: items are already batches (a module-level function so worker processes can pickle it)."""
    return batch


def make_loader(dataset: AudioBatchDataset, sampler: BucketBatchSampler, num_workers: int = 0,
                pin_memory: bool = False) -> DataLoader:
    """A DataLoader over `sampler`'s (epoch, position, indices) items. The sampler never ends (it goes on through
    the epochs), so the trainer stops by step count and iterates the loader once per run: persistent workers would
    buy nothing. Each new iterator starts at the sampler's stored position (see BucketBatchSampler)."""
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                      collate_fn=_unwrap, persistent_workers=False,
                      prefetch_factor=2 if num_workers > 0 else None,
                      # Its own generator: creating an iterator must not draw from the global RNG the trainer
                      # checkpoints (workers seed themselves from it; crops use explicit seeds anyway).
                      generator=torch.Generator().manual_seed(0))
