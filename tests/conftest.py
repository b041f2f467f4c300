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
