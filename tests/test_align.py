"""Forced alignment: path identity with torchaudio, the text policy, spans, output formats, the CLI."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import importlib
from conftest import speechlike
from test_transcribe import VOCAB, emissions, model_file  # noqa: F401  (fixture)
from w2v2cli.align import AlignmentError, align_emissions, plan_transcript, viterbi_states
from w2v2cli.cli import app
from w2v2cli.writers import render

runner = CliRunner()
align_module = importlib.import_module("w2v2cli.align")  # the package attribute `align` is the function


@given(st.integers(0, 10_000))
@settings(max_examples=150, deadline=None)
def test_viterbi_path_is_torchaudios(seed):
    rng = np.random.default_rng(seed)
    num_classes = int(rng.integers(2, 12))
    num_frames = int(rng.integers(1, 300))
    targets = rng.integers(1, num_classes, int(rng.integers(1, num_frames // 2 + 2)))
    if rng.random() < 0.3:  # plenty of repeated tokens
        targets = np.repeat(targets[: max(1, len(targets) // 2)], 2)
    if num_frames < len(targets) + int((targets[1:] == targets[:-1]).sum()):
        return
    log_probs = torch.randn(num_frames, num_classes, generator=torch.Generator().manual_seed(seed)).log_softmax(-1)
    ref, _ = F.forced_align(log_probs[None], torch.from_numpy(targets)[None], blank=0)
    ext = np.zeros(2 * len(targets) + 1, dtype=np.int64)
    ext[1::2] = targets
    states = viterbi_states(log_probs.numpy(), targets, 0)
    assert np.array_equal(ext[states], ref[0].numpy())
    assert np.array_equal(align_module._states_from_labels(ref[0].numpy(), targets, 0), states)


def test_both_engines_give_the_same_alignment(monkeypatch):
    lp = emissions("__HH_EE_L_LLO__|__WW_OO_RR_L_D___", peak=0.6)
    small = align_emissions(lp, "hello world", VOCAB, 0.02)
    monkeypatch.setattr(align_module, "TORCHAUDIO_MAX_CELLS", 0)  # force the checkpointed search
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
    from w2v2cli.align import Alignment

    lp = emissions("__HH_EE_L_LLO__|__WW_OO_RR_L_D___")
    text, words = align_emissions(lp, 'Hello "world"', VOCAB, 0.02)
    return Alignment("dir/utt1.wav", text, 0.7, words)


def test_textgrid_tiers_tile_the_audio(aligned):
    tiers = parse_textgrid(render(aligned, "textgrid"))
    assert set(tiers) == {"words", "chars"}
    for intervals in tiers.values():
        assert intervals[0][0] == 0.0 and intervals[-1][1] == 0.7
        assert all(a[1] == b[0] for a, b in zip(intervals, intervals[1:]))
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
             f"{wavs / 'missing.wav'}\tthree", f"{wavs / 'b.wav'}\tfour five", json.dumps({"audio": str(wavs / "b.wav"), "text": ""})]
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


def test_cli_usage_errors(model_file, wavs):  # noqa: F811
    for args, needle in [([str(wavs / "a.wav")], "TRANSCRIPT"),
                         (["--manifest", "-", "-f", "textgrid"], "--output-dir"),
                         ([str(wavs / "a.wav"), "@" + str(wavs / "nope.txt")], "nope.txt")]:
        result = runner.invoke(app, ["align", "-m", str(model_file), *args])
        assert result.exit_code == 2 and needle in result.stderr, result.output
