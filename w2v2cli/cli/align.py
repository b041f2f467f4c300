"""`w2v2 align`: where each word and character of a transcript is spoken."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from ..align import BOUNDS, UNKNOWN_POLICIES, AlignRequest, align_iter
from ..align.segments import cut_segments, keep_segments
from ..errors import ConfigError, W2V2Error
from ..io.atomic import atomic_open
from ..io.audio import AudioSpan, load_audio
from ..manifest import read_pairs
from ..romanize import load_romanizer
from ..writers import ALIGNMENT, WRITERS, formats
from . import app
from .common import (
    BATCH_SECONDS,
    CHUNK_SECONDS,
    DEVICE,
    LANGUAGE,
    MODEL,
    PRECISION,
    QUIET,
    THREADS,
    Tally,
    choices,
    make_output_dir,
    mirror,
    open_model,
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
    language: str = LANGUAGE,
    fmt: Format = typer.Option(Format("json"), "--format", "-f", help="Output format."),
    output_dir: Path = typer.Option(None, "--output-dir", "-o", help="Write one file per item here."),
    unknown: Unknown = typer.Option(Unknown("star"), "--unknown", help="Characters the vocabulary cannot express: "
                                    "star (a wildcard takes them; also absorbs untranscribed speech at the ends), "
                                    "skip (drop them), error (fail the item)."),
    bounds: Bounds = typer.Option(Bounds("sound"), "--bounds", help="Word bounds: sound (moved out from the "
                                  "characters' frames to where the sound starts and stops) or tokens (the frames "
                                  "the CTC path gives the characters)."),
    romanize: bool = typer.Option(False, "--romanize", help="Spell each word in Latin letters with uroman before "
                                  "aligning (text in any script, a Latin-letter model); words are reported as "
                                  "written. Needs: pip install 'w2v2cli[romanize]'."),
    segments: bool = typer.Option(False, "--segments", help="Each non-empty line of the transcript is a segment: "
                                  "results gain its start, end and a match score 0..1."),
    cut: Path = typer.Option(None, "--cut", help="Write each segment as a WAV clip here (<stem>-0001.wav, ...) and "
                             "a manifest.jsonl of them that evaluate and finetune read. Implies --segments."),
    min_score: float = typer.Option(None, "--min-score", help="Drop segments scoring below this (0..1): audio that "
                                    "does not match its line. Implies --segments."),
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
    if min_score is not None and not 0 <= min_score <= 1:
        raise ConfigError(f"--min-score must be between 0 and 1, not {min_score:g}")
    segments = segments or cut is not None or min_score is not None
    items = [AlignRequest(audio, _read_transcript(transcript))] if single else _read_manifest(manifest)
    if romanize:
        load_romanizer()  # a missing extra is an error before the model loads (it is loaded once per process)
    make_output_dir(output_dir)
    make_output_dir(cut, "--cut")
    set_threads(threads)
    _, loaded = open_model(model, language=language, device=device, quiet=quiet)

    extension = WRITERS[fmt].extension
    err = Console(stderr=True)
    results = align_iter(loaded, items, unknown=unknown.value, bounds=bounds.value, romanize=romanize,
                         segments=segments, precision=precision, batch_seconds=batch_seconds,
                         chunk_seconds=chunk_seconds)
    if segments:
        results = _segment_results(results, min_score, cut, loaded.config.sample_rate, err, quiet)
    run_results(results, fmt, Tally("aligned", "item", real_time=False), err, single=single,
                output_dir=output_dir, target=lambda r: output_dir / _output_name(r, extension),
                quiet=quiet, label="aligning")


def _output_name(result, extension: str) -> Path:
    """An item's file under --output-dir: its audio's name, and for a segment of a recording (a manifest's
    offset) the segment's start too, so segments of one file do not share a name."""
    audio = getattr(result.item, "audio", None)
    if isinstance(audio, AudioSpan) and not audio.is_whole:
        name = mirror(Path(audio.path))
        return name.with_name(f"{name.stem}@{audio.start_s:.3f}{extension}")
    return mirror(Path(result.path)).with_suffix(extension)


def _segment_results(results, min_score: float | None, cut: Path | None, sample_rate: int, err: Console,
                     quiet: bool):
    """The results with their segments below `min_score` dropped and, with `cut`, the rest written as clips and
    listed in `cut/manifest.jsonl` (written atomically once the results end, also when they stop early, so the
    clips already cut are listed). A clip that cannot be written fails its own item only."""
    records, numbered = [], {}  # numbered: clip name -> clips cut under it so far
    dropped = total = 0
    try:
        for result in results:
            if result.error is None and result.segments is not None:
                total += len(result.segments)
                dropped += keep_segments(result, min_score) if min_score is not None else 0
                if cut is not None:
                    records += _cut(result, cut, sample_rate, numbered)
            yield result
    finally:
        if cut is not None:
            _write_manifest(cut / "manifest.jsonl", records, err)
        if min_score is not None and not quiet:
            err.print(f"--min-score {min_score:g}: dropped {dropped} of {total} segments", highlight=False,
                      soft_wrap=True)


def _cut(result, cut: Path, sample_rate: int, numbered: dict) -> list[dict]:
    """The clips of one result, written; on failure its error is set and it adds no records. Inputs with the same
    name (spans of one file, files of one name in other folders) go on numbering its clips, never replace them."""
    name = mirror(Path(result.path))
    prefix = name.with_suffix("")  # what its clips' names start with: x.wav and x.flac share it
    try:
        audio = load_audio(result.item.audio, sample_rate)
        records = cut_segments(audio, result.segments, cut, name, sample_rate, numbered.get(prefix, 0))
        numbered[prefix] = numbered.get(prefix, 0) + len(result.segments)
        return [{**r, "source": result.path} for r in records]
    except (W2V2Error, OSError) as exc:
        result.error = f"--cut: {getattr(exc, 'strerror', None) or exc}"
        return []


def _write_manifest(path: Path, records: list[dict], err: Console) -> None:
    import json

    try:
        with atomic_open(path) as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    except OSError as exc:
        err.print(f"--cut: cannot write {path}: {exc.strerror or exc}", markup=False, highlight=False)


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
