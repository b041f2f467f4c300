"""Audio input: formats, resampling, downmixing, and one clear error per kind of bad file."""

import os

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import speechlike

from w2v2cli.errors import AudioError
from w2v2cli.io.audio import audio_info, find_audio_files, load_audio, resample


@pytest.mark.parametrize(
    "ext, subtype",
    [(".wav", "PCM_16"), (".wav", "PCM_24"), (".wav", "FLOAT"), (".wav", "PCM_U8"), (".flac", None), (".ogg", None),
     (".mp3", None)],
)
def test_formats_decode_to_float32_16k(tmp_path, ext, subtype):
    x = speechlike(16000)
    path = tmp_path / f"a{ext}"
    if ext == ".mp3" and "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    sf.write(path, x, 16000, subtype=subtype)
    y = load_audio(path)
    assert y.dtype == torch.float32 and y.ndim == 1
    assert abs(len(y) - 16000) <= 1200  # lossy codecs may add encoder delay/padding
    if ext in (".wav", ".flac"):
        tolerance = 1e-2 if subtype == "PCM_U8" else 1e-4
        assert np.abs(y.numpy() - x).max() < tolerance


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_any_rate_is_resampled_to_16k(tmp_path, rate):
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(tmp_path / "a.wav", tone, rate, subtype="FLOAT")
    y = load_audio(tmp_path / "a.wav").numpy()
    assert len(y) == 16000
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 s at 16 kHz: bin k is k Hz


def test_resample_matches_torchaudio_directly():
    import torchaudio.functional as F

    x = torch.from_numpy(speechlike(22050, sample_rate=22050))
    assert torch.equal(resample(x, 22050, 16000), F.resample(x, 22050, 16000))
    assert resample(x, 16000, 16000) is x


def test_multichannel_is_downmixed(tmp_path):
    left, right = speechlike(8000, seed=1), speechlike(8000, seed=2)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    y = load_audio(tmp_path / "s.wav").numpy()
    assert np.allclose(y, (left + right) / 2, atol=1e-6)


def test_short_audio_is_valid(tmp_path):
    sf.write(tmp_path / "short.wav", np.zeros(100, np.float32), 16000)
    assert len(load_audio(tmp_path / "short.wav")) == 100


def test_audio_info_reads_the_header(tmp_path):
    sf.write(tmp_path / "a.flac", speechlike(12345), 16000)
    assert audio_info(tmp_path / "a.flac") == (12345, 16000)


def _write_bad(tmp_path, kind):
    path = tmp_path / f"{kind}.wav"
    if kind == "missing":
        return path
    if kind == "zero-bytes":
        path.touch()
    elif kind == "no-samples":
        sf.write(path, np.zeros(0, np.float32), 16000)
    elif kind == "not-audio":
        path.write_text("this is a text file, not audio\n" * 20)
    elif kind == "truncated-wav":
        sf.write(path, speechlike(16000), 16000)
        path.write_bytes(path.read_bytes()[:20000])
    elif kind == "truncated-flac":
        path = tmp_path / "t.flac"
        sf.write(path, speechlike(48000), 16000)
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif kind == "nan":
        sf.write(path, np.array([0.1, np.nan] * 500, np.float32), 16000, subtype="FLOAT")
    elif kind == "inf":
        sf.write(path, np.array([0.1, np.inf] * 500, np.float32), 16000, subtype="FLOAT")
    elif kind == "directory":
        path = tmp_path / "dir.wav"
        path.mkdir()
    elif kind == "unreadable":
        sf.write(path, speechlike(1000), 16000)
        path.chmod(0)
    return path


@pytest.mark.parametrize(
    "kind, reason",
    [("missing", "no such file"), ("zero-bytes", "empty file"), ("no-samples", "no audio samples"),
     ("not-audio", "not a recognized audio file"), ("truncated-wav", "truncated"), ("truncated-flac", "cannot decode"),
     ("nan", "NaN or infinite"), ("inf", "NaN or infinite"), ("directory", "is a directory"),
     ("unreadable", "permission denied")],
)
def test_bad_files_raise_one_clear_error(tmp_path, kind, reason, monkeypatch):
    path = _write_bad(tmp_path, kind)
    if kind == "unreadable" and os.access(path, os.R_OK):  # root ignores file modes: let access() say no
        monkeypatch.setattr("w2v2cli.io.audio.os.access", lambda p, mode: False)
    with pytest.raises(AudioError) as err:
        load_audio(path)
    message = str(err.value)
    assert message.startswith(str(path)) and reason in message and "\n" not in message


def test_find_audio_files_recurses_and_sorts(tmp_path):
    (tmp_path / "b" / "c").mkdir(parents=True)
    for name in ("b/c/z.flac", "a.wav", "b/x.MP3", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_audio_files(tmp_path)]
    assert found == ["a.wav", "b/c/z.flac", "b/x.MP3"]


def test_audio_too_short_for_one_frame_is_an_error(tmp_path):
    sf.write(tmp_path / "blip.wav", np.zeros(399, np.float32), 16000)
    with pytest.raises(AudioError, match="too short"):
        load_audio(tmp_path / "blip.wav", min_samples=400)
    assert len(load_audio(tmp_path / "blip.wav", min_samples=399)) == 399


def test_a_span_is_read_by_seeking_and_equals_the_slice(tmp_path):
    from w2v2cli.io.audio import AudioSpan

    x = speechlike(3 * 44100, sample_rate=44100)
    sf.write(tmp_path / "long.flac", x, 44100, subtype="PCM_24")
    whole = load_audio(tmp_path / "long.flac", 44100).numpy()
    part = load_audio(AudioSpan(tmp_path / "long.flac", 1.0, 0.5), 44100).numpy()
    assert np.array_equal(part, whole[44100:44100 + 22050])
    assert len(load_audio(AudioSpan(tmp_path / "long.flac", 2.5), 16000)) == 8000  # to the end, resampled
    with pytest.raises(AudioError, match=r"long\.flac \[2\.500-4\.000 s\]: ends at 4\.000 s, past the end"):
        load_audio(AudioSpan(tmp_path / "long.flac", 2.5, 1.5))
    with pytest.raises(AudioError, match=r"starts at 3\.500 s, past the end of the file"):
        load_audio(AudioSpan(tmp_path / "long.flac", 3.5, 0.1))


def test_audio_from_a_byte_source_decodes_like_the_file(tmp_path):
    from dataclasses import dataclass

    from w2v2cli.io.audio import AudioSpan

    @dataclass(frozen=True)
    class Bytes:
        raw: bytes

        def read(self) -> bytes:
            return self.raw

    sf.write(tmp_path / "a.wav", speechlike(8000), 16000)
    span = AudioSpan(tmp_path / "list.txt", data=Bytes((tmp_path / "a.wav").read_bytes()), label="list.txt:3")
    assert torch.equal(load_audio(span), load_audio(tmp_path / "a.wav"))
    assert audio_info(span) == (8000, 16000)
    with pytest.raises(AudioError, match=r"^list\.txt:3: empty audio"):
        load_audio(AudioSpan(tmp_path / "list.txt", data=Bytes(b""), label="list.txt:3"))


def test_find_audio_files_includes_what_ffmpeg_decodes(tmp_path):
    for name in ("a.m4a", "b.webm", "c.wma", "d.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in find_audio_files(tmp_path)] == ["a.m4a", "b.webm", "c.wma"]
