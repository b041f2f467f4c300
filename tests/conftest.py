import sys

import pytest
import torch
from hub_server import serve

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


DEAD_ENDPOINT = "http://127.0.0.1:9"  # the discard port: connection refused


@pytest.fixture(autouse=True)
def offline(tmp_path_factory, monkeypatch):
    """Every test runs offline with an empty Hugging Face cache: HF_HUB_OFFLINE set, the endpoint a dead local port,
    HF_HOME a folder of this session. A test that forgets `--model embedded` (the default model is downloaded)
    fails at once with the one-line "not cached" error instead of reaching the internet; subprocesses inherit
    the same environment. `hf_home` (the stand-in Hub's tests) lifts it."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", DEAD_ENDPOINT)
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf-home-offline"))
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported already: it froze the environment it saw then
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        monkeypatch.setattr(constants, "ENDPOINT", DEAD_ENDPOINT)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            DEAD_ENDPOINT + "/{repo_id}/resolve/{revision}/{filename}")


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """huggingface_hub with its cache in tmp_path, online, without a token, and unable to reach huggingface.co.

    huggingface_hub reads its settings once, at import: hub.py reads the environment again at each call, and the
    values the library froze are pointed somewhere harmless, so that a request that does not go through the
    stand-in fails instead of leaving the machine.
    """
    from huggingface_hub import constants

    for name in ("HF_ENDPOINT", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                 "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(constants, "ENDPOINT", DEAD_ENDPOINT)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        DEAD_ENDPOINT + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)  # else: GET {ENDPOINT}/api/agent-harnesses
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    return tmp_path / "hf-home"


@pytest.fixture
def start_hub(hf_home, monkeypatch):
    """Start a stand-in Hub and point HF_ENDPOINT at it; stopped after the test."""
    servers = []

    def start(repos, **kwargs):
        servers.append(serve(repos, **kwargs).start())
        monkeypatch.setenv("HF_ENDPOINT", servers[-1].url)
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
        assert server.hits("other") == [], "a request the stand-in does not know"
