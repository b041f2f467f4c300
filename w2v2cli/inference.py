"""Batched, windowed inference: CTC emissions for any number of utterances of any length.

Utterances are decoded ahead by a thread pool, cut into overlapping windows when long, sorted by length,
packed into batches by a padded-samples budget, and run with padding masks. Windows start on frame
boundaries and are normalized with whole-utterance statistics, so a window's conv features equal the
unwindowed ones exactly; only the Transformer's context is cut, and the overlap on both sides of each kept
core keeps that away from the frames that are kept. Emissions come back per utterance, in input order.
`transcribe` and `align` both run on this: `EmissionRunner.read` decodes their inputs ahead, `stream` turns them
into emissions.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .batching import cut_batches
from .errors import AudioError, ConfigError
from .io.audio import AudioSpan, load_audio, prefetch
from .model import Wav2Vec2
from .model.stats import UtteranceStats, utterance_stats
from .results import Result

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PREFETCH_SECONDS = 120.0  # decoded audio that may wait for the model


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` is CUDA when present, else CPU; asking for CUDA without it is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device: unknown device {name!r}; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available on this machine")
    return device


def resolve_precision(name: str, device: torch.device) -> str:
    """`auto` is bf16 on CUDA and fp32 on CPU."""
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if name not in PRECISIONS:
        raise ConfigError(f"--precision: unknown precision {name!r}; use fp32, bf16 or fp16")
    if name == "fp16" and device.type == "cpu":
        raise ConfigError("--precision fp16 needs CUDA; use bf16 or fp32 on CPU")
    return name


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool | None:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX); None where that cannot be read (not
    Linux). Without it, PyTorch emulates bf16 matrix products: a 2-core AVX2 EPYC trained about 7x slower in
    bf16 than in fp32."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split())
    except OSError:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


@dataclass(frozen=True)
class Window:
    """A span of one utterance run as one batch row: samples [start, end); its frames [keep_from, keep_to)
    are kept and land at global frame `frame_offset` onwards."""

    item: int
    start: int
    end: int
    keep_from: int
    keep_to: int
    frame_offset: int


def plan_windows(item: int, num_samples: int, num_frames: int, hop: int, receptive_field: int,
                 chunk_frames: int, context_frames: int) -> list[Window]:
    """Cut an utterance of `num_frames` frames into cores of `chunk_frames` with `context_frames` of context on
    each side. An utterance that fits in one window (core plus both contexts) is not cut."""
    if num_frames <= chunk_frames + 2 * context_frames:
        return [Window(item, 0, num_samples, 0, num_frames, 0)]
    windows = []
    for core_start in range(0, num_frames, chunk_frames):
        core_end = min(core_start + chunk_frames, num_frames)
        w0, w1 = max(0, core_start - context_frames), min(num_frames, core_end + context_frames)
        end = min(num_samples, (w1 - 1) * hop + receptive_field)
        windows.append(Window(item, w0 * hop, end, core_start - w0, core_end - w0, core_start))
    return windows


def pack_batches(windows: list[Window], max_samples: int, max_batch: int | None) -> list[list[Window]]:
    """Longest first; each batch's padded size (rows x longest row) stays within `max_samples`."""
    ordered = sorted(windows, key=lambda w: (w.end - w.start, -w.item, -w.start), reverse=True)
    cuts = cut_batches([w.end - w.start for w in ordered], max_samples, max_batch)
    return [[ordered[i] for i in batch] for batch in cuts]


class EmissionRunner:
    """Runs a CTC model over utterances and returns per-utterance log-probabilities (T, V), float32, on CPU."""

    def __init__(self, model: Wav2Vec2, device: torch.device | str = "cpu", precision: str = "fp32",
                 batch_seconds: float = 60.0, batch_size: int | None = None, chunk_seconds: float = 30.0,
                 context_seconds: float = 2.0):
        cfg = model.config
        if model.ctc_head is None:
            raise ConfigError("this model has no CTC head (it is a pretrained encoder); fine-tune it first")
        for name, value in (("--batch-seconds", batch_seconds), ("--chunk-seconds", chunk_seconds)):
            if not value > 0:
                raise ConfigError(f"{name} must be positive, not {value}")
        if context_seconds < 0 or (batch_size is not None and batch_size < 1):
            raise ConfigError("context must be >= 0 seconds and --batch-size >= 1")
        self.model, self.device, self.precision = model, torch.device(device), precision
        self.hop, self.receptive_field, self.sample_rate = cfg.hop, cfg.receptive_field, cfg.sample_rate
        frame_rate = cfg.sample_rate / cfg.hop
        self.chunk_frames = max(1, round(chunk_seconds * frame_rate))
        self.context_frames = round(context_seconds * frame_rate)
        window_samples = (self.chunk_frames + 2 * self.context_frames) * self.hop
        # A batch always fits at least one full window.
        self.max_samples = max(int(batch_seconds * cfg.sample_rate), window_samples + self.receptive_field)
        self.batch_size = batch_size

    @classmethod
    def for_model(cls, model: Wav2Vec2, precision: str = "auto", batch_seconds: float | None = None,
                  batch_size: int | None = None, chunk_seconds: float = 30.0,
                  context_seconds: float = 2.0) -> EmissionRunner:
        """A runner on the model's device with the toolkit's defaults: 300 s batches on CUDA, 30 s on CPU
        (where larger batches only cost memory), bf16 on CUDA and fp32 on CPU."""
        device = next(model.parameters()).device
        if batch_seconds is None:
            batch_seconds = 300.0 if device.type == "cuda" else 30.0
        return cls(model, device, resolve_precision(precision, device), batch_seconds, batch_size, chunk_seconds,
                   context_seconds)

    def load(self, path) -> torch.Tensor:
        """An audio file at the model's rate; AudioError if unusable or too short for one frame."""
        return load_audio(path, self.sample_rate, self.receptive_field)

    def read(self, inputs: Iterable, workers: int = 2) -> Iterator[tuple[Result, torch.Tensor | None]]:
        """(Result, waveform) per input, in input order, files decoded ahead in threads. An input is an audio
        path, or an item with an `audio` path (and a `problem` when it is already known to be unusable, such as a
        bad manifest line); the result carries it as `item`, with the file's duration, or with the reason it
        could not be read, and then the waveform is None."""

        def load(item):
            problem = getattr(item, "problem", None)
            if problem:
                raise AudioError(audio_path(item), problem)
            return self.load(getattr(item, "audio", item))  # a path, or an io.audio.AudioSpan

        ahead = int(PREFETCH_SECONDS * self.sample_rate)
        for item, audio in prefetch(inputs, load, workers, max_ahead_samples=ahead):
            result = Result(input_name(item), item=item)
            if isinstance(audio, AudioError):
                result.error = audio.reason
                yield result, None
            else:
                result.duration = len(audio) / self.sample_rate
                yield result, audio

    @property
    def frame_seconds(self) -> float:
        return self.hop / self.sample_rate

    def num_frames(self, num_samples: int) -> int:
        return int(self.model.frame_lengths(torch.tensor([num_samples]))[0])

    @torch.inference_mode()
    def run(self, waveforms: list[torch.Tensor]) -> list[torch.Tensor]:
        """Emissions for each waveform (S,) float32 at the model's rate, in the same order."""
        frames = [self.num_frames(len(w)) for w in waveforms]
        plans = [plan_windows(i, len(w), frames[i], self.hop, self.receptive_field, self.chunk_frames,
                              self.context_frames) for i, w in enumerate(waveforms)]
        # A window of a longer utterance is normalized with the whole file's statistics, which makes windows
        # exact; an utterance run whole gets the same statistics from its own valid frames inside the model.
        # The two kinds are batched apart, as a batch either carries statistics or not. An exported graph
        # (OnnxModel) has no input for them.
        exact = getattr(self.model, "accepts_stats", True)
        stats = [utterance_stats(self.model, w) if exact and len(plans[i]) > 1 else None
                 for i, w in enumerate(waveforms)]
        whole = [p[0] for p in plans if len(p) == 1]
        windows = [w for p in plans if len(p) > 1 for w in p]
        batches = pack_batches(whole, self.max_samples, self.batch_size)
        batches += pack_batches(windows, self.max_samples, self.batch_size)
        vocab_size = self.model.config.vocab_size
        out = [torch.empty(n, vocab_size) for n in frames]
        for batch in batches:
            lengths = torch.tensor([w.end - w.start for w in batch])
            x = torch.zeros(len(batch), int(lengths.max()))
            for row, w in enumerate(batch):
                x[row, : w.end - w.start] = waveforms[w.item][w.start:w.end]
            given = [stats[w.item] for w in batch]
            batch_stats = None if given[0] is None else UtteranceStats.stack(given).to(self.device)
            with autocast(self.device, self.precision):
                logits, _frame_lengths = self.model(x.to(self.device, non_blocking=True), lengths.to(self.device),
                                                   batch_stats)
            log_probs = torch.log_softmax(logits.float(), dim=-1).cpu()
            for row, w in enumerate(batch):
                keep = log_probs[row, w.keep_from:w.keep_to]
                out[w.item][w.frame_offset:w.frame_offset + keep.shape[0]] = keep
        return out

    def stream(self, items: Iterable[tuple[object, torch.Tensor | None]], group_seconds: float = 300.0
               ) -> Iterator[tuple[object, torch.Tensor | None]]:
        """(key, waveform) pairs in, (key, emissions) pairs out in the same order; a None waveform passes
        through as None. Utterances are grouped (up to `group_seconds` of audio) so batches can be sorted by
        length across files while memory stays bounded."""
        group: list[tuple[object, torch.Tensor | None]] = []
        budget = int(group_seconds * self.sample_rate)
        held = 0
        for key, waveform in items:
            group.append((key, waveform))
            held += 0 if waveform is None else len(waveform)
            if held >= budget:
                yield from self._flush(group)
                group, held = [], 0
        yield from self._flush(group)

    def _flush(self, group):
        audio = [w for _, w in group if w is not None]
        emissions = iter(self.run(audio)) if audio else iter(())
        for key, waveform in group:
            yield key, None if waveform is None else next(emissions)


def input_name(item) -> str:
    """How results name an input: its file, with the time range for a segment of one (`a.wav [2.000-3.300 s]`)."""
    audio = getattr(item, "audio", item)
    return str(audio) if isinstance(audio, AudioSpan) else str(Path(audio))


def audio_path(item) -> Path:
    """The audio file of an input: the item itself (a path), or its `audio` attribute (a request)."""
    return Path(getattr(item, "audio", item))
