"""Model core invariants: frame lengths, padding/batch invariance, normalization, degenerate inputs."""

from pathlib import Path

import pytest
import soundfile
import torch
from helpers import speechlike
from hypothesis import given, settings
from hypothesis import strategies as st

from w2v2cli import build_model, preset
from w2v2cli.errors import ConfigError
from w2v2cli.model.components import ConvLayer, MaskedGroupNorm
from w2v2cli.model.masks import frame_lengths, num_frames, padding_mask, samples_for_frames
from w2v2cli.model.wav2vec2 import normalize_waveforms

SAMPLE_AUDIO = Path(__file__).resolve().parent.parent / "sample_audio"


def pad_batch(waveforms):
    lengths = torch.tensor([len(w) for w in waveforms])
    batch = torch.zeros(len(waveforms), int(lengths.max()))
    for i, w in enumerate(waveforms):
        batch[i, : len(w)] = w
    return batch, lengths


@given(st.integers(0, 200_000))
@settings(max_examples=60, deadline=None)
def test_frame_lengths_match_the_paper_stack(num_samples):
    cfg = preset("base")
    # 400-sample receptive field, 320-sample hop: one frame per 20 ms at 16 kHz
    expected = 0 if num_samples < 400 else (num_samples - 400) // 320 + 1
    assert int(frame_lengths(torch.tensor([num_samples]), cfg.conv_layers)) == expected
    assert (cfg.receptive_field, cfg.hop) == (400, 320)


@pytest.mark.parametrize("name", ["base", "tiny"])
def test_samples_for_frames_inverts_frame_lengths(name):
    layers = preset(name).conv_layers
    for frames in (1, 2, 7):
        fewest = samples_for_frames(frames, layers)
        assert num_frames(fewest, layers) == frames and num_frames(fewest - 1, layers) == frames - 1
    assert samples_for_frames(2, layers) == 720  # the shortest input of an exported graph (two frames)
    assert num_frames(0, layers) == 0


@given(st.integers(1, 3000), st.integers(1, 12), st.integers(1, 6))
@settings(max_examples=60, deadline=None)
def test_conv_layer_lengths_equal_real_conv_output(length, kernel, stride):
    layer = ConvLayer(1, 2, kernel, stride, bias=True, norm=None)
    out, out_len = layer(torch.randn(1, 1, length), torch.tensor([length]))
    assert out.shape[-1] == int(out_len)


@pytest.mark.parametrize("bias", [True, False])
def test_waveform_layer_as_a_matrix_product_equals_the_conv(bias):
    # The first layer (one input channel) runs on the CPU as a product over its input windows, not as a conv.
    torch.manual_seed(0)
    layer = ConvLayer(1, 16, 10, 5, bias=bias, norm=None)
    conv = torch.nn.Conv1d(1, 16, 10, stride=5, bias=bias)
    conv.load_state_dict(layer.conv.state_dict())
    for rows, length in [(1, 10), (3, 404), (2, 16005)]:
        x = torch.randn(rows, 1, length, requires_grad=True)
        out, _ = layer(x, torch.full((rows,), length))
        ref = torch.nn.functional.gelu(conv(x))
        assert out.shape == ref.shape
        assert torch.allclose(out, ref, atol=1e-6)
        grads = torch.autograd.grad(out.square().sum(), [x, *layer.conv.parameters()])
        refs = torch.autograd.grad(ref.square().sum(), [x, *conv.parameters()])
        for g, r in zip(grads, refs):
            assert torch.allclose(g, r, rtol=1e-4, atol=1e-4)


def test_masked_group_norm_equals_group_norm_without_padding():
    torch.manual_seed(0)
    x = torch.randn(3, 8, 50) * 4 + 2
    ref = torch.nn.GroupNorm(8, 8)
    ours = MaskedGroupNorm(8)
    with torch.no_grad():
        ref.weight.normal_(), ref.bias.normal_()
        ours.weight.copy_(ref.weight), ours.bias.copy_(ref.bias)
    assert torch.allclose(ours(x, torch.full((3,), 50)), ref(x), atol=1e-5)


def test_padding_mask():
    mask = padding_mask(torch.tensor([0, 2, 3]), 3)
    assert mask.tolist() == [[True, True, True], [False, False, True], [False, False, False]]


def test_batch_invariance_lengths_differ_tenfold(tiny_model):
    """Each utterance's logits in a padded batch equal its logits alone (the group-norm case included)."""
    torch.manual_seed(1)
    sizes = [32000, 3200, 17777, 6400, 32000 - 7]  # 10x between the shortest and the longest
    waveforms = [torch.from_numpy(speechlike(n, seed=i)) * (1 + i) for i, n in enumerate(sizes)]
    batch, lengths = pad_batch(waveforms)
    with torch.no_grad():
        logits, frames = tiny_model(batch, lengths)
        worst = 0.0
        for i, w in enumerate(waveforms):
            alone, alone_frames = tiny_model(w[None], None)
            assert int(alone_frames[0]) == int(frames[i]) == alone.shape[1]
            worst = max(worst, (logits[i, : frames[i]] - alone[0]).abs().max().item())
    assert worst <= 1e-4


def test_padding_amount_does_not_matter(tiny_model):
    w = torch.from_numpy(speechlike(8000, seed=4))
    with torch.no_grad():
        alone, _ = tiny_model(w[None])
        for extra in (1, 320, 40000):
            padded = torch.cat([w, torch.randn(extra) * 5])  # garbage padding must not leak either
            out, frames = tiny_model(padded[None], torch.tensor([8000]))
            assert (out[0, : frames[0]] - alone[0]).abs().max().item() <= 1e-4
            tail = out[0, frames[0]:]
            assert (tail == tiny_model.ctc_head.bias).all()  # padded frames are inert: zero hidden -> head bias


def test_unmasked_group_norm_would_not_be_invariant(vocab):
    """Guards the test above: with plain GroupNorm statistics the padded batch result does change."""
    torch.manual_seed(0)
    model = build_model(preset("tiny", vocab_size=len(vocab)), vocab).eval()
    w = torch.from_numpy(speechlike(8000, seed=4))
    layer = model.feature_encoder.layers[0]
    with torch.no_grad():
        alone = layer(w[None, None], torch.tensor([8000]))[0]
        padded = layer(torch.cat([w, torch.zeros(24000)])[None, None], torch.tensor([8000]))[0]
        n = alone.shape[-1]
        assert (padded[..., :n] - alone).abs().max() < 1e-5
        plain = torch.nn.functional.group_norm(layer.conv(torch.cat([w, torch.zeros(24000)])[None, None]), 64)
        assert (plain[..., :n] - torch.nn.functional.group_norm(layer.conv(w[None, None]), 64)).abs().max() > 1e-3


def test_normalization_uses_valid_samples_only():
    w = torch.randn(1000) * 3 + 1
    batch, lengths = pad_batch([w, w[:100]])
    out = normalize_waveforms(batch, lengths)
    assert abs(out[0].mean().item()) < 1e-5 and abs(out[0].std(unbiased=False).item() - 1) < 1e-3
    assert abs(out[1, :100].mean().item()) < 1e-5 and (out[1, 100:] == 0).all()


def test_short_and_empty_inputs_give_zero_frames(tiny_model):
    with torch.no_grad():
        for n in (1, 5, 399):
            out, frames = tiny_model(torch.randn(1, n))
            assert out.shape[:2] == (1, 0) and frames.tolist() == [0]
        out, frames = tiny_model(torch.randn(2, 400), torch.tensor([400, 50]))
        assert frames.tolist() == [1, 0] and torch.isfinite(out).all()
        mixed, frames = tiny_model(torch.randn(2, 4000), torch.tensor([4000, 10]))
        assert frames.tolist() == [12, 0] and torch.isfinite(mixed).all()


def test_eval_is_deterministic_and_train_mode_is_not(vocab):
    torch.manual_seed(0)
    model = build_model(preset("tiny", vocab_size=len(vocab), dropout=0.3), vocab)
    x = torch.randn(2, 8000)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x)[0], model(x)[0])
        model.train()
        assert not torch.equal(model(x)[0], model(x)[0])


def test_base_preset_size():
    model = build_model(preset("base"))
    assert 94e6 < model.num_parameters() < 96e6


def test_small_preln_is_small_with_a_pre_ln_transformer():
    small, preln = preset("small"), preset("small-preln")
    assert preln.layer_norm_first and not small.layer_norm_first
    assert preln.replace(layer_norm_first=False) == small
    assert build_model(preln).num_parameters() == build_model(small).num_parameters()


def test_envelope_conv_init_starts_later_layers_as_per_channel_low_pass_filters():
    torch.manual_seed(0)
    model = build_model(preset("tiny", conv_init="envelope"))
    torch.manual_seed(0)
    reference = build_model(preset("tiny"))
    first, *later = model.feature_encoder.layers
    assert torch.equal(first.conv.weight, reference.feature_encoder.layers[0].conv.weight)  # layer 0 stays random
    for layer, ref in zip(later, reference.feature_encoder.layers[1:]):
        w, kernel = layer.conv.weight, layer.conv.kernel_size[0]
        taps = torch.tensor([[0.25, 0.5, 0.25]] if kernel == 3 else [[0.5, 0.5]])
        diagonal = w[torch.arange(w.shape[0]), torch.arange(w.shape[0])]
        assert torch.allclose(diagonal, taps + 0.1 * ref.conv.weight.diagonal().T, atol=1e-6)
        off = w.clone()
        off[torch.arange(w.shape[0]), torch.arange(w.shape[0])] = 0
        ref_off = ref.conv.weight.clone()
        ref_off[torch.arange(w.shape[0]), torch.arange(w.shape[0])] = 0
        assert torch.allclose(off, 0.1 * ref_off)
    # What the start is for: adjacent frames of the untrained stack's output are alike (a rough spectrogram).
    audio, rate = soundfile.read(SAMPLE_AUDIO / "river.wav", dtype="float32")
    assert rate == model.config.sample_rate
    wave = torch.from_numpy(audio[:48000]).unsqueeze(0)

    def adjacent_cosine(m):
        with torch.no_grad():
            f, _ = m.extract_features(wave, torch.tensor([wave.shape[1]]))
        x = torch.nn.functional.normalize(f[0] - f[0].mean(0), dim=-1)
        return float((x[1:] * x[:-1]).sum(-1).mean())

    assert adjacent_cosine(model) > 0.6 > 0.45 > adjacent_cosine(reference)  # measured: 0.78 against 0.31


def test_conv_init_is_checked_and_stored():
    with pytest.raises(ConfigError, match="conv_init must be one of 'kaiming', 'envelope', not 'xavier'"):
        preset("tiny", conv_init="xavier")
    cfg = preset("small", conv_init="envelope")
    assert cfg.to_dict()["conv_init"] == "envelope" and type(cfg).from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", ["large", "large-lv60"])
def test_large_presets_are_about_317m(name):
    with torch.device("meta"):
        model = build_model(preset(name))
    assert 310e6 < model.num_parameters() < 320e6


def test_gradients_flow_through_all_parameters(vocab):
    torch.manual_seed(0)
    model = build_model(preset("tiny", vocab_size=len(vocab), layerdrop=0.0), vocab).train()
    logits, _frames = model(torch.randn(2, 8000), torch.tensor([8000, 5000]))
    (logits.logsumexp(-1).sum()).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None and n != "mask_embedding"]
    assert unused == []


@pytest.mark.slow
def test_base_group_norm_model_is_batch_invariant(vocab):
    torch.manual_seed(0)
    model = build_model(preset("base", vocab_size=len(vocab)), vocab).eval()
    waveforms = [torch.from_numpy(speechlike(n, seed=i)) for i, n in enumerate([48000, 4800, 20000])]
    batch, lengths = pad_batch(waveforms)
    with torch.no_grad():
        logits, frames = model(batch, lengths)
        for i, w in enumerate(waveforms):
            alone, _ = model(w[None])
            assert (logits[i, : frames[i]] - alone[0]).abs().max().item() <= 1e-4
