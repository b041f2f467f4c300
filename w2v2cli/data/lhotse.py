"""Lhotse cut manifests (`cuts.jsonl.gz`, or uncompressed `.jsonl`), read without lhotse: one cut a line, a span
(`start`, `duration`) of its `recording` (the first `file` source; `command` sources like a Kaldi wav.scp command,
only when commands are allowed), the transcript its supervisions' text joined in order, the speaker the first
supervision's. Lengths come from the cuts, spans are checked against the recording's duration: no header reads.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

from ..io.audio import SEGMENT_SLACK_S
from .kaldi import PipedCommand, resolve_relative
from .utterance import Utterance

CUT_KEYS = ("recording", "start", "duration")  # what marks a JSON line as a lhotse cut


def is_cut_manifest(path: Path) -> bool:
    """A `.jsonl.gz` file, or a `.jsonl` whose first record has a cut's keys."""
    if path.name.lower().endswith(".jsonl.gz"):
        return True
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline()
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and all(key in record for key in CUT_KEYS)


def read_cuts(path: Path, sample_rate: int, allow_commands: bool = False) -> tuple[list[Utterance], list[str]]:
    utterances: list[Utterance] = []
    problems: list[str] = []
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                cut = json.loads(line)
                utt = _cut(cut, where, path.parent, sample_rate, allow_commands)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else f"not a lhotse cut ({exc!r})"
                problems.append(f"{where}: {reason}")
                continue
            if isinstance(utt, str):
                problems.append(f"{where}: {utt}")
            else:
                utterances.append(utt)
    return utterances, problems


def _cut(cut: dict, where: str, base: Path, sample_rate: int, allow_commands: bool) -> Utterance | str:
    """The cut as an Utterance, or why it cannot be used."""
    recording = cut["recording"]
    start, duration = float(cut["start"]), float(cut["duration"])
    source = next((s for s in recording["sources"] if s["type"] in ("file", "command")), None)
    if source is None:
        kinds = ", ".join(sorted({s["type"] for s in recording["sources"]}))
        return f"recording {recording['id']}: only file and command sources are read (it has {kinds})"
    if start < 0 or duration <= 0 or start + duration > float(recording["duration"]) + SEGMENT_SLACK_S:
        return (f"cut {start:.3f}-{start + duration:.3f} s is past the end of recording {recording['id']} "
                f"({float(recording['duration']):.3f} s)")
    supervisions = sorted(cut.get("supervisions") or [], key=lambda s: float(s.get("start", 0)))
    texts = [s["text"] for s in supervisions if isinstance(s.get("text"), str)]
    speaker = next((s["speaker"] for s in supervisions if s.get("speaker") is not None), None)
    utt = Utterance(str(cut["id"]), Path(), round(duration * sample_rate), " ".join(texts) if texts else None,
                    None if speaker is None else str(speaker), start_s=start, duration_s=duration)
    if source["type"] == "command":
        if not allow_commands:
            return f"recording {recording['id']} is a command ({source['source']}): run only with --allow-commands"
        return replace(utt, path=base, data=PipedCommand(source["source"], where), label=where)
    audio = Path(source["source"])
    audio = audio if audio.is_absolute() else resolve_relative(source["source"], base)  # lhotse: as run, or beside
    if not audio.is_file():
        return f"{audio}: no such file"
    return replace(utt, path=audio)
