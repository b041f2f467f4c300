"""Parity with transformers: HF folders loaded by w2v2cli.load_model give the same logits and transcripts."""

import json

import pytest
import torch
from helpers import SAMPLE_RATE, SMALL, hf_logits, make_hf_folder, run_padded, speechlike, strip_markers

from w2v2cli import load_model
from w2v2cli.decode import greedy_decode

LENGTHS = [SAMPLE_RATE, 4100, 9999]  # 1 s and two odd lengths


@pytest.mark.parametrize("form", ["group", "layer"])
@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_ctc_logits_and_transcripts_match_transformers(tmp_path, form, safe):
    hf_model, extractor, tokenizer = make_hf_folder(tmp_path, form, safe=safe)
    model = load_model(tmp_path)
    assert model.config.normalize_waveform and model.config.feature_norm == form
    waveforms = [speechlike(n, seed=i) for i, n in enumerate(LENGTHS)]
    for w in waveforms:  # one at a time: transformers' own batch-of-one result is the reference
        ref = hf_logits(hf_model, extractor, [w])
        logits, frames = run_padded(model, [w])
        assert logits.shape == ref.shape and int(frames[0]) == ref.shape[1]
        assert (logits - ref).abs().max().item() <= 1e-4
        ref_text = strip_markers(tokenizer.batch_decode(ref.argmax(-1))[0])
        assert greedy_decode(logits, frames, model.vocab) == [ref_text]
        assert ref_text  # the comparison is not between two empty strings


def test_layer_norm_model_matches_transformers_on_padded_batch(tmp_path):
    # transformers honours attention masks for layer-norm models, so padded batches must agree too.
    hf_model, extractor, _ = make_hf_folder(tmp_path, "layer")
    model = load_model(tmp_path)
    waveforms = [speechlike(n, seed=i) for i, n in enumerate(LENGTHS)]
    ref = hf_logits(hf_model, extractor, waveforms)
    logits, frames = run_padded(model, waveforms)
    for i, n in enumerate(frames.tolist()):
        assert (logits[i, :n] - ref[i, :n]).abs().max().item() <= 1e-4


@pytest.mark.parametrize("arch", ["Wav2Vec2ForPreTraining", "Wav2Vec2Model"])
@pytest.mark.parametrize("form", ["group", "layer"])
def test_encoder_only_folders_match_transformers(tmp_path, arch, form):
    hf_model, extractor, _ = make_hf_folder(tmp_path, form, arch=arch)
    model = load_model(tmp_path)
    assert model.ctc_head is None and model.vocab is None
    w = speechlike(12345, seed=3)
    inputs = extractor([w], sampling_rate=SAMPLE_RATE, return_tensors="pt")
    with torch.no_grad():
        encoder = hf_model.wav2vec2 if arch == "Wav2Vec2ForPreTraining" else hf_model
        ref = encoder(inputs.input_values).last_hidden_state
    hidden, _ = run_padded(model, [w])
    assert (hidden - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize(
    "overrides",
    [
        dict(conv_dim=(16, 24, 40), conv_kernel=(7, 5, 3), conv_stride=(3, 3, 2)),
        dict(hidden_act="relu", num_conv_pos_embeddings=15),
        dict(hidden_act="gelu_new", num_hidden_layers=3, layer_norm_eps=1e-6),
    ],
    ids=["odd-conv-stack", "relu-odd-pos-kernel", "gelu_new-eps"],
)
def test_unusual_configs_load_and_match(tmp_path, overrides):
    size = {**SMALL, **overrides}
    hf_model, extractor, _ = make_hf_folder(tmp_path, "group", size=size)
    model = load_model(tmp_path)
    w = speechlike(8000, seed=5)
    ref = hf_logits(hf_model, extractor, [w])
    logits, _ = run_padded(model, [w])
    assert logits.shape == ref.shape
    assert (logits - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("layout", ["processor_config", "preprocessor_config"])
def test_do_normalize_false_is_honoured(tmp_path, layout):
    hf_model, extractor, _ = make_hf_folder(tmp_path, "group")
    if layout == "preprocessor_config":  # the file older transformers versions write
        (tmp_path / "processor_config.json").unlink()
        extractor.do_normalize = False
        extractor.save_pretrained(tmp_path)
        assert (tmp_path / "preprocessor_config.json").exists()
    else:
        text = (tmp_path / "processor_config.json").read_text()
        assert '"do_normalize": true' in text
        (tmp_path / "processor_config.json").write_text(text.replace('"do_normalize": true', '"do_normalize": false'))
    model = load_model(tmp_path)
    assert not model.config.normalize_waveform
    w = speechlike(8000, seed=6) * 3
    with torch.no_grad():
        ref = hf_model(torch.from_numpy(w)[None]).logits
    logits, _ = run_padded(model, [w])
    assert (logits - ref).abs().max().item() <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("form", ["group", "layer"])
def test_real_base_config_matches_transformers(tmp_path, form):
    base = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16)
    hf_model, extractor, tokenizer = make_hf_folder(tmp_path, form, size=base)
    model = load_model(tmp_path)
    assert 94e6 < model.num_parameters() < 96e6
    w = speechlike(24000, seed=7)
    ref = hf_logits(hf_model, extractor, [w])
    logits, frames = run_padded(model, [w])
    assert (logits - ref).abs().max().item() <= 1e-4
    assert greedy_decode(logits, frames, model.vocab) == [strip_markers(tokenizer.batch_decode(ref.argmax(-1))[0])]


def test_old_weight_norm_names_load(tmp_path):
    # Checkpoints saved before torch's parametrized weight norm name the positional conv weight_g / weight_v.
    from safetensors.torch import load_file, save_file

    hf_model, extractor, _ = make_hf_folder(tmp_path, "group")
    state = load_file(tmp_path / "model.safetensors")
    prefix = "wav2vec2.encoder.pos_conv_embed.conv."
    state[prefix + "weight_g"] = state.pop(prefix + "parametrizations.weight.original0")
    state[prefix + "weight_v"] = state.pop(prefix + "parametrizations.weight.original1")
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model = load_model(tmp_path)
    w = speechlike(8000, seed=8)
    ref = hf_logits(hf_model, extractor, [w])
    assert (run_padded(model, [w])[0] - ref).abs().max().item() <= 1e-4


def test_pretraining_head_of_a_hf_folder_matches_transformers(tmp_path):
    """Wav2Vec2ForPreTraining's quantizer (eval: hard choice) and projections, read into the native head."""
    from w2v2cli.config import PretrainConfig
    from w2v2cli.io.checkpoint import load_pretraining_head
    from w2v2cli.model.quantizer import PretrainingHead

    hf_model, extractor, _ = make_hf_folder(tmp_path, "group", arch="Wav2Vec2ForPreTraining",
                                            num_codevector_groups=2, num_codevectors_per_group=24,
                                            codevector_dim=32, proj_codevector_dim=16)
    model = load_model(tmp_path)
    head_state, cfg_json = load_pretraining_head(tmp_path)
    cfg = PretrainConfig.from_dict(json.loads(cfg_json))
    assert (cfg.codebook_groups, cfg.codebook_entries, cfg.codevector_dim, cfg.final_dim) == (2, 24, 32, 16)
    head = PretrainingHead(model.feature_encoder.out_channels, model.config.dim, cfg)
    head.load_state_dict(head_state)
    head.eval()
    wave = torch.from_numpy(speechlike(SAMPLE_RATE, seed=3))[None]
    inputs = extractor([wave[0].numpy()], sampling_rate=SAMPLE_RATE, return_tensors="pt")
    with torch.no_grad():
        hf_out = hf_model.wav2vec2(inputs.input_values)
        theirs, _ = hf_model.quantizer(hf_out.extract_features)
        features, _frames = model.extract_features(inputs.input_values, torch.tensor([SAMPLE_RATE]))
        _, normalized = model.feature_projection(features)
        ours = head.quantizer(normalized[0]).quantized
        assert torch.allclose(ours, theirs[0], atol=1e-5)
        assert torch.allclose(head.project_q(ours), hf_model.project_q(theirs[0]), atol=1e-5)
        hidden = model(inputs.input_values)[0][0]
        assert torch.allclose(head.final_proj(hidden), hf_model.project_hid(hf_out.last_hidden_state[0]), atol=1e-4)
