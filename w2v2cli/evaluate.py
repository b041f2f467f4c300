"""Word and character error rates of a model on labeled data sets (`w2v2 evaluate`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .data import read_source
from .errors import ConfigError
from .model import Wav2Vec2
from .scoring import ErrorCounts, error_counts
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

    def to_dict(self, errors: int = 0) -> dict:
        out = {"set": self.name, "utterances": self.utterances, "hours": self.seconds / 3600, "wer": self.wer,
               "cer": self.cer, "word_errors": self.counts.word_errors, "words": self.counts.words,
               "char_errors": self.counts.char_errors, "chars": self.counts.chars, "failed": self.failed}
        if errors:
            out["worst"] = [u.to_dict() for u in self.worst(errors)]
        return out


def evaluate(model: Wav2Vec2, data, **decode_options) -> list[SetScore]:
    """Greedy (or beam, with `beam=True`, `lm=...`) WER and CER of `model` on each labeled source in `data`.
    References are normalized to the model's vocabulary as in fine-tuning, so a model is scored on what it can
    spell. Audio that cannot be read is counted in `failed` and left out of the rates."""
    if model.ctc_head is None or model.vocab is None:
        raise ConfigError("the model has no CTC head: evaluate needs a fine-tuned model")
    results = []
    for spec in [data] if isinstance(data, str) else data:
        source = read_source(spec, need_text=True)
        items = []
        for u in source.utterances:
            _, reference, _ = encode_transcript(u.text or "", model.vocab)
            items.append(UtteranceScore(u.id, str(u.path), reference))
        total, seconds, failed = ErrorCounts(), 0.0, 0
        for item, transcript in zip(items, transcribe_iter(model, [u.path for u in source.utterances],
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
