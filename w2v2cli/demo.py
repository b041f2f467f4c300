"""`make demo`: transcribe sample_audio/ with the embedded model and score it against the `.txt` reference beside
each file; without the embedded model, show how the toolkit reads that audio and how to run a model of your own.
Always offline: the embedded model is named explicitly, never the default model (which is downloaded)."""

from __future__ import annotations

import sys
import time

import torch
from rich.console import Console
from rich.table import Table

from . import hub
from .config import preset
from .errors import W2V2Error
from .io.audio import find_audio_files, load_audio
from .model.masks import frame_lengths


def main(folder: str = "sample_audio") -> int:
    if hub.EMBEDDED_MODEL.exists():
        return scored(folder)
    cfg = preset("base")
    table = Table(title=f"audio in {folder}/ as the model sees it", title_justify="left")
    for column in ("file", "seconds", f"samples @ {cfg.sample_rate / 1000:g} kHz", "frames"):
        table.add_column(column, justify="left" if column == "file" else "right")
    for path in find_audio_files(folder):
        try:
            audio = load_audio(path, cfg.sample_rate)
        except W2V2Error as exc:
            table.add_row(str(path), "-", "-", f"[red]{exc.reason}[/]")
            continue
        frames = int(frame_lengths(torch.tensor([len(audio)]), cfg.conv_layers))
        table.add_row(path.name, f"{len(audio) / cfg.sample_rate:.2f}", f"{len(audio):,}", str(frames))
    Console().print(table)
    Console(stderr=True).print(
        "[yellow]The embedded demo model is not installed with this copy[/], so the demo cannot score it. "
        f"[bold]w2v2 transcribe {folder}/[/] uses the default model, {hub.DEFAULT_MODEL} (downloaded once, then "
        "cached); [bold]--model PATH[/] takes a w2v2 .safetensors file or a Hugging Face wav2vec 2.0 folder. "
        "[bold]w2v2 info PATH[/] describes a model."
    )
    return 0


def scored(folder: str) -> int:
    """Greedy transcripts of every file in `folder` with the embedded model and a WER table against the
    references; with the embedded word language model also beam search with it, side by side. Exit status 1 if
    a file could not be read."""
    from .evaluate import evaluate
    from .io.checkpoint import load_model

    console, err = Console(highlight=False), Console(stderr=True, highlight=False)
    model = load_model(hub.EMBEDDED_MODEL)
    started = time.perf_counter()
    try:
        (result,) = evaluate(model, folder)
        elapsed = time.perf_counter() - started
        with_lm = None
        if hub.EMBEDDED_LM.exists():
            # The default weights were picked for this LM on 150 dev utterances of the synthetic corpus.
            (with_lm,) = evaluate(model, folder, beam=True, lm=hub.EMBEDDED_LM)
    except W2V2Error as exc:
        err.print(f"error: {exc}", markup=False)
        return 1
    how = "greedy" + (", and beam search with its word language model" if with_lm else "")
    table = Table(title=f"{folder}/ with the embedded model ({how})", title_justify="left", show_lines=True)
    columns = [("file", "left"), ("reference / transcript" + (" / with the LM" if with_lm else ""), "left"),
               ("WER", "right")] + ([("WER with the LM", "right")] if with_lm else [])
    for name, justify in columns:
        table.add_column(name, justify=justify, overflow="fold")
    lm_items = {item.id: item for item in with_lm.items} if with_lm else {}
    for item in result.items:
        if item.error:
            table.add_row(item.id, f"[red]{item.error}[/]", "-", *(["-"] if with_lm else []))
            continue
        text = f"{_clip(item.reference)}\n[bold]{_clip(item.hypothesis)}[/]"
        cells = [f"{item.counts.wer:.1%}"]
        other = lm_items.get(item.id)
        if with_lm:
            text += f"\n[bold cyan]{_clip(other.hypothesis)}[/]" if other and not other.error else ""
            cells.append(f"{other.counts.wer:.1%}" if other and not other.error else "-")
        table.add_row(item.id, text, *cells)
    table.add_row("[bold]all[/]", f"{result.utterances} files, {result.seconds:.1f} s, {result.counts.words} words, "
                  f"CER {result.cer:.1%}" + (f" (with the LM {with_lm.cer:.1%})" if with_lm else ""),
                  f"[bold]{result.wer:.1%}[/]", *([f"[bold]{with_lm.wer:.1%}[/]"] if with_lm else []))
    console.print(table)
    err.print(f"{result.seconds:.1f} s of audio in {elapsed:.1f} s ({result.seconds / elapsed:.0f}x real time, "
              f"greedy, model loading excluded). The embedded model was trained on synthetic speech only: "
              "`w2v2 info embedded` says how; on real speech use the default model (`w2v2 transcribe FILE`, "
              f"{hub.DEFAULT_MODEL}, downloaded once)."
              + (" Beam search with the word LM: `w2v2 transcribe --model embedded --beam FILE`." if with_lm
                 else ""))
    return 1 if result.failed or (with_lm is not None and with_lm.failed) else 0


def _clip(text: str, limit: int = 150) -> str:
    """The start of a long transcript: the table shows whether it is right, not all of it."""
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
