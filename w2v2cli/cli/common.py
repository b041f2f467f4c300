"""Pieces shared by the commands: model resolution, device set-up, input expansion, progress."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import typer

from ..errors import ConfigError
from ..io.audio import find_audio_files

# Decoding options shared by transcribe and evaluate (one definition, the same flags and help everywhere).
BEAM = typer.Option(False, "--beam", help="Beam search (pyctcdecode) instead of greedy decoding.")
BEAM_WIDTH = typer.Option(32, "--beam-width", help="Beams kept by --beam.")
LM = typer.Option(None, "--lm", help="Word n-gram model for --beam: an ARPA file (`w2v2 lm` makes one; read by "
                                    "KenLM when installed, else in Python), a KenLM binary (needs KenLM), or "
                                    "`default`: the embedded model's.")
ALPHA = typer.Option(0.5, "--alpha", help="Language model weight.")
BETA = typer.Option(1.0, "--beta", help="Word insertion bonus.")

# Where the embedded default model lives once one is installed, and its word language model (`--lm default`).
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default.safetensors"
DEFAULT_LM = DEFAULT_MODEL.with_name("default-lm.arpa.gz")


def resolve_lm(lm: Path | None) -> Path | None:
    if lm is None or str(lm) != "default":
        return lm
    if DEFAULT_LM.exists():
        return DEFAULT_LM
    raise ConfigError("--lm default: no embedded language model is installed; pass an ARPA file (`w2v2 lm`)")


def resolve_model(model: Path | None) -> Path:
    if model is not None:
        return model
    if DEFAULT_MODEL.exists():
        return DEFAULT_MODEL
    raise ConfigError(
        "no default model is installed yet; pass --model PATH (a w2v2 .safetensors file or a Hugging Face "
        "wav2vec 2.0 folder)"
    )


def mirror(path: Path) -> Path:
    """Where an input lands under an output folder: its relative path as given, else just its name."""
    if not path.is_absolute() and ".." not in path.parts:
        return path
    return Path(path.name)


def expand_inputs(args: list[str], stdin=None) -> Iterator[tuple[Path, Path]]:
    """(audio path, path relative to an output folder) for each input: files as given, directories recursively
    (sorted), and `-` for one path per line on stdin, read lazily so pipelines stream."""
    for arg in args:
        if arg == "-":
            for line in stdin or sys.stdin:
                line = line.strip()
                if line:
                    yield Path(line), mirror(Path(line))
        elif Path(arg).is_dir():
            root = Path(arg)
            for path in find_audio_files(root):
                yield path, path.relative_to(root)
        else:
            yield Path(arg), mirror(Path(arg))


def make_output_dir(output_dir: Path | None) -> None:
    if output_dir is not None:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--output-dir {output_dir}: cannot create ({exc.strerror or exc})") from None


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
