"""`transcribe`: decoders, output formats, and the command line (Typer runner and a real subprocess)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import speechlike
from typer.testing import CliRunner

from w2v2cli import Vocabulary, build_model, preset, save_model
from w2v2cli.cli import app
from w2v2cli.decode import BeamDecoder, GreedyDecoder, Word
from w2v2cli.transcribe import transcribe
from w2v2cli.writers import cues, render

runner = CliRunner()
VOCAB = Vocabulary.from_characters("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")


def emissions(path: str, vocab=VOCAB, peak=0.9):
    """Log-probs whose best path spells `path`: one character per frame, `_` = blank, `|` = delimiter."""
    lp = np.full((len(path), len(vocab)), np.log((1 - peak) / (len(vocab) - 1)), np.float32)
    for t, c in enumerate(path):
        lp[t, vocab.blank if c == "_" else vocab.tokens.index(c)] = np.log(peak)
    return torch.from_numpy(lp)


def test_greedy_words_times_and_scores():
    text, words = GreedyDecoder(VOCAB, 0.02)(emissions("_HH_I|_|TTHERE__"))
    assert text == "HI THERE"
    assert [(w.word, round(w.start, 2), round(w.end, 2)) for w in words] == [("HI", 0.02, 0.1), ("THERE", 0.16, 0.28)]
    assert all(abs(w.score - 0.9) < 1e-5 for w in words)


def test_greedy_collapses_repeats_only_across_no_blank():
    assert GreedyDecoder(VOCAB, 0.02)(emissions("LL_L"))[0] == "LL"


def test_beam_search_agrees_with_greedy_on_clear_emissions():
    lp = emissions("_HH_I|_|TTHERE__")
    text, words = BeamDecoder(VOCAB, 0.02, beam_width=8)(lp)
    assert text == "HI THERE"
    assert [(w.word, round(w.start, 2), round(w.end, 2)) for w in words] == [("HI", 0.02, 0.1), ("THERE", 0.16, 0.28)]


def test_lm_without_kenlm_needs_an_arpa_file(tmp_path):
    """Without KenLM an ARPA file is read in Python; a binary KenLM file or a broken ARPA file is a clear error."""
    try:
        import kenlm  # noqa: F401
        pytest.skip("kenlm is installed")
    except ImportError:
        pass
    from w2v2cli.errors import ConfigError

    (tmp_path / "lm.bin").write_bytes(b"mmap lm http://kheafield.com/code format version 5\0")
    with pytest.raises(ConfigError, match="only ARPA files"):
        BeamDecoder(VOCAB, 0.02, lm_path=tmp_path / "lm.bin")
    (tmp_path / "lm.arpa").write_text("\\data\\\n")
    with pytest.raises(ConfigError, match="not a readable ARPA file"):
        BeamDecoder(VOCAB, 0.02, lm_path=tmp_path / "lm.arpa")
    with pytest.raises(ConfigError, match="no such file"):
        BeamDecoder(VOCAB, 0.02, lm_path=tmp_path / "missing.arpa")


def test_subtitle_cues_and_formats():
    words = [Word("HELLO", 0.0, 0.5, 0.9), Word("WORLD", 0.6, 1.0, 0.8), Word("AGAIN", 3.0, 3.4, 0.7)]
    assert cues(words) == [(0.0, 1.0, "HELLO WORLD"), (3.0, 3.4, "AGAIN")]

    class R:  # what the writers read of a Result
        text, path, error, duration, segments = "HELLO WORLD AGAIN", "a.wav", None, 4.0, None

    R.words = words
    assert render(R, "srt").startswith("1\n00:00:00,000 --> 00:00:01,000\nHELLO WORLD\n\n2\n00:00:03,000")
    assert render(R, "vtt").startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nHELLO WORLD\n")
    assert render(R, "tsv").splitlines()[1] == "0.00\t0.50\tHELLO\t0.9000"


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    model = build_model(preset("tiny", vocab_size=len(VOCAB)), VOCAB)
    with torch.no_grad():
        model.ctc_head.weight.mul_(20)  # decisive outputs, so transcripts are long and stable
    return save_model(model, tmp_path / "tiny.safetensors")


@pytest.fixture
def audio_dir(tmp_path):
    folder = tmp_path / "audio"
    (folder / "sub").mkdir(parents=True)
    for i, (name, seconds) in enumerate([("a.wav", 2.0), ("sub/b.flac", 7.5), ("c.wav", 0.6), ("sub/d.wav", 45.0)]):
        sf.write(folder / name, speechlike(int(seconds * 16000), seed=i), 16000)
    return folder


def invoke(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def test_batch_size_and_chunking_do_not_change_transcripts(model_file, audio_dir):
    from w2v2cli import load_model

    model = load_model(model_file)
    files = sorted(audio_dir.rglob("*.*"))
    ref = [r.text for r in transcribe(model, files, batch_size=1)]
    assert all(ref) and len(set(ref)) == len(ref)
    for options in (dict(batch_size=3), dict(batch_seconds=5), dict(batch_seconds=1000)):
        assert [r.text for r in transcribe(model, files, **options)] == ref


def test_one_file_prints_bare_text(model_file, audio_dir):
    result = invoke("transcribe", "-m", model_file, audio_dir / "a.wav", "-q")
    assert result.exit_code == 0
    assert result.stdout.count("\n") == 1 and "\t" not in result.stdout and result.stdout.strip()


def test_folder_lists_path_and_text_in_order(model_file, audio_dir):
    result = invoke("transcribe", "-m", model_file, audio_dir, "-q")
    assert result.exit_code == 0
    paths = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert paths == [str(p) for p in sorted(audio_dir.rglob("*.*"))]


def test_bad_files_mixed_with_good_ones(model_file, audio_dir, tmp_path):
    (tmp_path / "empty.wav").touch()
    (tmp_path / "text.wav").write_text("not audio " * 50)
    sf.write(tmp_path / "short.wav", np.zeros(100, np.float32), 16000)
    sf.write(tmp_path / "nan.wav", np.full(8000, np.nan, np.float32), 16000, subtype="FLOAT")
    bad = ["empty.wav", "text.wav", "short.wav", "nan.wav", "missing.wav"]
    args = [audio_dir / "a.wav", *[tmp_path / b for b in bad], audio_dir / "c.wav"]
    result = invoke("transcribe", "-m", model_file, *args, "--format", "jsonl")
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(a) for a in args]
    assert [("error" in line) for line in lines] == [False, True, True, True, True, True, False]
    for name in bad:
        assert f"{tmp_path / name}: " in result.stderr
    assert "too short" in result.stderr and "Traceback" not in result.stderr


def test_stdin_paths_in_a_real_subprocess(model_file, audio_dir):
    paths = "\n".join(str(p) for p in sorted(audio_dir.rglob("*.*"))) + "\n"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-m", "w2v2cli", "transcribe", "-m", str(model_file), "-", "-f", "jsonl"],
                          input=paths, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["path"] for r in results] == paths.split()
    assert all(r["words"] and r["duration"] > 0 for r in results)
    assert "transcribed 4 of 4 files" in proc.stderr  # the summary goes to stderr, never stdout


def test_json_formats(model_file, audio_dir):
    one = json.loads(invoke("transcribe", "-m", model_file, audio_dir / "a.wav", "-f", "json", "-q").stdout)
    assert set(one) == {"path", "text", "duration", "words"} and abs(one["duration"] - 2.0) < 1e-6
    word = one["words"][0]
    assert set(word) == {"word", "start", "end", "score"} and 0 <= word["start"] < word["end"] <= 2.0
    many = json.loads(invoke("transcribe", "-m", model_file, audio_dir, "-f", "json", "-q").stdout)
    assert isinstance(many, list) and len(many) == 4


def test_subtitles_for_several_inputs_need_an_output_dir(model_file, audio_dir):
    result = invoke("transcribe", "-m", model_file, audio_dir, "-f", "srt")
    assert result.exit_code == 2 and "--output-dir" in result.stderr


def test_output_dir_atomic_and_skip_existing(model_file, audio_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    result = invoke("transcribe", "-m", model_file, audio_dir, "-o", out, "-f", "vtt", "-q")
    assert result.exit_code == 0 and result.stdout == ""
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert written == ["a.vtt", "c.vtt", "sub", "sub/b.vtt", "sub/d.vtt"]
    assert (out / "sub/d.vtt").read_text().startswith("WEBVTT")

    # Resume: finished files are neither redone nor touched; a missing one is made again.
    (out / "sub/b.vtt").unlink()
    (out / "a.vtt").write_text("kept")
    result = invoke("transcribe", "-m", model_file, audio_dir, "-o", out, "-f", "vtt", "--skip-existing")
    assert result.exit_code == 0 and "3 skipped" in result.stderr
    assert (out / "a.vtt").read_text() == "kept" and (out / "sub/b.vtt").exists()

    # A crash while writing one file leaves no partial file behind.
    def broken(result, fmt):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("w2v2cli.writers.render", broken)
    out2 = tmp_path / "out2"
    result = invoke("transcribe", "-m", model_file, audio_dir / "a.wav", "-o", out2, "-q")
    assert result.exit_code == 1 and "No space left" in result.stderr
    assert list(out2.rglob("*")) == []


def test_no_model_and_bad_options_are_one_line_errors(audio_dir, model_file):
    """No --model offline with a cold cache (the tests' environment) is the default model out of reach: exit 4."""
    for args, code, needle in [
        (["transcribe", audio_dir], 4, "--model embedded"),
        (["transcribe", "-m", model_file, audio_dir, "--device", "cuda"] if not torch.cuda.is_available()
         else ["transcribe", "-m", model_file, audio_dir, "--precision", "fp8"], 2, "--"),
        (["transcribe", "-m", model_file, audio_dir, "--batch-seconds", "0"], 2, "--batch-seconds"),
        (["transcribe", "-m", model_file, audio_dir, "--skip-existing"], 2, "--output-dir"),
    ]:
        result = invoke(*args)
        assert result.exit_code == code, (args, result.output)
        assert result.stderr.startswith("w2v2: error: ") and needle in result.stderr
        assert result.stderr.count("\n") == 1


def test_encoder_without_head_cannot_transcribe(tmp_path, audio_dir):
    path = save_model(build_model(preset("tiny")), tmp_path / "enc.safetensors")
    result = invoke("transcribe", "-m", path, audio_dir / "a.wav")
    assert result.exit_code == 2 and "no CTC head" in result.stderr


def test_beam_search_sums_paths_where_greedy_takes_the_best_frame():
    """Two frames that each lean to blank (0.6) against I (0.4): greedy reads blank twice and drops the I; beam
    search sums the paths of each text, and HI's (1 - 0.6^2 = 0.64) outweigh H's (0.36)."""
    leans_blank = {"_": 0.6, "I": 0.4}
    columns = [{"H": 0.95}, leans_blank, leans_blank, {"|": 0.95}, {"O": 0.95}, {"K": 0.95}, {"_": 0.95}]
    lp = np.full((len(columns), len(VOCAB)), 1e-4, np.float32)
    for t, probs in enumerate(columns):
        for c, p in probs.items():
            lp[t, VOCAB.blank if c == "_" else VOCAB.tokens.index(c)] = p
    lp = torch.from_numpy(np.log(lp / lp.sum(1, keepdims=True)))
    assert GreedyDecoder(VOCAB, 0.02)(lp)[0] == "H OK"
    text, words = BeamDecoder(VOCAB, 0.02, beam_width=8)(lp)
    assert text == "HI OK" and [w.word for w in words] == ["HI", "OK"]


def test_decoding_options_reach_the_library(model_file, audio_dir, monkeypatch):
    """The command hands its decoding options to `transcribe_iter` as given; --hotword implies --beam."""
    import w2v2cli.cli.transcribe as command

    received = []

    def fake(model, inputs, **options):
        received.append(options)
        return iter(())

    monkeypatch.setattr(command, "transcribe_iter", fake)
    result = invoke("transcribe", "-m", model_file, audio_dir / "a.wav", "--beam", "--beam-width", "4", "-q")
    assert result.exit_code == 0
    assert received[-1]["beam"] is True and received[-1]["beam_width"] == 4 and received[-1]["lm"] is None
    invoke("transcribe", "-m", model_file, audio_dir / "a.wav", "--hotword", "OK", "--alpha", "0.7", "-q")
    assert received[-1]["beam"] is True and received[-1]["hotwords"] == ["OK"] and received[-1]["alpha"] == 0.7
    invoke("transcribe", "-m", model_file, audio_dir / "a.wav", "-q")
    assert received[-1]["beam"] is False


def test_a_folder_without_audio_is_a_one_line_error(model_file, audio_dir, tmp_path):
    """A folder with no audio files in it, or a folder named like an audio file, is an error before any work
    starts, also next to good inputs: not an empty success."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here\n")
    named = tmp_path / "x.wav"
    named.mkdir()
    for args in ([empty], [named], [audio_dir / "a.wav", empty]):
        result = invoke("transcribe", "-m", model_file, *args, "-f", "jsonl")
        assert result.exit_code == 1 and result.stdout == "", (args, result.output)
        assert result.stderr == f"w2v2: error: {args[-1]}: no audio files found\n"


def test_output_name_clash_fails_that_input_only(model_file, audio_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    sf.write(other / "a.wav", speechlike(16000, seed=9), 16000)
    out = tmp_path / "out"
    # Absolute paths land under their bare names, so the two a.wav files would share one output file.
    inputs = [audio_dir / "a.wav", other / "a.wav", audio_dir / "c.wav"]
    result = invoke("transcribe", "-m", model_file, *inputs, "-o", out)
    assert result.exit_code == 1 and "would overwrite" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "c.txt"]


def test_without_model_the_embedded_one_is_never_used_silently(audio_dir, model_file, monkeypatch):
    """The embedded model is had by name only: without --model the default model is wanted, and offline with a
    cold cache that is an error, not the embedded model's transcript."""
    from w2v2cli import hub

    monkeypatch.setattr(hub, "EMBEDDED_MODEL", model_file)
    without = invoke("transcribe", audio_dir / "a.wav", "-q")
    assert without.exit_code == 4 and without.stdout == ""
    embedded = invoke("transcribe", "-m", "embedded", audio_dir / "a.wav", "-q")
    named = invoke("transcribe", "-m", model_file, audio_dir / "a.wav", "-q")
    assert embedded.exit_code == 0 and embedded.stdout == named.stdout != ""
