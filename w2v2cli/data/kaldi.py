"""Kaldi data dirs: `wav.scp` (recording -> file, or a command whose output is the audio), `text` (utterance ->
transcript), optional `segments` (utterance -> recording, start, end: utterances inside long recordings), optional
`utt2spk` (the speakers `--hours` balances over) and `utt2dur`/`reco2dur` (lengths without reading audio).

A `wav.scp` entry `ARCHIVE:OFFSET` is a WAV inside a Kaldi archive (what `wav-copy ark,scp:` writes), read from
that byte. An entry that ends in `|` is a shell command. Running the commands of a data dir someone else wrote is
running their code, so it is refused (the entry is a problem and skipped) unless the caller allows it
(`--allow-commands`); then each runs in `sh -c` with no stdin and a time limit, and its stdout (a WAV, as Kaldi's
own tools expect) is decoded like a file.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import AudioError
from ..io.audio import AudioSpan
from .utterance import Utterance, header_samples, read_lines, segment

COMMAND_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class PipedCommand:
    """The audio a wav.scp command writes to stdout (a ByteSource): picklable, so loader workers run it."""

    command: str
    where: str  # wav.scp:LINE, named in errors

    def read(self) -> bytes:
        try:
            done = subprocess.run(["/bin/sh", "-c", self.command], stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=COMMAND_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise AudioError(self.where, f"the wav.scp command did not finish within {COMMAND_TIMEOUT_S:.0f} s") \
                from None
        if done.returncode != 0:
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise AudioError(self.where, f"the wav.scp command failed (exit status {done.returncode}"
                                         f"{': ' + lines[-1] if lines else ''})")
        return done.stdout


@dataclass(frozen=True)
class ArchiveEntry:
    """A WAV inside a Kaldi archive, from byte `offset` (a ByteSource): the RIFF header says how long it is."""

    archive: Path
    offset: int
    where: str  # wav.scp:LINE, named in errors

    def read(self) -> bytes:
        try:
            with open(self.archive, "rb") as f:
                f.seek(self.offset)
                head = f.read(8)
                if head[:2] == b"\0B":  # the binary-mode marker some writers put before the object
                    head = head[2:] + f.read(2)
                if len(head) < 8 or head[:4] != b"RIFF":
                    raise AudioError(self.where, f"{self.archive}: no WAV at byte {self.offset} (only WAV entries "
                                                 "of an archive are read, not feature matrices)")
                body = f.read(int.from_bytes(head[4:8], "little"))
        except OSError as exc:
            raise AudioError(self.where, f"{self.archive}: {exc.strerror or exc}") from None
        return head + body


_ARCHIVE_ENTRY = re.compile(r"(.+):(\d+)")


@dataclass(frozen=True)
class _Recording:
    path: Path  # the audio file, or for a command or an archive entry the wav.scp it is listed in
    where: str
    command: PipedCommand | ArchiveEntry | None = None  # where the bytes come from when not a file of its own

    def span(self) -> AudioSpan:
        return AudioSpan(self.path, data=self.command, label=self.where if self.command else None)


def read_kaldi_dir(root: Path, sample_rate: int, allow_commands: bool = False
                   ) -> tuple[list[Utterance], list[str]]:
    problems: list[str] = []
    recordings = _read_wav_scp(root / "wav.scp", allow_commands, problems)
    texts = _table(root / "text", problems, allow_empty=True)
    speakers = _table(root / "utt2spk", problems)
    durations = {**_seconds_table(root / "reco2dur", problems), **_seconds_table(root / "utt2dur", problems)}
    headers: dict = {}
    utterances: list[Utterance] = []
    if (root / "segments").is_file():
        for where, (utt_id, rec_id, start, end) in _segments(root / "segments", problems):
            recording = recordings.get(rec_id)
            if recording is None:
                problems.append(f"{where}: recording {rec_id!r} is not in wav.scp (or its entry was skipped)")
                continue
            utt = Utterance(utt_id, recording.path, 0, texts.get(utt_id), speakers.get(utt_id))
            if recording.command is None:
                utt = segment(utt, start, None if end < 0 else end - start, where, sample_rate, problems, headers)
            elif end < 0:
                problems.append(f"{where}: a segment of a wav.scp command or archive entry needs an end time")
                continue
            else:  # no header to check it against: a span past the end fails when it is decoded, and is skipped
                utt = replace(utt, num_samples=round((end - start) * sample_rate), start_s=start,
                              duration_s=end - start, data=recording.command, label=recording.where)
            if utt is not None:
                utterances.append(utt)
    else:
        for rec_id, recording in recordings.items():
            num_samples = _length(recording, durations.get(rec_id), sample_rate, problems)
            if num_samples is not None:
                utterances.append(Utterance(rec_id, recording.path, num_samples, texts.get(rec_id),
                                            speakers.get(rec_id), data=recording.command,
                                            label=recording.where if recording.command else None))
    return utterances, problems


def _read_wav_scp(path: Path, allow_commands: bool, problems: list[str]) -> dict[str, _Recording]:
    recordings: dict[str, _Recording] = {}
    for number, line in enumerate(read_lines(path), 1):
        where = f"{path}:{number}"
        rec_id, _, value = line.strip().partition(" ")
        value = value.strip()
        if not rec_id:
            continue
        if not value:
            problems.append(f"{where}: expected \"RECORDING-ID PATH\" or \"RECORDING-ID COMMAND |\"")
        elif value.endswith("|"):
            if allow_commands:
                recordings[rec_id] = _Recording(path, where, PipedCommand(value[:-1].strip(), where))
            else:
                problems.append(f"{where}: {rec_id} is a command ({value}): commands in wav.scp run only with "
                                "--allow-commands")
        else:
            recording = _file_or_archive_entry(value, path, where)
            if isinstance(recording, str):
                problems.append(recording)
            else:
                recordings[rec_id] = recording
    return recordings


def _file_or_archive_entry(value: str, scp: Path, where: str) -> _Recording | str:
    """The recording a wav.scp path names (a file, or `ARCHIVE:OFFSET`), or the problem line."""
    audio = Path(value) if Path(value).is_absolute() else resolve_relative(value, scp.parent)
    if audio.is_file():
        return _Recording(audio, where)
    entry = _ARCHIVE_ENTRY.fullmatch(value)
    if entry:
        archive = Path(entry[1]) if Path(entry[1]).is_absolute() else resolve_relative(entry[1], scp.parent)
        if archive.is_file():
            return _Recording(scp, where, ArchiveEntry(archive, int(entry[2]), where))
        return f"{where}: {archive}: no such archive"
    return f"{where}: {audio}: no such file"


def resolve_relative(value: str, data_dir: Path) -> Path:
    """Kaldi paths are relative to the recipe folder the scripts run in (the working directory); a copied data
    dir often holds them relative to itself: the working directory first, then the data dir."""
    here = Path(value)
    return here if here.is_file() else data_dir / value


def _table(path: Path, problems: list[str], allow_empty: bool = False) -> dict[str, str]:
    """`KEY VALUE...` lines (text, utt2spk), or {} when the file is absent. `text` may hold an empty transcript."""
    table: dict[str, str] = {}
    if not path.is_file():
        return table
    for number, line in enumerate(read_lines(path), 1):
        key, _, value = line.strip().partition(" ")
        if not key:
            continue
        if not value.strip() and not allow_empty:
            problems.append(f"{path}:{number}: expected \"KEY VALUE\"")
            continue
        table[key] = " ".join(value.split())
    return table


def _seconds_table(path: Path, problems: list[str]) -> dict[str, float]:
    table = {}
    for key, value in _table(path, problems).items():
        try:
            table[key] = float(value)
        except ValueError:
            problems.append(f"{path}: {key}: {value!r} is not a number of seconds")
    return table


def _segments(path: Path, problems: list[str]):
    """(where, (utterance, recording, start_s, end_s)) per line of `segments`; end -1 is the recording's end."""
    for number, line in enumerate(read_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        try:
            if len(fields) != 4:
                raise ValueError
            start, end = float(fields[2]), float(fields[3])
        except ValueError:
            problems.append(f"{where}: expected \"UTTERANCE-ID RECORDING-ID START END\" (times in seconds)")
            continue
        if start < 0 or (end >= 0 and end <= start):
            problems.append(f"{where}: segment {start:g}-{end:g} s is empty or negative")
            continue
        yield where, (fields[0], fields[1], start, end)


def _length(recording: _Recording, seconds: float | None, sample_rate: int, problems: list[str]) -> int | None:
    """A whole recording's length at `sample_rate`: from utt2dur/reco2dur, else its header (for a command: its
    output, so the command runs once here)."""
    if seconds is not None:
        if seconds > 0:
            return round(seconds * sample_rate)
        problems.append(f"{recording.where}: its duration is {seconds:g} s")
        return None
    return header_samples(recording.span(), sample_rate, problems, recording.where)
