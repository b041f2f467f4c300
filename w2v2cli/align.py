"""CTC forced alignment: where each word and character of a known transcript is spoken.

The transcript is normalized to the model's vocabulary; what the vocabulary cannot express (digits, symbols,
other scripts) becomes a wildcard token, "star", whose emission score is the probability of "some token" at a
frame, so words around it still get times and the unalignable word gets a span too. A star at each end of the
transcript absorbs speech the transcript does not cover. The Viterbi search keeps only sqrt(T) checkpoints of
its scores and recomputes back-pointers segment by segment, so memory grows as sqrt(frames) x tokens instead of
frames x tokens (19 GB for one hour of speech done naively); short problems go to torchaudio's forced_align,
whose paths are identical (tested).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .decode import Word
from .errors import AudioError, ConfigError, W2V2Error
from .inference import EmissionRunner
from .text import APOSTROPHES, Vocabulary, char_token_ids, letter_cases, spoken_index
from .transcribe import prefetch

UNKNOWN_POLICIES = ("star", "skip", "error")
STAR = "<star>"
# Problems up to this many Viterbi cells (frames x states) go to torchaudio, which keeps all back-pointers.
TORCHAUDIO_MAX_CELLS = 32_000_000


class AlignmentError(W2V2Error):
    """This transcript cannot be aligned to this audio."""


@dataclass
class Alignment:
    path: str
    text: str = ""
    duration: float = 0.0
    words: list[Word] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "text": self.text, "duration": round(self.duration, 3),
                "words": [w.to_dict() for w in self.words]}


# Text -----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedWord:
    text: str  # as written in the transcript
    tokens: tuple[int, ...]  # vocabulary ids; `star_id` where the vocabulary cannot express the text
    chars: tuple[str, ...]  # what each token stands for (the original characters for a star)


def plan_transcript(text: str, vocab: Vocabulary, unknown: str = "star") -> list[PlannedWord]:
    """Words of `text` (kept as written) as vocabulary tokens, matched in the vocabulary's letter case.
    Punctuation the vocabulary lacks is not spoken and is dropped; other characters it lacks (digits, symbols,
    other scripts) follow `unknown`."""
    if unknown not in UNKNOWN_POLICIES:
        raise ConfigError(f"--unknown must be one of {', '.join(UNKNOWN_POLICIES)}, not {unknown!r}")
    index = spoken_index(vocab)
    upper, lower = letter_cases(index)
    star_id = len(vocab)
    planned = []
    for raw in unicodedata.normalize("NFKC", text).split():
        cased = raw.translate(APOSTROPHES)
        if upper and not lower:
            cased = cased.upper()
        elif lower and not upper:
            cased = cased.lower()
        tokens, chars, unknown_run = [], [], ""
        for ch in cased:
            ids = char_token_ids(ch, index)
            if ids is None and unicodedata.category(ch).startswith("P"):
                continue  # punctuation is not spoken
            if ids is None:
                if unknown == "error":
                    raise AlignmentError(f"the transcript has {ch!r} (in {raw!r}), which the model's vocabulary "
                                         "cannot express (use --unknown star or skip)")
                if unknown == "star":
                    unknown_run += ch
                continue
            if unknown_run:
                tokens.append(star_id), chars.append(unknown_run)
                unknown_run = ""
            tokens.extend(ids), chars.extend(vocab.tokens[i] for i in ids)
        if unknown_run:
            tokens.append(star_id), chars.append(unknown_run)
        if tokens:
            planned.append(PlannedWord(raw, tuple(tokens), tuple(chars)))
    return planned


def build_targets(words: list[PlannedWord], vocab: Vocabulary, edge_stars: bool
                  ) -> tuple[np.ndarray, list[tuple[int, int] | None]]:
    """Token ids to align and, per token, (word index, char index), or None for delimiters and edge stars."""
    star_id = len(vocab)
    delimiter = vocab.tokens.index(vocab.word_delimiter) if vocab.word_delimiter else None
    targets, owners = [], []

    def add(token, owner):
        targets.append(token), owners.append(owner)

    # Edge stars stand for speech outside the transcript; no delimiter goes next to them, since models rarely
    # emit one at the start or end of an utterance and every target token costs at least one frame.
    if edge_stars:
        add(star_id, None)
    for w, word in enumerate(words):
        if delimiter is not None and w:
            add(delimiter, None)
        for c, token in enumerate(word.tokens):
            add(token, (w, c))
    if edge_stars:
        add(star_id, None)
    return np.asarray(targets, dtype=np.int64), owners


def with_star_column(log_probs: torch.Tensor, blank: int, penalty: float) -> torch.Tensor:
    """(T, V) -> (T, V + 1): the star scores log P(not blank) - penalty, so it absorbs speech the transcript
    does not cover but loses to a real token that explains a frame (the penalty, in nats)."""
    not_blank = torch.log1p(-log_probs[:, blank].exp().clamp(max=1 - 1e-6))
    return torch.cat([log_probs, (not_blank - penalty).unsqueeze(1)], dim=1)


# Viterbi --------------------------------------------------------------------------------------------------------

def viterbi_states(log_probs: np.ndarray, targets: np.ndarray, blank: int, block: int = 64) -> np.ndarray:
    """Best CTC path of `targets` through `log_probs` (T, C), as one state per frame (state 2k + 1 is token k,
    even states are blanks). Ties break as in torchaudio.functional.forced_align (stay, then advance one, then
    skip a blank). Memory: sqrt(T) checkpoints of the scores plus sqrt(T) rows of back-pointers."""
    num_frames, num_states = log_probs.shape[0], 2 * len(targets) + 1
    ext = np.full(num_states, blank, dtype=np.int64)
    ext[1::2] = targets
    skip_penalty = np.full(max(num_states - 2, 0), -np.inf, dtype=np.float32)
    skip_penalty[1::2][targets[1:] != targets[:-1]] = 0.0  # skipping a blank between two different tokens
    skipped = np.empty_like(skip_penalty)

    def step(prev, emit, out, back=None):
        if back is not None:
            back[0] = 0
            np.greater(prev[:-1], prev[1:], out=back[1:].view(bool))
        out[0] = prev[0]
        np.maximum(prev[1:], prev[:-1], out=out[1:])
        if num_states > 2:
            np.add(prev[:-2], skip_penalty, out=skipped)
            if back is not None:
                back[2:][skipped > out[2:]] = 2
            np.maximum(out[2:], skipped, out=out[2:])
        out += emit

    def frames(t0, t1):  # emissions of frames [t0, t1) gathered per state, a block at a time
        for b0 in range(t0, t1, block):
            yield from log_probs[b0:min(t1, b0 + block)][:, ext]

    every = max(1, math.isqrt(num_frames))
    alpha = np.full(num_states, -np.inf, dtype=np.float32)
    alpha[0] = log_probs[0, blank]
    if num_states > 1:
        alpha[1] = log_probs[0, ext[1]]
    scratch = np.empty_like(alpha)
    checkpoints = {0: alpha.copy()}
    for t, emit in enumerate(frames(1, num_frames), start=1):
        step(alpha, emit, scratch)
        alpha, scratch = scratch, alpha
        if t % every == 0:
            checkpoints[t] = alpha.copy()
    if not np.isfinite(alpha[-2:]).any():
        raise AlignmentError("the transcript cannot fit the audio")
    state = num_states - 1 if num_states == 1 or alpha[-1] >= alpha[-2] else num_states - 2
    path = np.empty(num_frames, dtype=np.int64)
    back = np.empty((every, num_states), dtype=np.int8)
    end = num_frames - 1
    for t0 in sorted(checkpoints, reverse=True):
        if t0 >= end:
            continue
        a, b = checkpoints.pop(t0), np.empty_like(alpha)
        for i, emit in enumerate(frames(t0 + 1, end + 1)):
            step(a, emit, b, back[i])
            a, b = b, a
        for t in range(end, t0, -1):
            path[t] = state
            state -= back[t - t0 - 1, state]
        end = t0
    path[0] = state
    return path


def align_states(log_probs: torch.Tensor, targets: np.ndarray, blank: int) -> np.ndarray:
    """Viterbi states per frame; torchaudio for small problems (faster), the checkpointed search otherwise."""
    num_frames = log_probs.shape[0]
    repeats = int((targets[1:] == targets[:-1]).sum())
    if num_frames < len(targets) + repeats:
        raise AlignmentError(f"the audio is too short for the transcript: {num_frames} frames for "
                             f"{len(targets) + repeats} tokens ({num_frames * 0.02:.2f} s)")
    if num_frames * (2 * len(targets) + 1) <= TORCHAUDIO_MAX_CELLS:
        import torchaudio.functional as F

        labels, _ = F.forced_align(log_probs[None].float(), torch.from_numpy(targets)[None], blank=blank)
        return _states_from_labels(labels[0].numpy(), targets, blank)
    return viterbi_states(log_probs.float().numpy(), targets, blank)


def _states_from_labels(labels: np.ndarray, targets: np.ndarray, blank: int) -> np.ndarray:
    """torchaudio returns a label per frame; turn it into states (a new token starts where a non-blank label
    differs from the previous frame's, so a repeat after a blank is the next token)."""
    nonblank = labels != blank
    starts = nonblank & (labels != np.r_[blank, labels[:-1]])
    token = np.cumsum(starts) - 1  # index of the latest token started
    return np.where(nonblank, 2 * token + 1, 2 * (token + 1))


# Spans ----------------------------------------------------------------------------------------------------------

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


def align_emissions(log_probs: torch.Tensor, text: str, vocab: Vocabulary, frame_seconds: float,
                    unknown: str = "star", star_penalty: float = 1.0) -> tuple[str, list[Word]]:
    """Align `text` to emissions (T, V) of one utterance: (normalized text, words with character spans)."""
    words = plan_transcript(text, vocab, unknown)
    if not words:
        raise AlignmentError("the transcript is empty" if not text.strip() else
                             "nothing in the transcript can be aligned with this model's vocabulary")
    edge_stars = unknown == "star"
    targets, owners = build_targets(words, vocab, edge_stars)
    lp = with_star_column(log_probs, vocab.blank, star_penalty)
    if edge_stars:
        # Every target token takes at least one frame; one extra frame at each end, where only the star can be
        # emitted, makes the edge stars free when the transcript covers all the speech.
        edge = torch.full((1, lp.shape[1]), -1e4)
        edge[0, -1] = 0.0
        lp = torch.cat([edge, lp, edge])
    states = align_states(lp, targets, vocab.blank)
    if edge_stars:
        states, lp = states[1:-1], lp[1:-1]
    aligned = spans_from_states(states, lp, targets, owners, words, vocab.blank, frame_seconds)
    return " ".join(w.text for w in words), aligned


# Files ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlignRequest:
    """One item to align. `problem` marks an item that is already known to be unusable (a bad manifest line)."""

    audio: Path
    text: str
    problem: str | None = None


def align_iter(model, items: Iterable[AlignRequest | tuple], *, unknown: str = "star", star_penalty: float = 1.0,
               precision: str = "auto", batch_seconds: float | None = None, chunk_seconds: float = 30.0,
               context_seconds: float = 2.0, workers: int = 2) -> Iterator[Alignment]:
    """Alignments of requests or (audio path, transcript) pairs, in input order; a failing item yields an
    Alignment with `error` set and the others go on."""
    if unknown not in UNKNOWN_POLICIES:
        raise ConfigError(f"--unknown must be one of {', '.join(UNKNOWN_POLICIES)}, not {unknown!r}")
    runner = EmissionRunner.for_model(model, precision, batch_seconds, None, chunk_seconds, context_seconds)
    texts: dict[int, str] = {}

    def load(numbered):
        request = numbered[1]
        if request.problem:
            raise AudioError(request.audio, request.problem)
        return runner.load(request.audio)

    def loaded():
        for (index, request), audio in prefetch(_numbered(items, texts), load, workers):
            result = Alignment(str(request.audio))
            if isinstance(audio, AudioError):
                result.error = audio.reason
            else:
                result.duration = len(audio) / runner.sample_rate
            yield (index, result), None if result.error else audio

    for (i, result), emissions in runner.stream(loaded()):
        if emissions is not None:
            try:
                result.text, result.words = align_emissions(emissions, texts.pop(i), model.vocab,
                                                            runner.frame_seconds, unknown, star_penalty)
            except AlignmentError as exc:
                result.error = str(exc)
        texts.pop(i, None)
        yield result


def _numbered(items, texts):
    for i, item in enumerate(items):
        request = item if isinstance(item, AlignRequest) else AlignRequest(Path(item[0]), item[1])
        texts[i] = request.text
        yield i, request



def align(model, audio, text: str, **options) -> Alignment:
    """Align one transcript to one audio file. Options as for `align_iter`."""
    return next(align_iter(model, [(Path(audio), text)], **options))
