"""Training data layer: sources (folder, LibriSpeech tree, .tsv/.jsonl/.csv), the bucketed batch sampler, and the
batch dataset/loader. Invariants: lengths without decoding, every utterance once per epoch, disjoint equal shards,
exact resume, no torch RNG use, deterministic crops, bad files skipped and reported."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import speechlike

import w2v2cli.data.utterance as utterance
from w2v2cli.data import AudioBatchDataset, BucketBatchSampler, LabeledUtterance, Utterance, make_loader, read_source
from w2v2cli.errors import ConfigError, PathError
from w2v2cli.io.audio import load_audio


def write(path: Path, num_samples: int, rate: int = 16000, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, speechlike(num_samples, seed=seed, sample_rate=rate), rate)
    return path


@pytest.fixture
def no_header_reads(monkeypatch):
    """Make every header read fail loudly: formats that carry lengths must not open the audio files."""
    calls = []

    def fail(path):
        calls.append(path)
        raise AssertionError(f"audio_info called for {path}")

    monkeypatch.setattr(utterance, "audio_info", fail)  # where every reader's header reads happen
    return calls


# ---------------------------------------------------------------- sources


def test_folder_lengths_come_from_headers_at_the_target_rate(tmp_path):
    write(tmp_path / "a.wav", 16000)
    write(tmp_path / "sub" / "b.flac", 4000, rate=8000)  # 0.5 s at 8 kHz -> 8000 samples at 16 kHz
    write(tmp_path / "sub" / "c.wav", 22050, rate=44100)
    (tmp_path / "notes.txt").write_text("not audio")
    source = read_source(tmp_path)
    assert [(u.id, u.num_samples) for u in source.utterances] == [("a", 16000), ("sub/b", 8000), ("sub/c", 8000)]
    assert all(u.text is None and u.speaker is None for u in source.utterances)
    assert source.problems == [] and source.name == str(tmp_path)
    assert source.num_samples == 32000 and source.hours() == pytest.approx(2 / 3600)
    assert read_source(tmp_path, sample_rate=8000).utterances[0].num_samples == 8000
    with pytest.raises(ConfigError, match="no transcripts"):
        read_source(tmp_path, need_text=True)



def test_folder_takes_transcripts_from_same_named_txt_files(tmp_path):
    write(tmp_path / "a.wav", 16000)
    write(tmp_path / "b.flac", 16000)
    write(tmp_path / "c.wav", 16000)
    (tmp_path / "a.txt").write_text("hello\n  there world \n")
    (tmp_path / "b.txt").write_text("   \n")  # blank: no transcript
    source = read_source(tmp_path)
    assert {u.id: u.text for u in source.utterances} == {"a": "hello there world", "b": None, "c": None}
    labeled = read_source(tmp_path, need_text=True)
    assert [u.id for u in labeled.utterances] == ["a"]
    assert sorted(Path(p.split(":")[0]).name for p in labeled.problems) == ["b.flac", "c.wav"]

def test_unreadable_headers_are_problems_not_errors(tmp_path):
    write(tmp_path / "good.wav", 8000)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "garbage.flac").write_bytes(b"\x00\x01not audio at all" * 10)
    source = read_source(str(tmp_path))
    assert [u.id for u in source.utterances] == ["good"]
    assert len(source.problems) == 2
    assert any("empty.wav" in p and "empty" in p for p in source.problems)
    assert any("garbage.flac" in p for p in source.problems)


def test_librispeech_tree(tmp_path):
    chapter = tmp_path / "train" / "103" / "1240"
    write(chapter / "103-1240-0000.flac", 16000, seed=1)
    write(chapter / "103-1240-0001.flac", 8000, rate=8000, seed=2)
    write(chapter / "103-1240-0001.wav", 100)  # a converted copy next to the .flac: the .flac is preferred
    write(chapter / "103-1240-0099.flac", 1600)  # not in the transcript: not part of the corpus
    (chapter / "103-1240.trans.txt").write_text(
        "103-1240-0000 CHAPTER ONE MISSUS RACHEL\n103-1240-0001 WAS SURPRISED\n\n103-1240-0002 NO AUDIO FOR THIS\n"
        "103-1240-0003\n")
    other = tmp_path / "train" / "19" / "198"
    write(other / "19-198-0000.wav", 3200)
    (other / "19-198.trans.txt").write_text("19-198-0000 HELLO\n")

    source = read_source(tmp_path / "train", need_text=True)
    got = [(u.id, u.path.name, u.num_samples, u.text, u.speaker) for u in source.utterances]
    assert got == [
        ("103-1240-0000", "103-1240-0000.flac", 16000, "CHAPTER ONE MISSUS RACHEL", "103"),
        ("103-1240-0001", "103-1240-0001.flac", 16000, "WAS SURPRISED", "103"),
        ("19-198-0000", "19-198-0000.wav", 3200, "HELLO", "19"),
    ]
    assert len(source.problems) == 2
    assert "103-1240.trans.txt:4" in source.problems[0] and "103-1240-0002" in source.problems[0]
    assert "103-1240.trans.txt:5" in source.problems[1]


def _tsv_tree(tmp_path: Path, root_line: str) -> Path:
    audio = tmp_path / "audio"
    write(audio / "spk" / "a.flac", 16000)
    write(audio / "b.wav", 8000)
    manifest = tmp_path / "data" / "train.tsv"
    manifest.parent.mkdir()
    manifest.write_text(f"{root_line}\nspk/a.flac\t16000\nb.wav\t8000\nmissing.wav\t100\nno-tab-here\n"
                        "b.wav\tlots\nb.wav\t0\n")
    return manifest


@pytest.mark.parametrize("text_files", ["none", "wrd", "ltr", "both"])
def test_tsv_manifest_with_text_and_no_header_reads(tmp_path, no_header_reads, text_files):
    manifest = _tsv_tree(tmp_path, str(tmp_path / "audio"))
    if text_files in ("wrd", "both"):
        manifest.with_suffix(".wrd").write_text("HELLO WORLD\nGOOD  DAY\nX\nX\nX\nX\n")
    if text_files in ("ltr", "both"):
        manifest.with_suffix(".ltr").write_text(
            "L E T T E R S | O N L Y |\nA | B |\nX |\nX |\nX |\nX |\n\n")  # a trailing blank line is tolerated
    source = read_source(manifest, need_text=text_files != "none")
    assert [(u.id, u.path, u.num_samples) for u in source.utterances] == [
        ("spk/a", tmp_path / "audio" / "spk" / "a.flac", 16000), ("b", tmp_path / "audio" / "b.wav", 8000)]
    expected = {"none": [None, None], "wrd": ["HELLO WORLD", "GOOD DAY"], "both": ["HELLO WORLD", "GOOD DAY"],
                "ltr": ["LETTERS ONLY", "A B"]}[text_files]
    assert [u.text for u in source.utterances] == expected
    assert [p.split(": ")[0].rsplit(":", 1)[1] for p in source.problems] == ["4", "5", "6", "7"]
    assert no_header_reads == []


def test_tsv_root_relative_to_the_manifest_and_errors(tmp_path, no_header_reads):
    manifest = _tsv_tree(tmp_path, "../audio")
    assert len(read_source(manifest).utterances) == 2
    with pytest.raises(ConfigError, match="no transcripts"):
        read_source(manifest, need_text=True)
    manifest.with_suffix(".wrd").write_text("ONLY ONE LINE\n")
    with pytest.raises(ConfigError, match="line-aligned"):
        read_source(manifest)
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty manifest"):
        read_source(empty)


def test_jsonl_relative_paths_duration_and_fields(tmp_path, monkeypatch):
    write(tmp_path / "clips" / "a.wav", 16000)
    write(tmp_path / "clips" / "b.wav", 4000, rate=8000)
    absolute = write(tmp_path / "elsewhere" / "c.wav", 1600)
    lines = [
        {"audio": "clips/a.wav", "text": "hello there", "duration": 1.25, "speaker": 7},
        {"audio": "clips/b.wav", "id": "utt-b"},  # no duration: header read
        {"audio": str(absolute), "text": "", "duration": 0.1},
        {"audio": "clips/missing.wav", "duration": 1.0},
        {"text": "no audio field"},
        {"audio": "clips/a.wav", "duration": -1},
        {"audio": "clips/a.wav", "duration": "long"},
        [1, 2, 3],
    ]
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n{not json\n\n")
    headers = []
    real_info = utterance.audio_info
    monkeypatch.setattr(utterance, "audio_info", lambda p: headers.append(Path(p).name) or real_info(p))

    source = read_source(manifest)
    got = [(u.id, u.num_samples, u.text, u.speaker) for u in source.utterances]
    assert got == [("clips/a", 20000, "hello there", "7"), ("utt-b", 8000, None, None),
                   ("elsewhere/c", 1600, "", None)]  # absolute, but under the manifest's folder
    assert headers == ["b.wav"]  # the duration field is trusted: no header read for a.wav or c.wav
    assert len(source.problems) == 6 and [p.split(": ")[0].rsplit(":", 1)[1] for p in source.problems] == [
        "4", "5", "6", "7", "8", "9"]
    with_text = read_source(manifest, need_text=True)
    assert [u.id for u in with_text.utterances] == ["clips/a", "elsewhere/c"]
    assert with_text.problems[-1].endswith("b.wav: no transcript")


def test_csv_manifest(tmp_path, no_header_reads):
    write(tmp_path / "a.wav", 3200)
    write(tmp_path / "b.wav", 1600)
    manifest = tmp_path / "data.csv"
    manifest.write_text('audio,text,duration,speaker\na.wav,"hello, world",0.2,s1\nb.wav,,0.1,\n'
                        "missing.wav,x,1.0,s2\nb.wav,x,zero,s2\n")
    source = read_source(manifest)
    assert [(u.id, u.num_samples, u.text, u.speaker) for u in source.utterances] == [
        ("a", 3200, "hello, world", "s1"), ("b", 1600, None, None)]
    assert len(source.problems) == 2 and "data.csv:4" in source.problems[0] and "data.csv:5" in source.problems[1]
    bad = tmp_path / "bad.csv"
    bad.write_text("path,text\na.wav,x\n")
    with pytest.raises(ConfigError, match='"audio" column'):
        read_source(bad)


def test_duplicate_ids_are_made_unique_in_order(tmp_path):
    write(tmp_path / "a.wav", 1600)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in [
        {"audio": "a.wav"}, {"audio": "a.wav"}, {"audio": "a.wav", "id": "a#2"}, {"audio": "a.wav"}]))
    assert [u.id for u in read_source(manifest).utterances] == ["a", "a#3", "a#2", "a#4"]


def test_source_errors(tmp_path):
    with pytest.raises(PathError, match="no such file"):
        read_source(tmp_path / "nope.tsv")
    (tmp_path / "list.txt").write_text("a.wav\n")
    with pytest.raises(ConfigError, match=r"list\.txt.*unknown data source format"):
        read_source(tmp_path / "list.txt")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ConfigError, match=r"no usable audio.*no audio files in this folder"):
        read_source(empty_dir)
    (tmp_path / "none.jsonl").write_text("")
    with pytest.raises(ConfigError, match=r"none\.jsonl: no usable audio.*the manifest has no entries"):
        read_source(tmp_path / "none.jsonl")
    (empty_dir / "x.wav").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"no usable audio.*1 entries skipped.*x\.wav"):
        read_source(empty_dir)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio": "missing.wav", "text": "a"}\n')
    with pytest.raises(ConfigError, match=r"m\.jsonl: no usable audio"):
        read_source(manifest, need_text=True)
    write(tmp_path / "a.wav", 1600)
    manifest.write_text('{"audio": "a.wav"}\n')
    with pytest.raises(ConfigError, match=r"m\.jsonl: no transcripts"):
        read_source(manifest, need_text=True)


# ---------------------------------------------------------------- sampler


def random_sizes(n: int = 600, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2000, 40000, n)
    sizes[::7] = 40000  # many ties, as with sizes cropped to max_sample_size
    return sizes.tolist()


def test_batches_respect_max_tokens_and_cover_each_index_once():
    sizes = random_sizes()
    sampler = BucketBatchSampler(sizes, max_tokens=120000, seed=3)
    for epoch in range(3):
        batches = sampler.batches(epoch)
        assert len(batches) == len(sampler)
        assert all(len(b) * max(sizes[i] for i in b) <= 120000 for b in batches)
        assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    # Bucketing keeps padding low: similar sizes share a batch.
    padded = sum(len(b) * max(sizes[i] for i in b) for b in batches)
    assert padded < 1.2 * sum(sizes)


def test_an_oversized_utterance_gets_its_own_batch():
    sampler = BucketBatchSampler([100, 5000, 100, 100], max_tokens=1000, shuffle=False)
    assert sampler.batches(0) == [[0, 2, 3], [1]]


@pytest.mark.parametrize("num_replicas", [2, 3])
def test_shards_are_disjoint_equal_and_cover_almost_everything(num_replicas):
    sizes = random_sizes()
    shards = [BucketBatchSampler(sizes, 120000, seed=5, num_replicas=num_replicas, rank=r) for r in range(num_replicas)]
    whole = BucketBatchSampler(sizes, 120000, seed=5)
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(whole) // num_replicas
    for epoch in range(2):
        per_rank = [s.batches(epoch) for s in shards]
        assert {len(b) for b in per_rank} == {len(shards[0])}
        seen = [i for batches in per_rank for b in batches for i in b]
        assert len(seen) == len(set(seen))
        dropped = whole.batches(epoch)[len(shards[0]) * num_replicas:]  # the surplus batches, fewer than N
        assert len(dropped) < num_replicas
        assert set(seen) | {i for b in dropped for i in b} == set(range(len(sizes)))
        # Round robin over the same global order as the single-process sampler.
        assert per_rank[1] == whole.batches(epoch)[1:len(shards[0]) * num_replicas:num_replicas]


def test_batches_are_deterministic_per_seed_and_epoch():
    sizes = random_sizes()
    a, b = BucketBatchSampler(sizes, 120000, seed=1), BucketBatchSampler(sizes, 120000, seed=1)
    assert a.batches(4) == b.batches(4)
    assert a.batches(0) != a.batches(1)
    assert a.batches(0) != BucketBatchSampler(sizes, 120000, seed=2).batches(0)
    fixed = BucketBatchSampler(sizes, 120000, shuffle=False)
    assert fixed.batches(0) == fixed.batches(1)
    flat = [sizes[i] for b in fixed.batches(0) for i in b]
    assert flat == sorted(flat)


def test_too_little_data_for_the_processes():
    with pytest.raises(ConfigError, match="not enough data for 4 processes"):
        BucketBatchSampler([1000] * 6, max_tokens=2000, num_replicas=4)
    with pytest.raises(ConfigError):
        BucketBatchSampler([], max_tokens=2000)


@pytest.mark.parametrize("consumed", [1, 7, "end-of-epoch", "next-epoch"])
def test_resume_continues_the_exact_sequence(consumed):
    sizes = random_sizes(200)
    sampler = BucketBatchSampler(sizes, 100000, seed=9, num_replicas=2, rank=1)
    n = len(sampler)
    consumed = {"end-of-epoch": n, "next-epoch": n + 3}.get(consumed, consumed)
    reference = list(itertools.islice(iter(sampler), 2 * n + 5))
    assert [(e, p) for e, p, _ in reference[:n + 1]] == [(0, p) for p in range(n)] + [(1, 0)]

    epoch, position, _ = reference[consumed - 1]
    sampler.set_position(epoch, position + 1)  # what the trainer does after using a batch
    state = sampler.state_dict()
    assert state == ({"epoch": epoch + 1, "position": 0} if position + 1 == n else
                     {"epoch": epoch, "position": position + 1})
    resumed = BucketBatchSampler(sizes, 100000, seed=9, num_replicas=2, rank=1)
    resumed.load_state_dict(state)
    remaining = len(reference) - consumed
    assert list(itertools.islice(iter(resumed), remaining)) == reference[consumed:]


def test_iteration_does_not_move_the_stored_position_or_touch_torch_rng():
    sampler = BucketBatchSampler(random_sizes(), 120000, seed=2)
    before = torch.get_rng_state()
    items = list(itertools.islice(iter(sampler), 3 * len(sampler)))
    assert torch.equal(before, torch.get_rng_state())
    assert sampler.state_dict() == {"epoch": 0, "position": 0}
    assert list(itertools.islice(iter(sampler), 5)) == items[:5]
    with pytest.raises(ConfigError, match="cannot resume"):
        sampler.load_state_dict({"epoch": 0, "position": len(sampler) + 1})


# ---------------------------------------------------------------- dataset and loader


@pytest.fixture
def clips(tmp_path):
    lengths = [4000, 8000, 6000, 12000, 9000, 3000]
    return [Utterance(f"u{i}", write(tmp_path / f"u{i}.wav", n, seed=i), n, text=f"text {i}")
            for i, n in enumerate(lengths)]


def test_batch_is_padded_with_lengths(clips):
    batch = AudioBatchDataset(clips)[(2, 5, [1, 0, 2])]
    assert batch.waveforms.shape == (3, 8000) and batch.waveforms.dtype == torch.float32
    assert batch.lengths.tolist() == [8000, 4000, 6000] and batch.lengths.dtype == torch.int64
    assert batch.ids == ["u1", "u0", "u2"] and batch.targets is None and batch.target_lengths is None
    assert (batch.epoch, batch.position, batch.skipped, batch.num_samples) == (2, 5, [], 18000)
    assert torch.equal(batch.waveforms[1, :4000], load_audio(clips[0].path))
    assert not batch.waveforms[1, 4000:].any() and not batch.waveforms[2, 6000:].any()
    moved = batch.to("cpu")
    assert moved.ids == batch.ids and torch.equal(moved.waveforms, batch.waveforms)


def test_labeled_batches_carry_their_padded_targets(clips, tmp_path):
    """Targets are encoded once per utterance (LabeledUtterance) and padded per batch; a file that fails to
    decode takes its targets out of the batch with it; the stand-in shape stays 2-d for an empty batch."""
    labeled = [LabeledUtterance.of(u, range(1, i + 2)) for i, u in enumerate(clips)]
    assert labeled[2].targets == (1, 2, 3) and labeled[2].text == "text 2" and labeled[2].path == clips[2].path
    gone = LabeledUtterance("gone", tmp_path / "gone.wav", 8000, targets=(5, 5))
    dataset = AudioBatchDataset(labeled + [gone])
    batch = dataset[(0, 0, [3, 6, 0])]
    assert batch.ids == ["u3", "u0"] and [uid for uid, _ in batch.skipped] == ["gone"]
    assert batch.targets.tolist() == [[1, 2, 3, 4], [1, 0, 0, 0]] and batch.targets.dtype == torch.int64
    assert batch.target_lengths.tolist() == [4, 1] and batch.target_lengths.dtype == torch.int64
    moved = batch.to("cpu")
    assert torch.equal(moved.targets, batch.targets) and torch.equal(moved.target_lengths, batch.target_lengths)
    nothing = dataset[(0, 1, [6])]
    assert nothing.targets.shape == (0, 1) and nothing.target_lengths.shape == (0,)


def test_crops_are_random_windows_and_deterministic(clips):
    dataset = AudioBatchDataset(clips, max_sample_size=5000, seed=4)
    item = (0, 0, [3, 1, 4, 0])
    first, again = dataset[item], dataset[item]
    assert torch.equal(first.waveforms, again.waveforms)
    assert first.lengths.tolist() == [5000, 5000, 5000, 4000]

    def offsets(batch):
        found = []
        for row, index in enumerate([3, 1, 4]):
            full = load_audio(clips[index].path).unfold(0, 5000, 1)  # (windows, 5000)
            match = (full == batch.waveforms[row]).all(dim=1).nonzero().flatten().tolist()
            assert len(match) == 1  # the crop is a window of the real audio
            found.append(match[0])
        return found

    assert offsets(first) != offsets(dataset[(1, 0, [3, 1, 4, 0])])
    assert offsets(first) != offsets(AudioBatchDataset(clips, max_sample_size=5000, seed=5)[item])
    whole = AudioBatchDataset(clips, max_sample_size=5000, crop=False)[item]
    assert whole.lengths.tolist() == [12000, 8000, 9000, 4000]


def test_undecodable_files_are_skipped_not_raised(clips, tmp_path):
    truncated = tmp_path / "truncated.wav"
    write(truncated, 8000)
    truncated.write_bytes(truncated.read_bytes()[:6000])
    (tmp_path / "zero.wav").write_bytes(b"")
    (tmp_path / "junk.flac").write_bytes(b"fLaC but not really" * 20)
    bad = [Utterance(name, tmp_path / f"{name}.{ext}", 8000) for name, ext in
           [("truncated", "wav"), ("zero", "wav"), ("junk", "flac"), ("gone", "wav")]]
    dataset = AudioBatchDataset(clips + bad)
    batch = dataset[(0, 0, [6, 0, 7, 8, 1, 9])]
    assert batch.ids == ["u0", "u1"] and batch.waveforms.shape == (2, 8000)
    reasons = dict(batch.skipped)
    assert list(reasons) == ["truncated", "zero", "junk", "gone"]
    assert "truncated" in reasons["truncated"] and "empty" in reasons["zero"] and "no such file" in reasons["gone"]
    nothing = dataset[(0, 1, [7, 8])]
    assert nothing.waveforms.shape == (0, 0) and nothing.lengths.shape == (0,) and nothing.num_samples == 0


def test_loader_with_workers_matches_single_process(tmp_path):
    for i in range(24):
        write(tmp_path / "train" / f"{i:02d}.wav", 2000 + 500 * (i % 9), seed=i)
    source = read_source(tmp_path / "train")
    max_sample_size = 5000
    sizes = [min(u.num_samples, max_sample_size) for u in source.utterances]
    dataset = AudioBatchDataset(source.utterances, max_sample_size=max_sample_size, seed=7)

    def take(num_workers):
        sampler = BucketBatchSampler(sizes, max_tokens=16000, seed=7)
        sampler.set_position(0, len(sampler) - 2)  # a resumed run: crosses into epoch 1
        loader = make_loader(dataset, sampler, num_workers=num_workers)
        return list(itertools.islice(loader, len(sampler) + 2))

    serial, parallel = take(0), take(2)
    assert [(b.epoch, b.position) for b in serial][:3] == [(0, len(serial) - 4), (0, len(serial) - 3), (1, 0)]
    for a, b in zip(serial, parallel, strict=True):
        assert (a.epoch, a.position, a.ids) == (b.epoch, b.position, b.ids)
        assert torch.equal(a.waveforms, b.waveforms) and torch.equal(a.lengths, b.lengths)
        assert a.waveforms.shape[0] * a.waveforms.shape[1] <= 16000


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_pin_memory():
    batch = AudioBatchDataset([])[(0, 0, [])]
    pinned = batch.pin_memory()
    assert pinned.waveforms.is_pinned() and pinned.lengths.is_pinned()


def test_tsv_of_audio_text_pairs_is_read_like_align_manifests():
    speech = Path(__file__).resolve().parent / "fixtures" / "speech"
    source = read_source(speech / "transcripts.tsv", need_text=True)
    assert [u.id for u in source.utterances] == ["quick_brown_fox", "speech_recognition", "self_supervised"]
    assert source.utterances[0].text == "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG"
    assert all(u.num_samples > 16000 for u in source.utterances) and not source.problems


def test_one_parser_reads_manifest_lines_for_align_and_for_data_sources(tmp_path):
    """`align --manifest` and the .jsonl / .tsv sources read lines with the same parser: JSON objects or
    audio<TAB>text pairs, blank and # lines skipped (JSON Lines has no comments), each problem named by line."""
    from w2v2cli.manifest import manifest_records, read_pairs

    lines = ['{"audio": "a.wav", "text": "hi"}', "", "# a comment", "b.wav\tthere you are", "{not json", "no tab",
             "[1]"]
    assert list(manifest_records(lines, "m")) == [
        ("m:1", {"audio": "a.wav", "text": "hi"}), ("m:4", {"audio": "b.wav", "text": "there you are"}),
        ("m:5", "invalid JSON (Expecting property name enclosed in double quotes)"),
        ("m:6", "expected audio<TAB>text or a JSON object"), ("m:7", "expected audio<TAB>text or a JSON object")]
    jsonl = [where_record[1] for where_record in manifest_records(lines, "m", "jsonl")]
    assert jsonl[0] == {"audio": "a.wav", "text": "hi"} and jsonl[1].startswith("invalid JSON")  # the # line
    assert jsonl[-1] == "expected a JSON object"
    assert [r for _, r in manifest_records(["c.wav"], "m", "tsv")] == [{"audio": "c.wav", "text": ""}]
    items = list(read_pairs(iter(line + "\n" for line in lines), "stdin"))  # lazily, as from stdin
    assert [(str(i.audio), i.text, i.problem) for i in items[:2]] == [("a.wav", "hi", None),
                                                                       ("b.wav", "there you are", None)]
    assert [str(i.audio) for i in items[2:]] == ["stdin:5", "stdin:6", "stdin:7"]
    write(tmp_path / "a.wav", 1600)
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    problems = read_source(tmp_path / "m.jsonl").problems
    assert [p.split(": ")[0].rsplit(":", 1)[1] for p in problems] == ["3", "4", "5", "6", "7"]
