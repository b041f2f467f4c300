"""`make demo`: transcribe sample_audio/ with the embedded model, or, while none is installed, show how the
toolkit reads that audio and how to run a model of your own on it."""

from __future__ import annotations

import sys

import torch
from rich.console import Console
from rich.table import Table

from .cli.common import DEFAULT_MODEL
from .config import preset
from .errors import W2V2Error
from .io.audio import find_audio_files, load_audio
from .model.masks import frame_lengths


def main(folder: str = "sample_audio") -> int:
    if DEFAULT_MODEL.exists():
        from .cli import main as cli

        sys.argv = ["w2v2", "transcribe", folder]
        return cli()
    cfg = preset("base")
    table = Table(title=f"audio in {folder}/ as the model sees it", title_justify="left")
    for column in ("file", "seconds", "samples @ 16 kHz", "frames"):
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
        "[yellow]No default model is installed yet[/], so `w2v2 transcribe` needs one named: "
        f"[bold]w2v2 transcribe --model PATH {folder}/[/] with a w2v2 .safetensors file or a Hugging Face "
        "wav2vec 2.0 folder (such as a downloaded facebook/wav2vec2-base-960h). [bold]w2v2 info PATH[/] "
        "describes a model."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
