"""What `transcribe` and `align` return: one `Result` per input, its words timed and scored. Writers render this
one type (`w2v2cli.writers`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds
    end: float  # seconds
    score: float  # mean posterior probability of the word's frames, 0..1
    chars: tuple[Word, ...] = ()  # per-character spans, where the producer has them (alignment)

    def to_dict(self) -> dict:
        out = {"word": self.word, "start": round(self.start, 3), "end": round(self.end, 3),
               "score": round(self.score, 4)}
        if self.chars:
            out["chars"] = [{"char": c.word, **{k: v for k, v in c.to_dict().items() if k != "word"}}
                            for c in self.chars]
        return out


@dataclass(frozen=True)
class Segment:
    """One line of a transcript aligned as a unit (`align --segments`): a sentence of a long recording."""

    text: str  # the line as written
    start: float  # seconds: its first word's start
    end: float  # seconds: its last word's end
    score: float  # how well the audio matches the text, 0..1 (align.segments.segment_score)
    words: tuple[Word, ...] = ()

    def to_dict(self) -> dict:
        return {"text": self.text, "start": round(self.start, 3), "end": round(self.end, 3),
                "score": round(self.score, 4), "words": [w.to_dict() for w in self.words]}


@dataclass
class Result:
    """One input's transcript or alignment. A failed input has `error` set and the other fields empty."""

    path: str  # the audio file (or, for a bad manifest line, where the line is: `name:line`)
    text: str = ""  # the transcript: decoded, or the given one as aligned
    duration: float = 0.0  # seconds
    words: list[Word] = field(default_factory=list)
    error: str | None = None  # why the input could not be processed
    segments: list[Segment] | None = None  # the transcript's lines, when aligned as segments
    item: object = field(default=None, repr=False, compare=False)  # the input as the caller gave it; not written

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        out = {"path": self.path, "text": self.text, "duration": round(self.duration, 3),
               "words": [w.to_dict() for w in self.words]}
        if self.segments is not None:
            out["segments"] = [s.to_dict() for s in self.segments]
        return out
