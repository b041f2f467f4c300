"""Hugging Face datasets, read with pyarrow alone (no `datasets`, no its audio decoding): a folder written by
`save_to_disk` (a Dataset: `*.arrow` + `dataset_info.json` + `state.json`; a DatasetDict: `dataset_dict.json` and
one such folder per split), a folder of `*.parquet`/`*.arrow` files, or one such file.

The audio column (`audio`, or the first column of `{bytes, path}` structs) holds a path or the encoded file's
bytes; bytes stay in the dataset and are fetched per utterance by `ArrowCell` (memory-mapped for arrow files, one
row group at a time for parquet), then decoded like a file by io/audio.py. The transcript column is found by name
(manifest.TEXT_FIELDS) or given; the speaker comes from `speaker_id`/`client_id`/`speaker` when there is one.
"""

from __future__ import annotations

import bisect
import functools
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import AudioError, ConfigError
from ..io.audio import AudioSpan
from ..io.common import import_optional
from ..manifest import AUDIO_FIELDS, SPEAKER_FIELDS, TEXT_FIELDS
from .utterance import Utterance, header_samples

INSTALL = "pip install 'w2v2cli[datasets]' (pyarrow) to read Hugging Face datasets"
DURATION_FIELDS = ("duration", "audio_length", "length_s")  # seconds, when a dataset has them: no header reads


def _pyarrow():
    pa = import_optional("pyarrow", INSTALL)
    import_optional("pyarrow.parquet", INSTALL)  # a submodule: `pa.parquet` exists once it is imported
    return pa


@functools.lru_cache(maxsize=4)
def _arrow_table(path: str):
    """An arrow file as a table over a memory map: rows are read from the page cache, nothing is copied. The
    IPC stream format is what save_to_disk writes; the file format is accepted too."""
    pa = _pyarrow()
    try:
        return pa.ipc.open_stream(pa.memory_map(path)).read_all()
    except pa.ArrowInvalid:
        return pa.ipc.open_file(pa.memory_map(path)).read_all()


@functools.lru_cache(maxsize=16)
def _row_group_starts(path: str) -> list[int]:
    metadata = _pyarrow().parquet.ParquetFile(path).metadata
    starts = [0]
    for group in range(metadata.num_row_groups):
        starts.append(starts[-1] + metadata.row_group(group).num_rows)
    return starts


@functools.lru_cache(maxsize=2)
def _row_group(path: str, group: int, column: str):
    return _pyarrow().parquet.ParquetFile(path).read_row_group(group, columns=[column]).column(column)


@dataclass(frozen=True)
class ArrowCell:
    """The encoded audio of one row (a ByteSource): picklable, so loader workers fetch it themselves."""

    file: Path
    row: int
    column: str

    def read(self) -> bytes:
        if self.file.suffix.lower() == ".parquet":
            starts = _row_group_starts(str(self.file))  # (G + 1,) cumulative rows
            group = bisect.bisect_right(starts, self.row) - 1
            if not 0 <= group < len(starts) - 1:
                raise AudioError(f"{self.file} row {self.row}", "no such row")
            value = _row_group(str(self.file), group, self.column)[self.row - starts[group]].as_py()
        else:
            value = _arrow_table(str(self.file)).column(self.column)[self.row].as_py()
        raw = value.get("bytes") if isinstance(value, dict) else value
        if not isinstance(raw, bytes):
            raise AudioError(f"{self.file} row {self.row}", "no audio bytes in this row")
        return raw


@dataclass(frozen=True)
class _Inline:
    raw: bytes

    def read(self) -> bytes:
        return self.raw


def read_dataset(path: Path, sample_rate: int, split: str | None, text_column: str | None
                 ) -> tuple[list[Utterance], list[str]]:
    pa = _pyarrow()
    utterances: list[Utterance] = []
    problems: list[str] = []
    for file in _data_files(path, split):
        try:
            _read_rows(file, path if path.is_dir() else path.parent, sample_rate, text_column, utterances, problems)
        except (pa.ArrowException, OSError) as exc:
            raise ConfigError(f"{file}: cannot be read as a dataset file ({str(exc).splitlines()[0]})") from None
    return utterances, problems


def _batches(file: Path):
    """(schema, record batches) of a dataset file, read a batch at a time: a parquet file's audio bytes are never
    all in memory at once, and an arrow file is a memory map."""
    if file.suffix.lower() == ".parquet":
        parquet = _pyarrow().parquet.ParquetFile(str(file))
        return parquet.schema_arrow, parquet.iter_batches(batch_size=256)
    table = _arrow_table(str(file))
    return table.schema, iter(table.to_batches(max_chunksize=256))


def _data_files(path: Path, split: str | None) -> list[Path]:
    if path.is_file():
        return [path]
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        if split is None and len(splits) == 1:
            split = splits[0]
        if split is None or split not in splits:
            what = "has the splits" if split is None else f"has no split {split!r}; its splits are"
            raise ConfigError(f"{path}: this dataset {what} {', '.join(splits)}: choose one with --split "
                              "(or give the split's folder)")
        path = path / split
    elif split is not None:
        raise ConfigError(f"{path}: --split {split}: this folder is one dataset, not a dataset dict with splits")
    files = sorted(path.glob("*.arrow")) or sorted(path.glob("*.parquet"))
    if not files:
        raise ConfigError(f"{path}: no .arrow or .parquet files in this dataset folder")
    return files


def _read_rows(file: Path, base: Path, sample_rate: int, text_column: str | None, utterances: list[Utterance],
               problems: list[str]) -> None:
    schema, batches = _batches(file)
    names = schema.names
    audio_column = next((c for c in AUDIO_FIELDS if c in names), None) or next(
        (c for c in names if _is_audio_struct(schema.field(c).type)), None)
    if audio_column is None:
        raise ConfigError(f"{file}: no audio column (an \"audio\" column of paths or bytes; columns: "
                          f"{', '.join(names)})")
    if text_column is not None and text_column not in names:
        raise ConfigError(f"{file}: --text-column {text_column!r} is not a column (columns: {', '.join(names)})")
    text_name = text_column or next((c for c in TEXT_FIELDS if c in names), None)
    speaker_name = next((c for c in SPEAKER_FIELDS if c in names), None)
    duration_name = next((c for c in DURATION_FIELDS if c in names), None)
    rows = (record for batch in batches for record in batch.to_pylist())
    for row, record in enumerate(rows):
        where = f"{file} row {row}"
        text = record.get(text_name) if text_name else None
        if text is not None and not isinstance(text, str):
            problems.append(f"{where}: the text column {text_name!r} holds {type(text).__name__}, not text")
            continue
        value = record[audio_column]
        utt = _utterance(file, row, audio_column, value, base, where, problems)
        if utt is None:
            continue
        seconds = record.get(duration_name) if duration_name else None
        num_samples = _num_samples(utt, seconds, sample_rate, value, where, problems)
        if num_samples is None:
            continue
        speaker, utt_id = record.get(speaker_name) if speaker_name else None, record.get("id")
        utterances.append(Utterance(str(utt_id) if utt_id is not None else utt.id, utt.path, num_samples,
                                    None if text is None else " ".join(text.split()),
                                    None if speaker is None else str(speaker), data=utt.data, label=utt.label))


def _is_audio_struct(kind) -> bool:
    return hasattr(kind, "get_field_index") and kind.get_field_index("bytes") >= 0


def _utterance(file: Path, row: int, column: str, value, base: Path, where: str,
               problems: list[str]) -> Utterance | None:
    """The row's audio: its bytes in the dataset (an ArrowCell) or the file its path names."""
    raw = value.get("bytes") if isinstance(value, dict) else value if isinstance(value, bytes) else None
    if raw:
        # the original file's name when the dataset kept it, else the row: ids stay readable and stable
        name = value.get("path") if isinstance(value, dict) else None
        return Utterance(Path(name).with_suffix("").as_posix() if name else f"{file.stem}/{row}", file, 0,
                         data=ArrowCell(file, row, column), label=where)
    given = value.get("path") if isinstance(value, dict) else value if isinstance(value, str) else None
    if not given:
        problems.append(f"{where}: no audio (neither bytes nor a path)")
        return None
    audio = Path(given) if Path(given).is_absolute() else base / given
    if not audio.is_file():
        problems.append(f"{where}: {audio}: no such file")
        return None
    return Utterance(Path(given).with_suffix("").as_posix() if not Path(given).is_absolute() else audio.stem,
                     audio, 0)


def _num_samples(utt: Utterance, seconds, sample_rate: int, value, where: str, problems: list[str]) -> int | None:
    """From the dataset's duration column, else the audio's header (the bytes are at hand: no second read)."""
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0:
        return round(seconds * sample_rate)
    raw = value.get("bytes") if isinstance(value, dict) else value
    source = AudioSpan(utt.path, data=_Inline(raw), label=where) if utt.data is not None else utt.path
    return header_samples(source, sample_rate, problems, where)
