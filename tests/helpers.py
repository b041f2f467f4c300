"""What tests (and benchmarks) share: deterministic test audio, and randomly initialized transformers models saved
as Hugging Face folders, the parity reference. Fixtures live in conftest.py; everything else shared is here."""

import json
import subprocess

import numpy as np
import pytest
import torch

from w2v2cli import ModelConfig

SAMPLE_RATE = ModelConfig.sample_rate  # the rate of the test audio and of the reference models' feature extractors


def speechlike(num_samples: int, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Deterministic, non-stationary test audio: chirps with an amplitude envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    f0 = 120 + 80 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6))
    return (0.3 * voiced * envelope + 0.01 * rng.standard_normal(num_samples)).astype(np.float32)


VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|"] + list("ETAONIHSRDLUMWCFGYPBVK'XJQZ")

SMALL = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
    conv_dim=(32, 32, 32, 32), conv_kernel=(10, 3, 3, 2), conv_stride=(5, 2, 2, 2),
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
)
FORMS = {
    "group": dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False),
    "layer": dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
}


def make_hf_folder(path, form="group", arch="Wav2Vec2ForCTC", size=SMALL, seed=0, safe=True, **overrides):
    """Save a random `arch` model of the given form with tokenizer and feature extractor; return the HF model."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.Wav2Vec2Config(
        **size, **FORMS[form], vocab_size=len(VOCAB), pad_token_id=0, hidden_dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0, **overrides,
    )
    model = getattr(transformers, arch)(config).eval()
    if arch == "Wav2Vec2ForCTC":
        # Random init gives near-uniform logits; a larger head makes greedy paths well separated.
        with torch.no_grad():
            model.lm_head.weight.normal_(0, 0.1)
    model.save_pretrained(path, safe_serialization=safe)
    (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(path / "vocab.json"))
    extractor = transformers.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True,
        return_attention_mask=form == "layer",
    )
    transformers.Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(path)
    return model, extractor, tokenizer


def run_padded(model, waveforms):
    """Our model on a list of numpy waveforms as one zero-padded batch: (output, frame_lengths)."""
    lengths = torch.tensor([len(w) for w in waveforms])
    batch = torch.zeros(len(waveforms), int(lengths.max()))
    for i, w in enumerate(waveforms):
        batch[i, : len(w)] = torch.from_numpy(w)
    with torch.no_grad():
        return model(batch, lengths)


def hf_logits(model, extractor, waveforms):
    """transformers' output for a list of numpy waveforms, normalized and padded by its own feature extractor."""
    inputs = extractor(waveforms, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(inputs.input_values, attention_mask=inputs.get("attention_mask"))
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def strip_markers(text):
    """transformers' decoded text without the special tokens it leaves in, spaces as greedy decoding gives them."""
    for marker in ("<s>", "</s>", "<unk>"):
        text = text.replace(marker, "")
    return " ".join(text.split())


def run_cli(*args) -> subprocess.CompletedProcess:
    """`w2v2 ARGS` in this process (no interpreter start-up), as a CompletedProcess like subprocess.run gives."""
    from typer.testing import CliRunner

    from w2v2cli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)
