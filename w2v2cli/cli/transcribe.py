"""`w2v2 transcribe`: speech to text for files, folders and path lists on stdin."""

from __future__ import annotations

import sys
import time
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..errors import ConfigError
from ..inference import resolve_device
from ..io.checkpoint import load_model
from ..transcribe import Transcript, transcribe_iter
from ..writers import EXTENSIONS, PER_INPUT_FORMATS, StdoutWriter
from . import app
from .common import (
    ALPHA, BEAM, BEAM_WIDTH, BETA, LM, expand_inputs, make_output_dir, report, resolve_lm, resolve_model, set_threads,
    write_result,
)


class Format(str, Enum):
    txt = "txt"
    json = "json"
    jsonl = "jsonl"
    tsv = "tsv"
    srt = "srt"
    vtt = "vtt"


@app.command()
def transcribe(
    inputs: list[str] = typer.Argument(..., help="Audio files, folders (searched recursively), or - to read "
                                                  "one path per line from stdin."),
    model: Path = typer.Option(None, "--model", "-m", help="A w2v2 model file or Hugging Face folder "
                                                           "(default: the embedded model)."),
    fmt: Format = typer.Option(Format.txt, "--format", "-f", help="Output format."),
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
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16."),
    batch_seconds: float = typer.Option(None, "--batch-seconds", help="Audio per batch, padding included "
                                                                      "(default 30 on CPU, 300 on CUDA)."),
    batch_size: int = typer.Option(None, "--batch-size", help="At most this many utterances or windows per batch."),
    chunk_seconds: float = typer.Option(30.0, "--chunk-seconds", help="Long audio is run in windows of this "
                                                                      "length (plus 2 s of context each side)."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for the model."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary on stderr (errors still are)."),
):
    """Transcribe speech to text. Results go to stdout (or --output-dir), progress and errors to stderr.

    Exit status 0 when every input was transcribed, 1 when some failed (each is named on stderr).
    """
    fmt = fmt.value
    lm = resolve_lm(lm)
    if lm is not None or hotword:
        beam = True
    if skip_existing and output_dir is None:
        raise ConfigError("--skip-existing needs --output-dir")
    single = len(inputs) == 1 and inputs[0] != "-" and not Path(inputs[0]).is_dir()
    if output_dir is None and fmt in PER_INPUT_FORMATS and not single:
        raise ConfigError(f"--format {fmt} with several inputs needs --output-dir (one subtitle file per input)")
    make_output_dir(output_dir)
    set_threads(threads)
    loaded = load_model(resolve_model(model), device=resolve_device(device))

    err = Console(stderr=True)
    show_progress = not quiet and sys.stderr.isatty()
    claimed: dict[Path, str] = {}  # output file -> the input it belongs to
    target_of: dict[str, Path] = {}
    failed = skipped = 0  # failed counts every failure; done and ok count inputs that reached the model

    def todo():
        nonlocal failed, skipped
        for path, rel in expand_inputs(inputs):
            if output_dir is not None:
                target = output_dir / rel.with_suffix(EXTENSIONS[fmt])
                if target in claimed:
                    failed += 1
                    clash = f"its output {target} would overwrite that of {claimed[target]}"
                    report(err, Transcript(str(path), error=clash))
                    continue
                claimed[target], target_of[str(path)] = str(path), target
                if skip_existing and target.exists():
                    skipped += 1
                    continue
            yield path

    writer = None if output_dir is not None else StdoutWriter(fmt, sys.stdout, single)
    started, done, ok, audio_seconds = time.perf_counter(), 0, 0, 0.0
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                        transient=True, disable=not show_progress)
    with progress:
        task = progress.add_task("transcribing")
        results = transcribe_iter(
            loaded, todo(), beam=beam, beam_width=beam_width, lm=lm, alpha=alpha, beta=beta, hotwords=hotword,
            hotword_weight=hotword_weight, precision=precision, batch_seconds=batch_seconds,
            batch_size=batch_size, chunk_seconds=chunk_seconds,
        )
        for result in results:
            if result.error is None and output_dir is not None:
                target = target_of[result.path]
                write_result(result, target, fmt)
            if result.error is not None:
                failed += 1
                report(err, result)
            else:
                ok += 1
            if writer is not None:
                writer.write(result)
            done += 1
            audio_seconds += result.duration
            elapsed = time.perf_counter() - started
            progress.update(task, description=f"{done} files, {audio_seconds:,.0f} s of audio, "
                                              f"{audio_seconds / max(elapsed, 1e-9):,.0f}x real time")
    if writer is not None:
        writer.close()
    if not quiet:
        elapsed = time.perf_counter() - started
        summary = f"transcribed {ok} of {done} file{'s' if done != 1 else ''}"
        summary += (f", {audio_seconds:,.1f} s of audio in {elapsed:,.1f} s "
                    f"({audio_seconds / max(elapsed, 1e-9):,.1f}x real time)")
        if skipped:
            summary += f"; {skipped} skipped (output exists)"
        if failed:
            summary += f"; {failed} failed"
        err.print(summary, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
