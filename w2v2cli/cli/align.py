"""`w2v2 align`: where each word and character of a transcript is spoken."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from ..align import BOUNDS, UNKNOWN_POLICIES, AlignRequest, align_iter
from ..errors import ConfigError
from ..inference import resolve_device
from ..io.checkpoint import load_model
from ..manifest import read_pairs
from ..writers import ALIGNMENT, WRITERS, formats
from . import app
from .common import (
    BATCH_SECONDS,
    CHUNK_SECONDS,
    DEVICE,
    MODEL,
    PRECISION,
    QUIET,
    THREADS,
    Tally,
    choices,
    make_output_dir,
    mirror,
    resolve_model,
    run_results,
    set_threads,
)

Format = choices("Format", formats(ALIGNMENT))
Unknown = choices("Unknown", UNKNOWN_POLICIES)
Bounds = choices("Bounds", BOUNDS)


@app.command()
def align(
    audio: Path = typer.Argument(None, help="Audio file (omit with --manifest)."),
    transcript: str = typer.Argument(None, help="Its transcript, or @file.txt to read it from a file."),
    manifest: str = typer.Option(None, "--manifest", help="JSONL ({\"audio\", \"text\"}) or TSV (audio<TAB>text) "
                                                         "file of items, or - for stdin."),
    model: str = MODEL,
    fmt: Format = typer.Option(Format("json"), "--format", "-f", help="Output format."),
    output_dir: Path = typer.Option(None, "--output-dir", "-o", help="Write one file per item here."),
    unknown: Unknown = typer.Option(Unknown("star"), "--unknown", help="Characters the vocabulary cannot express: "
                                    "star (a wildcard takes them; also absorbs untranscribed speech at the ends), "
                                    "skip (drop them), error (fail the item)."),
    bounds: Bounds = typer.Option(Bounds("sound"), "--bounds", help="Word bounds: sound (moved out from the "
                                  "characters' frames to where the sound starts and stops) or tokens (the frames "
                                  "the CTC path gives the characters)."),
    device: str = DEVICE,
    precision: str = PRECISION,
    batch_seconds: float = BATCH_SECONDS,
    chunk_seconds: float = CHUNK_SECONDS,
    threads: int = THREADS,
    quiet: bool = QUIET,
):
    """Align a transcript to audio: word and character start/end times with scores.

    Exit status 0 when every item aligned, 1 when some failed (each is named on stderr).
    """
    fmt = fmt.value
    if manifest is None and (audio is None or transcript is None):
        raise ConfigError("give AUDIO and TRANSCRIPT, or --manifest FILE|-")
    if manifest is not None and audio is not None:
        raise ConfigError("give either AUDIO TRANSCRIPT or --manifest, not both")
    single = manifest is None
    if output_dir is None and WRITERS[fmt].per_input and not single:
        raise ConfigError(f"--format {fmt} with several items needs --output-dir (one file per item)")
    items = [AlignRequest(audio, _read_transcript(transcript))] if single else _read_manifest(manifest)
    make_output_dir(output_dir)
    set_threads(threads)
    loaded = load_model(resolve_model(model, quiet=quiet), device=resolve_device(device))

    extension = WRITERS[fmt].extension
    results = align_iter(loaded, items, unknown=unknown.value, bounds=bounds.value, precision=precision,
                         batch_seconds=batch_seconds, chunk_seconds=chunk_seconds)
    run_results(results, fmt, Tally("aligned", "item", real_time=False), Console(stderr=True), single=single,
                output_dir=output_dir, target=lambda r: output_dir / mirror(Path(r.path)).with_suffix(extension),
                quiet=quiet, label="aligning")


def _read_manifest(manifest: str):
    """The items of --manifest, read lazily (from stdin for `-`)."""
    if manifest == "-":
        return read_pairs(sys.stdin, "stdin")
    path = Path(manifest)
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 -- read lazily by the generator, closed when it ends
    except OSError as exc:
        raise ConfigError(f"--manifest {path}: {exc.strerror or exc}") from None
    return read_pairs(handle, str(path), path.parent)


def _read_transcript(value: str) -> str:
    if not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"transcript {path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
