"""`w2v2 align`: where each word and character of a transcript is spoken."""

from __future__ import annotations

import sys
import time
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from ..align import AlignRequest, align_iter
from ..errors import ConfigError
from ..inference import resolve_device
from ..io.checkpoint import load_model
from ..manifest import read_pairs
from ..writers import EXTENSIONS, PER_INPUT_FORMATS, StdoutWriter
from . import app
from .common import make_output_dir, mirror, report, resolve_model, set_threads, write_result


class Format(str, Enum):
    json = "json"
    jsonl = "jsonl"
    ctm = "ctm"
    textgrid = "textgrid"
    srt = "srt"
    vtt = "vtt"
    tsv = "tsv"


class Unknown(str, Enum):
    star = "star"
    skip = "skip"
    error = "error"


class Bounds(str, Enum):
    sound = "sound"
    tokens = "tokens"


@app.command()
def align(
    audio: Path = typer.Argument(None, help="Audio file (omit with --manifest)."),
    transcript: str = typer.Argument(None, help="Its transcript, or @file.txt to read it from a file."),
    manifest: str = typer.Option(None, "--manifest", help="JSONL ({\"audio\", \"text\"}) or TSV (audio<TAB>text) "
                                                         "file of items, or - for stdin."),
    model: Path = typer.Option(None, "--model", "-m", help="A w2v2 model file or Hugging Face folder "
                                                           "(default: the embedded model)."),
    fmt: Format = typer.Option(Format.json, "--format", "-f", help="Output format."),
    output_dir: Path = typer.Option(None, "--output-dir", "-o", help="Write one file per item here."),
    unknown: Unknown = typer.Option(Unknown.star, "--unknown", help="Characters the vocabulary cannot express: "
                                    "star (a wildcard takes them; also absorbs untranscribed speech at the ends), "
                                    "skip (drop them), error (fail the item)."),
    bounds: Bounds = typer.Option(Bounds.sound, "--bounds", help="Word bounds: sound (moved out from the "
                                  "characters' frames to where the sound starts and stops) or tokens (the frames "
                                  "the CTC path gives the characters)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16."),
    batch_seconds: float = typer.Option(None, "--batch-seconds", help="Audio per batch (default 30 on CPU, "
                                                                      "300 on CUDA)."),
    chunk_seconds: float = typer.Option(30.0, "--chunk-seconds", help="Long audio runs in windows of this length."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for the model."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary on stderr (errors still are)."),
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
    if output_dir is None and fmt in PER_INPUT_FORMATS and not single:
        raise ConfigError(f"--format {fmt} with several items needs --output-dir (one file per item)")
    if single:
        items = [AlignRequest(audio, _read_transcript(transcript))]
    elif manifest == "-":
        items = (AlignRequest(i.audio, i.text, i.problem) for i in read_pairs(sys.stdin, "stdin"))
    else:
        path = Path(manifest)
        try:
            handle = open(path, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--manifest {path}: {exc.strerror or exc}") from None
        items = (AlignRequest(i.audio, i.text, i.problem) for i in read_pairs(handle, str(path), path.parent))
    make_output_dir(output_dir)
    set_threads(threads)
    loaded = load_model(resolve_model(model), device=resolve_device(device))

    err = Console(stderr=True)
    writer = None if output_dir is not None else StdoutWriter(fmt, sys.stdout, single)
    started, done, failed, seconds = time.perf_counter(), 0, 0, 0.0
    for result in align_iter(loaded, items, unknown=unknown.value, bounds=bounds.value, precision=precision,
                             batch_seconds=batch_seconds, chunk_seconds=chunk_seconds):
        if result.error is None and output_dir is not None:
            target = output_dir / mirror(Path(result.path)).with_suffix(EXTENSIONS[fmt])
            write_result(result, target, fmt)
        if result.error is not None:
            failed += 1
            report(err, result)
        if writer is not None:
            writer.write(result)
        done += 1
        seconds += result.duration
    if writer is not None:
        writer.close()
    if not quiet:
        elapsed = time.perf_counter() - started
        summary = (f"aligned {done - failed} of {done} item{'s' if done != 1 else ''}, {seconds:,.1f} s of audio "
                   f"in {elapsed:,.1f} s")
        err.print(summary + (f"; {failed} failed" if failed else ""), highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _read_transcript(value: str) -> str:
    if not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"transcript {path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
