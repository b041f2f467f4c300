"""One utterance as a data source lists it (a file, a segment of one, or audio that is not a file), and the
helpers every source reader shares. Readers import from here; sources.py dispatches to them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import AudioError, ConfigError, PathError
from ..io.audio import SEGMENT_SLACK_S, AudioSpan, ByteSource, audio_info


@dataclass(frozen=True)
class Utterance:
    """One training example, as found on disk; the audio itself is decoded only when a batch needs it."""

    id: str  # unique within a source: path relative to the data root without extension, or a LibriSpeech utterance id
    path: Path
    num_samples: int  # length at the target sample rate, from the manifest or the file header
    text: str | None = None
    speaker: str | None = None  # speaker id ("103"), None when the source does not say
    start_s: float = 0.0  # a segment of `path`: where it starts,
    duration_s: float | None = None  # and how long it is (None: the whole file)
    data: ByteSource | None = None  # audio that is not a file (dataset bytes, a wav.scp command); `path` lists it
    label: str | None = None  # how messages name audio that is not a file ("train.parquet row 12")

    @property
    def audio(self) -> Path | AudioSpan:
        """What io.audio.load_audio decodes: the file, or the span or byte source it comes from."""
        if self.start_s == 0 and self.duration_s is None and self.data is None:
            return self.path
        return AudioSpan(self.path, self.start_s, self.duration_s, self.data, self.label)


def segment_id(base_id: str, start_s: float) -> str:
    """The id of a segment without one of its own: the file's id and where it starts, so segments of one
    recording get distinct, readable ids (`long@12.340`)."""
    return f"{base_id}@{start_s:.3f}"


def segment(utt: Utterance, start_s: float, duration_s: float | None, where: str, sample_rate: int,
            problems: list[str], headers: dict | None) -> Utterance | None:
    """`utt` as the segment [start_s, start_s + duration_s) of its file (to the end for None), checked against
    the file's length from its header (read once per file through `headers`); a segment that starts past the
    end or ends more than SEGMENT_SLACK_S past it is a line in `problems`. An end within the slack is clipped."""
    headers = {} if headers is None else headers
    if utt.path not in headers:
        try:
            frames, rate = audio_info(utt.path)
            headers[utt.path] = frames / rate if rate > 0 else 0.0
        except AudioError as exc:
            headers[utt.path] = exc
    file_s = headers[utt.path]
    if isinstance(file_s, AudioError):
        problems.append(f"{where}: {file_s}")
        return None
    end_s = file_s if duration_s is None else start_s + duration_s
    if start_s >= file_s or end_s > file_s + SEGMENT_SLACK_S:
        problems.append(f"{where}: segment {start_s:.3f}-{end_s:.3f} s is past the end of {utt.path} "
                        f"({file_s:.3f} s)")
        return None
    duration_s = min(end_s, file_s) - start_s
    num_samples = round(duration_s * sample_rate)
    if num_samples <= 0:
        problems.append(f"{where}: empty segment ({start_s:.3f}-{end_s:.3f} s)")
        return None
    return replace(utt, num_samples=num_samples, start_s=start_s, duration_s=duration_s)


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise PathError(path, exc.strerror or str(exc)) from None


def header_samples(audio, sample_rate: int, problems: list[str], where: str | None = None) -> int | None:
    """Length at `sample_rate` from the header (frames * rate // file rate) of a file or span, or None with a line
    in `problems` (prefixed with `where`, a manifest line or dataset row, when given)."""
    try:
        frames, file_rate = audio_info(audio)
    except AudioError as exc:
        problems.append(f"{where}: {exc.reason}" if where else str(exc))
        return None
    num_samples = frames * sample_rate // file_rate if file_rate > 0 else 0
    if num_samples <= 0:
        problems.append(f"{where or audio}: contains no audio samples")
        return None
    return num_samples
