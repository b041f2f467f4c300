"""The `w2v2` command line: thin commands that parse options, call the library and render its results.

Results go to stdout, progress and messages to stderr. Errors a user can cause end as one line on stderr
and a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

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


from . import align, evaluate, export, finetune, info, pretrain, transcribe  # noqa: E402,F401  (registers the commands)


def _return_freed_memory_to_the_os() -> None:
    """Ask glibc to serve large blocks (>= 1 MiB) with mmap, fixed: freed activations go back to the OS
    instead of staying in a fragmented heap, which keeps the peak RSS of long jobs lower (~130 MB for base)."""
    import ctypes

    try:
        ctypes.CDLL(None).mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


def main():
    _return_freed_memory_to_the_os()
    app(prog_name="w2v2")
