"""`w2v2 export`: write a model for ONNX Runtime, plain PyTorch or transformers, verified against the original."""

from __future__ import annotations

import contextlib
import json
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from . import app
from .common import LANGUAGE, THREADS, open_model, set_threads


class Format(str, Enum):
    onnx = "onnx"
    pt2 = "pt2"
    torchscript = "torchscript"
    hf = "hf"
    safetensors = "safetensors"


@app.command()
def export(
    model: str = typer.Argument(..., help="A w2v2 model file, a Hugging Face folder, a name from `w2v2 models` or "
                                          "a Hub repo id org/name or org/name@revision."),
    language: str = LANGUAGE,
    fmt: Format = typer.Option(..., "--format", "-f", help="onnx (ONNX Runtime), pt2 (torch.export), torchscript, "
                                                            "hf (transformers folder) or safetensors (w2v2)."),
    output: Path = typer.Option(..., "--output", "-o", help="File to write (a folder for --format hf)."),
    quantize: str = typer.Option(None, "--quantize", help="int8: dynamic int8 quantization (--format onnx)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, or fp16 storage (safetensors, hf)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip running the export against the model."),
    threads: int = THREADS,
):
    """Export a model and check it: the written file is run on a padded batch and single utterances and must
    match the PyTorch model (every logit within 1e-3 for ONNX/pt2/TorchScript, 1e-4 for transformers and
    safetensors, plus 1e-6 of its magnitude; same greedy transcripts), or nothing is written. Prints a JSON
    report on stdout."""
    from ..export import export_model

    set_threads(threads)
    _, loaded = open_model(model, language=language)
    err = Console(stderr=True, highlight=False)
    spinner = err.status(f"exporting to {fmt.value} and verifying") if err.is_terminal else contextlib.nullcontext()
    with spinner:
        report = export_model(loaded, fmt.value, output, quantize=quantize, precision=precision, opset=opset,
                              verify=not no_verify, threads=threads)
    verdict = "verified" if report.verified else "written, not verified (--no-verify)"
    diff = "" if report.max_abs_diff is None else (
        f", max logit diff {report.max_abs_diff:.2g} ({report.tolerance_used:.0%} of the tolerance)")
    err.print(f"{report.path}: {verdict}{diff}, {report.size_bytes / 1e6:.1f} MB, {report.seconds:.1f} s",
              markup=False)
    for note in report.notes:
        err.print(f"note: {note}", markup=False)
    print(json.dumps(report.to_dict()))

