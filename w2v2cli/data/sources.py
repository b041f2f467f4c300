"""Data sources: every corpus format read into one list of `Utterance`s that `pretrain`, `finetune`, `evaluate`
consume: a folder of audio, a LibriSpeech tree, an audiofolder (`metadata.csv`/`.jsonl`), a Kaldi data dir
(data/kaldi.py), a Hugging Face dataset folder or parquet/arrow file (data/arrow.py), a Common Voice `.tsv`, a
fairseq `.tsv`, a `.tsv` of audio<TAB>text pairs, a `.jsonl`/`.json` manifest (NeMo's keys too) or a `.csv` one.
An utterance is a whole file or a span of one (`start_s`, `duration_s`: a segment of a long recording).

Lengths come from the manifest or from file headers, never from decoding: the sampler needs every length before the
first batch, and decoding a whole corpus to learn its lengths would take longer than an epoch. One bad entry is
recorded in `DataSource.problems` and skipped, so a single corrupt file does not stop a run over 100k files; a source
that is unusable as a whole (missing, unknown format, nothing usable left) raises one typed error naming it.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import ModelConfig
from ..errors import ConfigError, PathError
from ..io.audio import AUDIO_EXTENSIONS, find_audio_files
from ..manifest import AUDIO_FIELDS, manifest_records, normalize_record
from .utterance import Utterance, header_samples, read_lines, segment, segment_id

MANIFEST_FORMATS = (".tsv", ".jsonl", ".json", ".csv", ".parquet", ".arrow")
# What --data-format can force; auto detects it from the path (docs/training.md, Data).
DATA_FORMATS = ("auto", "folder", "librispeech", "audiofolder", "kaldi", "hf", "commonvoice", "tsv", "jsonl",
                "csv", "lhotse")
COMMON_VOICE_COLUMNS = ("path", "sentence")  # a .tsv whose header has these is Common Voice, never audio<TAB>text


@dataclass(frozen=True)
class DataSpec:
    """A data source with the options that say how to read it (the CLI's --data-format, --split, --text-column,
    --allow-commands). `read_source` takes one wherever it takes a path; str() is the path as given."""

    path: str
    format: str = "auto"
    split: str | None = None  # a Hugging Face DatasetDict's split
    text_column: str | None = None  # the transcript column of a dataset or CSV (default: found by name)
    allow_commands: bool = False  # run the commands of a Kaldi wav.scp (`... |` entries)

    def __post_init__(self):
        if self.format not in DATA_FORMATS:
            raise ConfigError(f"data format {self.format!r}: choose one of {', '.join(DATA_FORMATS)}")

    def __str__(self) -> str:
        return self.path


@dataclass
class DataSource:
    """The usable utterances of one source and a line per entry that was skipped ("where: why")."""

    name: str  # the argument as the user gave it, so messages quote what they typed
    utterances: list[Utterance]
    problems: list[str] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return sum(u.num_samples for u in self.utterances)

    def hours(self, sample_rate: int = ModelConfig.sample_rate) -> float:
        return self.num_samples / sample_rate / 3600


def read_source(spec, sample_rate: int = ModelConfig.sample_rate, need_text: bool = False) -> DataSource:
    """Read a data source given on the command line: a path, or a DataSpec (a path and how to read it).

    The format is detected from the path (docs/training.md, Data) unless the DataSpec forces one. With
    `need_text` (finetuning, evaluation) utterances without a transcript are skipped, and a source with none at
    all is an error. Raises PathError for a missing path, ConfigError for anything else that makes the whole
    source unusable; one unusable entry is a line in `problems` ("FILE:LINE: why") and is skipped.
    """
    if sample_rate <= 0:
        raise ConfigError(f"sample rate must be positive, got {sample_rate}")
    spec = spec if isinstance(spec, DataSpec) else DataSpec(str(spec))
    name = f"{spec}[{spec.split}]" if spec.split else str(spec)  # sets of one dataset's splits stay apart
    path = Path(spec.path)
    if not path.exists():
        raise PathError(path, "no such file or folder (expected a data folder or a manifest: "
                              ".tsv, .jsonl, .json, .csv, .parquet or .arrow)")
    fmt = spec.format if spec.format != "auto" else detect_format(path)
    utterances, problems = _reader(fmt)(path, sample_rate, spec)
    if not utterances:
        if problems:
            detail = f" ({len(problems)} entries skipped, first: {problems[0]})"
        elif path.is_dir():
            detail = " (no audio files in this folder)"
        else:
            detail = " (the manifest has no entries)"
        raise ConfigError(f"{name}: no usable audio in this data source{detail}")
    if need_text:
        if not any(u.text is not None for u in utterances):
            raise ConfigError(f"{name}: no transcripts: this needs text (a LibriSpeech tree with *.trans.txt, "
                              "audio files with a same-named .txt beside them, "
                              "a .tsv with a sibling .wrd or .ltr file, a \"text\" field in .jsonl/.csv, "
                              "a Kaldi `text` file, or a text column: --text-column)")
        problems += [f"{u.label or u.path}: no transcript" for u in utterances if u.text is None]
        utterances = [u for u in utterances if u.text is not None]
    return DataSource(name, _unique_ids(utterances), problems)


def detect_format(path: Path) -> str:
    """The format of a data source from what is there (files in a folder, a manifest's extension and header)."""
    if path.is_dir():
        if (path / "wav.scp").is_file():
            return "kaldi"
        if any((path / f).is_file() for f in ("dataset_dict.json", "state.json")):
            return "hf"
        if any((path / f).is_file() for f in ("metadata.csv", "metadata.jsonl")):
            return "audiofolder"
        return "librispeech" if next(path.rglob("*.trans.txt"), None) is not None else "folder"
    from .lhotse import is_cut_manifest

    suffix = path.suffix.lower()
    if path.name.lower().endswith(".jsonl.gz"):
        return "lhotse"
    if suffix not in MANIFEST_FORMATS:
        raise ConfigError(f"{path}: unknown data source format {suffix or '(no extension)'!r}: expected a folder "
                          "or a .tsv, .jsonl, .json, .csv, .parquet or .arrow manifest, or lhotse cuts.jsonl.gz "
                          "(or say which with --data-format)")
    if suffix == ".jsonl" and is_cut_manifest(path):
        return "lhotse"
    if suffix == ".tsv":
        return "commonvoice" if _is_common_voice_header(_first_line(path)) else "tsv"
    return {".json": "jsonl", ".parquet": "hf", ".arrow": "hf"}.get(suffix, suffix[1:])


def _reader(fmt: str):
    """The reader of a format: (path, sample_rate, spec) -> (utterances, problems)."""
    from . import arrow, kaldi, lhotse

    return {
        "folder": lambda p, rate, spec: _read_folder(_need_dir(p, fmt), rate),
        "librispeech": lambda p, rate, spec: _read_librispeech(_need_dir(p, fmt), rate),
        "audiofolder": lambda p, rate, spec: _read_audiofolder(_need_dir(p, fmt), rate, spec.text_column),
        "kaldi": lambda p, rate, spec: kaldi.read_kaldi_dir(_need_dir(p, fmt), rate, spec.allow_commands),
        "hf": lambda p, rate, spec: arrow.read_dataset(p, rate, spec.split, spec.text_column),
        "commonvoice": lambda p, rate, spec: _read_common_voice(_need_file(p, fmt), rate),
        "tsv": lambda p, rate, spec: _read_tsv(_need_file(p, fmt), rate),
        "jsonl": lambda p, rate, spec: _read_records(p, read_lines(_need_file(p, fmt)), "jsonl", rate),
        "csv": lambda p, rate, spec: _read_csv(_need_file(p, fmt), rate, spec.text_column),
        "lhotse": lambda p, rate, spec: lhotse.read_cuts(_need_file(p, fmt), rate, spec.allow_commands),
    }[fmt]


def _need_dir(path: Path, fmt: str) -> Path:
    if not path.is_dir():
        raise ConfigError(f"{path}: --data-format {fmt} needs a folder")
    return path


def _need_file(path: Path, fmt: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"{path}: --data-format {fmt} needs a manifest file, not a folder")
    return path


def _read_librispeech(root: Path, sample_rate: int) -> tuple[list[Utterance], list[str]]:
    """LibriSpeech layout: `S/C/S-C.trans.txt` lists `UTTID TEXT...`, audio is `UTTID.<ext>` in the same folder."""
    utterances: list[Utterance] = []
    problems: list[str] = []
    for trans in sorted(root.rglob("*.trans.txt")):
        # One listing per chapter folder instead of a stat per extension per utterance.
        audio_by_stem: dict[str, Path] = {}
        for candidate in sorted(trans.parent.iterdir(), key=_extension_preference):
            if candidate.is_file() and candidate.suffix.lower() in AUDIO_EXTENSIONS:
                audio_by_stem.setdefault(candidate.stem, candidate)
        for number, line in enumerate(read_lines(trans), 1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            text = text.strip()
            if not text:
                problems.append(f"{trans}:{number}: expected \"UTTERANCE-ID TEXT\"")
                continue
            audio = audio_by_stem.get(utt_id)
            if audio is None:
                problems.append(f"{trans}:{number}: no audio file {utt_id}.flac (or another audio extension)")
                continue
            num_samples = header_samples(audio, sample_rate, problems)
            if num_samples is not None:
                utterances.append(Utterance(utt_id, audio, num_samples, text, utt_id.split("-")[0]))
    return utterances, problems


def _extension_preference(path: Path) -> tuple[int, str]:
    """LibriSpeech ships .flac; prefer it when a converted copy sits next to it, then AUDIO_EXTENSIONS order."""
    suffix = path.suffix.lower()
    rank = 0 if suffix == ".flac" else 1 + (AUDIO_EXTENSIONS.index(suffix) if suffix in AUDIO_EXTENSIONS else 99)
    return rank, path.name


def _read_folder(root: Path, sample_rate: int) -> tuple[list[Utterance], list[str]]:
    utterances: list[Utterance] = []
    problems: list[str] = []
    for audio in find_audio_files(root):
        num_samples = header_samples(audio, sample_rate, problems)
        if num_samples is not None:
            utterances.append(Utterance(_relative_id(audio, root), audio, num_samples, _sibling_text(audio)))
    return utterances, problems


def _sibling_text(audio: Path) -> str | None:
    """The transcript in `name.txt` beside `name.wav` (the common layout of small labeled folders), if any."""
    text_file = audio.with_suffix(".txt")
    if not text_file.is_file():
        return None
    return " ".join(" ".join(read_lines(text_file)).split()) or None


def _read_tsv(manifest: Path, sample_rate: int) -> tuple[list[Utterance], list[str]]:
    """fairseq manifest: the root folder, then `relative_path<TAB>num_samples` per line.

    The lengths are taken as written (fairseq's convention: samples at the training rate), so no header is read;
    that is what makes a fairseq manifest fast to load for a million files.
    """
    lines = read_lines(manifest)
    if lines and "\t" in lines[0]:  # a fairseq root line never holds a tab
        if set(lines[0].split("\t")) & {"sentence", "client_id"}:  # a header, never an audio<TAB>text pair
            raise ConfigError(f"{manifest}: the first line looks like a Common Voice header but lacks "
                              f"{' or '.join(COMMON_VOICE_COLUMNS)} columns")
        return _read_records(manifest, lines, "tsv", sample_rate)
    if not lines or not lines[0].strip():
        raise ConfigError(f"{manifest}: empty manifest: the first line must be the audio root folder")
    root = _resolve(Path(lines[0].strip()), manifest.parent)
    entries = lines[1:]
    texts = _tsv_texts(manifest, len(entries))
    utterances: list[Utterance] = []
    problems: list[str] = []
    for offset, line in enumerate(entries):
        where = f"{manifest}:{offset + 2}"
        relative, sep, count = line.rstrip().partition("\t")
        if not sep or not relative:
            problems.append(f"{where}: expected \"relative/path<TAB>num_samples\"")
            continue
        try:
            num_samples = int(count.split("\t")[0])
        except ValueError:
            problems.append(f"{where}: number of samples {count!r} is not an integer")
            continue
        if num_samples <= 0:
            problems.append(f"{where}: non-positive number of samples ({num_samples})")
            continue
        audio = root / relative
        if not audio.is_file():
            problems.append(f"{where}: {audio}: no such file")
            continue
        text = texts[offset] if texts is not None else None
        utterances.append(Utterance(Path(relative).with_suffix("").as_posix(), audio, num_samples, text))
    return utterances, problems


def _read_records(manifest: Path, lines: list[str], fmt: str, sample_rate: int, text_column: str | None = None
                  ) -> tuple[list[Utterance], list[str]]:
    """A manifest of one record per line (`.jsonl`, NeMo's `audio_filepath`/`offset` included, or a `.tsv` of
    `audio<TAB>text` pairs, what `w2v2 align --manifest` reads), parsed by the one manifest-line parser."""
    utterances: list[Utterance] = []
    problems: list[str] = []
    headers: dict = {}
    for where, record in manifest_records(lines, str(manifest), fmt):
        if isinstance(record, str):
            problems.append(f"{where}: {record}")
        else:
            _add_record(normalize_record(record, text_column), where, manifest.parent, sample_rate, utterances,
                        problems, headers)
    return utterances, problems


def _tsv_texts(manifest: Path, num_entries: int) -> list[str] | None:
    """Transcripts line-aligned with a fairseq manifest: `<stem>.wrd` (words) or `<stem>.ltr` (letters, `|` between
    words). .wrd wins when both exist: it is the original text, .ltr is derived from it."""
    for suffix in (".wrd", ".ltr"):
        sibling = manifest.with_suffix(suffix)
        if not sibling.is_file():
            continue
        lines = read_lines(sibling)
        # A trailing blank line is common in hand-made files; anything else out of step would shift every transcript.
        while len(lines) > num_entries and not lines[-1].strip():
            lines.pop()
        if len(lines) != num_entries:
            raise ConfigError(f"{sibling}: {len(lines)} transcript lines but {manifest.name} lists {num_entries} "
                              "audio files: they must be line-aligned")
        return [_letters_to_words(x) if suffix == ".ltr" else " ".join(x.split()) for x in lines]
    return None


def _letters_to_words(line: str) -> str:
    """`H E L L O | W O R L D |` -> `HELLO WORLD`."""
    return " ".join(w for w in ("".join(word.split()) for word in line.split("|")) if w)


def _read_csv(manifest: Path, sample_rate: int, text_column: str | None = None) -> tuple[list[Utterance], list[str]]:
    """CSV with a header row. An empty cell means the field is absent: CSV cannot tell "" from missing."""
    return _read_table(manifest, sample_rate, manifest.parent, text_column)


def _read_table(manifest: Path, sample_rate: int, base: Path, text_column: str | None,
                delimiter: str = ",") -> tuple[list[Utterance], list[str]]:
    utterances: list[Utterance] = []
    problems: list[str] = []
    headers: dict = {}
    try:
        # utf-8-sig: spreadsheet exports start with a BOM; QUOTE_NONE for tabs (Common Voice text has quotes)
        with open(manifest, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter=delimiter,
                                    quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
            columns = [c.strip() for c in reader.fieldnames or []]
            if not set(columns) & set(AUDIO_FIELDS):
                raise ConfigError(f"{manifest}: the header row needs an \"audio\" column "
                                  f"(found: {', '.join(columns) or 'nothing'})")
            if text_column is not None and text_column not in columns:
                raise ConfigError(f"{manifest}: --text-column {text_column!r} is not a column "
                                  f"(found: {', '.join(columns)})")
            for row in reader:
                record = {k.strip(): v for k, v in row.items() if isinstance(k, str) and v not in (None, "")}
                _add_record(normalize_record(record, text_column), f"{manifest}:{reader.line_num}", base,
                            sample_rate, utterances, problems, headers)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{manifest}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return utterances, problems


def _read_audiofolder(root: Path, sample_rate: int, text_column: str | None) -> tuple[list[Utterance], list[str]]:
    """Hugging Face's audiofolder layout: `metadata.csv` or `metadata.jsonl` with `file_name` (relative to the
    folder) and a text column, beside the audio."""
    if (root / "metadata.jsonl").is_file():
        manifest = root / "metadata.jsonl"
        return _read_records(manifest, read_lines(manifest), "jsonl", sample_rate, text_column)
    return _read_csv(root / "metadata.csv", sample_rate, text_column)


def _read_common_voice(tsv: Path, sample_rate: int) -> tuple[list[Utterance], list[str]]:
    """A Common Voice split (`train.tsv`, `validated.tsv`...): `client_id` (the speaker), `path` (a clip in
    `clips/` beside the .tsv), `sentence`. Lengths come from `clip_durations.tsv` when the release has one (no
    mp3 header to read per clip), else from the clips' headers."""
    clips = tsv.parent / "clips"
    durations = _common_voice_durations(tsv.parent / "clip_durations.tsv")
    utterances: list[Utterance] = []
    problems: list[str] = []
    headers: dict = {}
    with open(tsv, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            where = f"{tsv}:{reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                problems.append(f"{where}: expected {len(reader.fieldnames or [])} tab-separated columns")
                continue
            record = {"audio": row["path"], "text": row["sentence"], "speaker": row.get("client_id") or None}
            if row["path"] in durations:
                record["duration"] = durations[row["path"]]
            _add_record(record, where, clips, sample_rate, utterances, problems, headers)
    return utterances, problems


def _common_voice_durations(path: Path) -> dict[str, float]:
    """clip -> seconds from a release's clip_durations.tsv (`clip<TAB>duration[ms]`), empty when absent."""
    if not path.is_file():
        return {}
    durations = {}
    for line in read_lines(path)[1:]:
        clip, _, ms = line.partition("\t")
        try:
            durations[clip] = float(ms) / 1000
        except ValueError:
            continue  # a bad line costs only the shortcut: that clip's header is read instead
    return durations


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        return f.readline().rstrip("\r\n")


def _is_common_voice_header(line: str) -> bool:
    return set(COMMON_VOICE_COLUMNS) <= set(line.split("\t"))


def _add_record(record: dict, where: str, base: Path, sample_rate: int, utterances: list[Utterance],
                problems: list[str], headers: dict | None = None) -> None:
    """One .jsonl object or .csv row -> an Utterance, or a line in `problems`. Fields (after normalize_record):
    audio, text, duration (seconds; when given, the header is not read), offset (seconds: the utterance is a
    segment of the file from there, `duration` long or to the end), speaker, id."""
    audio_field = record.get("audio")
    if not isinstance(audio_field, str) or not audio_field.strip():
        problems.append(f"{where}: needs an \"audio\" path")
        return
    text = record.get("text")
    if text is not None and not isinstance(text, str):
        problems.append(f"{where}: \"text\" must be a string")
        return
    given = Path(audio_field.strip())
    audio = given if given.is_absolute() else base / given
    if not audio.is_file():
        problems.append(f"{where}: {audio}: no such file")
        return
    seconds = {}
    for key in ("duration", "offset"):
        if record.get(key) is not None:
            seconds[key] = _seconds(record[key])
            if seconds[key] is None or (key == "duration" and seconds[key] <= 0) or seconds[key] < 0:
                kind = "positive" if key == "duration" else "non-negative"
                problems.append(f"{where}: \"{key}\" must be a {kind} number of seconds, got {record[key]!r}")
                return
    utt_id = record.get("id")
    if utt_id is None:  # the path as written, relative to the manifest's folder; an absolute one only if outside it
        utt_id = _relative_id(audio, base) if given.is_absolute() else given.with_suffix("").as_posix()
        if "offset" in seconds:
            utt_id = segment_id(utt_id, seconds["offset"])
    speaker = record.get("speaker")
    utt = Utterance(str(utt_id), audio, 0, text.strip() if text is not None else None,
                    None if speaker is None else str(speaker))
    if "offset" in seconds:
        utt = segment(utt, seconds["offset"], seconds.get("duration"), where, sample_rate, problems, headers)
    elif "duration" in seconds:
        utt = replace(utt, num_samples=round(seconds["duration"] * sample_rate))
    else:
        num_samples = header_samples(audio, sample_rate, problems)
        utt = None if num_samples is None else replace(utt, num_samples=num_samples)
    if utt is not None:
        utterances.append(utt)


def _seconds(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) else None


def _unique_ids(utterances: list[Utterance]) -> list[Utterance]:
    """Make ids unique by suffixing repeats with `#2`, `#3`... in source order, so the result is deterministic.

    Not an error: listing a file twice in a manifest is an ordinary way to upsample it, and `a.wav` next to `a.flac`
    in a folder is legitimate. Ids still have to be unique because skipped-file reports and per-utterance outputs are
    keyed by them.
    """
    originals = {u.id for u in utterances}
    used: set[str] = set()
    result = []
    for utt in utterances:
        new_id, n = utt.id, 1
        while new_id in used or (n > 1 and new_id in originals):  # never take an id another entry already has
            n += 1
            new_id = f"{utt.id}#{n}"
        used.add(new_id)
        result.append(utt if new_id == utt.id else replace(utt, id=new_id))
    return result


def _relative_id(audio: Path, root: Path) -> str:
    try:
        relative = audio.relative_to(root)
    except ValueError:
        relative = audio
    return relative.with_suffix("").as_posix()


def _resolve(path: Path, base: Path) -> Path:
    """A relative root in a fairseq manifest is relative to the working directory in fairseq; accept it relative to
    the manifest's folder too, which is what keeps a copied dataset folder working."""
    if path.is_absolute() or not (base / path).is_dir():
        return path
    return base / path
