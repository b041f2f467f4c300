"""Native model files: round trips, atomic writes, and refusal of files that would run code when loaded."""

import os
import pickle
from pathlib import Path

import pytest
import torch

from w2v2cli import build_model, load_model, preset, save_model
from w2v2cli.errors import ModelFileError, UnsafeCheckpointError


@pytest.fixture
def model(vocab):
    torch.manual_seed(0)
    return build_model(preset("tiny", vocab_size=len(vocab)), vocab).eval()


def test_safetensors_round_trip_is_exact(tmp_path, model):
    path = save_model(model, tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert loaded.config == model.config and loaded.vocab == model.vocab
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    x = torch.randn(2, 6000)
    with torch.no_grad():
        assert torch.equal(model(x)[0], loaded(x)[0])
    assert not loaded.training


def test_weights_only_torch_file_loads(tmp_path, model):
    path = tmp_path / "m.pt"
    state = {"config": model.config.to_dict(), "vocab": model.vocab.to_dict(), "state_dict": model.state_dict()}
    torch.save(state, path)
    loaded = load_model(path)
    assert torch.equal(loaded.ctc_head.weight, model.ctc_head.weight)


def test_encoder_without_head_round_trips(tmp_path):
    encoder = build_model(preset("tiny"))
    loaded = load_model(save_model(encoder, tmp_path / "e.safetensors"))
    assert loaded.vocab is None and loaded.ctc_head is None


class RunsACommand:
    """A pickle payload: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("container", ["torch.save", "raw-pickle"])
@pytest.mark.parametrize("name", ["evil.pt", "pytorch_model.bin"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, container, name):
    marker = tmp_path / "pwned"
    payload = {"config": {}, "state_dict": {"x": torch.zeros(1)}, "evil": RunsACommand(marker)}
    if name == "pytorch_model.bin":  # inside an otherwise valid Hugging Face folder
        folder = tmp_path / "hf"
        folder.mkdir()
        (folder / "config.json").write_text('{"model_type": "wav2vec2"}')
        path, target = folder / name, folder
    else:
        path = target = tmp_path / name
    if container == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    # Sanity: an unrestricted unpickler would run it.
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError) as err:
        load_model(target)
    assert not marker.exists()
    message = str(err.value)
    assert str(path) in message and "arbitrary unpickling" in message and "\n" not in message


def test_the_payload_really_runs_when_unpickled_unsafely(tmp_path):
    """Guards the test above: the same file does run its command under a plain unpickler."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"evil": RunsACommand(marker)}, path)
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "not a readable safetensors file"),
        (b"\x00" * 100, "not a readable safetensors file"),
    ],
)
def test_corrupt_safetensors(tmp_path, content, reason):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=reason):
        load_model(path)


def test_truncated_model_file(tmp_path, model):
    path = save_model(model, tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ModelFileError):
        load_model(path)


def test_foreign_safetensors_without_config(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, path)
    with pytest.raises(ModelFileError, match="without a w2v2 model config"):
        load_model(path)


def test_mismatched_weights_are_reported(tmp_path, model):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = save_model(model, tmp_path / "m.safetensors")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    state = load_file(path)
    state.pop("ctc_head.bias")
    save_file(state, path, metadata=meta)
    with pytest.raises(ModelFileError, match="1 missing"):
        load_model(path)


def test_missing_path_and_unknown_suffix(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        load_model(tmp_path / "nope.safetensors")
    (tmp_path / "model.onnx.txt").write_text("x")
    with pytest.raises(ModelFileError, match="unknown model file type"):
        load_model(tmp_path / "model.onnx.txt")


def test_save_is_atomic(tmp_path, model, monkeypatch):
    path = save_model(model, tmp_path / "m.safetensors")
    before = path.read_bytes()
    import safetensors.torch

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(ModelFileError, match="No space left"):
        save_model(model, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_atomic_writes_keep_the_replaced_files_mode(tmp_path):
    """A file written atomically gets a new file's usual mode (not mkstemp's private 0600), and replacing a file
    keeps that file's mode."""
    import os

    from w2v2cli.io.atomic import atomic_open

    mask = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "new.txt") as f:
            f.write("a")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o644
        (tmp_path / "new.txt").chmod(0o640)
        with atomic_open(tmp_path / "new.txt") as f:
            f.write("b")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640
        assert (tmp_path / "new.txt").read_text() == "b"
    finally:
        os.umask(mask)


def test_loaders_never_import_the_module_that_dispatches_to_them():
    """load_model (io/checkpoint.py) imports the loaders; a loader importing it back would close a cycle."""
    import ast

    import w2v2cli

    root = Path(w2v2cli.__file__).parent
    for loader in ("io/native.py", "io/hf.py", "io/common.py", "onnx_model.py"):
        tree = ast.parse((root / loader).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not imported & {"checkpoint", "io.checkpoint", "io"}, loader
