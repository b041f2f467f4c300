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


# Bootstrap over utterances (Bisani and Ney, 2004): a set's WER is a ratio of sums, so its sampling error comes from
# which utterances the set happens to hold. Resampling them with replacement gives an interval for one model's WER
# and, resampling the same utterances for two models, for the difference between them.
BOOTSTRAP_SAMPLES = 2000


def _resample_sums(values, samples: int, seed: int):
    """Sums of each row of `values` (rows: quantities, columns: utterances) over `samples` bootstrap resamples."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = values.shape[1]
    sums = np.empty((samples, values.shape[0]))
    chunk = max(1, 4_000_000 // max(n, 1))  # resamples per block: about 32 MB of counts, whatever the set's size
    for start in range(0, samples, chunk):
        block = range(start, min(start + chunk, samples))
        counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in block])
        sums[start:start + len(block)] = counts @ values.T
    return sums  # (samples, rows)


def wer_interval(errors: list[int], words: list[int], level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES,
                 seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of a set's WER (or CER, given character counts) from its per-utterance counts."""
    if not words or sum(words) == 0:
        return (float("nan"), float("nan"))
    import numpy as np

    sums = _resample_sums([errors, words], samples, seed)
    rates = sums[:, 0] / np.maximum(sums[:, 1], 1)
    tail = (1 - level) / 2
    return float(np.quantile(rates, tail)), float(np.quantile(rates, 1 - tail))


@dataclass
class Comparison:
    """WER of model A minus WER of model B on the same utterances, with its paired bootstrap interval."""

    utterances: int
    wer_a: float
    wer_b: float
    low: float
    high: float
    a_better: float  # share of resamples in which A's WER is lower

    @property
    def difference(self) -> float:
        return self.wer_a - self.wer_b

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        return {"utterances": self.utterances, "wer": self.wer_a, "other_wer": self.wer_b,
                "difference": self.difference, "interval": [self.low, self.high], "better": self.a_better,
                "significant": self.significant}


def paired_comparison(errors_a: list[int], errors_b: list[int], words: list[int], level: float = 0.95,
                      samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> Comparison:
    """Paired bootstrap of two models' word errors on the same utterances (same order, same references)."""
    import numpy as np

    if not (len(errors_a) == len(errors_b) == len(words)) or not words or sum(words) == 0:
        raise ValueError("a paired comparison needs the same utterances, with words, for both models")
    total = sum(words)
    sums = _resample_sums([errors_a, errors_b, words], samples, seed)
    denominator = np.maximum(sums[:, 2], 1)
    diff = (sums[:, 0] - sums[:, 1]) / denominator
    tail = (1 - level) / 2
    return Comparison(len(words), sum(errors_a) / total, sum(errors_b) / total, float(np.quantile(diff, tail)),
                      float(np.quantile(diff, 1 - tail)), float(np.mean(diff < 0)))
