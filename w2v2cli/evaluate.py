"""Word and character error rates of a model on labeled data sets (`w2v2 evaluate`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .data import read_source
from .data.sources import DataSpec
from .errors import ConfigError
from .model import Wav2Vec2
from .scoring import Comparison, ErrorCounts, error_counts, paired_comparison, wer_interval
from .text import encode_transcript
from .transcribe import transcribe_iter


@dataclass
class UtteranceScore:
    id: str
    path: str
    reference: str  # the transcript as the model's vocabulary spells it
    hypothesis: str = ""
    counts: ErrorCounts = field(default_factory=ErrorCounts)
    error: str | None = None  # why the audio could not be scored

    def to_dict(self) -> dict:
        out = {"id": self.id, "path": self.path, "reference": self.reference, "hypothesis": self.hypothesis,
               "word_errors": self.counts.word_errors, "words": self.counts.words,
               "char_errors": self.counts.char_errors, "chars": self.counts.chars}
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class SetScore:
    name: str
    utterances: int
    seconds: float
    counts: ErrorCounts
    items: list[UtteranceScore]
    failed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def wer(self) -> float:
        return self.counts.wer

    @property
    def cer(self) -> float:
        return self.counts.cer

    def worst(self, n: int) -> list[UtteranceScore]:
        scored = [u for u in self.items if u.error is None]
        return sorted(scored, key=lambda u: (-u.counts.word_errors, -u.counts.char_errors, u.id))[:n]

    def scored(self) -> list[UtteranceScore]:
        return [u for u in self.items if u.error is None]

    def wer_interval(self, level: float = 0.95) -> tuple[float, float]:
        """Bootstrap interval of the WER over this set's utterances."""
        scored = self.scored()
        return wer_interval([u.counts.word_errors for u in scored], [u.counts.words for u in scored], level)

    def compare(self, other: dict[str, dict]) -> tuple[Comparison | None, int]:
        """Paired bootstrap of this set's WER against another model's per-utterance records of the same set
        (id -> record, as `UtteranceScore.to_dict` writes them). Returns the comparison over the utterances both
        scored with the same reference (None if there are none) and how many utterances were left out."""
        mine, theirs, words = [], [], []
        for u in self.scored():
            record = other.get(u.id)
            if record is None or record.get("error") or record.get("reference") != u.reference:
                continue
            mine.append(u.counts.word_errors)
            theirs.append(int(record["word_errors"]))
            words.append(u.counts.words)
        left_out = len(self.items) - len(words)
        if not words or sum(words) == 0:
            return None, left_out
        return paired_comparison(mine, theirs, words), left_out

    def to_dict(self, errors: int = 0) -> dict:
        out = {"set": self.name, "utterances": self.utterances, "hours": self.seconds / 3600, "wer": self.wer,
               "wer_interval": list(self.wer_interval()), "cer": self.cer,
               "word_errors": self.counts.word_errors, "words": self.counts.words,
               "char_errors": self.counts.char_errors, "chars": self.counts.chars, "failed": self.failed}
        if errors:
            out["worst"] = [u.to_dict() for u in self.worst(errors)]
        return out


def utterance_records(results: list[SetScore]) -> list[dict]:
    """One record per utterance of every set (the set's name first): what `--utterances` writes."""
    return [{"set": r.name, **u.to_dict()} for r in results for u in r.items]


def read_utterance_records(path) -> dict[str, dict[str, dict]]:
    """A per-utterance file of `w2v2 evaluate --utterances`, as set name -> utterance id -> record."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--compare {path}: cannot read it ({exc.__class__.__name__}: {exc})") from None
    sets: dict[str, dict[str, dict]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            sets.setdefault(str(record["set"]), {})[str(record["id"])] = record
            int(record["word_errors"])
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"--compare {path}: line {number} is not a record of `w2v2 evaluate --utterances` "
                              "(JSON with set, id, reference and word_errors)") from None
    if not sets:
        raise ConfigError(f"--compare {path}: the file holds no utterance records")
    return sets


def evaluate(model: Wav2Vec2, data, **decode_options) -> list[SetScore]:
    """Greedy (or beam, with `beam=True`, `lm=...`) WER and CER of `model` on each labeled source in `data`.
    References are normalized to the model's vocabulary as in fine-tuning, so a model is scored on what it can
    spell. Audio that cannot be read is counted in `failed` and left out of the rates."""
    if model.ctc_head is None or model.vocab is None:
        raise ConfigError("the model has no CTC head: evaluate needs a fine-tuned model")
    results = []
    for spec in [data] if isinstance(data, (str, Path, DataSpec)) else data:
        source = read_source(spec, model.config.sample_rate, need_text=True)
        items = []
        for u in source.utterances:
            _, reference, _ = encode_transcript(u.text or "", model.vocab)
            items.append(UtteranceScore(u.id, str(u.audio), reference))
        total, seconds, failed = ErrorCounts(), 0.0, 0
        for item, transcript in zip(items, transcribe_iter(model, [u.audio for u in source.utterances],
                                                           **decode_options)):
            if transcript.error:
                item.error, failed = transcript.error, failed + 1
                continue
            item.hypothesis = transcript.text
            item.counts = error_counts(item.reference, item.hypothesis)
            seconds += transcript.duration
            for name in ("word_errors", "words", "char_errors", "chars"):
                setattr(total, name, getattr(total, name) + getattr(item.counts, name))
        results.append(SetScore(source.name, len(items) - failed, seconds, total, items, failed, source.problems))
    return results
