"""Text planning for forced alignment: a transcript as the vocabulary tokens to align, and the search problem.

The transcript is normalized to the model's vocabulary; what the vocabulary cannot express (digits, symbols,
other scripts) becomes a wildcard token, "star", whose emission score is the probability of "some token" at a
frame, so words around it still get times and the unalignable word gets a span too. A star at each end of the
transcript absorbs speech the transcript does not cover.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import AlignmentError, ConfigError
from ..text import Vocabulary, fold_case, graphemes, is_mark, letter_cases, normalize_text, spell_grapheme, spoken_index

UNKNOWN_POLICIES = ("star", "skip", "error")


@dataclass(frozen=True)
class PlannedWord:
    text: str  # as written in the transcript
    tokens: tuple[int, ...]  # vocabulary ids; `star_id` where the vocabulary cannot express the text
    chars: tuple[str, ...]  # what each token stands for (the original characters for a star)


def plan_transcript(text: str, vocab: Vocabulary, unknown: str = "star",
                    romanize: Callable[[str], str] | None = None) -> list[PlannedWord]:
    """Words of `text` (kept as written) as vocabulary tokens, matched in the vocabulary's letter case.
    Punctuation the vocabulary lacks is not spoken and is dropped; other characters it lacks (digits, symbols,
    other scripts) follow `unknown`. With `romanize` (a word -> its spelling in Latin letters), each word is
    spelled by its romanization and keeps its original text."""
    if unknown not in UNKNOWN_POLICIES:
        raise ConfigError(f"--unknown must be one of {', '.join(UNKNOWN_POLICIES)}, not {unknown!r}")
    index = spoken_index(vocab)
    upper, lower = letter_cases(index)
    star_id = len(vocab)
    planned = []
    for raw in unicodedata.normalize("NFKC", text).split():
        tokens, chars, unknown_run = [], [], ""
        spelling = normalize_text(romanize(raw) if romanize is not None else raw)
        for grapheme in graphemes(fold_case(spelling, upper, lower)):
            ids, _ = spell_grapheme(grapheme, index)
            if ids is None and (unicodedata.category(grapheme[0]).startswith("P") or is_mark(grapheme[0])):
                continue  # punctuation is not spoken, nor is a mark with no letter to go with
            if ids is None:
                if unknown == "error":
                    raise AlignmentError(f"the transcript has {grapheme!r} (in {raw!r}), which the model's "
                                         "vocabulary cannot express (use --unknown star or skip)")
                if unknown == "star":
                    unknown_run += grapheme
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


@dataclass
class AlignmentProblem:
    """One utterance's transcript made ready for the Viterbi search."""

    words: list[PlannedWord]
    targets: np.ndarray  # token ids to align; the vocabulary size stands for the star
    owners: list[tuple[int, int] | None]  # per token: (word index, char index), or None
    log_probs: torch.Tensor  # (T, V + 1) with the star column; (T + 2, V + 1) with an edge frame at each end
    edge_stars: bool
    # With segments: each non-empty line of the transcript as (its text, first word index, end word index).
    lines: list[tuple[str, int, int]] | None = None


def plan_alignment(log_probs: torch.Tensor, text: str, vocab: Vocabulary, unknown: str = "star",
                   star_penalty: float = 1.0, romanize: Callable[[str], str] | None = None,
                   segments: bool = False) -> AlignmentProblem:
    """The search problem of aligning `text` to emissions (T, V) of one utterance (`romanize`: as for
    `plan_transcript`). With `segments`, each non-empty line of `text` is a segment; the lines are aligned
    together, as one transcript, so each line's words stay in their place among the others."""
    lines = None
    if segments:
        words, lines = [], []
        for line in text.splitlines():
            if line.strip():
                planned = plan_transcript(line, vocab, unknown, romanize)
                lines.append((" ".join(line.split()), len(words), len(words) + len(planned)))
                words += planned
    else:
        words = plan_transcript(text, vocab, unknown, romanize)
    if not words:
        raise AlignmentError("the transcript is empty" if not text.strip() else
                             "nothing in the transcript can be aligned with this model's vocabulary")
    edge_stars = unknown == "star"
    targets, owners = build_targets(words, vocab, edge_stars)
    lp = with_star_column(log_probs, vocab.blank, star_penalty)
    if edge_stars:
        # Every target token takes at least one frame; one extra frame at each end, where only the star can be
        # emitted, makes the edge stars free when the transcript covers all the speech.
        edge = torch.full((1, lp.shape[1]), -1e4, device=lp.device)
        edge[0, -1] = 0.0
        lp = torch.cat([edge, lp, edge])
    return AlignmentProblem(words, targets, owners, lp, edge_stars, lines)

