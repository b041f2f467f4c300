"""Manifests that pair audio files with text: JSONL (`{"audio": ..., "text": ...}`) or TSV (`audio<TAB>text`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ManifestItem:
    audio: Path
    text: str
    problem: str | None = None  # why this line is unusable; `audio` then names the line


def read_pairs(lines: Iterable[str], name: str, root: Path | None = None) -> Iterator[ManifestItem]:
    """Items of a JSONL or TSV manifest, line by line (the format is recognized per line). Relative audio paths
    are taken relative to `root` (a manifest file's folder) when the file exists there, else as given."""
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = Path(f"{name}:{number}")
        if line.lstrip().startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield ManifestItem(where, "", f"invalid JSON ({exc.msg})")
                continue
            audio, text = record.get("audio"), record.get("text")
            if not isinstance(audio, str) or not isinstance(text, str):
                yield ManifestItem(where, "", 'needs string fields "audio" and "text"')
                continue
        else:
            audio, sep, text = line.partition("\t")
            if not sep:
                yield ManifestItem(where, "", "expected audio<TAB>text or a JSON object")
                continue
        path = Path(audio)
        if root is not None and not path.is_absolute() and (root / path).exists():
            path = root / path
        yield ManifestItem(path, text)
