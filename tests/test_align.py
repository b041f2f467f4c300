"""Forced alignment: path identity with torchaudio (every engine, ties included), the text policy, spans, output
formats, the CLI."""

import itertools
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as F
from helpers import speechlike
from hypothesis import given, settings
from hypothesis import strategies as st
from test_transcribe import VOCAB, emissions, model_file  # noqa: F401  (fixture)
from typer.testing import CliRunner

from w2v2cli.align import (  # modules whose settings tests change
    ENGINES,
    AlignmentError,
    align_batch,
    align_emissions,
    align_iter,
    driver,
    plan_alignment,
    plan_transcript,
    viterbi,
    viterbi_batch,
    viterbi_states,
)
from w2v2cli.cli import app
from w2v2cli.errors import ConfigError
from w2v2cli.results import Result
from w2v2cli.writers import render

runner = CliRunner()


def random_problem(rng, ties, num_classes=None, max_frames=80):
    """Emissions (T, C) and targets, plenty of repeated tokens; `ties`: log-probs on a coarse grid, so many moves
    score exactly the same."""
    num_classes = num_classes or int(rng.integers(2, 12))
    num_frames = int(rng.integers(1, max_frames))
    targets = rng.integers(1, num_classes, int(rng.integers(1, num_frames // 2 + 2)))
    if rng.random() < 0.3:
        targets = np.repeat(targets[: max(1, len(targets) // 2)], 2)
    if ties:
        log_probs = torch.from_numpy(rng.integers(-4, 1, (num_frames, num_classes)).astype(np.float32))
    else:
        log_probs = torch.from_numpy(rng.standard_normal((num_frames, num_classes)).astype(np.float32)).log_softmax(-1)
    return log_probs, targets


def fits(log_probs, targets):
    return log_probs.shape[0] >= len(targets) + int((targets[1:] == targets[:-1]).sum())


def torchaudio_states(log_probs, targets):
    labels, _ = F.forced_align(log_probs[None].cpu(), torch.from_numpy(targets)[None], blank=0)
    return viterbi._states_from_labels(labels[0].numpy(), targets, 0)


@given(st.integers(0, 10_000), st.booleans())
@settings(max_examples=150, deadline=None)
def test_viterbi_path_is_torchaudios(seed, ties):
    log_probs, targets = random_problem(np.random.default_rng(seed), ties, max_frames=300)
    if not fits(log_probs, targets):
        return
    ref, _ = F.forced_align(log_probs[None], torch.from_numpy(targets)[None], blank=0)
    ext = np.zeros(2 * len(targets) + 1, dtype=np.int64)
    ext[1::2] = targets
    states = viterbi_states(log_probs.numpy(), targets, 0)
    assert np.array_equal(ext[states], ref[0].numpy())
    assert np.array_equal(viterbi._states_from_labels(ref[0].numpy(), targets, 0), states)


def test_torchaudio_tie_rule():
    # Advance and skip tie above staying: torchaudio stays (a lower score), and so does every engine here.
    log_probs = torch.tensor([[-1.0, -2.0, 0.0, -1.0], [0.0, -1.0, -2.0, -3.0], [-3.0, -2.0, -2.0, -3.0]])
    targets = np.array([1, 3])
    batched = viterbi_batch(log_probs[None], torch.tensor([3]), torch.tensor([[1, 3]]), torch.tensor([2]), 0)[0]
    assert torchaudio_states(log_probs, targets).tolist() == [1, 3, 3]
    assert viterbi_states(log_probs.numpy(), targets, 0).tolist() == [1, 3, 3]
    assert batched.tolist() == [1, 3, 3]


def pad(problems):
    log_probs = torch.nn.utils.rnn.pad_sequence([lp for lp, _ in problems], batch_first=True, padding_value=-7.0)
    targets = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(t) for _, t in problems], batch_first=True)
    return (log_probs, torch.tensor([lp.shape[0] for lp, _ in problems]), targets,
            torch.tensor([len(t) for _, t in problems]))


def check_batch(problems, device, **options):
    log_probs, frame_lengths, targets, target_lengths = pad(problems)
    found = viterbi_batch(log_probs.to(device), frame_lengths, targets, target_lengths, 0, **options)
    for (lp, tg), states in zip(problems, found):
        if not fits(lp, tg):
            assert isinstance(states, AlignmentError) and "too short" in str(states)
            continue
        assert np.array_equal(states, torchaudio_states(lp, tg))
        assert np.array_equal(states, viterbi_states(lp.numpy(), tg, 0))


CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                      reason="needs CUDA")])


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("seed", range(4))
def test_batched_viterbi_paths_are_torchaudios(device, seed, monkeypatch):
    # Utterances of different lengths and transcripts, ties, repeats and some too short, in one batch; half the
    # seeds search in segments from checkpoints and copy back-pointers to the host a few frames at a time.
    rng = np.random.default_rng(seed)
    problems = [random_problem(rng, i % 2 == 0, num_classes=2 + seed) for i in range(12)]
    if seed % 2:
        monkeypatch.setattr(viterbi, "_BACKTRACK_FRAMES", 3)
        check_batch(problems, device, max_backpointer_bytes=1)
    else:
        check_batch(problems, device)


def test_batched_viterbi_with_the_star_column():
    problems = []
    for text, path in [("hello 42 world", "_HEL_LO_|_XYXYX_|_WORLD_"), ("hi there", "__HH_I|_|TTHERE__"),
                       ("a 7 b 7", "_A_|_QQ_|_B_|_ZZZ__")]:
        problem = plan_alignment(emissions(path), text, VOCAB)
        problems.append((problem.log_probs, problem.targets))
    single = align_batch(problems, VOCAB.blank, engine="single")
    batch = align_batch(problems, VOCAB.blank, engine="batch")
    assert all(np.array_equal(a, b) for a, b in zip(single, batch))


def test_impossible_alignments_fail_alone():
    lp = torch.zeros(6, 5).log_softmax(-1)
    blocked = lp.clone()
    blocked[:, 3] = -math.inf  # token 3 can never be emitted
    problems = [(lp, np.array([1, 1, 1, 1, 2])), (lp, np.array([1, 2, 3])), (blocked, np.array([2, 3]))]
    found = align_batch(problems, 0, engine="batch")
    assert isinstance(found[0], AlignmentError) and "too short" in str(found[0])
    assert found[1].tolist() == torchaudio_states(lp, np.array([1, 2, 3])).tolist()
    assert isinstance(found[2], AlignmentError) and "cannot fit" in str(found[2])
    assert str(align_batch(problems[:1], 0, engine="single")[0]) == str(found[0])


def test_torchaudios_kernel_is_the_default_on_every_device():
    # The batched engine has not been measured on a GPU yet: it is chosen by name only (engine="batch").
    assert ENGINES == {"cpu": "single", "cuda": "single"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("engine", [None, "batch"])
def test_cuda_engines_match_cpu(engine):
    rng = np.random.default_rng(7)
    problems = [random_problem(rng, i % 2 == 0, num_classes=6) for i in range(10)]
    for on_cpu, on_cuda in zip(align_batch(problems, 0, "cpu"), align_batch(problems, 0, "cuda", engine)):
        if isinstance(on_cpu, AlignmentError):
            assert str(on_cuda) == str(on_cpu)
        else:
            assert np.array_equal(on_cuda, on_cpu)


def test_all_engines_give_the_same_alignment(monkeypatch):
    lp = emissions("__HH_EE_L_LLO__|__WW_OO_RR_L_D___", peak=0.6)
    small = align_emissions(lp, "hello world", VOCAB, 0.02)
    monkeypatch.setattr(viterbi, "TORCHAUDIO_MAX_CELLS", 0)  # force the checkpointed search
    assert align_emissions(lp, "hello world", VOCAB, 0.02) == small
    monkeypatch.setitem(ENGINES, "cpu", "batch")
    assert align_emissions(lp, "hello world", VOCAB, 0.02) == small


def spans(words):
    return [(w.word, round(w.start, 2), round(w.end, 2)) for w in words]


def test_words_and_characters_land_on_their_frames():
    lp = emissions("__HH_EE_L_LLO__|__WW_OO_RR_L_D___")
    text, words = align_emissions(lp, "Hello, world!", VOCAB, 0.02)
    assert text == "Hello, world!"
    assert spans(words) == [("Hello,", 0.04, 0.26), ("world!", 0.36, 0.6)]
    assert [c.word for c in words[0].chars] == ["H", "E", "L", "L", "O"]
    assert spans(words[0].chars)[:2] == [("H", 0.04, 0.08), ("E", 0.1, 0.14)]
    assert all(abs(w.score - 0.9) < 1e-4 for w in words)


def test_times_are_monotonic_non_overlapping_and_inside_the_audio():
    rng = np.random.default_rng(0)
    lp = torch.from_numpy(rng.standard_normal((400, len(VOCAB))).astype(np.float32)).log_softmax(-1)
    _, words = align_emissions(lp, "some words that are not really there at all", VOCAB, 0.02)
    assert len(words) == 9
    previous_end = 0.0
    for w in words:
        assert previous_end <= w.start < w.end <= 400 * 0.02
        for a, b in zip(w.chars, w.chars[1:]):
            assert a.end <= b.start
        previous_end = w.end


def test_star_takes_out_of_vocabulary_words():
    # Speech the vocabulary cannot spell ("42") sits between HELLO and WORLD.
    path = "_HEL_LO_|_" + "XYXYX" + "_|_WORLD_"
    lp = emissions(path)
    _, words = align_emissions(lp, "hello 42 world", VOCAB, 0.02)
    assert spans(words) == [("hello", 0.02, 0.14), ("42", 0.2, 0.3), ("world", 0.36, 0.46)]
    assert words[1].chars[0].word == "42"


def test_star_absorbs_untranscribed_speech_at_both_ends():
    lp = emissions("_SOMETHING_|_HEL_LO_|_WORLD_|_MORE_")
    _, words = align_emissions(lp, "hello world", VOCAB, 0.02)
    assert spans(words) == [("hello", 0.26, 0.38), ("world", 0.44, 0.54)]


def test_unknown_policies():
    assert [w.text for w in plan_transcript("a 42 b", VOCAB, "skip")] == ["a", "b"]
    with pytest.raises(AlignmentError, match="'4'"):
        plan_transcript("a 42 b", VOCAB, "error")
    star = plan_transcript("café 42", VOCAB, "star")
    assert star[0].chars == ("C", "A", "F", "E") and star[1].chars == ("42",)


@pytest.mark.parametrize("text, message", [("", "empty"), ("123 !!", "nothing in the transcript")])
def test_unalignable_transcripts(text, message):
    with pytest.raises(AlignmentError, match=message):
        align_emissions(emissions("_HI_"), text, VOCAB, 0.02, unknown="skip")


def test_audio_too_short_for_the_transcript():
    with pytest.raises(AlignmentError, match="too short"):
        align_emissions(emissions("_HI_"), "a very long transcript", VOCAB, 0.02)


# Output formats, parsed back ------------------------------------------------------------------------------------

def parse_textgrid(text):
    tiers = {}
    for block in text.split("item [")[2:]:
        name = re.search(r'name = "(.*)"', block).group(1)
        intervals = re.findall(r'xmin = ([\d.]+)\s+xmax = ([\d.]+)\s+text = "(.*)"', block)
        tiers[name] = [(float(a), float(b), t.replace("\"\"", "\"")) for a, b, t in intervals]  # "" escapes "
    return tiers


def parse_ctm(text):
    rows = [line.split() for line in text.splitlines()]
    return [(f, ch, float(s), float(d), w, float(c)) for f, ch, s, d, w, c in rows]


@pytest.fixture
def aligned():
    lp = emissions("__HH_EE_L_LLO__|__WW_OO_RR_L_D___")
    text, words = align_emissions(lp, 'Hello "world"', VOCAB, 0.02)
    return Result("dir/utt1.wav", text, 0.7, words)


def test_textgrid_tiers_tile_the_audio(aligned):
    tiers = parse_textgrid(render(aligned, "textgrid"))
    assert set(tiers) == {"words", "chars"}
    for intervals in tiers.values():
        assert intervals[0][0] == 0.0 and intervals[-1][1] == 0.7
        assert all(a[1] == b[0] for a, b in itertools.pairwise(intervals))
    assert [t for _, _, t in tiers["words"] if t] == ["Hello", '"world"']
    assert "".join(t for _, _, t in tiers["chars"]) == "HELLOWORLD"


def test_ctm_tsv_json_srt_vtt(aligned):
    assert parse_ctm(render(aligned, "ctm")) == [("utt1", "1", 0.04, 0.22, "Hello", 0.9),
                                                ("utt1", "1", 0.36, 0.24, '"world"', 0.9)]
    rows = render(aligned, "tsv").splitlines()
    assert rows[0] == "start\tend\tword\tscore" and rows[1].split("\t")[:3] == ["0.04", "0.26", "Hello"]
    data = json.loads(render(aligned, "json"))
    assert data["words"][1]["chars"][0] == {"char": "W", "start": 0.36, "end": 0.4, "score": 0.9}
    assert json.loads(render(aligned, "jsonl"))["text"] == 'Hello "world"'
    assert "00:00:00,040 --> 00:00:00,600" in render(aligned, "srt")
    assert render(aligned, "vtt").startswith("WEBVTT")


def test_format_choices_come_from_the_writer_registry():
    from w2v2cli.writers import ALIGNMENT, TRANSCRIPT, WRITERS, formats

    for command, kind in (("transcribe", TRANSCRIPT), ("align", ALIGNMENT)):
        shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"}).output
        assert f"<{'|'.join(formats(kind))}>" in shown
    assert set(formats(TRANSCRIPT)) | set(formats(ALIGNMENT)) == set(WRITERS)
    refused = runner.invoke(app, ["transcribe", "--format", "ctm", "x.wav"])
    assert refused.exit_code == 2 and "'ctm' is not one of" in refused.output


# Command line ---------------------------------------------------------------------------------------------------

@pytest.fixture
def wavs(tmp_path):
    for name, seconds in (("a.wav", 3.0), ("b.wav", 2.0)):
        sf.write(tmp_path / name, speechlike(int(seconds * 16000), seed=len(name)), 16000)
    return tmp_path


def test_single_item_and_transcript_file(model_file, wavs):  # noqa: F811
    (wavs / "t.txt").write_text("hello there world\n")
    result = runner.invoke(app, ["align", "-m", str(model_file), str(wavs / "a.wav"), "@" + str(wavs / "t.txt")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [w["word"] for w in data["words"]] == ["hello", "there", "world"] and data["duration"] == 3.0


def test_manifest_from_stdin_with_a_bad_item_in_a_subprocess(model_file, wavs):  # noqa: F811
    lines = [json.dumps({"audio": str(wavs / "a.wav"), "text": "one two"}), "not a manifest line",
             f"{wavs / 'missing.wav'}\tthree", f"{wavs / 'b.wav'}\tfour five",
             json.dumps({"audio": str(wavs / "b.wav"), "text": ""})]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-m", "w2v2cli", "align", "-m", str(model_file), "--manifest", "-",
                           "-f", "jsonl"], input="\n".join(lines) + "\n", capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [("error" in o) for o in out] == [False, True, True, False, True]
    assert out[1]["path"] == "stdin:2" and "empty" in out[4]["error"]
    assert "stdin:2: expected audio<TAB>text" in proc.stderr and "missing.wav: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_manifest_file_relative_paths_and_output_dir(model_file, wavs, tmp_path):  # noqa: F811
    (wavs / "list.tsv").write_text("a.wav\tone two\nb.wav\tthree\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["align", "-m", str(model_file), "--manifest", str(wavs / "list.tsv"), "-o", str(out),
                                 "-f", "textgrid", "-q"])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.rglob("*.TextGrid"))
    assert written == ["a.TextGrid", "b.TextGrid"]
    assert parse_textgrid(next(out.rglob("a.TextGrid")).read_text())["words"]


def test_align_iter_gives_the_same_results_batched(model_file, wavs, monkeypatch):  # noqa: F811
    from w2v2cli import load_model

    model = load_model(model_file)
    items = [(wavs / "a.wav", "one two"), (wavs / "missing.wav", "three"), (wavs / "b.wav", ""),
             (wavs / "b.wav", "four five six"), (wavs / "a.wav", "seven")]
    one_at_a_time = [a.to_dict() for a in align_iter(model, items)]
    assert ["error" in a for a in one_at_a_time] == [False, True, True, False, False]
    monkeypatch.setitem(ENGINES, "cpu", "batch")
    monkeypatch.setattr(driver, "ALIGN_BATCH_ITEMS", 3)
    assert [a.to_dict() for a in align_iter(model, items)] == one_at_a_time


def test_cli_usage_errors(model_file, wavs):  # noqa: F811
    for args, needle in [([str(wavs / "a.wav")], "TRANSCRIPT"),
                         (["--manifest", "-", "-f", "textgrid"], "--output-dir"),
                         ([str(wavs / "a.wav"), "@" + str(wavs / "nope.txt")], "nope.txt")]:
        result = runner.invoke(app, ["align", "-m", str(model_file), *args])
        assert result.exit_code == 2 and needle in result.stderr, result.output


def test_word_bounds_move_to_where_the_sound_starts_and_stops():
    from w2v2cli.align import extend_word_bounds, frame_levels_db
    from w2v2cli.results import Word

    hop, fs = 320, 0.02
    loud = np.full(hop, 0.5, dtype=np.float32)
    quiet = np.zeros(hop, dtype=np.float32)
    # frames: 0-1 quiet, 2-9 sound (word A), 10-14 quiet, 15-24 sound (words B and C touch), 25-29 quiet
    audio = np.concatenate([quiet] * 2 + [loud] * 8 + [quiet] * 5 + [loud] * 10 + [quiet] * 5)
    levels = frame_levels_db(audio, hop)
    assert levels.shape == (30,) and levels[3] > levels[0] + 60

    def word(text, start, end):
        return Word(text, start * fs, end * fs, 0.9, (Word(text[0], start * fs, end * fs, 0.9),))

    def frames(words):
        return [(round(w.start / fs), round(w.end / fs)) for w in words]

    # CTC put A's characters at 4-5 (its sound is 2-9), B's at 15-17, C's at 20-22 (B and C share 15-24).
    words = [word("A", 4, 5), word("B", 15, 17), word("C", 20, 22)]
    out = extend_word_bounds(words, levels, fs, duration=30 * fs)
    assert frames(out) == [(2, 10), (15, 20), (20, 25)]  # A: out to its pauses; B ends where C starts
    assert all(w.chars[0].start == w.start and w.chars[-1].end == w.end for w in out)
    # Never inwards, never past the neighbours or the audio's ends.
    assert frames(extend_word_bounds([word("A", 1, 12)], levels, fs, 30 * fs)) == [(1, 12)]
    assert extend_word_bounds([word("B", 15, 24)], levels, fs, 24.5 * fs)[0].end == pytest.approx(24.5 * fs)
    assert frames(extend_word_bounds([word("A", 4, 6), word("B", 7, 8)], levels, fs, 30 * fs)) == [(2, 7), (7, 10)]
    assert extend_word_bounds([], levels, fs, 1.0) == []


def test_bounds_tokens_keeps_the_paths_frames_and_sound_only_widens_them(model_file, wavs):  # noqa: F811
    from w2v2cli import load_model

    model = load_model(model_file)
    items = [(wavs / "a.wav", "hello there world")]
    tokens = next(align_iter(model, items, bounds="tokens"))
    sound = next(align_iter(model, items, bounds="sound"))
    for t, s in zip(tokens.words, sound.words):
        assert (t.start, t.end) == (t.chars[0].start, t.chars[-1].end)  # the characters' frames exactly
        assert s.start <= t.start and s.end >= t.end
    assert all(a.end <= b.start for a, b in zip(sound.words, sound.words[1:]))
    with pytest.raises(ConfigError, match="--bounds"):
        next(align_iter(model, items, bounds="edges"))
    result = runner.invoke(app, ["align", "-m", str(model_file), str(wavs / "a.wav"), "hello", "--bounds", "tokens"])
    assert result.exit_code == 0, result.output
