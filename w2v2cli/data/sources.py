"""Training data sources: a folder, a LibriSpeech-style tree, or a .tsv / .jsonl / .csv manifest, read into one list
of `Utterance`s that `pretrain` and `finetune` both consume.

Lengths come from the manifest or from file headers, never from decoding: the sampler needs every length before the
first batch, and decoding a whole corpus to learn its lengths would take longer than an epoch. One bad entry is
recorded in `DataSource.problems` and skipped, so a single corrupt file does not stop a run over 100k files; a source
that is unusable as a whole (missing, unknown format, nothing usable left) raises one typed error naming it.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ModelConfig
from ..errors import AudioError, ConfigError, PathError
from ..io.audio import AUDIO_EXTENSIONS, audio_info, find_audio_files
from ..manifest import manifest_records

MANIFEST_FORMATS = (".tsv", ".jsonl", ".csv")


@dataclass(frozen=True)
class Utterance:
    """One training example, as found on disk; the audio itself is decoded only when a batch needs it."""

    id: str  # unique within a source: path relative to the data root without extension, or a LibriSpeech utterance id
    path: Path
    num_samples: int  # length at the target sample rate, from the manifest or the file header
    text: str | None = None
    speaker: str | None = None  # speaker id ("103"), None when the source does not say


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
    """Read a data source given on the command line.

    `spec` is a folder (a LibriSpeech-style tree when it holds any `*.trans.txt`, otherwise every audio file under it,
    with the text of a same-named `.txt` file beside it when there is one), a fairseq `.tsv` manifest (text from a
    sibling `.wrd` or `.ltr` file), a `.jsonl` or a `.csv` manifest. With `need_text` (finetuning) utterances
    without a transcript are skipped, and a source with none at all is an error. Raises PathError for a missing
    path, ConfigError for anything else that makes the whole source unusable.
    """
    if sample_rate <= 0:
        raise ConfigError(f"sample rate must be positive, got {sample_rate}")
    name = str(spec)
    path = Path(spec)
    if not path.exists():
        raise PathError(path, "no such file or folder (expected a data folder or a .tsv, .jsonl or .csv manifest)")
    if path.is_dir():
        if next(path.rglob("*.trans.txt"), None) is not None:
            utterances, problems = _read_librispeech(path, sample_rate)
        else:
            utterances, problems = _read_folder(path, sample_rate)
    else:
        suffix = path.suffix.lower()
        if suffix not in MANIFEST_FORMATS:
            raise ConfigError(f"{name}: unknown data source format {suffix or '(no extension)'!r}: expected a folder "
                              "or a .tsv, .jsonl or .csv manifest")
        reader = {".tsv": _read_tsv, ".jsonl": _read_jsonl, ".csv": _read_csv}[suffix]
        utterances, problems = reader(path, sample_rate)

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
                              "a .tsv with a sibling .wrd or .ltr file, or a \"text\" field in .jsonl/.csv)")
        problems += [f"{u.path}: no transcript" for u in utterances if u.text is None]
        utterances = [u for u in utterances if u.text is not None]
    return DataSource(name, _unique_ids(utterances), problems)


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
        for number, line in enumerate(_read_lines(trans), 1):
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
            num_samples = _header_samples(audio, sample_rate, problems)
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
        num_samples = _header_samples(audio, sample_rate, problems)
        if num_samples is not None:
            utterances.append(Utterance(_relative_id(audio, root), audio, num_samples, _sibling_text(audio)))
    return utterances, problems


def _sibling_text(audio: Path) -> str | None:
    """The transcript in `name.txt` beside `name.wav` (the common layout of small labeled folders), if any."""
    text_file = audio.with_suffix(".txt")
    if not text_file.is_file():
        return None
    return " ".join(" ".join(_read_lines(text_file)).split()) or None


def _read_tsv(manifest: Path, sample_rate: int) -> tuple[list[Utterance], list[str]]:
    """fairseq manifest: the root folder, then `relative_path<TAB>num_samples` per line.

    The lengths are taken as written (fairseq's convention: samples at the training rate), so no header is read;
    that is what makes a fairseq manifest fast to load for a million files.
    """
    lines = _read_lines(manifest)
    if lines and "\t" in lines[0]:  # a fairseq root line never holds a tab
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


def _read_records(manifest: Path, lines: list[str], fmt: str, sample_rate: int
                  ) -> tuple[list[Utterance], list[str]]:
    """A manifest of one record per line (`.jsonl`, or a `.tsv` of `audio<TAB>text` pairs, what `w2v2 align
    --manifest` reads), parsed by the one manifest-line parser."""
    utterances: list[Utterance] = []
    problems: list[str] = []
    for where, record in manifest_records(lines, str(manifest), fmt):
        if isinstance(record, str):
            problems.append(f"{where}: {record}")
        else:
            _add_record(record, where, manifest.parent, sample_rate, utterances, problems)
    return utterances, problems


def _tsv_texts(manifest: Path, num_entries: int) -> list[str] | None:
    """Transcripts line-aligned with a fairseq manifest: `<stem>.wrd` (words) or `<stem>.ltr` (letters, `|` between
    words). .wrd wins when both exist: it is the original text, .ltr is derived from it."""
    for suffix in (".wrd", ".ltr"):
        sibling = manifest.with_suffix(suffix)
        if not sibling.is_file():
            continue
        lines = _read_lines(sibling)
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


def _read_jsonl(manifest: Path, sample_rate: int) -> tuple[list[Utterance], list[str]]:
    return _read_records(manifest, _read_lines(manifest), "jsonl", sample_rate)


def _read_csv(manifest: Path, sample_rate: int) -> tuple[list[Utterance], list[str]]:
    """CSV with a header row. An empty cell means the field is absent: CSV cannot tell "" from missing."""
    utterances: list[Utterance] = []
    problems: list[str] = []
    with open(manifest, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: spreadsheet exports start with a BOM
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "audio" not in [c.strip() for c in reader.fieldnames]:
            raise ConfigError(f"{manifest}: the header row needs an \"audio\" column "
                              f"(found: {', '.join(reader.fieldnames or []) or 'nothing'})")
        for row in reader:
            record = {k.strip(): v for k, v in row.items() if isinstance(k, str) and v not in (None, "")}
            _add_record(record, f"{manifest}:{reader.line_num}", manifest.parent, sample_rate, utterances, problems)
    return utterances, problems


def _add_record(record: dict, where: str, base: Path, sample_rate: int, utterances: list[Utterance],
                problems: list[str]) -> None:
    """One .jsonl object or .csv row -> an Utterance, or a line in `problems`. Fields: audio, text, duration
    (seconds; when given, the header is not read), speaker, id."""
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
    duration = record.get("duration")
    if duration is not None:
        try:
            seconds = float(duration)
        except (TypeError, ValueError):
            seconds = math.nan
        if isinstance(duration, bool) or not math.isfinite(seconds):
            problems.append(f"{where}: \"duration\" must be a number of seconds, got {duration!r}")
            return
        num_samples = round(seconds * sample_rate)
        if num_samples <= 0:
            problems.append(f"{where}: non-positive duration ({duration!r} s)")
            return
    else:
        num_samples = _header_samples(audio, sample_rate, problems)
        if num_samples is None:
            return
    utt_id = record.get("id")
    if utt_id is None:  # the path as written, relative to the manifest's folder; an absolute one only if outside it
        utt_id = _relative_id(audio, base) if given.is_absolute() else given.with_suffix("").as_posix()
    else:
        utt_id = str(utt_id)
    speaker = record.get("speaker")
    utterances.append(Utterance(utt_id, audio, num_samples, text.strip() if text is not None else None,
                                None if speaker is None else str(speaker)))


def _header_samples(audio: Path, sample_rate: int, problems: list[str]) -> int | None:
    """Length at `sample_rate` from the header (frames * rate // file rate), or None with a line in `problems`."""
    try:
        frames, file_rate = audio_info(audio)
    except AudioError as exc:
        problems.append(str(exc))
        return None
    num_samples = frames * sample_rate // file_rate if file_rate > 0 else 0
    if num_samples <= 0:
        problems.append(f"{audio}: contains no audio samples")
        return None
    return num_samples


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
        result.append(utt if new_id == utt.id else Utterance(new_id, utt.path, utt.num_samples, utt.text, utt.speaker))
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


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise PathError(path, exc.strerror or str(exc)) from None
