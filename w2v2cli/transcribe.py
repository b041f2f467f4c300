"""Speech to text for any number of files of any length: `transcribe` returns plain results in input order."""

from __future__ import annotations

import collections
import concurrent.futures as cf
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


from .decode import BeamDecoder, GreedyDecoder, Word
from .errors import AudioError
from .inference import EmissionRunner
from .model import Wav2Vec2


@dataclass
class Transcript:
    path: str
    text: str = ""
    duration: float = 0.0  # seconds
    words: list[Word] = field(default_factory=list)
    error: str | None = None  # why the file could not be transcribed; the other fields are then empty

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "text": self.text, "duration": round(self.duration, 3),
                "words": [w.to_dict() for w in self.words]}


def prefetch(paths: Iterable, load: Callable, workers: int = 2, lookahead: int = 16,
             max_ahead_samples: int = 16000 * 120) -> Iterator[tuple]:
    """(path, result or AudioError) in input order, decoding up to `lookahead` files ahead in threads, and
    no further once the decoded audio waiting to be consumed reaches `max_ahead_samples` (memory stays
    bounded for long files)."""

    def waiting_samples(pending) -> int:
        return sum(len(f.result()) for _, f in pending if f.done() and f.exception() is None)

    with cf.ThreadPoolExecutor(max(1, workers), thread_name_prefix="w2v2-audio") as pool:
        pending: collections.deque = collections.deque()
        for path in paths:
            while pending and (len(pending) >= lookahead or waiting_samples(pending) >= max_ahead_samples):
                yield _settle(*pending.popleft())
            pending.append((path, pool.submit(load, path)))
        while pending:
            yield _settle(*pending.popleft())


def _settle(path, future):
    try:
        return path, future.result()
    except AudioError as exc:
        return path, exc


def transcribe_iter(
    model: Wav2Vec2,
    inputs: Iterable,
    *,
    beam: bool = False,
    beam_width: int = 32,
    lm=None,
    alpha: float = 0.5,
    beta: float = 1.0,
    hotwords: Iterable[str] = (),
    hotword_weight: float = 10.0,
    precision: str = "auto",
    batch_seconds: float | None = None,
    batch_size: int | None = None,
    chunk_seconds: float = 30.0,
    context_seconds: float = 2.0,
    workers: int = 2,
) -> Iterator[Transcript]:
    """Transcripts of `inputs` (audio file paths), yielded in input order as they are ready.

    The model runs on whatever device it is on. A file that cannot be read yields a Transcript with `error`
    set; the others go on.
    """
    runner = EmissionRunner.for_model(model, precision, batch_seconds, batch_size, chunk_seconds, context_seconds)
    frame_seconds = runner.frame_seconds
    if beam:
        decoder = BeamDecoder(model.vocab, frame_seconds, beam_width, lm, alpha, beta, hotwords, hotword_weight)
    else:
        decoder = GreedyDecoder(model.vocab, frame_seconds)

    def loaded():
        for path, audio in prefetch(inputs, runner.load, workers):
            if isinstance(audio, AudioError):
                yield Transcript(str(path), error=audio.reason), None
            else:
                yield Transcript(str(path), duration=len(audio) / runner.sample_rate), audio

    # Decoding (CPU) runs in its own thread while the model works on the next group of files.
    with cf.ThreadPoolExecutor(1, thread_name_prefix="w2v2-decode") as decode_pool:
        pending: collections.deque = collections.deque()
        for result, emissions in runner.stream(loaded()):
            future = None if emissions is None else decode_pool.submit(decoder, emissions)
            pending.append((result, future))
            while pending and (pending[0][1] is None or pending[0][1].done()):
                yield _finish(*pending.popleft())
        while pending:
            yield _finish(*pending.popleft())


def _finish(result: Transcript, future) -> Transcript:
    if future is not None:
        result.text, result.words = future.result()
    return result


def transcribe(model: Wav2Vec2, inputs: Iterable, **options) -> list[Transcript]:
    """All transcripts of `inputs`, in input order. Options as for `transcribe_iter`."""
    return list(transcribe_iter(model, [Path(p) for p in inputs], **options))
