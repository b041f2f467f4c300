"""`w2v2 evaluate`: WER/CER tables of a model on labeled data."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import hub
from ..errors import ConfigError
from . import app
from .common import (
    ALPHA,
    BEAM,
    BEAM_WIDTH,
    BETA,
    DEVICE,
    LANGUAGE,
    LM,
    MODEL,
    PRECISION,
    THREADS,
    open_model,
    resolve_lm,
    set_threads,
    wants_beam,
)
from .data_options import ALLOW_COMMANDS, DATA_FORMAT, SPLIT, TEXT_COLUMN, DataFormat, data_spec


@app.command()
def evaluate(
    data: list[str] = typer.Option(..., "--data", "-d", help="Labeled data (repeatable): a .jsonl/.json (NeMo "
                                                              "too), .csv, fairseq or Common Voice .tsv or lhotse "
                                                              "cuts.jsonl.gz manifest, a Kaldi dir, an audiofolder, "
                                                              "a Hugging Face dataset (folder, .parquet, .arrow) or "
                                                              "a LibriSpeech tree (docs/training.md, Data)."),
    model: str = MODEL,
    language: str = LANGUAGE,
    beam: bool = BEAM,
    beam_width: int = BEAM_WIDTH,
    lm: Path = LM,
    alpha: float = ALPHA,
    beta: float = BETA,
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON instead of a table."),
    errors: int = typer.Option(0, "--errors", help="Also show the N worst utterances of each set."),
    utterances: Path = typer.Option(None, "--utterances", help="Write every utterance's reference, hypothesis "
                                                               "and error counts to this JSONL file."),
    compare: Path = typer.Option(None, "--compare", help="Another model's --utterances file: the WER difference "
                                                         "per set, with a paired bootstrap 95% interval."),
    data_format: DataFormat = DATA_FORMAT,
    split: str = SPLIT,
    text_column: str = TEXT_COLUMN,
    allow_commands: bool = ALLOW_COMMANDS,
    device: str = DEVICE,
    precision: str = PRECISION,
    threads: int = THREADS,
):
    """Word and character error rates on labeled data sets (a fine-tuned model's). Results on stdout; problems on
    stderr."""
    from ..evaluate import evaluate as run_evaluate
    from ..evaluate import read_utterance_records

    set_threads(threads)
    beam = wants_beam(beam, lm)
    other = read_utterance_records(compare) if compare is not None else None
    if utterances is not None and not utterances.parent.is_dir():
        raise ConfigError(f"--utterances {utterances}: no folder {utterances.parent} to write it in")
    path, loaded = open_model(model, language=language, device=device)
    word_lm = resolve_lm(lm, path, beam=beam, alpha=alpha, beta=beta)
    specs = [data_spec(d, data_format, split, text_column, allow_commands) for d in data]
    results = run_evaluate(loaded, specs, beam=beam, beam_width=beam_width, lm=word_lm.path, alpha=word_lm.alpha,
                           beta=word_lm.beta, precision=precision)
    err = Console(stderr=True, highlight=False)
    for result in results:
        for problem in result.problems:
            err.print(f"warning: {result.name}: {problem}", markup=False)
        for item in result.items:
            if item.error:
                err.print(f"{item.path}: {item.error}", markup=False)
    # Written before the rates are printed: a failure here still leaves them on stdout (below).
    write_error = _write_utterances(results, utterances) if utterances is not None else None
    comparisons = _compare(results, other, compare, err) if other is not None else {}
    if as_json:
        sets = []
        for r in results:
            entry = r.to_dict(errors)
            if r.name in comparisons:
                entry["compare"] = {"file": str(compare), **comparisons[r.name].to_dict()}
            sets.append(entry)
        print(json.dumps({"model": str(model or hub.DEFAULT_MODEL), "sets": sets}, ensure_ascii=False, indent=2))
    else:
        _print_tables(results, comparisons, other is not None, errors, err)
    _finish(results, write_error)


def _write_utterances(results, path: Path) -> str | None:
    """Write --utterances; the error to report once the rates are out, if it could not be written."""
    from ..evaluate import utterance_records
    from ..io.atomic import atomic_open

    try:
        with atomic_open(path) as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in utterance_records(results))
    except OSError as exc:
        return f"--utterances {path}: cannot write it ({exc.strerror or exc})"
    return None


def _compare(results, other: dict, compare: Path, err: Console) -> dict:
    """Set name -> the paired comparison with the --compare file's records of that set, warnings on stderr."""
    comparisons = {}
    for r in results:
        records = _matching_set(r.name, other)
        if records is None:
            err.print(f"warning: --compare {compare}: no set {r.name!r} in it", markup=False)
            continue
        comparison, left_out = r.compare(records)
        if left_out:
            err.print(f"warning: --compare {compare}: {r.name}: {left_out} utterance(s) not scored by both "
                      "models with the same reference, left out of the comparison", markup=False)
        if comparison is not None:
            comparisons[r.name] = comparison
    return comparisons


def _print_tables(results, comparisons: dict, compared: bool, errors: int, err: Console) -> None:
    """The rates as a table on stdout; with --errors, each set's worst utterances too."""
    out = Console(highlight=False)
    table = Table(title="evaluation", title_justify="left")
    columns = [("set", "left"), ("utterances", "right"), ("hours", "right"), ("WER", "right"),
               ("WER 95%", "right"), ("CER", "right"), ("failed", "right")]
    if compared:
        columns.insert(5, ("vs other", "right"))
    for name, justify in columns:
        table.add_column(name, justify=justify,
                         overflow="fold" if name in ("set", "WER 95%", "vs other") else "ellipsis")
    for r in results:
        low, high = r.wer_interval()
        cells = [Text(r.name), str(r.utterances), f"{r.seconds / 3600:.3f}", f"{r.wer:.2%}",
                 f"{100 * low:.1f}-{100 * high:.1f}" if r.counts.words else "-", f"{r.cer:.2%}", str(r.failed)]
        if compared:
            c = comparisons.get(r.name)
            cells.insert(5, "-" if c is None else
                         f"{100 * c.difference:+.1f} ({100 * c.low:+.1f},{100 * c.high:+.1f})"
                         + (" *" if c.significant else ""))
        table.add_row(*cells)
    out.print(table)
    if compared and comparisons:
        err.print("vs other: WER minus --compare's WER on the same utterances, in points, with its 95% interval; "
                  "*: the interval excludes 0", markup=False)
    for r in results if errors else ():
        worst = Table(title=Text(f"{r.name}: {errors} worst utterances"), title_justify="left", show_lines=True)
        for name in ("id", "errors", "reference", "hypothesis"):
            worst.add_column(name, overflow="fold")
        for u in r.worst(errors):
            # Text, not markup: a set, id or transcript with [brackets] is shown as it is
            worst.add_row(Text(u.id), f"{u.counts.word_errors}/{u.counts.words}", Text(u.reference),
                          Text(u.hypothesis))
        out.print(worst)


def _finish(results, write_error: str | None) -> None:
    """Exit status after the rates are out: 2 if the --utterances file could not be written, 1 if some audio
    failed."""
    if write_error:
        raise ConfigError(write_error)
    if any(r.failed for r in results):
        raise typer.Exit(1)


def _matching_set(name: str, other: dict[str, dict]) -> dict | None:
    """The other file's records of set `name`: the same name, else the only set with the same file name."""
    if name in other:
        return other[name]
    same_file = [records for key, records in other.items() if Path(key).name == Path(name).name]
    return same_file[0] if len(same_file) == 1 else None
