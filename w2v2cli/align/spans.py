"""From a Viterbi path to times: character and word spans in seconds, and word bounds moved out to where the
sound starts and stops."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from ..results import Word
from .plan import AlignmentProblem


def spans_from_states(states: np.ndarray, log_probs: torch.Tensor, targets: np.ndarray, owners, words,
                      blank: int, frame_seconds: float) -> list[Word]:
    """Words with character spans from the frames each target token occupies."""
    star_id = log_probs.shape[1] - 1
    probs = log_probs.exp()
    token_frames: dict[int, list[int]] = {}
    for t, s in enumerate(states.tolist()):
        if s % 2:
            token_frames.setdefault(s // 2, []).append(t)
    char_spans: dict[int, list[Word]] = {}
    for k, owner in enumerate(owners):
        if owner is None:
            continue
        frames = token_frames[k]
        w, c = owner
        token = int(targets[k])
        if token == star_id:  # how sure the model is that something is spoken there
            score = float((1 - probs[frames, blank]).mean())
        else:
            score = float(probs[frames, token].mean())
        span = Word(words[w].chars[c], frames[0] * frame_seconds, (frames[-1] + 1) * frame_seconds, score)
        char_spans.setdefault(w, []).append(span)
    out = []
    for w, word in enumerate(words):
        chars = tuple(char_spans[w])
        weights = [c.end - c.start for c in chars]
        score = sum(c.score * n for c, n in zip(chars, weights)) / sum(weights)
        out.append(Word(word.text, chars[0].start, chars[-1].end, score, chars))
    return out


# A CTC model emits each character in a frame or two and blank around it, so a word's characters cover less than
# its sound: the last one ends where the word's last sound starts (100-150 ms early for a final long vowel), and
# the first often starts a frame or two after the onset. Word bounds are moved out to where the sound starts and
# stops: through frames that are not quiet, never into the neighbouring words.
QUIET_BELOW_LOUD_DB = 40.0  # quiet: this far below the utterance's loud frames (95th percentile level)...
QUIET_ABOVE_FLOOR_DB = 10.0  # ...or within this of its noise floor (10th percentile), whichever is higher


def frame_levels_db(audio, hop: int) -> np.ndarray:
    """RMS level in dB of each `hop`-sample frame of `audio` (frame t covers the model's frame t)."""
    samples = np.asarray(audio, dtype=np.float32)
    count = len(samples) // hop
    frames = samples[: count * hop].reshape(count, hop)  # (T, hop), a view: an hour of audio is not copied
    energy = np.einsum("ij,ij->i", frames, frames) / hop  # mean square per frame, no squared copy either
    return 10 * np.log10(energy.astype(np.float64) + 1e-12)


def extend_word_bounds(words: list[Word], levels_db: np.ndarray, frame_seconds: float,
                       duration: float) -> list[Word]:
    """Each word's end (and its last character's) moves to the first quiet frame after its characters, at most
    to the next word's start or the audio's end; then its start (and its first character's) moves back over the
    frames before it that are not quiet, at most to the previous word's end. Bounds never move inwards."""
    if not words or len(levels_db) == 0:
        return words
    threshold = max(np.percentile(levels_db, 95) - QUIET_BELOW_LOUD_DB,
                    np.percentile(levels_db, 10) + QUIET_ABOVE_FLOOR_DB)
    quiet = levels_db < threshold

    def frame(seconds: float) -> int:
        return math.floor(seconds / frame_seconds + 1e-6)

    ends = []
    for i, word in enumerate(words):
        limit = max(words[i + 1].start if i + 1 < len(words) else duration, word.end)
        t, last = frame(word.end), min(len(quiet), frame(limit))
        while t < last and not quiet[t]:
            t += 1
        ends.append(max(word.end, t * frame_seconds if t < last else limit))  # no quiet frame: up to the limit
    out = []
    for i, (word, end) in enumerate(zip(words, ends)):
        limit = min(ends[i - 1] if i else 0.0, word.start)
        t, first = frame(word.start), math.ceil(limit / frame_seconds - 1e-6)
        while t > first and t - 1 < len(quiet) and not quiet[t - 1]:
            t -= 1
        start = min(word.start, max(limit, t * frame_seconds))
        chars = word.chars
        if chars:
            chars = (replace(chars[0], start=start),) + chars[1:]
            chars = chars[:-1] + (replace(chars[-1], end=end),)
        out.append(replace(word, start=start, end=end, chars=chars))
    return out


def inner_path(problem: AlignmentProblem, states: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    """The path's states and the log-probabilities (T, V + 1) over the utterance's own frames: without the edge
    frames the search adds for the edge stars."""
    lp = problem.log_probs.cpu()
    if problem.edge_stars:
        return states[1:-1], lp[1:-1]
    return states, lp


def spans_of(problem: AlignmentProblem, states: np.ndarray, blank: int, frame_seconds: float,
             levels_db: np.ndarray | None = None, duration: float = 0.0) -> tuple[str, list[Word]]:
    """(normalized text, words with character spans) from the states the search found; with the audio's frame
    levels (`frame_levels_db`), word bounds move to where the sound starts and stops (`extend_word_bounds`)."""
    states, lp = inner_path(problem, states)
    aligned = spans_from_states(states, lp, problem.targets, problem.owners, problem.words, blank, frame_seconds)
    if levels_db is not None:
        aligned = extend_word_bounds(aligned, levels_db, frame_seconds, duration)
    return " ".join(w.text for w in problem.words), aligned

