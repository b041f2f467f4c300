"""Pieces shared by the commands: option definitions, model resolution, device set-up, input expansion, and the
result loop of `transcribe` and `align` (write, report, count, progress)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from .. import hub
from ..decode import DEFAULT_ALPHA, DEFAULT_BETA
from ..errors import ConfigError, PathError
from ..io.audio import find_audio_files
from ..results import Result

# Options shared by the commands (one definition: the same flags, help and defaults everywhere). A command whose
# option means something else defines its own, next to its other options (`lm --model`: the letters to normalize
# text into, no model by default).
MODEL = typer.Option(None, "--model", "-m", help="A model file or Hugging Face folder, a name from `w2v2 models` "
                                                 "(embedded: the offline demo model for synthetic speech), or a "
                                                 "Hub repo id org/name or org/name@revision, downloaded once into "
                                                 f"huggingface_hub's cache (default: {hub.DEFAULT_MODEL}).")
LANGUAGE = typer.Option(None, "--language", help="The language of a multilingual model with one adapter per "
                                                  "language (MMS), as its adapter files name it (eng, fra, ...); "
                                                  "a Hub model's adapter is fetched with it.")
DEVICE = typer.Option("auto", "--device", help="auto, cpu or cuda.")
PRECISION = typer.Option("auto", "--precision", help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16.")
THREADS = typer.Option(None, "--threads", help="CPU threads for the model (per process under torchrun).")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress or summary on stderr (errors still are).")
BATCH_SECONDS = typer.Option(None, "--batch-seconds", help="Audio per batch, padding included (default 30 on CPU, "
                                                           "300 on CUDA).")
CHUNK_SECONDS = typer.Option(30.0, "--chunk-seconds", help="Long audio is run in windows of this length (plus 2 s "
                                                           "of context each side).")

# Decoding options shared by transcribe and evaluate.
BEAM = typer.Option(False, "--beam", help="Beam search (pyctcdecode) instead of greedy decoding.")
BEAM_WIDTH = typer.Option(32, "--beam-width", help="Beams kept by --beam.")
LM = typer.Option(None, "--lm", help="Word n-gram model for --beam: an ARPA file (`w2v2 lm` makes one; read by "
                                    "KenLM when installed, else in Python) or a KenLM binary (needs KenLM); "
                                    "`default`: the model's own (a Hugging Face folder's language_model/, the "
                                    "embedded model's), which --beam uses anyway when the model has one; `none`: "
                                    "no word LM. Implies --beam unless none.")
ALPHA = typer.Option(None, "--alpha", help=f"Language model weight (default: the model's own LM's, from its "
                                           f"attrs.json, else {DEFAULT_ALPHA:g}).")
BETA = typer.Option(None, "--beta", help=f"Word insertion bonus (default: the model's own LM's, else "
                                         f"{DEFAULT_BETA:g}).")


@dataclass(frozen=True)
class WordLM:
    """What beam search decodes with: a word LM file (None: none) and its weights."""

    path: Path | None
    alpha: float
    beta: float


def wants_beam(beam: bool, lm: Path | None, hotwords=()) -> bool:
    """--beam, or an option that only beam search uses: --lm (other than none), --hotword."""
    return beam or bool(hotwords) or (lm is not None and str(lm) != "none")


def resolve_lm(lm: Path | None, model_path: Path, *, beam: bool, alpha: float | None, beta: float | None) -> WordLM:
    """The word LM and weights of --lm/--alpha/--beta for a model: `--lm FILE` as given, `none` nothing,
    `default` the model's own (an error when it has none), and no --lm the model's own with beam search. Weights
    not given are the model's own LM's (attrs.json), else DEFAULT_ALPHA / DEFAULT_BETA."""
    from ..lm import model_language_model

    choice = None if lm is None else str(lm)
    own = None
    if choice == "default" or (choice is None and beam):
        own = model_language_model(model_path)
        if own is None and choice == "default":
            raise ConfigError("--lm default: this model has no word language model of its own (a Hugging Face "
                              "folder's language_model/); pass an ARPA file (`w2v2 lm` makes one)")
    path = own.path if own is not None else (lm if choice not in (None, "none", "default") else None)
    if alpha is None:
        alpha = own.alpha if own is not None and own.alpha is not None else DEFAULT_ALPHA
    if beta is None:
        beta = own.beta if own is not None and own.beta is not None else DEFAULT_BETA
    return WordLM(path, alpha, beta)


def resolve_model(model: str | None, *, language: str | None = None, quiet: bool = False) -> Path:
    """The local path of a `--model` value (every command that takes a model comes here): a path as given, a
    name through hub.resolve (downloaded once with the `language`'s adapter, progress on stderr unless `quiet`),
    none: hub.DEFAULT_MODEL, which is fetched like any other name (uncached and the Hub out of reach: a one-line
    error, never the embedded model)."""
    return hub.resolve(hub.DEFAULT_MODEL if model is None else str(model), language=language, progress=not quiet)


def open_model(model: str | None, *, language: str | None = None, device: str = "cpu", quiet: bool = False):
    """(local path, loaded model) for a `--model` value: what every command that runs a model starts with.
    `device` is the --device option's value (auto, cpu, cuda)."""
    from ..inference import resolve_device
    from ..io.checkpoint import load_model

    path = resolve_model(model, language=language, quiet=quiet)
    return path, load_model(path, device=resolve_device(device), language=language)


def mirror(path: Path) -> Path:
    """Where an input lands under an output folder: its relative path as given, else just its name."""
    if not path.is_absolute() and ".." not in path.parts:
        return path
    return Path(path.name)


def choices(name: str, values: Iterable[str]) -> type[Enum]:
    """A str Enum of `values`: a Typer option's choices, taken from the table that defines them."""
    return Enum(name, {value: value for value in values}, type=str)


def expand_inputs(args: list[str], stdin=None) -> Iterator[tuple[Path, Path]]:
    """(audio path, path relative to an output folder) for each input: files as given, directories recursively
    (sorted), and `-` for one path per line on stdin, read lazily so pipelines stream. Folders are listed now:
    one without audio files is an error before any work starts."""
    folders = {arg: find_audio_files(arg) for arg in args if arg != "-" and Path(arg).is_dir()}
    for arg, files in folders.items():
        if not files:
            raise PathError(arg, "no audio files found")
    return _expand(args, folders, stdin)


def _expand(args: list[str], folders: dict[str, list[Path]], stdin) -> Iterator[tuple[Path, Path]]:
    for arg in args:
        if arg == "-":
            for line in stdin or sys.stdin:
                line = line.strip()
                if line:
                    yield Path(line), mirror(Path(line))
        elif arg in folders:
            for path in folders[arg]:
                yield path, path.relative_to(arg)
        else:
            yield Path(arg), mirror(Path(arg))


def make_output_dir(output_dir: Path | None, option: str = "--output-dir") -> None:
    """Create the folder an option names (if given) before any work, or fail in one line naming the option."""
    if output_dir is not None:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{option} {output_dir}: cannot create ({exc.strerror or exc})") from None


def write_result(result, target: Path, fmt: str) -> None:
    """Write one result's output file atomically; a failure to write becomes that result's error."""
    from ..io.atomic import atomic_open
    from ..writers import render

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(target) as f:
            f.write(render(result, fmt))
    except OSError as exc:
        result.error = f"cannot write {target}: {exc.strerror or exc}"


def report(console, result) -> None:
    """One `path: reason` line on stderr for a failed item."""
    console.print(f"{result.path}: {result.error}", markup=False, highlight=False, soft_wrap=True)


@dataclass
class Tally:
    """What a command did with its inputs: the progress line and the summary on stderr."""

    verb: str  # "transcribed"
    noun: str  # "file"
    real_time: bool = True  # whether the summary gives the real-time factor
    done: int = 0  # results from the library
    ok: int = 0
    failed: int = 0  # every failure, also those found before the library ran (an output name clash)
    skipped: int = 0  # left out before the library ran (their output exists)
    audio_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def _speed(self) -> float:
        return self.audio_seconds / max(time.perf_counter() - self.started, 1e-9)

    def progress(self) -> str:
        return f"{self.done} {self.noun}s, {self.audio_seconds:,.0f} s of audio, {self._speed():,.0f}x real time"

    def summary(self) -> str:
        elapsed = time.perf_counter() - self.started
        text = (f"{self.verb} {self.ok} of {self.done} {self.noun}{'s' if self.done != 1 else ''}, "
                f"{self.audio_seconds:,.1f} s of audio in {elapsed:,.1f} s")
        if self.real_time:
            text += f" ({self.audio_seconds / max(elapsed, 1e-9):,.1f}x real time)"
        if self.skipped:
            text += f"; {self.skipped} skipped (output exists)"
        if self.failed:
            text += f"; {self.failed} failed"
        return text


def run_results(results: Iterable[Result], fmt: str, tally: Tally, err: Console, *, single: bool,
                output_dir: Path | None, target: Callable[[Result], Path], quiet: bool, label: str) -> None:
    """The result loop of `transcribe` and `align`: each result to stdout (one writer for the stream) or to its
    own file under `output_dir` (`target`), written atomically; a failure named on stderr as `path: reason`;
    progress and a summary on stderr unless `quiet`. Exit status 1 if any input failed."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..writers import StdoutWriter

    writer = None if output_dir is not None else StdoutWriter(fmt, sys.stdout, single)
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                        transient=True, disable=quiet or not sys.stderr.isatty())
    with progress:
        task = progress.add_task(label)
        for result in results:
            if result.error is None and output_dir is not None:
                write_result(result, target(result), fmt)
            if result.error is not None:
                tally.failed += 1
                report(err, result)
            else:
                tally.ok += 1
            if writer is not None:
                writer.write(result)
            tally.done += 1
            tally.audio_seconds += result.duration
            progress.update(task, description=tally.progress())
    if writer is not None:
        writer.close()
    if not quiet:
        err.print(tally.summary(), highlight=False, soft_wrap=True)
    if tally.failed:
        raise typer.Exit(1)


def subset_hours(hours: float | None, minutes: float | None) -> float | None:
    """The subset size of `--hours` / `--minutes` in hours (None: all the data), checked."""
    if hours is not None and minutes is not None:
        raise ConfigError("give --hours or --minutes, not both")
    if minutes is not None:
        hours = minutes / 60
    if hours is not None and hours <= 0:
        raise ConfigError(f"--hours/--minutes must be > 0, not {hours:g} h")
    return hours


def set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, not {threads}")
        import torch

        torch.set_num_threads(threads)
