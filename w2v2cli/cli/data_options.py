"""The options that say how to read a data source, defined once for every command that reads labeled or unlabeled
corpora (`finetune`, `pretrain`, `evaluate`), and the DataSpec each path becomes (data/sources.py)."""

from __future__ import annotations

import typer

from ..data.sources import DATA_FORMATS, DataSpec
from .common import choices

DataFormat = choices("DataFormat", DATA_FORMATS)

DATA_FORMAT = typer.Option(
    DataFormat("auto"), "--data-format",
    help="How to read the data (default auto: from what is given; docs/training.md, Data). Force one where a "
         "folder could be two things (a Kaldi dir with a metadata.csv) or a manifest has another extension.")
SPLIT = typer.Option(None, "--split", help="The split of a Hugging Face DatasetDict folder (train, validation...), "
                                           "for every data source that is one; or give the split's folder.")
TEXT_COLUMN = typer.Option(None, "--text-column",
                           help="The transcript column of a dataset, CSV or audiofolder (default: the first of "
                                "text, sentence, transcription, transcript, normalized_text, raw_text).")
ALLOW_COMMANDS = typer.Option(False, "--allow-commands",
                              help="Run the commands of a Kaldi wav.scp (entries ending in `|`): their output "
                                   "is the audio. Off by default: a data dir's commands are someone's code.")


def data_spec(path: str, data_format, split: str | None, text_column: str | None,
              allow_commands: bool) -> DataSpec:
    """One --train/--valid/--data path with the data options, as read_source takes it."""
    return DataSpec(path, getattr(data_format, "value", data_format), split, text_column, allow_commands)
