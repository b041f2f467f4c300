"""`align --segments`: each line of a transcript aligned as a segment of a long recording, scored for whether its
audio matches its text, cut into clips with a manifest that evaluation reads; the writers' segment forms."""

import json
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli

from w2v2cli import load_model
from w2v2cli.align import plan_alignment
from w2v2cli.align.segments import cut_segments, segment_score
from w2v2cli.evaluate import evaluate
from w2v2cli.hub import EMBEDDED_MODEL
from w2v2cli.results import Result, Segment, Word
from w2v2cli.text import Vocabulary
from w2v2cli.writers import render

SENTENCES = ["the quick brown fox jumps over the lazy dog", "she sells sea shells by the sea shore",
             "a journey of a thousand miles begins with a single step",
             "please call stella and ask her to bring these things"]
# A line from another recording: what a corpus gets when its text and audio came apart.
FOREIGN = "my father and mother went to the market yesterday"
PAUSE_S = 0.7

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


def _espeak(text: str, path) -> tuple[np.ndarray, int]:
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as f:
        return np.frombuffer(f.readframes(f.getnframes()), "<i2"), f.getframerate()


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """LONG.wav: the sentences spoken one after another with pauses; returns (folder, [(start_s, end_s)] of each
    sentence's audio)."""
    folder = tmp_path_factory.mktemp("long")
    chunks, spans, t = [], [], 0.0
    for i, sentence in enumerate(SENTENCES):
        samples, rate = _espeak(sentence, folder / f"s{i}.wav")
        pause = np.zeros(round(PAUSE_S * rate), "<i2")
        chunks += [pause, samples]
        spans.append((t + PAUSE_S, t + PAUSE_S + len(samples) / rate))
        t = spans[-1][1]
    chunks.append(pause)
    with wave.open(str(folder / "LONG.wav"), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(rate)
        f.writeframes(np.concatenate(chunks).tobytes())
    (folder / "lines.txt").write_text("\n".join(SENTENCES) + "\n\n")  # a blank line is no segment
    (folder / "foreign.txt").write_text("\n".join([SENTENCES[0], FOREIGN, *SENTENCES[2:]]) + "\n")
    return folder, spans


@needs_espeak
def test_segments_cut_into_a_manifest_evaluate_reads(recording, tmp_path):
    folder, spans = recording
    cut = tmp_path / "clips"
    proc = run_cli("align", folder / "LONG.wav", f"@{folder / 'lines.txt'}", "--segments", "--cut", cut,
                   "--model", "embedded", "-q")
    assert proc.returncode == 0, proc.stderr
    segments = json.loads(proc.stdout)["segments"]
    assert [s["text"] for s in segments] == SENTENCES
    for segment, (start, end) in zip(segments, spans):
        # Each segment lies on its own sentence's audio (bounds within a few frames of it), never on a pause only.
        assert start - 0.1 <= segment["start"] < segment["end"] <= end + 0.1, (segment, start, end)
        assert segment["end"] - segment["start"] > 0.8 * (end - start)
        assert " ".join(w["word"] for w in segment["words"]) == segment["text"]
        assert segment["score"] > 0.6
    records = [json.loads(line) for line in (cut / "manifest.jsonl").read_text().splitlines()]
    assert [r["audio"] for r in records] == [f"LONG-{i:04d}.wav" for i in range(1, 5)]
    for record, segment in zip(records, segments):
        with wave.open(str(cut / record["audio"])) as f:
            assert f.getnframes() / f.getframerate() == pytest.approx(record["duration"], abs=1e-3)
        assert record["duration"] == pytest.approx(segment["end"] - segment["start"], abs=2e-3)
        assert (record["text"], record["score"]) == (segment["text"], segment["score"])
        assert record["source"] == str(folder / "LONG.wav")
        assert record["source_start"] == pytest.approx(segment["start"], abs=1e-3)

    (score,) = evaluate(load_model(EMBEDDED_MODEL), str(cut / "manifest.jsonl"))
    assert score.utterances == 4 and score.failed == 0 and not score.problems
    assert [item.reference for item in score.items] == [s.upper() for s in SENTENCES]
    # The clips hold their sentences: the model hears most of each line's letters in its clip.
    assert score.counts.char_errors / score.counts.chars < 0.3


@needs_espeak
def test_a_line_from_another_recording_scores_low_and_min_score_drops_it(recording, tmp_path):
    folder, _ = recording
    args = ["align", folder / "LONG.wav", f"@{folder / 'foreign.txt'}", "--model", "embedded"]
    scored = json.loads(run_cli(*args, "--segments", "-q").stdout)["segments"]
    scores = [s["score"] for s in scored]
    assert scores[1] < 0.3 and min(scores[0], *scores[2:]) > 0.6, scores

    cut = tmp_path / "clean"
    proc = run_cli(*args, "--min-score", "0.5", "--cut", cut, "-f", "tsv")
    assert proc.returncode == 0, proc.stderr
    assert "dropped 1 of 4 segments" in proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert rows[0] == ["start", "end", "text", "score"] and [r[2] for r in rows[1:]] == [SENTENCES[0], *SENTENCES[2:]]
    texts = [json.loads(line)["text"] for line in (cut / "manifest.jsonl").read_text().splitlines()]
    assert texts == [SENTENCES[0], *SENTENCES[2:]]


def test_min_score_must_be_a_probability(tmp_path):
    proc = run_cli("align", tmp_path / "a.wav", "hello", "--min-score", "2", "--model", "embedded")
    assert proc.returncode == 2 and "--min-score must be between 0 and 1" in proc.stderr


VOCAB = Vocabulary.from_characters("abcdefghijklmnopqrstuvwxyz'")


def test_lines_are_planned_as_segments():
    lp = torch.randn(50, len(VOCAB)).log_softmax(-1)
    problem = plan_alignment(lp, "Hello there,\n\n  -- \nworld\n", VOCAB, segments=True)
    assert problem.lines == [("Hello there,", 0, 2), ("--", 2, 2), ("world", 2, 3)]
    assert plan_alignment(lp, "Hello there\nworld", VOCAB).lines is None


def test_segment_score_is_one_on_the_models_own_path_and_falls_off_it():
    torch.manual_seed(0)
    lp = torch.cat([torch.randn(20, len(VOCAB)).log_softmax(-1), torch.zeros(20, 1)], dim=1)  # star column last
    best = lp[:, :-1].argmax(1).numpy()
    targets = best.copy()
    states = 2 * np.arange(20) + 1  # frame t emits target t
    assert segment_score(states, lp, targets, 0, 0, 19) == pytest.approx(1.0)
    wrong = (targets + 1) % len(VOCAB)
    assert segment_score(states, lp, wrong, 0, 0, 19) < 0.8


def _result():
    words = [Word("hello", 0.5, 0.9, 0.9), Word("there", 1.0, 1.4, 0.8), Word("world", 2.0, 2.5, 0.7)]
    segments = [Segment("Hello there!", 0.5, 1.4, 0.93, tuple(words[:2])), Segment("--", 1.4, 1.4, 0.0),
                Segment("world", 2.0, 2.5, 0.41, (words[2],))]
    return Result("LONG.wav", "Hello there! world", 3.0, words, segments=segments)


def test_writers_give_one_cue_row_or_interval_per_segment():
    result = _result()
    assert render(result, "srt").split("\n\n")[:2] == ["1\n00:00:00,500 --> 00:00:01,400\nHello there!",
                                                       "2\n00:00:02,000 --> 00:00:02,500\nworld"]
    assert render(result, "tsv").splitlines()[1:] == ["0.50\t1.40\tHello there!\t0.9300", "1.40\t1.40\t--\t0.0000",
                                                      "2.00\t2.50\tworld\t0.4100"]
    grid = render(result, "textgrid")
    assert "size = 3" in grid and grid.index('name = "segments"') < grid.index('name = "words"')
    assert 'text = "Hello there!"' in grid
    data = json.loads(render(result, "json"))
    assert [s["text"] for s in data["segments"]] == ["Hello there!", "--", "world"]
    assert data["segments"][0]["words"][1]["word"] == "there"
    assert "segments" not in json.loads(render(Result("a.wav", "x", 1.0, []), "json"))


def test_clips_of_inputs_with_one_name_go_on_numbering(tmp_path):
    """Clips are cut where the segments are, and a second input of the same name (another folder, another span of
    the file) numbers its clips after the first one's instead of replacing them; a segment without words has no
    clip."""
    rate = 1000
    audio = np.linspace(-1, 1, 3 * rate, dtype=np.float32)
    records = cut_segments(audio, _result().segments, tmp_path, Path("sub/LONG.wav"), rate, numbered=4)
    assert [r["audio"] for r in records] == ["sub/LONG-0005.wav", "sub/LONG-0007.wav"]
    assert [(r["source_start"], r["source_end"], r["duration"]) for r in records] == [(0.5, 1.4, 0.9), (2.0, 2.5, 0.5)]
    with wave.open(str(tmp_path / "sub/LONG-0007.wav")) as f:
        samples = np.frombuffer(f.readframes(f.getnframes()), "<i2") / 32767
    assert f.getframerate() == rate and np.allclose(samples, audio[2000:2500], atol=1e-4)


def test_manifest_segments_of_one_recording_get_their_own_names_and_files(tmp_path):
    import soundfile as sf
    from helpers import speechlike

    sf.write(tmp_path / "long.wav", speechlike(48000), 16000)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": "long.wav", "text": "hello", "offset": start,
                                            "duration": 1.0}) + "\n" for start in (0.0, 1.5)))
    run = run_cli("align", "--manifest", manifest, "--model", "embedded", "-o", tmp_path / "out", "-q")
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["long@0.000.json", "long@1.500.json"]
    paths = [json.loads(p.read_text())["path"] for p in sorted((tmp_path / "out").iterdir())]
    assert paths[1].endswith("long.wav [1.500-2.500 s]")
