"""Windowed, batched inference: windows tile the frames, whole-file statistics make windowed conv features
exact, and results do not depend on batching or chunking (beyond the Transformer's cut context)."""

import pytest
import torch
from helpers import speechlike
from hypothesis import given, settings
from hypothesis import strategies as st

from w2v2cli.inference import EmissionRunner, pack_batches, plan_windows
from w2v2cli.model.stats import UtteranceStats, utterance_stats

HOP, RF = 320, 400


@given(st.integers(400, 2_000_000), st.integers(1, 2000), st.integers(0, 300))
@settings(max_examples=200, deadline=None)
def test_windows_tile_every_frame_once(num_samples, chunk_frames, context_frames):
    num_frames = (num_samples - RF) // HOP + 1
    windows = plan_windows(0, num_samples, num_frames, HOP, RF, chunk_frames, context_frames)
    covered = []
    for w in windows:
        assert 0 <= w.start < w.end <= num_samples and w.start % HOP == 0
        window_frames = (w.end - w.start - RF) // HOP + 1
        assert 0 <= w.keep_from < w.keep_to <= window_frames
        assert w.frame_offset == w.start // HOP + w.keep_from
        if len(windows) > 1:  # context on both sides wherever the file allows it
            assert w.keep_from == min(context_frames, w.frame_offset)
        covered.extend(range(w.frame_offset, w.frame_offset + w.keep_to - w.keep_from))
    assert covered == list(range(num_frames))


def test_batches_respect_the_budget_and_keep_every_window():
    windows = [w for i, n in enumerate([5000, 90000, 400, 33333, 70000, 70000])
               for w in plan_windows(i, n, (n - RF) // HOP + 1, HOP, RF, 100, 10)]
    batches = pack_batches(windows, max_samples=100000, max_batch=3)
    key = lambda w: (w.item, w.start)
    assert sorted((w for b in batches for w in b), key=key) == sorted(windows, key=key)
    for b in batches:
        longest = max(w.end - w.start for w in b)
        assert len(b) <= 3 and (len(b) == 1 or len(b) * longest <= 100000)


def test_whole_file_stats_equal_the_models_own(tiny_model):
    w = torch.from_numpy(speechlike(50000, seed=2))
    with torch.no_grad():
        ref, _ = tiny_model(w[None])
        out, _ = tiny_model(w[None], None, utterance_stats(tiny_model, w))
    assert (out - ref).abs().max().item() <= 1e-4


def test_first_layer_stats_merge_blocks_exactly(tiny_model, monkeypatch):
    """Blockwise statistics of a padded batch equal float64 statistics over each row's valid frames."""
    from w2v2cli.model.components import FeatureEncoder

    monkeypatch.setattr(FeatureEncoder, "block_frames", 7)  # many blocks, ragged ends, blocks past a row's end
    lengths = torch.tensor([48000, 7001, 30000])
    batch = torch.zeros(3, 48000)
    for i, n in enumerate(lengths.tolist()):
        batch[i, :n] = torch.from_numpy(speechlike(n, seed=i)) * (i + 1) + 0.3 * i
    encoder = tiny_model.feature_encoder
    with torch.no_grad():
        mean, var = encoder.first_layer_stats(batch, lengths)
        out = encoder.layers[0].conv(batch[:, None]).double()
    for i, n in enumerate(lengths.tolist()):
        frames = out[i, :, : (n - encoder.layers[0].kernel) // encoder.layers[0].stride + 1]
        assert torch.allclose(mean[i, :, 0].double(), frames.mean(-1), rtol=1e-5, atol=1e-6)
        assert torch.allclose(var[i, :, 0].double(), frames.var(-1, unbiased=False), rtol=1e-5, atol=1e-6)


def test_first_layer_stats_with_waveform_normalization(tiny_model):
    """With `wave_stats` the statistics are those of the layer run on the normalized waveform."""
    w = torch.from_numpy(speechlike(40000, seed=7)) * 4 + 0.5
    wave_mean, wave_var = w.double().mean(), w.double().var(unbiased=False)
    stats = (wave_mean.float().view(1, 1), wave_var.float().view(1, 1))
    encoder = tiny_model.feature_encoder
    with torch.no_grad():
        mean, var = encoder.first_layer_stats(w[None], torch.tensor([len(w)]), stats)
        normalized = ((w.double() - wave_mean) / (wave_var + 1e-7).sqrt()).float()
        out = encoder.layers[0].conv(normalized[None, None]).double()[0]
    assert torch.allclose(mean[0, :, 0].double(), out.mean(-1), rtol=1e-5, atol=1e-6)
    assert torch.allclose(var[0, :, 0].double(), out.var(-1, unbiased=False), rtol=1e-5, atol=1e-6)


def test_windowed_conv_features_are_exact(tiny_model):
    """With whole-file statistics, a window's conv features equal the same frames of the whole file."""
    w = torch.from_numpy(speechlike(16000 * 7, seed=5) * 3 + 0.2)
    stats = utterance_stats(tiny_model, w)
    with torch.no_grad():
        whole, _ = tiny_model.extract_features(w[None], torch.tensor([len(w)]))
        for window in plan_windows(0, len(w), whole.shape[1], HOP, RF, 60, 10):
            piece = w[window.start:window.end]
            feats, _ = tiny_model.extract_features(piece[None], torch.tensor([len(piece)]), stats)
            start = window.start // HOP
            assert (feats[0] - whole[0, start:start + feats.shape[1]]).abs().max().item() <= 1e-4


def test_windowed_features_without_whole_file_stats_would_differ(vocab):
    """Guards the test above: per-window GroupNorm statistics change the features."""
    from w2v2cli import build_model, preset

    torch.manual_seed(0)
    model = build_model(preset("tiny", vocab_size=len(vocab)), vocab).eval()
    w = torch.from_numpy(speechlike(16000 * 4, seed=5))
    w[16000:] *= 5  # louder later on: the first second's statistics are not the whole file's
    with torch.no_grad():
        whole, _ = model.extract_features(w[None], torch.tensor([len(w)]))
        piece = w[: 16000]
        alone, _ = model.extract_features(piece[None], torch.tensor([len(piece)]))
    assert (alone[0] - whole[0, : alone.shape[1]]).abs().max().item() > 1e-3


def test_chunked_matches_unchunked_away_from_ties(tiny_model):
    w = torch.from_numpy(speechlike(16000 * 20, seed=3))
    full = EmissionRunner(tiny_model, chunk_seconds=100).run([w])[0]
    chunked = EmissionRunner(tiny_model, chunk_seconds=3, context_seconds=1).run([w])[0]
    assert chunked.shape == full.shape
    assert (chunked - full).abs().max().item() < 0.1  # only the Transformer's far context differs
    top2 = full.topk(2, -1).values
    decided = (top2[:, 0] - top2[:, 1]) > 0.2  # frames whose best token is not a near-tie
    assert decided.float().mean() > 0.3
    assert torch.equal(chunked.argmax(-1)[decided], full.argmax(-1)[decided])


@pytest.mark.parametrize("batch_size, batch_seconds", [(1, 60), (2, 60), (None, 1), (None, 600)])
def test_emissions_do_not_depend_on_batching(tiny_model, batch_size, batch_seconds):
    waveforms = [torch.from_numpy(speechlike(n, seed=i)) for i, n in enumerate([16000, 4000, 99999, 400, 30000])]
    ref = EmissionRunner(tiny_model, batch_size=1, chunk_seconds=2, context_seconds=0.5).run(waveforms)
    out = EmissionRunner(tiny_model, batch_size=batch_size, batch_seconds=batch_seconds, chunk_seconds=2,
                         context_seconds=0.5).run(waveforms)
    for a, b in zip(ref, out):
        assert a.shape == b.shape and (a - b).abs().max().item() <= 1e-4


def test_stats_stack_and_move():
    a = UtteranceStats(torch.zeros(1, 1), torch.ones(1, 1), None, None)
    both = UtteranceStats.stack([a, a]).to("cpu")
    assert both.wave_mean.shape == (2, 1) and both.group is None


@pytest.mark.parametrize("setting, value", [("block_frames", 37), ("block_budget", 30)])
def test_blockwise_feature_encoder_equals_the_whole_stack(tiny_model, monkeypatch, setting, value):
    """At inference, long inputs run through the conv stack in blocks (a cap per row, or a budget across rows
    down to the smallest block); the result must not change."""
    from w2v2cli.model.components import FeatureEncoder

    waveforms = [torch.from_numpy(speechlike(n, seed=i)) * (i + 1) for i, n in enumerate([48000, 7000, 30001])]
    lengths = torch.tensor([len(w) for w in waveforms])
    batch = torch.zeros(3, int(lengths.max()))
    for i, w in enumerate(waveforms):
        batch[i, : len(w)] = w
    defaults = {name: getattr(FeatureEncoder, name) for name in ("block_frames", "block_budget")}
    with torch.no_grad():
        for name in defaults:
            monkeypatch.setattr(FeatureEncoder, name, 10**9)
        whole, whole_lengths = tiny_model(batch, lengths)  # the whole stack at once
        for name, default in defaults.items():
            monkeypatch.setattr(FeatureEncoder, name, value if name == setting else default)
        blocked, blocked_lengths = tiny_model(batch, lengths)  # many blocks, with ragged ends
    assert torch.equal(whole_lengths, blocked_lengths)
    for i, n in enumerate(whole_lengths.tolist()):
        assert (blocked[i, :n] - whole[i, :n]).abs().max().item() <= 1e-4
