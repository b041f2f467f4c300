"""Output formats of transcripts and alignments: one registry, `WRITERS`, from a format's name to how a `Result`
is written, used for stdout and for one file per input; the commands' `--format` choices come from it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .results import Result

TSV_HEADER = "start\tend\tword\tscore"
SEGMENT_TSV_HEADER = "start\tend\ttext\tscore"  # one row per segment (`align --segments`)


def _timestamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def cues(words, max_chars: int = 42, max_seconds: float = 6.0, max_gap: float = 0.8) -> list[tuple[float, float, str]]:
    """Group words into subtitle cues: a new cue after a pause, or when a line or cue would grow too long."""
    out, current = [], []
    for w in words:
        if current:
            text = " ".join(x.word for x in current + [w])
            if len(text) > max_chars or w.end - current[0].start > max_seconds or w.start - current[-1].end > max_gap:
                out.append((current[0].start, current[-1].end, " ".join(x.word for x in current)))
                current = []
        current.append(w)
    if current:
        out.append((current[0].start, current[-1].end, " ".join(x.word for x in current)))
    return out


def _cues(result: Result) -> list[tuple[float, float, str]]:
    """Subtitle cues: one per segment when the result has segments (each line of the transcript its own cue),
    else words grouped by `cues`."""
    if result.segments is not None:
        return [(s.start, s.end, s.text) for s in result.segments if s.words]
    return cues(result.words)


def _tier(name: str, spans, duration: float) -> list[str]:
    """A Praat interval tier: spans in order, gaps filled with empty intervals, covering [0, duration]."""
    intervals, t = [], 0.0
    for start, end, text in spans:
        start, end = max(start, t), min(end, duration)
        if end <= start:
            continue
        if start > t:
            intervals.append((t, start, ""))
        intervals.append((start, end, text))
        t = end
    if t < duration or not intervals:
        intervals.append((t, duration, ""))
    lines = ['        class = "IntervalTier"', f'        name = "{name}"', "        xmin = 0",
             f"        xmax = {duration:.3f}", f"        intervals: size = {len(intervals)}"]
    for i, (a, b, text) in enumerate(intervals, 1):
        escaped = text.replace('"', '""')
        lines += [f"        intervals [{i}]:", f"            xmin = {a:.3f}", f"            xmax = {b:.3f}",
                  f'            text = "{escaped}"']
    return lines


def textgrid(result: Result) -> str:
    """Praat TextGrid (long text format) with a word tier and a character tier, and first a segment tier when the
    result has segments."""
    duration = max([result.duration] + [w.end for w in result.words])
    tiers = [("words", [(w.start, w.end, w.word) for w in result.words]),
             ("chars", [(c.start, c.end, c.word) for w in result.words for c in w.chars])]
    if result.segments is not None:
        tiers.insert(0, ("segments", [(s.start, s.end, s.text) for s in result.segments if s.words]))
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {duration:.3f}",
             "tiers? <exists>", f"size = {len(tiers)}", "item []:"]
    for i, (name, spans) in enumerate(tiers, 1):
        lines += [f"    item [{i}]:", *_tier(name, spans, duration)]
    return "\n".join(lines) + "\n"


def _json(result: Result) -> str:
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _json_element(result: Result, index: int) -> str:
    """One result as an element of a JSON array streamed over several results (`_json_end` closes it)."""
    body = json.dumps(result.to_dict(), indent=2, ensure_ascii=False)
    return ("[\n" if index == 0 else ",\n") + "\n".join("  " + line for line in body.splitlines())


def _json_end(count: int) -> str:
    return "\n]\n" if count else "[]\n"


def _jsonl(result: Result) -> str:
    return json.dumps(result.to_dict(), ensure_ascii=False) + "\n"


def _txt(result: Result) -> str:
    return result.text + "\n"


def _txt_line(result: Result, index: int) -> str:
    return f"{result.path}\t{result.text}\n"


def _tsv_table(result: Result) -> tuple[str, list[str]]:
    """(header, rows) of a result's table: a row per word, or per segment when it has segments."""
    if result.segments is not None:
        return SEGMENT_TSV_HEADER, [f"{s.start:.2f}\t{s.end:.2f}\t{s.text}\t{s.score:.4f}" for s in result.segments]
    return TSV_HEADER, [f"{w.start:.2f}\t{w.end:.2f}\t{w.word}\t{w.score:.4f}" for w in result.words]


def _tsv(result: Result) -> str:
    header, rows = _tsv_table(result)
    return "\n".join([header, *rows]) + "\n"


def _tsv_rows(result: Result, index: int) -> str:
    """One result's rows of a table over several results, with a path column."""
    header, rows = _tsv_table(result)
    return (f"path\t{header}\n" if index == 0 else "") + "".join(f"{result.path}\t{row}\n" for row in rows)


def _srt(result: Result) -> str:
    return "".join(f"{i}\n{_timestamp(a, ',')} --> {_timestamp(b, ',')}\n{text}\n\n"
                   for i, (a, b, text) in enumerate(_cues(result), 1))


def _vtt(result: Result) -> str:
    return "WEBVTT\n\n" + "".join(f"{_timestamp(a, '.')} --> {_timestamp(b, '.')}\n{text}\n\n"
                                  for a, b, text in _cues(result))


def _ctm(result: Result) -> str:
    name = Path(result.path).stem
    return "".join(f"{name} 1 {w.start:.2f} {w.end - w.start:.2f} {w.word} {w.score:.4f}\n" for w in result.words)


TRANSCRIPT, ALIGNMENT = "transcript", "alignment"  # the kinds of result: what `transcribe` and `align` make


@dataclass(frozen=True)
class Writer:
    render: Callable[[Result], str]  # the whole content of one input's output file
    extension: str  # of that file, with --output-dir
    kinds: tuple[str, ...] = (TRANSCRIPT, ALIGNMENT)  # the results it is offered for
    per_input: bool = False  # holds one input: several inputs need --output-dir (one file each)
    keeps_errors: bool = False  # a failed input is a record in the output too (else it is only named on stderr)
    # Several results on one stream: the text of the n-th (default: `render`) and what ends the stream.
    listing: Callable[[Result, int], str] | None = None
    end: Callable[[int], str] | None = None


WRITERS: dict[str, Writer] = {
    "txt": Writer(_txt, ".txt", kinds=(TRANSCRIPT,), listing=_txt_line),
    "json": Writer(_json, ".json", keeps_errors=True, listing=_json_element, end=_json_end),
    "jsonl": Writer(_jsonl, ".jsonl", keeps_errors=True),
    "tsv": Writer(_tsv, ".tsv", listing=_tsv_rows),
    "srt": Writer(_srt, ".srt", per_input=True),
    "vtt": Writer(_vtt, ".vtt", per_input=True),
    "ctm": Writer(_ctm, ".ctm", kinds=(ALIGNMENT,)),
    "textgrid": Writer(textgrid, ".TextGrid", kinds=(ALIGNMENT,), per_input=True),
}


def formats(kind: str) -> list[str]:
    """The names of the formats offered for results of `kind`, in registry order."""
    return [name for name, writer in WRITERS.items() if kind in writer.kinds]


def render(result: Result, fmt: str) -> str:
    """The whole content of one input's output file in `fmt`."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown format {fmt!r}")
    return WRITERS[fmt].render(result)


class StdoutWriter:
    """Streams results to one text stream. `single`: exactly one input, so each format writes what it writes
    to a file; otherwise a format's `listing` gathers the results (txt: `path<TAB>text` lines, json: an array, tsv:
    a path column)."""

    def __init__(self, fmt: str, stream, single: bool):
        self.writer, self.stream, self.single = WRITERS[fmt], stream, single
        self.count = 0

    def write(self, result: Result) -> None:
        writer = self.writer
        if result.error is not None and not writer.keeps_errors:
            return  # reported on stderr by the caller
        if self.single or writer.listing is None:
            self.stream.write(writer.render(result))
        else:
            self.stream.write(writer.listing(result, self.count))
        self.count += 1
        self.stream.flush()

    def close(self) -> None:
        if not self.single and self.writer.end is not None:
            self.stream.write(self.writer.end(self.count))
            self.stream.flush()
