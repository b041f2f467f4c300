"""The embedded default model: packaging (fp16, provenance, checked before writing), `w2v2 info` showing how it
was trained, the `make demo` WER table, and the shipped file itself when the package has one."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import speechlike
from typer.testing import CliRunner

import w2v2cli.demo as demo
from w2v2cli import build_model, hub, load_model, preset, save_model
from w2v2cli.cli import app
from w2v2cli.summary import read_provenance

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
PROVENANCE = {"name": "test model", "trained_on": "nothing", "results": [{"set": "dev", "wer": 0.5}]}


def package_module():
    spec = importlib.util.spec_from_file_location("package_model", ROOT / "recipes/synthetic-en/package_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def labeled_folder(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    for n in range(2):
        sf.write(folder / f"u{n}.wav", speechlike(16000 + 4000 * n, seed=n), 16000)
        (folder / f"u{n}.txt").write_text("HELLO WORLD\n")
    return folder


@pytest.fixture
def fp32_model(tmp_path, vocab):
    torch.manual_seed(0)
    return save_model(build_model(preset("tiny", vocab_size=len(vocab)), vocab), tmp_path / "fp32.safetensors")


def test_packaged_model_is_fp16_with_provenance(tmp_path, fp32_model, labeled_folder, monkeypatch):
    (tmp_path / "provenance.json").write_text(json.dumps(PROVENANCE))
    out = tmp_path / "pkg" / "default.safetensors"
    monkeypatch.setattr(sys, "argv", ["package_model.py", str(fp32_model), str(tmp_path / "provenance.json"),
                                      "--out", str(out), "--check-audio", str(labeled_folder)])
    assert package_module().main() == 0
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}  # noqa: SIM118 -- safe_open is not iterable
    assert read_provenance(out) == PROVENANCE
    assert out.stat().st_size < 0.6 * fp32_model.stat().st_size
    original, packaged = load_model(fp32_model), load_model(out)
    assert next(packaged.parameters()).dtype == torch.float32  # fp16 is storage only
    x, n = torch.as_tensor(speechlike(8000))[None], torch.tensor([8000])
    with torch.inference_mode():
        assert torch.allclose(original.eval()(x, n)[0], packaged.eval()(x, n)[0], atol=0.05)
    data = json.loads(runner.invoke(app, ["info", str(out), "--json"]).output)
    assert data["provenance"] == PROVENANCE
    table = runner.invoke(app, ["info", str(out)]).output
    assert "how it was trained" in table and "set dev, wer 0.5" in table


def test_info_and_demo_use_the_embedded_model(fp32_model, labeled_folder, monkeypatch, capsys):
    monkeypatch.setattr(hub, "EMBEDDED_MODEL", fp32_model)
    result = runner.invoke(app, ["info", "embedded", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["source"] == str(fp32_model)
    assert demo.main(str(labeled_folder)) == 0
    out = capsys.readouterr().out
    assert "u0" in out and "u1" in out and "HELLO WORLD" in out and "all" in out and "%" in out


def test_the_demo_and_lm_default_use_the_embedded_language_model(tmp_path, fp32_model, labeled_folder, monkeypatch,
                                                                  capsys):
    """With an embedded word LM beside the model, the demo scores beam search with it next to greedy, and
    `--lm default` names it; without one, `--lm default` is a one-line error."""
    import gzip

    from w2v2cli.lm import arpa_text, estimate

    lm = tmp_path / "default-lm.arpa.gz"
    with gzip.open(lm, "wt") as f:
        f.write(arpa_text(estimate(["HELLO WORLD", "HELLO THERE"])))
    monkeypatch.setattr(hub, "EMBEDDED_MODEL", fp32_model)
    monkeypatch.setattr(hub, "EMBEDDED_LM", lm)
    assert demo.main(str(labeled_folder)) == 0
    out = capsys.readouterr().out
    assert "WER with the LM" in out and out.count("%") >= 6
    described = json.loads(runner.invoke(app, ["info", "embedded", "--json"]).output)
    assert described["language_model"]["ngrams"] == [6, 5, 4] and described["language_model"]["file"] == str(lm)
    result = runner.invoke(app, ["evaluate", "-m", "embedded", "--data", str(labeled_folder), "--lm", "default",
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sets"][0]["utterances"] == 2
    monkeypatch.setattr(hub, "EMBEDDED_LM", tmp_path / "none.arpa.gz")
    result = runner.invoke(app, ["transcribe", "-m", "embedded", str(labeled_folder / "u0.wav"), "--lm", "default"])
    assert result.exit_code == 2 and "--lm default: this model has no word language model" in result.output


def test_demo_without_a_model_explains_what_to_do(tmp_path, labeled_folder, monkeypatch, capsys):
    monkeypatch.setattr(hub, "EMBEDDED_MODEL", tmp_path / "none.safetensors")
    assert demo.main(str(labeled_folder)) == 0
    captured = capsys.readouterr()
    assert "u0.wav" in captured.out and "--model" in captured.err


SHIPPED = ROOT / "w2v2cli" / "models" / "default.safetensors"


@pytest.mark.skipif(not SHIPPED.exists(), reason="no embedded model in this checkout")
def test_shipped_model_fits_the_budget_and_says_what_it_is():
    assert SHIPPED.stat().st_size <= 25 * 2**20
    provenance = read_provenance(SHIPPED)
    assert provenance is not None and "synthetic" in json.dumps(provenance).lower()
    model = load_model(SHIPPED)
    assert model.ctc_head is not None and model.vocab is not None
    assert np.isfinite(sum(p.float().sum().item() for p in model.parameters()))


SHIPPED_LM = SHIPPED.with_name("default-lm.arpa.gz")


@pytest.mark.skipif(not SHIPPED_LM.exists(), reason="no embedded language model in this checkout")
def test_shipped_language_model_reads_and_spells_like_the_model():
    """The embedded LM: small, a readable ARPA file, and its words spelled in the embedded model's letters."""
    from w2v2cli.lm import read_arpa

    assert SHIPPED_LM.stat().st_size <= 8 * 2**20
    tables, _ = read_arpa(SHIPPED_LM)
    assert len(tables) == 3 and len(tables[0]) > 10_000
    letters = set("".join(t for t in load_model(SHIPPED).vocab.tokens if len(t) == 1))
    words = [g[0] for g in tables[0] if not g[0].startswith("<")]
    assert all(set(w) <= letters for w in words)
