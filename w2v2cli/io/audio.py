"""Audio input: the only module that decodes files. Every command reads audio through `load_audio`, inference
through `prefetch`, which decodes files ahead in threads.

torchaudio is used only behind `resample`, so it can be swapped out in one place.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..config import ModelConfig
from ..errors import AudioError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64", ".caf")


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited sinc resampling (torchaudio's default filter) of (..., S) float32 audio."""
    if orig_rate == new_rate:
        return waveform
    import torchaudio.functional

    return torchaudio.functional.resample(waveform, orig_rate, new_rate)


def audio_info(path) -> tuple[int, int]:
    """(num_frames, sample_rate) from the file header, without decoding the audio."""
    import soundfile as sf

    path = _check_path(path)
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError/TypeError depending on the failure
        raise AudioError(path, _describe(exc)) from None
    return info.frames, info.samplerate


def load_audio(path, sample_rate: int = ModelConfig.sample_rate, min_samples: int = 0) -> torch.Tensor:
    """Decode `path` to mono float32 at `sample_rate`: a (S,) tensor. Raises AudioError naming the file,
    also when it has fewer than `min_samples` samples (a model's receptive field: no frame at all)."""
    import soundfile as sf

    path = _check_path(path)
    try:
        with sf.SoundFile(str(path)) as f:
            declared, file_rate = f.frames, f.samplerate
            data = f.read(dtype="float32", always_2d=True)  # (S, channels), C order
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(path, _describe(exc)) from None
    if data.shape[0] == 0:
        raise AudioError(path, "contains no audio samples")
    missing = _wav_missing_bytes(path)
    if missing:
        raise AudioError(path, f"truncated: the WAV header declares {missing} more bytes of audio than the file holds")
    if 0 < declared < 2**62 and data.shape[0] < declared:
        raise AudioError(path, f"truncated: header declares {declared} samples but only {data.shape[0]} could be read")
    if not np.isfinite(data).all():
        raise AudioError(path, "contains NaN or infinite sample values")
    # A mono file's (S, 1) array is already contiguous as (S,): reshape is a view, so no second copy is made.
    mono = torch.from_numpy(data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data.reshape(-1))
    audio = resample(mono, file_rate, sample_rate)
    if len(audio) < min_samples:
        raise AudioError(path, f"too short: {len(audio) / sample_rate:.3f} s (the model needs at least "
                               f"{min_samples / sample_rate:.3f} s for one frame)")
    return audio


def _check_path(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    return path


def _wav_missing_bytes(path: Path) -> int:
    """Bytes the RIFF/WAVE `data` chunk declares beyond the end of the file (libsndfile silently shortens it)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            chunk_size = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                if chunk_size in (0, 0xFFFFFFFF):  # streaming writers leave the length open
                    return 0
                return max(0, pos + 8 + chunk_size - size)
            pos += 8 + chunk_size + (chunk_size & 1)
    return 0


def _describe(exc: Exception) -> str:
    text = str(exc).split("\n")[0]
    if "unknown format" in text.lower() or "format not recognised" in text.lower():
        return "not a recognized audio file"
    if "permission" in text.lower():
        return "permission denied"
    return f"cannot decode audio ({text.split(': ', 1)[-1] if ': ' in text else text})"


def find_audio_files(root) -> list[Path]:
    """Audio files under a directory, recursively, sorted; a file path is returned as is."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def prefetch(items: Iterable, load: Callable, workers: int = 2, lookahead: int = 16,
             max_ahead_samples: int = 120 * ModelConfig.sample_rate) -> Iterator[tuple]:
    """(item, load(item) or the AudioError it raised) in input order, loading up to `lookahead` items ahead in
    threads, and no further once the decoded audio waiting to be consumed reaches `max_ahead_samples` (memory
    stays bounded for long files). `items` is read in the caller's thread, so a lazy source (stdin) streams."""

    def waiting_samples(pending) -> int:
        return sum(len(f.result()) for _, f in pending if f.done() and f.exception() is None)

    with cf.ThreadPoolExecutor(max(1, workers), thread_name_prefix="w2v2-audio") as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            while pending and (len(pending) >= lookahead or waiting_samples(pending) >= max_ahead_samples):
                yield _settle(*pending.popleft())
            pending.append((item, pool.submit(load, item)))
        while pending:
            yield _settle(*pending.popleft())


def _settle(item, future):
    try:
        return item, future.result()
    except AudioError as exc:
        return item, exc
