"""Speech to text for any number of files of any length: `transcribe` returns plain results in input order.

Three stages, each a generator over items in input order: audio files are decoded ahead in threads
(`EmissionRunner.read`), the model turns them into emissions in length-sorted batches (`EmissionRunner.stream`),
and a decoding thread turns emissions into text while the model works on the next group. Each item's `Result`
travels through the stages with it.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
from collections.abc import Iterable, Iterator
from pathlib import Path

from .decode import DEFAULT_ALPHA, DEFAULT_BETA, BeamDecoder, GreedyDecoder
from .inference import EmissionRunner
from .model import Wav2Vec2
from .results import Result


def transcribe_iter(
    model: Wav2Vec2,
    inputs: Iterable,
    *,
    beam: bool = False,
    beam_width: int = 32,
    lm=None,
    alpha: float = DEFAULT_ALPHA,
    beta: float = DEFAULT_BETA,
    hotwords: Iterable[str] = (),
    hotword_weight: float = 10.0,
    precision: str = "auto",
    batch_seconds: float | None = None,
    batch_size: int | None = None,
    chunk_seconds: float = 30.0,
    context_seconds: float = 2.0,
    workers: int = 2,
) -> Iterator[Result]:
    """Transcripts of `inputs` (audio file paths, or items with an `audio` path, kept as each result's `item`),
    yielded in input order as they are ready.

    The model runs on whatever device it is on. A file that cannot be read yields a Result with `error` set; the
    others go on.
    """
    runner = EmissionRunner.for_model(model, precision, batch_seconds, batch_size, chunk_seconds, context_seconds)
    if beam:
        decoder = BeamDecoder(model.vocab, runner.frame_seconds, beam_width, lm, alpha, beta, hotwords,
                              hotword_weight)
    else:
        decoder = GreedyDecoder(model.vocab, runner.frame_seconds)

    # Decoding (CPU) runs in its own thread while the model works on the next group of files.
    with cf.ThreadPoolExecutor(1, thread_name_prefix="w2v2-decode") as decode_pool:
        pending: collections.deque = collections.deque()  # (result, its decoding or None), in input order
        for result, emissions in runner.stream(runner.read(inputs, workers)):
            pending.append((result, None if emissions is None else decode_pool.submit(decoder, emissions)))
            while pending and (pending[0][1] is None or pending[0][1].done()):
                yield _finish(*pending.popleft())
        while pending:
            yield _finish(*pending.popleft())


def _finish(result: Result, decoding) -> Result:
    if decoding is not None:
        result.text, result.words = decoding.result()
    return result


def transcribe(model: Wav2Vec2, inputs: Iterable, **options) -> list[Result]:
    """All transcripts of `inputs`, in input order. Options as for `transcribe_iter`."""
    return list(transcribe_iter(model, [Path(p) for p in inputs], **options))
