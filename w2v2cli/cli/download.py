"""`w2v2 download NAME...`: fetch models into huggingface_hub's cache ahead of time (for offline use)."""

from __future__ import annotations

import sys

import typer

from .. import hub
from ..errors import W2V2Error
from . import app
from .common import QUIET


@app.command()
def download(
    names: list[str] = typer.Argument(..., help="Names from `w2v2 models` or Hub repo ids (org/name or "
                                                "org/name@revision)."),
    quiet: bool = QUIET,
):
    """Download models into huggingface_hub's cache (HF_HOME, HF_HUB_CACHE) and print each one's folder.

    Later runs, with HF_HUB_OFFLINE=1 or no network, use the cached copy. A name that fails is named on stderr
    and the others are still fetched; the exit status is then the first failure's (4: an unusable model).
    """
    failed = 0
    for name in names:
        try:
            path = hub.resolve(name, progress=not quiet)
        except W2V2Error as exc:
            sys.stderr.write(f"w2v2: error: {' '.join(str(exc).split())}\n")
            failed = failed or exc.exit_code
            continue
        print(path, flush=True)
    if failed:
        raise typer.Exit(failed)
