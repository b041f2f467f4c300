"""Output formats for transcripts: one registry, used for stdout and for one-file-per-input output."""

from __future__ import annotations

import json
from pathlib import Path

FORMATS = ("txt", "json", "jsonl", "tsv", "srt", "vtt")  # transcripts
ALIGNMENT_FORMATS = ("json", "jsonl", "ctm", "textgrid", "srt", "vtt", "tsv")
EXTENSIONS = {fmt: f".{fmt}" for fmt in FORMATS + ALIGNMENT_FORMATS}
EXTENSIONS["textgrid"] = ".TextGrid"
# Formats that hold one input each: several inputs need one file each (--output-dir).
PER_INPUT_FORMATS = ("srt", "vtt", "textgrid")
TSV_HEADER = "start\tend\tword\tscore"


def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
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


def render(result, fmt: str) -> str:
    """The whole content of one input's output file in `fmt`."""
    if fmt == "txt":
        return result.text + "\n"
    if fmt == "json":
        return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "jsonl":
        return json.dumps(result.to_dict(), ensure_ascii=False) + "\n"
    if fmt == "tsv":
        rows = [f"{w.start:.2f}\t{w.end:.2f}\t{w.word}\t{w.score:.4f}" for w in result.words]
        return "\n".join([TSV_HEADER, *rows]) + "\n"
    if fmt == "srt":
        return "".join(f"{i}\n{_timestamp(a, ',')} --> {_timestamp(b, ',')}\n{text}\n\n"
                       for i, (a, b, text) in enumerate(cues(result.words), 1))
    if fmt == "vtt":
        return "WEBVTT\n\n" + "".join(f"{_timestamp(a, '.')} --> {_timestamp(b, '.')}\n{text}\n\n"
                                      for a, b, text in cues(result.words))
    if fmt == "ctm":
        name = Path(result.path).stem
        return "".join(f"{name} 1 {w.start:.2f} {w.end - w.start:.2f} {w.word} {w.score:.4f}\n" for w in result.words)
    if fmt == "textgrid":
        return textgrid(result)
    raise ValueError(f"unknown format {fmt!r}")


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


def textgrid(result) -> str:
    """Praat TextGrid (long text format) with a word tier and a character tier."""
    duration = max([result.duration] + [w.end for w in result.words])
    words = [(w.start, w.end, w.word) for w in result.words]
    chars = [(c.start, c.end, c.word) for w in result.words for c in w.chars]
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {duration:.3f}",
             "tiers? <exists>", "size = 2", "item []:"]
    for i, (name, spans) in enumerate((("words", words), ("chars", chars)), 1):
        lines += [f"    item [{i}]:", *_tier(name, spans, duration)]
    return "\n".join(lines) + "\n"


class StdoutWriter:
    """Streams results to one text stream. `single`: exactly one input, so txt is the bare text and json one
    object; otherwise txt is `path<TAB>text` per line, json an array, tsv gains a path column."""

    def __init__(self, fmt: str, stream, single: bool):
        self.fmt, self.stream, self.single = fmt, stream, single
        self.count = 0

    def write(self, result) -> None:
        fmt, out = self.fmt, self.stream
        if result.error is not None and fmt not in ("json", "jsonl"):
            return  # reported on stderr by the caller
        if fmt == "txt":
            out.write(result.text + "\n" if self.single else f"{result.path}\t{result.text}\n")
        elif fmt == "json":
            body = json.dumps(result.to_dict(), indent=2, ensure_ascii=False)
            if not self.single:
                body = ("[\n" if self.count == 0 else ",\n") + "\n".join("  " + line for line in body.splitlines())
            out.write(body if not self.single else body + "\n")
        elif fmt == "tsv" and not self.single:
            if self.count == 0:
                out.write(f"path\t{TSV_HEADER}\n")
            out.write("".join(f"{result.path}\t{w.start:.2f}\t{w.end:.2f}\t{w.word}\t{w.score:.4f}\n"
                              for w in result.words))
        else:
            out.write(render(result, fmt))
        self.count += 1
        out.flush()

    def close(self) -> None:
        if self.fmt == "json" and not self.single:
            self.stream.write("\n]\n" if self.count else "[]\n")
            self.stream.flush()
