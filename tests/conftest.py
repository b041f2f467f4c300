import numpy as np
import pytest
import torch

from w2v2cli import Vocabulary, build_model, preset

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'"


@pytest.fixture
def vocab():
    return Vocabulary.from_characters(LETTERS)


@pytest.fixture(params=["group", "layer"])
def tiny_model(request, vocab):
    """A randomly initialized tiny CTC model in each feature-encoder mode (layer mode also pre-LN)."""
    torch.manual_seed(0)
    layer = request.param == "layer"
    cfg = preset("tiny", vocab_size=len(vocab), feature_norm=request.param, layer_norm_first=layer,
                 conv_bias=layer, normalize_waveform=layer)
    return build_model(cfg, vocab).eval()


def speechlike(num_samples: int, seed: int = 0, sample_rate: int = 16000) -> np.ndarray:
    """Deterministic, non-stationary test audio: chirps with an amplitude envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    f0 = 120 + 80 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6))
    return (0.3 * voiced * envelope + 0.01 * rng.standard_normal(num_samples)).astype(np.float32)
