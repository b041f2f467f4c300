"""Audio input: the only module that decodes files. Every command reads audio through `load_audio`, inference
through `prefetch`, which decodes files ahead in threads.

What to decode is a path, or an `AudioSpan`: a stretch of a file (`start_s`, `duration_s`: an utterance inside a
long recording, read with a seek so only its frames are decoded), or audio that is not a file of its own (bytes
in a dataset's column, the output of a Kaldi `wav.scp` command), fetched by its `data` source. soundfile decodes
what libsndfile can read; other containers (m4a, mp4, webm, aac, wma...) are decoded by the `ffmpeg` executable,
piped out as float32 PCM at the requested rate.

torchaudio is used only behind `resample`, so it can be swapped out in one place.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..config import ModelConfig
from ..errors import AudioError

# Containers libsndfile cannot open: ffmpeg decodes them (and anything else libsndfile does not recognize).
FFMPEG_EXTENSIONS = (".m4a", ".mp4", ".m4b", ".webm", ".mka", ".mkv", ".aac", ".wma", ".amr", ".3gp", ".ac3")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64", ".caf",
                    *FFMPEG_EXTENSIONS)
SEGMENT_SLACK_S = 0.02  # a segment may end this far past its file (Kaldi rounds times to 10 ms) and is clipped
FFMPEG_TIMEOUT_S = 600.0
INSTALL_FFMPEG = "install ffmpeg (apt install ffmpeg, brew install ffmpeg or conda install ffmpeg) and put it on PATH"


class ByteSource(Protocol):
    """Audio that is not a file of its own: `read()` returns the encoded bytes (a WAV, an mp3...) or raises
    AudioError. Implementations are small picklable records, so data-loading workers can carry them."""

    def read(self) -> bytes: ...


@dataclass(frozen=True)
class AudioSpan:
    """A stretch of audio to decode: all of `path`, or `duration_s` seconds from `start_s` (None: to the end).
    With `data`, the audio comes from there and `path` only names it in messages (the file that lists it)."""

    path: Path
    start_s: float = 0.0
    duration_s: float | None = None
    data: ByteSource | None = None
    label: str | None = None  # how messages name it when not by path (a dataset row, a Kaldi recording)

    def __fspath__(self) -> str:  # so Path(span) names the file for outputs keyed by path
        return str(self.path)

    def __str__(self) -> str:
        name = self.label or str(self.path)
        if self.is_whole:
            return name
        end = "end" if self.duration_s is None else f"{self.start_s + self.duration_s:.3f}"
        return f"{name} [{self.start_s:.3f}-{end} s]"

    @property
    def is_whole(self) -> bool:
        return self.start_s == 0 and self.duration_s is None


def as_span(source) -> AudioSpan:
    return source if isinstance(source, AudioSpan) else AudioSpan(Path(source))


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited sinc resampling (torchaudio's default filter) of (..., S) float32 audio."""
    if orig_rate == new_rate:
        return waveform
    import torchaudio.functional

    return torchaudio.functional.resample(waveform, orig_rate, new_rate)


def audio_info(source) -> tuple[int, int]:
    """(num_frames, sample_rate) of a whole file (or of a span's byte source) from its header, without decoding
    the audio; for what only ffmpeg reads, from ffprobe, else by decoding it once."""
    import soundfile as sf

    span = as_span(source)
    raw = _fetch(span)
    if raw is None and not _ffmpeg_only(span.path):
        try:
            info = sf.info(str(span.path))
            return info.frames, info.samplerate
        except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError/TypeError depending on the failure
            if not _unrecognized(exc) or shutil.which("ffmpeg") is None:
                raise AudioError(span, _describe(exc, span)) from None
    elif raw is not None:
        try:
            info = sf.info(io.BytesIO(raw))
            return info.frames, info.samplerate
        except Exception as exc:
            if not _unrecognized(exc):
                raise AudioError(span, _describe(exc, span)) from None
    return _ffprobe_info(span, raw)


def load_audio(source, sample_rate: int = ModelConfig.sample_rate, min_samples: int = 0) -> torch.Tensor:
    """Decode a path or an AudioSpan to mono float32 at `sample_rate`: a (S,) tensor. Raises AudioError naming
    the file (and span), also when it has fewer than `min_samples` samples (a model's receptive field: no frame
    at all)."""
    span = as_span(source)
    raw = _fetch(span)
    data, file_rate = _decode(span, raw, sample_rate)  # (S, channels) float32
    if data.shape[0] == 0:
        raise AudioError(span, "contains no audio samples" if span.is_whole else "the span holds no audio samples")
    if not np.isfinite(data).all():
        raise AudioError(span, "contains NaN or infinite sample values")
    # A mono file's (S, 1) array is already contiguous as (S,): reshape is a view, so no second copy is made.
    mono = torch.from_numpy(data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data.reshape(-1))
    audio = resample(mono, file_rate, sample_rate)
    if len(audio) < min_samples:
        raise AudioError(span, f"too short: {len(audio) / sample_rate:.3f} s (the model needs at least "
                               f"{min_samples / sample_rate:.3f} s for one frame)")
    return audio


def _fetch(span: AudioSpan) -> bytes | None:
    """The encoded bytes of a span with a byte source; None for a file, after checking it can be opened."""
    if span.data is None:
        _check_path(span.path, span)
        return None
    raw = span.data.read()
    if not raw:
        raise AudioError(span, "empty audio (0 bytes)")
    return raw


def _decode(span: AudioSpan, raw: bytes | None, sample_rate: int) -> tuple[np.ndarray, int]:
    """(S, channels) float32 samples of the span and their rate: soundfile where libsndfile reads the format,
    ffmpeg (already at `sample_rate`) for the rest."""
    import soundfile as sf

    if raw is None and _ffmpeg_only(span.path):
        return _ffmpeg_decode(span, None, sample_rate), sample_rate
    try:
        with sf.SoundFile(io.BytesIO(raw) if raw is not None else str(span.path)) as f:
            data, file_rate = _read_span(f, span), f.samplerate
    except AudioError:
        raise
    except Exception as exc:
        if _unrecognized(exc) and shutil.which("ffmpeg") is not None:
            try:
                return _ffmpeg_decode(span, raw, sample_rate), sample_rate
            except AudioError:
                pass  # not audio for ffmpeg either: say what libsndfile said
        raise AudioError(span, _describe(exc, span)) from None
    return data, file_rate


def _read_span(f, span: AudioSpan) -> np.ndarray:
    """The span's frames of an open SoundFile: a seek and a read of only those frames."""
    declared, rate = f.frames, f.samplerate
    start = round(span.start_s * rate)
    if span.is_whole:
        data = f.read(dtype="float32", always_2d=True)  # (S, channels), C order
        _check_complete(span, data.shape[0], declared)
        return data
    if 0 < declared < 2**62 and start >= declared:
        raise AudioError(span, f"starts at {span.start_s:.3f} s, past the end of the file ({declared / rate:.3f} s)")
    frames = -1 if span.duration_s is None else round(span.duration_s * rate)
    if start:
        f.seek(start)
    data = f.read(frames, dtype="float32", always_2d=True)  # (S, channels)
    if frames > 0 and data.shape[0] < frames - round(SEGMENT_SLACK_S * rate):
        end = span.start_s + span.duration_s
        raise AudioError(span, f"ends at {end:.3f} s, past the end of the file "
                               f"({(start + data.shape[0]) / rate:.3f} s)")
    return data


def _check_complete(span: AudioSpan, read: int, declared: int) -> None:
    missing = _wav_missing_bytes(span.path) if span.data is None else 0
    if missing:
        raise AudioError(span, f"truncated: the WAV header declares {missing} more bytes of audio than the file "
                               "holds")
    if 0 < declared < 2**62 and read < declared:
        raise AudioError(span, f"truncated: header declares {declared} samples but only {read} could be read")


def _ffmpeg_only(path: Path) -> bool:
    return path.suffix.lower() in FFMPEG_EXTENSIONS


def _unrecognized(exc: Exception) -> bool:
    text = str(exc).lower()
    return "unknown format" in text or "format not recognised" in text or "not recognized" in text


def _ffmpeg_executable(span: AudioSpan, name: str = "ffmpeg") -> str:
    exe = shutil.which(name)
    if exe is None:
        kind = span.path.suffix.lower() or "this format"
        raise AudioError(span, f"decoding {kind} needs ffmpeg, which is not on PATH: {INSTALL_FFMPEG}")
    return exe


def _ffmpeg_decode(span: AudioSpan, raw: bytes | None, sample_rate: int) -> np.ndarray:
    """(S, 1) float32 at `sample_rate`, mono, from the ffmpeg executable (the span cut by output seeking, which
    decodes from the start and is sample exact)."""
    exe = _ffmpeg_executable(span)
    with _ffmpeg_input(span, raw) as name:
        cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", name, "-map", "0:a:0", "-vn"]
        if span.start_s:
            cmd += ["-ss", f"{span.start_s:.6f}"]
        if span.duration_s is not None:
            cmd += ["-t", f"{span.duration_s:.6f}"]
        cmd += ["-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
        out = _run(cmd, span, "ffmpeg")
    return np.frombuffer(out, dtype="<f4").astype(np.float32).reshape(-1, 1)  # (S, 1)


def _ffprobe_info(span: AudioSpan, raw: bytes | None) -> tuple[int, int]:
    """(frames, rate) from ffprobe's stream header; decoded once by ffmpeg when the container gives no length."""
    _ffmpeg_executable(span)
    probe = shutil.which("ffprobe")
    if probe is not None:
        with _ffmpeg_input(span, raw) as name:
            cmd = [probe, "-v", "error", "-select_streams", "a:0", "-show_entries",
                   "stream=sample_rate,duration:format=duration", "-of", "json", name]
            found = json.loads(_run(cmd, span, "ffprobe") or b"{}")
        streams = found.get("streams") or []
        if not streams:
            raise AudioError(span, "not a recognized audio file (ffprobe finds no audio stream)")
        rate = int(streams[0].get("sample_rate") or 0)
        duration = streams[0].get("duration") or (found.get("format") or {}).get("duration")
        if rate > 0 and duration not in (None, "N/A"):
            return round(float(duration) * rate), rate
    rate = ModelConfig.sample_rate
    return len(_ffmpeg_decode(span, raw, rate)), rate


@contextlib.contextmanager
def _ffmpeg_input(span: AudioSpan, raw: bytes | None) -> Iterator[str]:
    """The input argument for ffmpeg/ffprobe. Bytes go through a temporary file, not a pipe: an mp4/m4a whose
    index (moov) comes last cannot be read from a pipe. `file:` keeps a name that starts with "-" or holds ":"
    from being read as an option or a protocol."""
    if raw is None:
        yield "file:" + str(span.path.absolute())
        return
    with tempfile.NamedTemporaryFile(suffix=span.path.suffix or ".bin", prefix="w2v2-audio-") as f:
        f.write(raw)
        f.flush()
        yield "file:" + f.name


def _run(cmd: list[str], span: AudioSpan, name: str) -> bytes:
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise AudioError(span, f"{name} did not finish within {FFMPEG_TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise AudioError(span, f"cannot run {name} ({exc.strerror or exc})") from None
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = lines[-1].split(": ", 1)[-1] if lines else f"exit status {done.returncode}"
        raise AudioError(span, f"not a recognized audio file ({name}: {detail})")
    return done.stdout


def _check_path(path: Path, name) -> None:
    if not path.exists():
        raise AudioError(name, "no such file")
    if path.is_dir():
        raise AudioError(name, "is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioError(name, "permission denied")
    if path.stat().st_size == 0:
        raise AudioError(name, "empty file (0 bytes)")


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


def _describe(exc: Exception, span: AudioSpan) -> str:
    text = str(exc).split("\n")[0]
    if _unrecognized(exc):
        if span.path.suffix.lower() in (".mp3", ".opus") and shutil.which("ffmpeg") is None:
            # an older libsndfile reads neither: ffmpeg would
            return f"this libsndfile cannot decode {span.path.suffix.lower()}: {INSTALL_FFMPEG}"
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
