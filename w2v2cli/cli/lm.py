"""`w2v2 lm`: a word n-gram language model for `--beam --lm`, estimated from text."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import ConfigError
from . import app


@app.command()
def lm(
    text: list[str] = typer.Argument(..., help="Text files, one sentence per line (`-`: stdin), or .jsonl "
                                               "manifests (their \"text\" field)."),
    output: Path = typer.Option(..., "--output", "-o", help="The ARPA file to write (written atomically)."),
    order: int = typer.Option(3, "--order", help="n-gram order."),
    min_count: int = typer.Option(1, "--min-count", help="Leave out highest-order n-grams seen fewer times "
                                                         "(a smaller file)."),
    # Not common.MODEL: here a model only lends its letters and case, and by default there is none.
    model: str = typer.Option(None, "--model", "-m",
                              help="Normalize the text into this model's letters and case: a model file or folder, "
                                   "or a name as transcribe --model takes (default: upper case, letters, digits "
                                   "and apostrophes)."),
):
    """Estimate an interpolated Kneser-Ney n-gram model (ARPA) for beam search: `transcribe --beam --lm FILE`.

    The text is normalized as transcripts are for training, so its words match what the model spells. Only
    text you do not evaluate on belongs here.
    """
    from ..lm import read_sentences, write_arpa

    if not 1 <= order <= 6:
        raise ConfigError(f"--order {order}: must be 1 to 6")
    if min_count < 1:
        raise ConfigError(f"--min-count {min_count}: must be >= 1")
    if not output.parent.is_dir():
        raise ConfigError(f"--output {output}: folder {output.parent} does not exist")
    if output.is_dir():
        raise ConfigError(f"--output {output}: is a folder; name the ARPA file to write")
    vocab = None
    if model is not None:
        from .common import open_model

        vocab = open_model(model)[1].vocab
        if vocab is None:
            raise ConfigError(f"--model {model}: has no vocabulary (a pretrained model without a CTC head)")
    stats: dict = {}
    summary = write_arpa(read_sentences(text, vocab, stats), output, order=order, min_count=min_count)
    print(json.dumps({"output": str(output), **summary, "lines": stats["lines"], "empty_lines": stats["empty"]}))
