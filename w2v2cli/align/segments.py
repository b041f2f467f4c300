"""Segments: the lines of a transcript aligned together, each with its time span and a score that says whether
its audio matches its text (`align --segments`), and clips cut from them with a manifest for training and
evaluation (`align --cut`).

The score of a segment is how close the forced path comes to the model's own best guess over the segment's
frames: exp of the mean, over every frame from the segment's first aligned token to its last (blanks between
them included), of log p(path token at t) - max_v log p(v at t), clamped at 0 (a star can score above the best
real token). 1.0 means that over the segment the model, left to itself, would emit just what the transcript
says; text that is not what was spoken forces tokens (or blanks) the model gives little probability where it
hears something else, and the score falls towards 0. Normalizing by the frame's best token, not scoring the raw
posterior, keeps frames the model is unsure of anyway (noise, an unusual voice) from counting as mismatches.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..results import Result, Segment, Word
from .plan import AlignmentProblem
from .spans import inner_path


def segment_score(states: np.ndarray, log_probs: torch.Tensor, targets: np.ndarray, blank: int, first: int,
                  last: int) -> float:
    """The score of frames `first`..`last` (inclusive) of a path (see the module's docstring). `states` are the
    path's CTC states (even: blank, odd 2k+1: target k), `log_probs` (T, V + 1) with the star column."""
    frames = torch.arange(first, last + 1)
    path = states[first:last + 1]
    tokens = torch.as_tensor(np.where(path % 2 == 1, targets[path // 2], blank), dtype=torch.long)
    chosen = log_probs[frames, tokens]
    best = log_probs[frames, :-1].max(dim=1).values
    return math.exp(float((chosen - best).clamp(max=0).mean()))


def segments_of(problem: AlignmentProblem, states: np.ndarray, words: list[Word], blank: int) -> list[Segment]:
    """The segments of an aligned problem planned with lines, from the search's states and the aligned words
    (their bounds as the spans give them). A line with nothing to align gets no time (start = end, at the end of
    the segment before it) and score 0."""
    states, lp = inner_path(problem, states)
    owner_of_frame = np.full(len(states), -1)
    for t, s in enumerate(states.tolist()):
        owner = problem.owners[s // 2] if s % 2 else None
        if owner is not None:
            owner_of_frame[t] = owner[0]
    out, previous_end = [], 0.0
    for text, first_word, end_word in problem.lines or ():
        if first_word == end_word:
            out.append(Segment(text, previous_end, previous_end, 0.0))
            continue
        frames = np.flatnonzero((owner_of_frame >= first_word) & (owner_of_frame < end_word))
        score = segment_score(states, lp, problem.targets, blank, int(frames[0]), int(frames[-1]))
        spoken = tuple(words[first_word:end_word])
        out.append(Segment(text, spoken[0].start, spoken[-1].end, score, spoken))
        previous_end = spoken[-1].end
    return out


def keep_segments(result: Result, min_score: float) -> int:
    """Drop the segments of `result` that score below `min_score`; returns how many were dropped."""
    if result.segments is None:
        return 0
    kept = [s for s in result.segments if s.score >= min_score]
    dropped = len(result.segments) - len(kept)
    result.segments = kept
    return dropped


def clip_name(stem: str, number: int) -> str:
    """The file name of a result's `number`-th clip (from 1): `<stem>-0001.wav`."""
    return f"{stem}-{number:04d}.wav"


def cut_segments(audio, segments: list[Segment], root: Path, name: Path, sample_rate: int,
                 numbered: int = 0) -> list[dict]:
    """Write each segment of `audio` (1-D samples at `sample_rate`) as a 16-bit WAV clip, atomically, numbered in
    order after the `numbered` clips already cut under this name: `root/<name's folder>/<name's stem>-0001.wav`...;
    returns a manifest record per clip for a manifest in `root` (`audio` relative to it, `text`, `duration` in
    seconds, `score`, and where the clip is in the recording: `source_start`, `source_end`). A segment without
    words has no audio and gets no clip (its number is not used)."""
    samples = np.asarray(audio, dtype=np.float32)
    records = []
    for number, segment in enumerate(segments, numbered + 1):
        if not segment.words:
            continue
        first = max(0, round(segment.start * sample_rate))
        last = min(len(samples), round(segment.end * sample_rate))
        path = root / name.parent / clip_name(name.stem, number)
        write_wav(path, samples[first:last], sample_rate)
        records.append({"audio": path.relative_to(root).as_posix(), "text": segment.text,
                        "duration": round((last - first) / sample_rate, 3), "score": round(segment.score, 4),
                        "source_start": round(first / sample_rate, 3), "source_end": round(last / sample_rate, 3)})
    return records


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """Mono 16-bit PCM WAV, written atomically."""
    import wave

    from ..io.atomic import atomic_path

    pcm = (np.clip(samples, -1.0, 1.0) * 32767).round().astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())
