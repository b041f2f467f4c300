"""Manifests that pair audio files with text, one entry per line: the one parser of manifest lines, used by
`w2v2 align --manifest` (`read_pairs`, lazily, so stdin streams) and by the data sources of training and
evaluation (`data.sources`).

A line is a JSON object (`{"audio": ..., "text": ...}`, other fields as the reader wants them) or `audio<TAB>text`.
Blank lines are skipped, and so are `#` comment lines, except in JSON Lines, which has no comments.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

LINE_FORMATS = ("auto", "jsonl", "tsv")  # auto: a line that starts with "{" is JSON, any other a TSV pair


def manifest_records(lines: Iterable[str], name: str, fmt: str = "auto") -> Iterator[tuple[str, dict | str]]:
    """(where, record) for each entry of a manifest, lazily: `where` is `name:line number`, the record a dict of
    the line's fields, or a string saying why the line cannot be read."""
    if fmt not in LINE_FORMATS:
        raise ValueError(f"manifest line format {fmt!r}: one of {', '.join(LINE_FORMATS)}")
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip() or (fmt != "jsonl" and line.lstrip().startswith("#")):
            continue
        yield f"{name}:{number}", parse_line(line, fmt)


def parse_line(line: str, fmt: str = "auto") -> dict | str:
    """One manifest line as its fields, or why it cannot be read. In `tsv` every line is a pair, the text empty
    when there is no tab; in `auto` a line without a tab is a problem."""
    if fmt == "jsonl" or (fmt == "auto" and line.lstrip().startswith("{")):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            return f"invalid JSON ({exc.msg})"
        return record if isinstance(record, dict) else "expected a JSON object"
    audio, sep, text = line.partition("\t")
    if not sep and fmt == "auto":
        return "expected audio<TAB>text or a JSON object"
    return {"audio": audio, "text": text}


@dataclass(frozen=True)
class ManifestItem:
    audio: Path
    text: str
    problem: str | None = None  # why this line is unusable; `audio` then names the line


def read_pairs(lines: Iterable[str], name: str, root: Path | None = None) -> Iterator[ManifestItem]:
    """Items of a JSONL or TSV manifest, line by line (the format is recognized per line). Relative audio paths
    are taken relative to `root` (a manifest file's folder) when the file exists there, else as given."""
    for where, record in manifest_records(lines, name):
        if isinstance(record, str):
            yield ManifestItem(Path(where), "", record)
            continue
        audio, text = record.get("audio"), record.get("text")
        if not isinstance(audio, str) or not isinstance(text, str):
            yield ManifestItem(Path(where), "", 'needs string fields "audio" and "text"')
            continue
        path = Path(audio)
        if root is not None and not path.is_absolute() and (root / path).exists():
            path = root / path
        yield ManifestItem(path, text)
