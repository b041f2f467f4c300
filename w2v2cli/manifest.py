"""Manifests that pair audio files with text, one entry per line: the one parser of manifest lines, used by
`w2v2 align --manifest` (`read_pairs`, lazily, so stdin streams) and by the data sources of training and
evaluation (`data.sources`).

A line is a JSON object (`{"audio": ..., "text": ...}`, other fields as the reader wants them) or `audio<TAB>text`.
Blank lines are skipped, and so are `#` comment lines, except in JSON Lines, which has no comments. A JSON object
may use other toolkits' names (`normalize_record`): NeMo's `audio_filepath`, audiofolder's `file_name`, a text
field named `sentence` or `transcription`..., `offset` (seconds) to make it a segment of the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .io.audio import AudioSpan

LINE_FORMATS = ("auto", "jsonl", "tsv")  # auto: a line that starts with "{" is JSON, any other a TSV pair
AUDIO_FIELDS = ("audio", "audio_filepath", "file_name")  # ours, NeMo's, Hugging Face audiofolder's
# Transcript fields by the names corpora give them, first found wins (Common Voice: sentence; FLEURS:
# transcription; LibriTTS/MLS-style sets: normalized_text).
TEXT_FIELDS = ("text", "sentence", "transcription", "transcript", "normalized_text", "raw_text")
SPEAKER_FIELDS = ("speaker", "speaker_id", "client_id")


def normalize_record(record: dict, text_field: str | None = None) -> dict:
    """A manifest record with the toolkit's field names (audio, text, speaker, offset, duration, id), whatever
    names its format gives them; `text_field` says which field is the transcript (default: TEXT_FIELDS)."""
    out = dict(record)
    for canonical, aliases in (("audio", AUDIO_FIELDS), ("speaker", SPEAKER_FIELDS),
                               ("text", (text_field,) if text_field else TEXT_FIELDS)):
        found = next((name for name in aliases if record.get(name) is not None), None)
        if found is not None:
            out[canonical] = record[found]
        elif canonical == "text" and text_field:
            out.pop("text", None)  # the named field is missing: the record has no transcript
    return out


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
    audio: Path | AudioSpan  # a file, or a segment of one (a record with "offset")
    text: str
    problem: str | None = None  # why this line is unusable; `audio` then names the line


def read_pairs(lines: Iterable[str], name: str, root: Path | None = None) -> Iterator[ManifestItem]:
    """Items of a JSONL or TSV manifest, line by line (the format is recognized per line). Relative audio paths
    are taken relative to `root` (a manifest file's folder) when the file exists there, else as given."""
    for where, record in manifest_records(lines, name):
        if isinstance(record, str):
            yield ManifestItem(Path(where), "", record)
            continue
        record = normalize_record(record)
        audio, text = record.get("audio"), record.get("text")
        if not isinstance(audio, str) or not isinstance(text, str):
            yield ManifestItem(Path(where), "", 'needs string fields "audio" and "text"')
            continue
        path = Path(audio)
        if root is not None and not path.is_absolute() and (root / path).exists():
            path = root / path
        span = _span(path, record)
        if isinstance(span, str):
            yield ManifestItem(Path(where), "", span)
        else:
            yield ManifestItem(span, text)


def _span(path: Path, record: dict) -> Path | AudioSpan | str:
    """The file, or with "offset" the segment of it (a NeMo manifest's utterances in long recordings); a
    string says why the fields are unusable. Without "offset", "duration" is a length hint, not a cut."""
    if record.get("offset") is None:
        return path
    try:
        start_s = float(record["offset"])
        duration_s = None if record.get("duration") is None else float(record["duration"])
    except (TypeError, ValueError):
        return '"offset" and "duration" must be numbers of seconds'
    if not start_s >= 0 or (duration_s is not None and not duration_s > 0):
        return '"offset" must be >= 0 and "duration" > 0 seconds'
    return AudioSpan(path, start_s, duration_s)
