"""Every corpus format reads the same utterances alike: a JSONL manifest, a NeMo manifest of segments of one long
recording, a Kaldi data dir with `segments` into it, an audiofolder and a Hugging Face `save_to_disk` folder
evaluate to identical (reference, hypothesis) pairs; Common Voice TSVs with mp3 clips, ffmpeg containers, parquet
files, `--hours` balanced over speakers, and each format's bad rows named by file and line and skipped.

All corpora are written at test time from the three fixture utterances; the model is the embedded one."""

import gzip
import importlib.util
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import run_cli, speechlike

from w2v2cli.data import AudioBatchDataset, read_source
from w2v2cli.data.sources import DataSpec, Utterance
from w2v2cli.data.subset import select_hours
from w2v2cli.errors import AudioError, ConfigError
from w2v2cli.evaluate import evaluate
from w2v2cli.hub import EMBEDDED_MODEL
from w2v2cli.io.audio import AudioSpan, audio_info, load_audio
from w2v2cli.io.checkpoint import load_model
from w2v2cli.io.common import MissingDependencyError

SPEECH = Path(__file__).resolve().parent / "fixtures" / "speech"
RATE = 16000
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg executable")


@pytest.fixture(scope="module")
def model():
    return load_model(EMBEDDED_MODEL)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The fixture utterances as int16 arrays, one WAV each, and one long recording of all of them in a row."""
    root = tmp_path_factory.mktemp("corpus")
    utterances = []
    for line in (SPEECH / "transcripts.tsv").read_text().splitlines():
        name, text = line.split("\t")
        samples, rate = sf.read(SPEECH / name, dtype="int16")
        assert rate == RATE
        utterances.append((Path(name).stem, text, samples[:2 * RATE]))  # 2 s each keeps five evaluations quick
    (root / "wavs").mkdir()
    for stem, _, samples in utterances:
        sf.write(root / "wavs" / f"{stem}.wav", samples, RATE, subtype="PCM_16")
    sf.write(root / "long.wav", np.concatenate([s for _, _, s in utterances]), RATE, subtype="PCM_16")
    return root, utterances


def _offsets(utterances):
    """(id, text, start_s, duration_s) per utterance of the long recording; the times land on whole samples."""
    start = 0
    for stem, text, samples in utterances:
        yield stem, text, start / RATE, len(samples) / RATE
        start += len(samples)


def write_jsonl(folder: Path, root: Path, utterances) -> Path:
    path = folder / "plain.jsonl"
    path.write_text("".join(json.dumps({"audio": str(root / "wavs" / f"{stem}.wav"), "text": text}) + "\n"
                            for stem, text, _ in utterances))
    return path


def write_nemo(folder: Path, root: Path, utterances) -> Path:
    path = folder / "nemo_manifest.json"
    path.write_text("".join(json.dumps({"audio_filepath": str(root / "long.wav"), "text": text, "offset": start,
                                        "duration": duration}) + "\n"
                            for _, text, start, duration in _offsets(utterances)))
    return path


def write_kaldi(folder: Path, root: Path, utterances) -> Path:
    folder = folder / "kaldi"
    folder.mkdir()
    (folder / "wav.scp").write_text(f"rec1 {root / 'long.wav'}\n")
    rows = list(_offsets(utterances))
    (folder / "segments").write_text("".join(f"{u} rec1 {s:.6f} {s + d:.6f}\n" for u, _, s, d in rows))
    (folder / "text").write_text("".join(f"{u} {t}\n" for u, t, _, _ in rows))
    (folder / "utt2spk").write_text("".join(f"{u} spk{i % 2}\n" for i, (u, _, _, _) in enumerate(rows)))
    return folder


def write_cuts(folder: Path, root: Path, utterances) -> Path:
    """A lhotse CutSet as `CutSet.to_file("cuts.jsonl.gz")` writes it: MonoCuts into one recording."""
    total = sum(len(s) for _, _, s in utterances)
    recording = {"id": "long", "sources": [{"type": "file", "channels": [0], "source": str(root / "long.wav")}],
                 "sampling_rate": RATE, "num_samples": total, "duration": total / RATE, "channel_ids": [0]}
    path = folder / "cuts.jsonl.gz"
    with gzip.open(path, "wt") as f:
        for stem, text, start, duration in _offsets(utterances):
            supervision = {"id": stem, "recording_id": "long", "start": 0.0, "duration": duration, "channel": 0,
                           "text": text, "speaker": "spk0"}
            f.write(json.dumps({"id": stem, "start": start, "duration": duration, "channel": 0,
                                "supervisions": [supervision], "recording": recording, "type": "MonoCut"}) + "\n")
    return path


def write_audiofolder(folder: Path, utterances) -> Path:
    folder = folder / "audiofolder"
    folder.mkdir()
    for stem, _, samples in utterances:
        sf.write(folder / f"{stem}.wav", samples, RATE, subtype="PCM_16")
    (folder / "metadata.csv").write_text("file_name,transcription\n" + "".join(
        f"{stem}.wav,{text}\n" for stem, text, _ in utterances))
    return folder


def arrow_table(root: Path, utterances, embed: bool = True):
    """What `datasets` stores for an Audio column: {bytes, path} structs (bytes embedded, or a path only)."""
    pa = pytest.importorskip("pyarrow")
    audio = [{"bytes": (root / "wavs" / f"{s}.wav").read_bytes() if embed else None,
              "path": f"{s}.wav" if embed else str(root / "wavs" / f"{s}.wav")} for s, _, _ in utterances]
    return pa.table({"audio": audio, "sentence": [t for _, t, _ in utterances],
                     "speaker_id": [f"spk{i % 2}" for i in range(len(utterances))]})


def write_save_to_disk(folder: Path, table) -> Path:
    """The layout `Dataset.save_to_disk` writes: arrow IPC stream shards, dataset_info.json, state.json."""
    pa = pytest.importorskip("pyarrow")
    folder.mkdir(parents=True)
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink, \
            pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    (folder / "dataset_info.json").write_text("{}")
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    return folder


def test_every_format_evaluates_to_the_same_pairs(tmp_path, corpus, model):
    root, utterances = corpus
    sources = {"jsonl": write_jsonl(tmp_path, root, utterances), "nemo": write_nemo(tmp_path, root, utterances),
               "kaldi": write_kaldi(tmp_path, root, utterances), "audiofolder": write_audiofolder(tmp_path, utterances),
               "save_to_disk": write_save_to_disk(tmp_path / "hf", arrow_table(root, utterances)),
               "lhotse": write_cuts(tmp_path, root, utterances)}
    results = evaluate(model, [str(p) for p in sources.values()])
    pairs = {name: sorted((u.reference, u.hypothesis) for u in r.items) for name, r in zip(sources, results)}
    for result in results:
        assert result.failed == 0 and not result.problems and len(result.items) == 3, result.name
    assert all(hypothesis for _, hypothesis in pairs["jsonl"])  # real transcripts, not three empty strings
    assert sorted(u.reference for u in results[0].items) == sorted(t for _, t, _ in utterances)
    for name in sources:
        assert pairs[name] == pairs["jsonl"], name
    if importlib.util.find_spec("datasets") is not None:  # the real library's folder too, where it is installed
        import datasets

        saved = tmp_path / "hf-datasets"
        datasets.Dataset.from_dict({"audio": [str(root / "wavs" / f"{s}.wav") for s, _, _ in utterances],
                                    "text": [t for _, t, _ in utterances]}).save_to_disk(str(saved))
        assert sorted((u.reference, u.hypothesis) for u in evaluate(model, str(saved))[0].items) == pairs["jsonl"]


def test_segments_decode_only_their_span_everywhere(tmp_path, corpus):
    root, utterances = corpus
    nemo = read_source(write_nemo(tmp_path, root, utterances))
    ids = [u.id for u in nemo.utterances]
    assert len(set(ids)) == 3 and ids[0].endswith("long@0.000")  # segments of one file keep distinct ids
    for utt, (_, _, samples) in zip(nemo.utterances, utterances):
        assert utt.num_samples == len(samples)
        assert np.array_equal(load_audio(utt.audio).numpy(), samples / 32768)
    batch = AudioBatchDataset(nemo.utterances, crop=False)[(0, 0, [0, 1, 2])]
    assert batch.lengths.tolist() == [len(s) for _, _, s in utterances] and not batch.skipped
    assert str(nemo.utterances[1].audio).endswith(f"long.wav [{len(utterances[0][2]) / RATE:.3f}-"
                                                  f"{(len(utterances[0][2]) + len(utterances[1][2])) / RATE:.3f} s]")


def test_align_manifest_lines_with_offsets_are_segments(tmp_path, corpus):
    from w2v2cli.manifest import read_pairs

    root, utterances = corpus
    items = list(read_pairs(write_nemo(tmp_path, root, utterances).read_text().splitlines(), "m.json"))
    assert [i.text for i in items] == [t for _, t, _ in utterances]
    assert isinstance(items[1].audio, AudioSpan) and items[1].audio.start_s == len(utterances[0][2]) / RATE
    assert len(load_audio(items[2].audio)) == len(utterances[2][2])


@needs_ffmpeg
def test_common_voice_tsv_with_mp3_clips_evaluates_every_row(tmp_path, corpus, model):
    root, utterances = corpus
    (tmp_path / "clips").mkdir()
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"
    rows = [header]
    for i, (stem, text, _) in enumerate(utterances):
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(root / "wavs" / f"{stem}.wav"), "-b:a", "64k",
                        str(tmp_path / "clips" / f"cv_{i}.mp3")], check=True)
        rows.append(f"speaker{i % 2}\tcv_{i}.mp3\t\"{text.title()}\"\t2\t0\t\t\t\t\ten\t")
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    source = read_source(tmp_path / "train.tsv", need_text=True)
    assert [(u.id, u.speaker) for u in source.utterances] == [("cv_0", "speaker0"), ("cv_1", "speaker1"),
                                                              ("cv_2", "speaker0")]
    result = evaluate(model, str(tmp_path / "train.tsv"))[0]
    assert result.utterances == 3 and result.failed == 0 and all(u.hypothesis for u in result.items)
    assert sorted(u.reference for u in result.items) == sorted(t for _, t, _ in utterances)


def test_a_common_voice_header_is_never_read_as_audio_text_pairs(tmp_path):
    (tmp_path / "clips").mkdir()
    sf.write(tmp_path / "clips" / "a.wav", speechlike(1600), RATE)
    (tmp_path / "dev.tsv").write_text("client_id\tpath\tsentence\nc1\ta.wav\thello\n")
    source = read_source(tmp_path / "dev.tsv")
    assert [(u.id, u.text, u.speaker) for u in source.utterances] == [("a", "hello", "c1")]
    (tmp_path / "odd.tsv").write_text("client_id\tclip\tsentence\nc1\ta.wav\thello\n")
    with pytest.raises(ConfigError, match=r"odd\.tsv: the first line looks like a Common Voice header"):
        read_source(tmp_path / "odd.tsv")


@needs_ffmpeg
def test_alac_m4a_decodes_to_the_wav_samples_and_transcribes_alike(tmp_path, corpus, model):
    from w2v2cli import transcribe

    root, utterances = corpus
    wav = root / "wavs" / f"{utterances[0][0]}.wav"
    m4a = tmp_path / "clip.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "alac", str(m4a)], check=True)
    assert audio_info(m4a) == audio_info(wav)  # ffprobe's length, no decoding
    assert np.array_equal(load_audio(m4a).numpy(), load_audio(wav).numpy())
    start = AudioSpan(m4a, 0.5, 1.0)
    assert np.array_equal(load_audio(start).numpy(), load_audio(wav).numpy()[RATE // 2:RATE // 2 + RATE])
    assert [r.text for r in transcribe(model, [m4a])] == [r.text for r in transcribe(model, [wav])]


def test_without_ffmpeg_the_error_names_the_file_and_says_to_install_it(tmp_path, monkeypatch):
    clip = tmp_path / "voice.m4a"
    clip.write_bytes(b"\0\0\0 ftypM4A " + bytes(200))
    monkeypatch.setattr("w2v2cli.io.audio.shutil.which", lambda name: None)
    for read in (load_audio, audio_info):
        with pytest.raises(AudioError) as err:
            read(clip)
        assert str(err.value).startswith(str(clip)) and "install ffmpeg" in str(err.value)
        assert "\n" not in str(err.value)


def _speaker_corpus(tmp_path: Path) -> dict[str, list[str]]:
    """Speakers with very different amounts of audio: a0 has 30 utterances, b1, c2 and d3 have 4 each."""
    (tmp_path / "clips").mkdir()
    speakers = {"a0": 30, "b1": 4, "c2": 4, "d3": 4}
    names = {}
    for speaker, count in speakers.items():
        names[speaker] = [f"{speaker}_{i}" for i in range(count)]
        for i, name in enumerate(names[speaker]):
            sf.write(tmp_path / "clips" / f"{name}.wav", speechlike(RATE, seed=i), RATE)
    return names


def test_hours_subsets_are_speaker_balanced_on_common_voice_and_kaldi(tmp_path):
    names = _speaker_corpus(tmp_path)
    rows = [f"{spk}\t{n}.wav\tsome words" for spk in names for n in names[spk]]
    (tmp_path / "train.tsv").write_text("client_id\tpath\tsentence\n" + "\n".join(rows) + "\n")
    kaldi = tmp_path / "kaldi"
    kaldi.mkdir()
    everything = [(spk, n) for spk in names for n in names[spk]]
    (kaldi / "wav.scp").write_text("".join(f"{n} {tmp_path / 'clips' / n}.wav\n" for _, n in everything))
    (kaldi / "text").write_text("".join(f"{n} some words\n" for _, n in everything))
    (kaldi / "utt2spk").write_text("".join(f"{n} {spk}\n" for spk, n in everything))
    for spec in (tmp_path / "train.tsv", kaldi):
        source = read_source(spec, need_text=True)
        assert len(source.utterances) == 42
        chosen = select_hours(source.utterances, 12 / 3600, seed=3)  # 12 one-second utterances
        assert Counter(u.speaker for u in chosen) == {"a0": 3, "b1": 3, "c2": 3, "d3": 3}, spec
        # the first 12 in the source would all be a0's: taking them is what balancing avoids
        assert Counter(u.speaker for u in source.utterances[:12]) == {"a0": 12}


def test_bad_rows_are_named_by_file_and_line_and_skipped(tmp_path, corpus):
    root, utterances = corpus
    long_s = sum(len(s) for _, _, s in utterances) / RATE
    nemo = tmp_path / "nemo.json"
    nemo.write_text("\n".join([
        json.dumps({"audio_filepath": str(root / "long.wav"), "text": "ok", "offset": 0.5, "duration": 1.0}),
        json.dumps({"audio_filepath": str(tmp_path / "gone.wav"), "text": "x", "duration": 1.0}),
        "{not json",
        json.dumps({"audio_filepath": str(root / "long.wav"), "text": "x", "offset": long_s - 0.5, "duration": 2}),
        json.dumps({"audio_filepath": str(root / "long.wav"), "text": "x", "offset": "soon", "duration": 2}),
    ]) + "\n")
    source = read_source(nemo)
    assert len(source.utterances) == 1
    assert [p.split(": ", 1)[0] for p in source.problems] == [f"{nemo}:{n}" for n in (2, 3, 4, 5)]
    assert "no such file" in source.problems[0] and "past the end" in source.problems[2]

    kaldi = tmp_path / "kaldi"
    kaldi.mkdir()
    (kaldi / "wav.scp").write_text(f"rec1 {root / 'long.wav'}\nrec2 {tmp_path / 'gone.wav'}\n"
                                   f"rec3 cat {root / 'long.wav'} |\n")
    (kaldi / "segments").write_text(f"u1 rec1 0 1\nu2 rec2 0 1\nu3 rec1 oops\nu4 rec1 {long_s - 1:.2f} "
                                    f"{long_s + 1:.2f}\nu5 rec3 0 1\n")
    (kaldi / "text").write_text("u1 a\nu2 b\nu3 c\nu4 d\nu5 e\n")
    source = read_source(kaldi)
    assert [u.id for u in source.utterances] == ["u1"]
    where = [p.split(": ", 1)[0] for p in source.problems]
    assert where == [f"{kaldi}/wav.scp:2", f"{kaldi}/wav.scp:3", f"{kaldi}/segments:2", f"{kaldi}/segments:3",
                     f"{kaldi}/segments:4", f"{kaldi}/segments:5"]
    assert "--allow-commands" in source.problems[1] and "past the end" in source.problems[4]

    (tmp_path / "clips").mkdir()
    sf.write(tmp_path / "clips" / "a.wav", speechlike(1600), RATE)
    cv = tmp_path / "cv.tsv"
    cv.write_text("client_id\tpath\tsentence\nc\ta.wav\thi\nc\tgone.mp3\thi\nc\ta.wav\n")
    source = read_source(cv)
    assert [p.split(": ", 1)[0] for p in source.problems] == [f"{cv}:3", f"{cv}:4"]

    folder = tmp_path / "af"
    folder.mkdir()
    sf.write(folder / "a.wav", speechlike(1600), RATE)
    (folder / "metadata.csv").write_text("file_name,text\na.wav,hi\ngone.wav,x\n,x\n")
    source = read_source(folder)
    assert len(source.utterances) == 1 and [p.split(": ", 1)[0] for p in source.problems] == [
        f"{folder / 'metadata.csv'}:3", f"{folder / 'metadata.csv'}:4"]

    cuts = write_cuts(tmp_path, root, utterances)
    with gzip.open(cuts, "rt") as f:
        lines = f.read().splitlines()
    late = json.loads(lines[2])
    late["start"] = long_s - 0.5
    gone = json.loads(lines[1])
    gone["recording"]["sources"][0]["source"] = str(tmp_path / "gone.wav")
    piped = json.loads(lines[0])
    piped["recording"]["sources"][0] = {"type": "command", "source": f"cat {root / 'long.wav'}"}
    with gzip.open(cuts, "wt") as f:
        f.write("\n".join([lines[0], json.dumps(gone), "{oops", json.dumps(late), json.dumps(piped)]) + "\n")
    source = read_source(cuts)
    assert len(source.utterances) == 1 and [p.split(": ", 1)[0] for p in source.problems] == [
        f"{cuts}:{n}" for n in (2, 3, 4, 5)]
    assert "past the end" in source.problems[2] and "--allow-commands" in source.problems[3]


def test_bad_rows_of_a_dataset_are_named_by_row(tmp_path, corpus):
    pa = pytest.importorskip("pyarrow")
    root, utterances = corpus
    table = pa.table({"audio": [{"bytes": None, "path": str(root / "wavs" / f"{utterances[0][0]}.wav")},
                                {"bytes": None, "path": str(tmp_path / "gone.wav")},
                                {"bytes": b"not audio at all" * 10, "path": "x.wav"},
                                {"bytes": None, "path": None}],
                      "text": ["a", "b", "c", "d"]})
    folder = write_save_to_disk(tmp_path / "ds", table)
    source = read_source(folder)
    shard = folder / "data-00000-of-00001.arrow"
    assert len(source.utterances) == 1
    assert [p.split(": ", 1)[0] for p in source.problems] == [f"{shard} row {n}" for n in (1, 2, 3)]


def test_piped_wav_scp_runs_only_when_allowed(tmp_path, corpus):
    root, _ = corpus
    kaldi = tmp_path / "piped"
    kaldi.mkdir()
    (kaldi / "wav.scp").write_text(f"rec1 cat {root / 'long.wav'} |\nrec2 exit 3 |\n")
    (kaldi / "segments").write_text("u1 rec1 0.5 1.5\nu2 rec2 0 1\n")
    (kaldi / "text").write_text("u1 hello\nu2 never\n")
    with pytest.raises(ConfigError, match=r"wav\.scp:1: rec1 is a command .*--allow-commands"):
        read_source(kaldi)
    source = read_source(DataSpec(str(kaldi), allow_commands=True))
    assert [u.id for u in source.utterances] == ["u1", "u2"]
    whole = load_audio(root / "long.wav").numpy()
    assert np.array_equal(load_audio(source.utterances[0].audio).numpy(), whole[RATE // 2:RATE // 2 + RATE])
    batch = AudioBatchDataset(source.utterances, crop=False)[(0, 0, [0, 1])]
    assert batch.ids == ["u1"] and batch.skipped[0][0] == "u2" and "exit status 3" in batch.skipped[0][1]


def test_datasets_splits_parquet_columns_and_the_missing_extra(tmp_path, corpus, monkeypatch):
    pq = pytest.importorskip("pyarrow.parquet")
    root, utterances = corpus
    write_save_to_disk(tmp_path / "dd" / "train", arrow_table(root, utterances))
    write_save_to_disk(tmp_path / "dd" / "test", arrow_table(root, utterances[:1], embed=False))
    (tmp_path / "dd" / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    with pytest.raises(ConfigError, match=r"dd: this dataset has the splits train, test: choose one with --split"):
        read_source(tmp_path / "dd")
    test = read_source(DataSpec(str(tmp_path / "dd"), split="test"))
    assert test.name == f"{tmp_path / 'dd'}[test]"  # the sets of two splits keep apart
    assert [(u.id, u.path, u.speaker) for u in test.utterances] == [
        (utterances[0][0], root / "wavs" / f"{utterances[0][0]}.wav", "spk0")]
    table = arrow_table(root, utterances).append_column("words", pa_strings(["x", "y", "z"]))
    pq.write_table(table, tmp_path / "train.parquet", row_group_size=2)  # row 2 is in the second row group
    parquet = read_source(tmp_path / "train.parquet")
    assert [u.text for u in parquet.utterances] == [t for _, t, _ in utterances]  # "sentence", by name
    assert np.array_equal(load_audio(parquet.utterances[2].audio).numpy(), utterances[2][2] / 32768)
    chosen = read_source(DataSpec(str(tmp_path / "train.parquet"), text_column="words"))
    assert [u.text for u in chosen.utterances] == ["x", "y", "z"]
    with pytest.raises(ConfigError, match="--text-column 'nope' is not a column"):
        read_source(DataSpec(str(tmp_path / "train.parquet"), text_column="nope"))
    monkeypatch.setattr("w2v2cli.io.common.importlib.import_module", _no_pyarrow)
    with pytest.raises(MissingDependencyError, match=r"pip install 'w2v2cli\[datasets\]'"):
        read_source(tmp_path / "train.parquet")


def pa_strings(values):
    import pyarrow as pa

    return pa.array(values, pa.string())


def _no_pyarrow(name):
    raise ImportError(f"No module named {name!r}")


def test_the_data_format_can_be_forced_and_bad_options_are_usage_errors(tmp_path, corpus):
    root, _ = corpus
    manifest = tmp_path / "list.txt"  # a NeMo manifest with an extension no format has
    manifest.write_text(json.dumps({"audio_filepath": str(root / "long.wav"), "text": "x", "duration": 1}) + "\n")
    with pytest.raises(ConfigError, match="unknown data source format"):
        read_source(manifest)
    assert len(read_source(DataSpec(str(manifest), "jsonl")).utterances) == 1
    result = run_cli("finetune", "--init", "scratch", "--config", "tiny", "--train", str(manifest), "-o",
                     str(tmp_path / "run"), "--data-format", "parquetish")
    assert result.returncode == 2 and "parquetish" in result.stderr


def test_finetune_hands_the_library_data_specs(tmp_path, monkeypatch):
    received = {}

    def fake_finetune(train, output, valid, **kwargs):
        received.update(train=train, valid=valid)
        return {}

    monkeypatch.setattr("w2v2cli.train.finetune.finetune", fake_finetune)
    result = run_cli("finetune", "--init", "scratch", "--config", "tiny", "--train", "cv/train.tsv", "--valid",
                     "hf/validation", "-o", str(tmp_path / "run"), "--split", "train", "--text-column", "words",
                     "--allow-commands", "--data-format", "hf", "--quiet")
    assert result.returncode == 0, result.stderr
    assert received == {"train": DataSpec("cv/train.tsv", "hf", "train", "words", True),
                        "valid": [DataSpec("hf/validation", "hf", "train", "words", True)]}


def test_utterance_audio_is_the_file_unless_a_span(tmp_path):
    whole = Utterance("a", tmp_path / "a.wav", 100)
    assert whole.audio == tmp_path / "a.wav"
    part = Utterance("b", tmp_path / "a.wav", 100, start_s=1.0, duration_s=0.5)
    assert part.audio == AudioSpan(tmp_path / "a.wav", 1.0, 0.5)


def test_evaluate_tables_show_set_names_with_brackets_as_they_are(tmp_path, corpus, monkeypatch):
    root, utterances = corpus
    stem, text, _ = utterances[0]
    monkeypatch.chdir(tmp_path)
    Path("dev[clean].jsonl").write_text(json.dumps({"audio": str(root / "wavs" / f"{stem}.wav"), "text": text}))
    run = run_cli("evaluate", "--model", "embedded", "--data", "dev[clean].jsonl", "--errors", "1")
    assert run.returncode == 0, run.stderr
    assert "│ dev[clean].jsonl │" in run.stdout and "dev[clean].jsonl: 1 worst utterances" in run.stdout


def test_kaldi_archive_entries_read_the_wav_at_their_offset(tmp_path, corpus, model):
    """wav.scp lines `ARCHIVE:OFFSET` (as `wav-copy ark,scp:` writes them) give the same pairs as the files."""
    root, utterances = corpus
    data = tmp_path / "kaldi"
    data.mkdir()
    archive, scp = bytearray(), []
    for stem, _, _ in utterances:
        archive += f"{stem} ".encode()
        scp.append(f"{stem} {data / 'wav.ark'}:{len(archive)}\n")
        archive += (root / "wavs" / f"{stem}.wav").read_bytes()
    (data / "wav.ark").write_bytes(bytes(archive))
    (data / "wav.scp").write_text("".join(scp) + f"bad {data / 'wav.ark'}:3\n")
    (data / "text").write_text("".join(f"{stem} {text}\n" for stem, text, _ in utterances) + "bad x\n")
    source = read_source(data, need_text=True)
    assert [u.id for u in source.utterances] == [stem for stem, _, _ in utterances]
    assert len(source.problems) == 1 and "wav.scp:4" in source.problems[0] and "no WAV at byte 3" in source.problems[0]
    for u, (_, _, samples) in zip(source.utterances, utterances):
        assert np.array_equal(load_audio(u.audio).numpy(), samples / 32768)
    (ours,), (files,) = evaluate(model, str(data)), evaluate(model, str(write_jsonl(tmp_path, root, utterances)))
    assert sorted((u.reference, u.hypothesis) for u in ours.items) == sorted(
        (u.reference, u.hypothesis) for u in files.items)
