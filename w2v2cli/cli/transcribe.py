"""`w2v2 transcribe`: speech to text for files, folders and path lists on stdin."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console

from ..errors import ConfigError
from ..results import Result
from ..transcribe import transcribe_iter
from ..writers import TRANSCRIPT, WRITERS, formats
from . import app
from .common import (
    ALPHA,
    BATCH_SECONDS,
    BEAM,
    BEAM_WIDTH,
    BETA,
    CHUNK_SECONDS,
    DEVICE,
    LANGUAGE,
    LM,
    MODEL,
    PRECISION,
    QUIET,
    THREADS,
    Tally,
    choices,
    expand_inputs,
    make_output_dir,
    open_model,
    report,
    resolve_lm,
    run_results,
    set_threads,
    wants_beam,
)

Format = choices("Format", formats(TRANSCRIPT))


@dataclass(frozen=True)
class Input:
    """One audio file to transcribe and, with --output-dir, the file its transcript goes to."""

    audio: Path
    target: Path | None = None


@app.command()
def transcribe(
    inputs: list[str] = typer.Argument(..., help="Audio files, folders (searched recursively), or - to read "
                                                  "one path per line from stdin."),
    model: str = MODEL,
    language: str = LANGUAGE,
    fmt: Format = typer.Option(Format("txt"), "--format", "-f", help="Output format."),
    output_dir: Path = typer.Option(None, "--output-dir", "-o", help="Write one file per input here "
                                                                     "instead of printing."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="With --output-dir: skip inputs whose "
                                                                     "output file exists (resume a batch)."),
    beam: bool = BEAM,
    beam_width: int = BEAM_WIDTH,
    lm: Path = LM,
    alpha: float = ALPHA,
    beta: float = BETA,
    hotword: list[str] = typer.Option([], "--hotword", help="Word to favour in --beam search (repeatable)."),
    hotword_weight: float = typer.Option(10.0, "--hotword-weight", help="Weight of --hotword."),
    device: str = DEVICE,
    precision: str = PRECISION,
    batch_seconds: float = BATCH_SECONDS,
    batch_size: int = typer.Option(None, "--batch-size", help="At most this many utterances or windows per batch."),
    chunk_seconds: float = CHUNK_SECONDS,
    threads: int = THREADS,
    quiet: bool = QUIET,
):
    """Transcribe speech to text. Results go to stdout (or --output-dir), progress and errors to stderr.

    Exit status 0 when every input was transcribed, 1 when some failed (each is named on stderr).
    """
    fmt = fmt.value
    beam = wants_beam(beam, lm, hotword)
    if skip_existing and output_dir is None:
        raise ConfigError("--skip-existing needs --output-dir")
    single = len(inputs) == 1 and inputs[0] != "-" and not Path(inputs[0]).is_dir()
    if output_dir is None and WRITERS[fmt].per_input and not single:
        raise ConfigError(f"--format {fmt} with several inputs needs --output-dir (one subtitle file per input)")
    expanded = expand_inputs(inputs)
    make_output_dir(output_dir)
    set_threads(threads)
    path, loaded = open_model(model, language=language, device=device, quiet=quiet)
    word_lm = resolve_lm(lm, path, beam=beam, alpha=alpha, beta=beta)

    err = Console(stderr=True)
    tally = Tally("transcribed", "file")
    todo = _inputs(expanded, output_dir, WRITERS[fmt].extension, skip_existing, tally, err)
    results = transcribe_iter(
        loaded, todo, beam=beam, beam_width=beam_width, lm=word_lm.path, alpha=word_lm.alpha, beta=word_lm.beta,
        hotwords=hotword, hotword_weight=hotword_weight, precision=precision, batch_seconds=batch_seconds,
        batch_size=batch_size, chunk_seconds=chunk_seconds,
    )
    run_results(results, fmt, tally, err, single=single, output_dir=output_dir, target=lambda r: r.item.target,
                quiet=quiet, label="transcribing")


def _inputs(expanded, output_dir: Path | None, extension: str, skip_existing: bool, tally: Tally,
            err: Console) -> Iterator[Input]:
    """The inputs to transcribe, each with its output file under `output_dir`. An input whose output file another
    input already has fails here; with --skip-existing, one whose output file exists is left out."""
    claimed: dict[Path, Path] = {}  # output file -> the input it belongs to
    for path, rel in expanded:
        if output_dir is None:
            yield Input(path)
            continue
        target = output_dir / rel.with_suffix(extension)
        if target in claimed:
            tally.failed += 1
            report(err, Result(str(path), error=f"its output {target} would overwrite that of {claimed[target]}"))
            continue
        claimed[target] = path
        if skip_existing and target.exists():
            tally.skipped += 1
            continue
        yield Input(path, target)
