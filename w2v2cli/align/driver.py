"""Forced alignment of files: requests (audio, transcript) in, `Result`s with word and character spans out, in
input order, streaming.

The stages are generators over items in input order: audio decoded ahead in threads (`EmissionRunner.read`),
its frame levels measured for word bounds, emissions from the model in length-sorted batches
(`EmissionRunner.stream`), the transcript planned against them (`plan`), a group of problems searched at once
(`viterbi.align_batch`) and turned into spans (`spans`). What a stage learns about an item travels with it, in
its `_Item`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import AlignmentError, ConfigError
from ..inference import EmissionRunner
from ..manifest import ManifestItem
from ..results import Result, Word
from ..romanize import load_romanizer
from ..text import Vocabulary
from .plan import UNKNOWN_POLICIES, AlignmentProblem, plan_alignment
from .segments import segments_of
from .spans import frame_levels_db, spans_of
from .viterbi import ENGINES, align_batch, describe

BOUNDS = ("sound", "tokens")  # word bounds: where the sound starts and stops, or the CTC path's token frames
ALIGN_BATCH_ITEMS = 64  # utterances `align_iter` gathers for one search where the device's engine batches

# A request to align is a manifest item: an audio file, its transcript, and why it is unusable when that is
# already known (a bad manifest line).
AlignRequest = ManifestItem


def align_emissions(log_probs: torch.Tensor, text: str, vocab: Vocabulary, frame_seconds: float,
                    unknown: str = "star", star_penalty: float = 1.0) -> tuple[str, list[Word]]:
    """Align `text` to emissions (T, V) of one utterance: (normalized text, words with character spans). The
    search runs where `log_probs` is, with the engine ENGINES names for that device."""
    problem = plan_alignment(log_probs, text, vocab, unknown, star_penalty)
    states = align_batch([(problem.log_probs, problem.targets)], vocab.blank, log_probs.device)[0]
    if isinstance(states, AlignmentError):
        raise AlignmentError(describe(states, frame_seconds))
    return spans_of(problem, states, vocab.blank, frame_seconds)


@dataclass
class _Item:
    """One request on its way through the stages."""

    result: Result  # carries the request as `item`
    levels_db: np.ndarray | None = None  # frame levels of its audio, for word bounds (`bounds="sound"`)
    problem: AlignmentProblem | None = None  # its search problem, once planned against its emissions


def align_iter(model, items: Iterable[AlignRequest | tuple], *, unknown: str = "star", star_penalty: float = 1.0,
               bounds: str = "sound", romanize: bool = False, segments: bool = False, precision: str = "auto",
               batch_seconds: float | None = None, chunk_seconds: float = 30.0, context_seconds: float = 2.0,
               workers: int = 2) -> Iterator[Result]:
    """Alignments of requests or (audio path, transcript) pairs, in input order; a failing item yields a Result
    with `error` set and the others go on. `romanize`: each word is spelled by its uroman romanization (any
    script to Latin letters; needs the `romanize` extra) and reported as written. `segments`: each non-empty line
    of a transcript is a segment, in `Result.segments` with its times and score (align.segments)."""
    romanizer = load_romanizer() if romanize else None  # before any work: a missing extra fails here
    if unknown not in UNKNOWN_POLICIES:
        raise ConfigError(f"--unknown must be one of {', '.join(UNKNOWN_POLICIES)}, not {unknown!r}")
    if bounds not in BOUNDS:
        raise ConfigError(f"--bounds must be one of {', '.join(BOUNDS)}, not {bounds!r}")
    runner = EmissionRunner.for_model(model, precision, batch_seconds, None, chunk_seconds, context_seconds)
    # On a device whose engine batches, utterances are searched ALIGN_BATCH_ITEMS at a time there.
    group = ALIGN_BATCH_ITEMS if ENGINES.get(runner.device.type, "batch") == "batch" else 1
    pending: list[_Item] = []
    for item, emissions in runner.stream(_read(runner, _requests(items), bounds == "sound", workers)):
        if emissions is not None:
            try:
                item.problem = plan_alignment(emissions, item.result.item.text, model.vocab, unknown, star_penalty,
                                              romanizer, segments)
            except AlignmentError as exc:
                item.result.error = str(exc)
        pending.append(item)
        if len(pending) >= group:
            yield from _search(pending, model.vocab.blank, runner)
            pending = []
    yield from _search(pending, model.vocab.blank, runner)


def _requests(items: Iterable) -> Iterator[AlignRequest]:
    for item in items:
        yield item if isinstance(item, AlignRequest) else AlignRequest(Path(item[0]), item[1])


def _read(runner: EmissionRunner, requests: Iterable[AlignRequest], levels: bool, workers: int
          ) -> Iterator[tuple[_Item, torch.Tensor | None]]:
    for result, audio in runner.read(requests, workers):
        item = _Item(result)
        if audio is not None and levels:
            item.levels_db = frame_levels_db(audio, runner.hop)
        yield item, audio


def _search(items: list[_Item], blank: int, runner: EmissionRunner) -> list[Result]:
    """The results of `items`, in order, after one search over those that have a problem to solve."""
    ready = [item for item in items if item.problem is not None]
    found = align_batch([(item.problem.log_probs, item.problem.targets) for item in ready], blank, runner.device)
    for item, states in zip(ready, found):
        result = item.result
        if isinstance(states, AlignmentError):
            result.error = describe(states, runner.frame_seconds)
        else:
            result.text, result.words = spans_of(item.problem, states, blank, runner.frame_seconds, item.levels_db,
                                                 result.duration)
            if item.problem.lines is not None:
                result.segments = segments_of(item.problem, states, result.words, blank)
    return [item.result for item in items]


def align(model, audio, text: str, **options) -> Result:
    """Align one transcript to one audio file. Options as for `align_iter`."""
    return next(align_iter(model, [(Path(audio), text)], **options))
