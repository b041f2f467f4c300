"""The pure pieces of benchmarks/align_accuracy.py: trimming, joining with known times, error summaries."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from align_accuracy import error_stats, join_words, speech_bounds


def test_speech_bounds_finds_the_sample_where_sound_starts_and_ends():
    rate = 16000
    x = np.zeros(rate, dtype=np.float32)
    start, end = 3217, 11003  # not on a 320-sample frame edge
    x[start:end] = 0.5 * np.sin(2 * np.pi * 220 * np.arange(end - start) / rate + np.pi / 2)
    x[:start] += 1e-5  # far below -40 dB: counts as silence
    assert speech_bounds(x, 320) == (start, end)


def test_speech_bounds_keeps_quiet_gaps_inside_the_word():
    x = np.zeros(8000, dtype=np.float32)
    x[1000:2000] = 0.5
    x[5000:5100] = 0.05  # -20 dB: a stop's burst after its closure is still the word
    assert speech_bounds(x, 320) == (1000, 5100)


def test_speech_bounds_rejects_silence():
    with pytest.raises(ValueError):
        speech_bounds(np.zeros(1000, dtype=np.float32), 320)


def test_join_words_times_each_word_where_its_samples_are():
    words = [np.ones(160, dtype=np.float32), 2 * np.ones(320, dtype=np.float32)]
    audio, truth = join_words(words, [0.01, 0.02, 0.03], 16000)
    assert len(audio) == 160 + 320 + 160 + 320 + 480
    for word, (start_s, end_s) in zip(words, truth):
        a, b = round(start_s * 16000), round(end_s * 16000)
        np.testing.assert_array_equal(audio[a:b], word)
    assert truth == [(0.01, 0.02), (0.04, 0.06)]


def test_error_stats_in_milliseconds():
    stats = error_stats([-0.01, 0.03, 0.05, -0.2])
    assert stats["mean_abs_ms"] == pytest.approx(72.5)
    assert stats["median_abs_ms"] == pytest.approx(40.0)
    assert stats["mean_signed_ms"] == pytest.approx(-32.5)
    assert stats["within"] == {"20ms": 0.25, "40ms": 0.5, "100ms": 0.75}
