"""Word and character error rates (jiwer), kept as additive counts so that shards and batches sum exactly."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ErrorCounts:
    word_errors: int = 0
    words: int = 0
    char_errors: int = 0
    chars: int = 0

    @property
    def wer(self) -> float:
        return self.word_errors / self.words if self.words else float(self.word_errors > 0)

    @property
    def cer(self) -> float:
        return self.char_errors / self.chars if self.chars else float(self.char_errors > 0)


def error_counts(reference: str, hypothesis: str) -> ErrorCounts:
    """Edit-distance counts of one utterance: words split on spaces, characters with spaces (as jiwer's CER)."""
    import jiwer

    reference, hypothesis = " ".join(reference.split()), " ".join(hypothesis.split())
    words, chars = len(reference.split()), len(reference)
    if not reference:  # jiwer refuses empty references: everything hypothesized is an insertion
        return ErrorCounts(len(hypothesis.split()), 0, len(hypothesis), 0)
    w = jiwer.process_words(reference, hypothesis)
    c = jiwer.process_characters(reference, hypothesis)
    return ErrorCounts(w.substitutions + w.deletions + w.insertions, words,
                       c.substitutions + c.deletions + c.insertions, chars)
