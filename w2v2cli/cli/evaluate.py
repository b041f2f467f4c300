"""`w2v2 evaluate`: WER/CER tables of a model on labeled data."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..inference import resolve_device
from ..io.checkpoint import load_model
from . import app
from .common import ALPHA, BEAM, BEAM_WIDTH, BETA, LM, resolve_model, set_threads


@app.command()
def evaluate(
    data: list[str] = typer.Option(..., "--data", "-d", help="Labeled data: .jsonl/.csv with text, fairseq .tsv "
                                                              "with .wrd/.ltr, or a LibriSpeech-style tree "
                                                              "(repeatable)."),
    model: Path = typer.Option(None, "--model", "-m", help="A fine-tuned w2v2 model file or Hugging Face folder "
                                                           "(default: the embedded model)."),
    beam: bool = BEAM,
    beam_width: int = BEAM_WIDTH,
    lm: Path = LM,
    alpha: float = ALPHA,
    beta: float = BETA,
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON instead of a table."),
    errors: int = typer.Option(0, "--errors", help="Also show the N worst utterances of each set."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for the model."),
):
    """Word and character error rates on labeled data sets. Results on stdout; problems on stderr."""
    from ..evaluate import evaluate as run_evaluate

    set_threads(threads)
    if lm is not None:
        beam = True
    loaded = load_model(resolve_model(model), device=resolve_device(device))
    results = run_evaluate(loaded, data, beam=beam, beam_width=beam_width, lm=lm, alpha=alpha, beta=beta,
                           precision=precision)
    err = Console(stderr=True, highlight=False)
    for result in results:
        for problem in result.problems:
            err.print(f"warning: {result.name}: {problem}", markup=False)
        for item in result.items:
            if item.error:
                err.print(f"{item.path}: {item.error}", markup=False)
    if as_json:
        print(json.dumps({"model": str(model or "default"), "sets": [r.to_dict(errors) for r in results]},
                         ensure_ascii=False, indent=2))
        return
    out = Console(highlight=False)
    table = Table(title="evaluation", title_justify="left")
    for name, justify in (("set", "left"), ("utterances", "right"), ("hours", "right"), ("WER", "right"),
                          ("CER", "right"), ("failed", "right")):
        table.add_column(name, justify=justify, overflow="fold" if name == "set" else "ellipsis")
    for r in results:
        table.add_row(r.name, str(r.utterances), f"{r.seconds / 3600:.3f}", f"{r.wer:.2%}", f"{r.cer:.2%}",
                      str(r.failed))
    out.print(table)
    if errors:
        for r in results:
            worst = Table(title=f"{r.name}: {errors} worst utterances", title_justify="left", show_lines=True)
            for name in ("id", "errors", "reference", "hypothesis"):
                worst.add_column(name, overflow="fold")
            for u in r.worst(errors):
                worst.add_row(u.id, f"{u.counts.word_errors}/{u.counts.words}", u.reference, u.hypothesis)
            out.print(worst)
    if any(r.failed for r in results):
        raise typer.Exit(1)
