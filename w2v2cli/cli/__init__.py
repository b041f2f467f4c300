"""The `w2v2` command line: thin commands that parse options, call the library and render its results.

Results go to stdout, progress and messages to stderr. Errors a user can cause end as one line on stderr
and a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import os
import sys

import click
import typer

try:  # typer >= 0.20 carries its own copy of click
    from typer._click.exceptions import ClickException as _TyperClickException
except ImportError:
    _TyperClickException = click.ClickException
from typer.core import TyperGroup

from .. import __version__
from ..errors import W2V2Error

DEBUG = {"on": False}


class _Group(TyperGroup):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except W2V2Error as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:  # the reader left (`w2v2 transcribe ... | head`): stop quietly, as shell tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python exits
            raise SystemExit(141) from None  # 128 + SIGPIPE
        except (SystemExit, typer.Exit, typer.Abort, click.ClickException, _TyperClickException):
            raise  # usage errors (bad option values) are click's to report: one message, exit status 2
        except Exception as exc:
            if DEBUG["on"] or ctx.resilient_parsing:
                raise
            fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", 70)


def fail(message: str, code: int = 1):
    """Print one error line to stderr and exit."""
    sys.stderr.write(f"w2v2: error: {' '.join(message.split())}\n")
    raise SystemExit(code)


app = typer.Typer(
    cls=_Group,
    name="w2v2",
    help="wav2vec 2.0 speech models from the command line.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    epilog="Exit status: 0 success; 1 some inputs failed; 2 bad option or config; 3 unusable audio; 4 unusable "
           "model file; 70 internal error. Environment: W2V2_ALLOCATOR=fast (default) or lean (lower peak memory "
           "on long jobs, slower on CPU).",
)


def _version(value: bool):
    if value:
        print(f"w2v2 {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks of internal errors."),
):
    """wav2vec 2.0 speech models from the command line.

    Exit status: 0 success; 1 some inputs failed (the rest were processed); 2 bad option or config;
    3 unusable audio; 4 unusable model file; 70 internal error.
    """
    DEBUG["on"] = debug


# Importing the command modules registers the commands.
from . import align, download, evaluate, export, finetune, info, lm, models, pretrain, transcribe  # noqa: E402,F401

# glibc mallopt settings per W2V2_ALLOCATOR mode: M_MMAP_THRESHOLD (-3), M_TRIM_THRESHOLD (-1), M_TOP_PAD (-2).
MALLOPT = {
    "fast": ((-3, 32 << 20), (-1, 1 << 30), (-2, 64 << 20)),  # 32 MB is glibc's largest mmap threshold
    "lean": ((-3, 1 << 20),),
}


def _tune_memory_for_large_tensors() -> None:
    """Set how large CPU tensors are allocated, from W2V2_ALLOCATOR (README: Memory and speed).

    Inference and training allocate and free activations of tens of MB per batch. Served as fresh 4 KB pages
    each time, about 30% of transcription time went to page faults.
    - `fast` (default): PyTorch backs tensors of 2 MB and more with transparent huge pages (its
      THP_MEM_ALLOC_ENABLE switch, read at the first allocation; a value the user set is kept), and glibc keeps
      freed blocks of up to 32 MB in its heap for reuse, returning heap memory to the OS only past 1 GB free.
    - `lean`: glibc serves every block of 1 MB and more with mmap and unmaps it when freed: a lower, flat
      peak for long jobs (transcribing 30 minutes, base config: 1309 MB instead of 1564 MB), at 25-50% more time.
    """
    import ctypes

    mode = os.environ.get("W2V2_ALLOCATOR", "fast")
    if mode not in MALLOPT:
        fail(f"W2V2_ALLOCATOR must be fast or lean, not {mode!r}", 2)
    if mode == "fast":
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    try:
        libc = ctypes.CDLL(None)
        for option, value in MALLOPT[mode]:
            libc.mallopt(option, value)
    except (OSError, AttributeError):  # not glibc
        pass


def main():
    _tune_memory_for_large_tensors()
    app(prog_name="w2v2")
