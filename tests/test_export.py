"""`w2v2 export`: every format written, run and compared with the model; transformers round trip; transcription
from an ONNX file; logits compared relative to their magnitude; bad input, a wrong export or a broken onnx
install leaves nothing behind and says so in one line."""

import importlib.abc
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import make_hf_folder
from safetensors.torch import load_file
from typer.testing import CliRunner

from w2v2cli import Vocabulary, build_model, load_model, preset, save_model
from w2v2cli import export as export_module
from w2v2cli.cli import app
from w2v2cli.errors import ConfigError
from w2v2cli.export import ExportError, Tolerance, export_model, logit_difference, verification_inputs
from w2v2cli.io import hf as hf_module

pytest.importorskip("onnxruntime")
runner = CliRunner()
SPEECH = Path(__file__).resolve().parent / "fixtures" / "speech"


@pytest.fixture(params=["group", "layer"])
def ctc_model(request):
    vocab = Vocabulary.from_characters("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
    torch.manual_seed(0)
    layer = request.param == "layer"
    cfg = preset("tiny", vocab_size=len(vocab), feature_norm=request.param, layer_norm_first=layer,
                 conv_bias=layer, normalize_waveform=layer)
    model = build_model(cfg, vocab).eval()
    with torch.no_grad():  # well separated greedy paths
        model.ctc_head.weight.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("fmt,name", [("onnx", "m.onnx"), ("pt2", "m.pt2"), ("torchscript", "m.pt"),
                                      ("hf", "hf"), ("safetensors", "m.safetensors")])
def test_every_format_is_written_and_verified(ctc_model, tmp_path, fmt, name):
    report = export_model(ctc_model, fmt, tmp_path / name)
    assert report.verified and report.transcripts_equal and report.tolerance_used <= 1
    assert report.max_abs_diff <= export_module.TOLERANCE[fmt].atol
    assert (tmp_path / name).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary leftovers


def test_onnx_metadata_and_dynamic_axes(ctc_model, tmp_path):
    import onnx
    import onnxruntime as ort

    export_model(ctc_model, "onnx", tmp_path / "m.onnx")
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(meta["w2v2_vocab"])["tokens"] == list(ctc_model.vocab.tokens)
    assert json.loads(meta["w2v2_config"])["dim"] == ctc_model.config.dim
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["waveforms", "lengths"]
    assert [o.name for o in session.get_outputs()] == ["logits", "frame_lengths"]
    for batch, samples in ((1, 800), (5, 50_000)):  # shapes never seen at export
        logits, _frames = session.run(None, {"waveforms": torch.randn(batch, samples).numpy(),
                                            "lengths": torch.full((batch,), samples).numpy()})
        assert logits.shape[:2] == (batch, int(ctc_model.frame_lengths(torch.tensor([samples]))[0]))


def test_pt2_loads_with_plain_pytorch(ctc_model, tmp_path):
    export_model(ctc_model, "pt2", tmp_path / "m.pt2")
    waveforms, lengths = verification_inputs(ctc_model.config.sample_rate)
    torch.save({"w": waveforms, "l": lengths}, tmp_path / "inputs.pt")
    code = (
        "import sys, torch; m = torch.export.load(sys.argv[1]).module(); x = torch.load(sys.argv[2]);"
        "logits, frames = m(x['w'], x['l']); assert 'w2v2cli' not in sys.modules; print(frames.tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code, tmp_path / "m.pt2", tmp_path / "inputs.pt"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(ctc_model.frame_lengths(lengths).tolist())


@pytest.mark.parametrize("form", ["group", "layer"])
def test_hf_round_trip_preserves_weights_exactly(tmp_path, form):
    transformers = pytest.importorskip("transformers")
    make_hf_folder(tmp_path / "original", form)
    model = load_model(tmp_path / "original")
    report = export_model(model, "hf", tmp_path / "again")
    assert report.verified and report.max_abs_diff <= 1e-4
    original = load_file(tmp_path / "original" / "model.safetensors")
    again = load_file(tmp_path / "again" / "model.safetensors")
    assert original.keys() == again.keys()
    assert all(torch.equal(original[k], again[k]) for k in original)
    processor = transformers.Wav2Vec2Processor.from_pretrained(str(tmp_path / "again"))
    assert processor.tokenizer.convert_ids_to_tokens(5) == model.vocab.tokens[5]
    card = (tmp_path / "again" / "README.md").read_text()
    assert ("padding" in card) == (form == "group")


def test_int8_is_written_and_its_agreement_reported(ctc_model, tmp_path):
    fp32 = export_model(ctc_model, "onnx", tmp_path / "m.onnx")
    int8 = export_model(ctc_model, "onnx", tmp_path / "m8.onnx", quantize="int8")
    assert int8.verified and int8.transcript_agreement is not None
    assert int8.size_bytes < fp32.size_bytes
    assert any("int8 vs fp32" in note for note in int8.notes)


def test_fp16_safetensors_is_half_the_size_and_transcribes_the_same(ctc_model, tmp_path):
    fp32 = export_model(ctc_model, "safetensors", tmp_path / "m.safetensors")
    fp16 = export_model(ctc_model, "safetensors", tmp_path / "m16.safetensors", precision="fp16")
    assert fp16.verified and fp16.transcripts_equal and fp16.size_bytes < 0.6 * fp32.size_bytes


def test_transcribe_runs_an_onnx_export(ctc_model, tmp_path):
    native = save_model(ctc_model, tmp_path / "m.safetensors")
    export_model(ctc_model, "onnx", tmp_path / "m.onnx")
    files = [str(p) for p in sorted(SPEECH.glob("*.wav"))]
    results = {}
    for path in (native, tmp_path / "m.onnx"):
        result = runner.invoke(app, ["transcribe", "--model", str(path), "-f", "jsonl", *files])
        assert result.exit_code == 0, result.output
        results[path.suffix] = [json.loads(line)["text"] for line in result.stdout.splitlines()]
    assert results[".onnx"] == results[".safetensors"] and any(results[".onnx"])
    info = runner.invoke(app, ["info", "--json", str(tmp_path / "m.onnx")])
    assert info.exit_code == 0 and json.loads(info.stdout)["parameters"]["total"] == ctc_model.num_parameters()


def test_cli_reports_and_bad_input(tmp_path):
    vocab = Vocabulary.from_characters("AB")
    torch.manual_seed(0)
    ctc = save_model(build_model(preset("tiny", vocab_size=len(vocab)), vocab), tmp_path / "ctc.safetensors")
    encoder = save_model(build_model(preset("tiny")), tmp_path / "enc.safetensors")
    ok = runner.invoke(app, ["export", str(ctc), "-f", "onnx", "-o", str(tmp_path / "out" / "m.onnx")])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout.strip().splitlines()[-1])["verified"] is True
    unknown = runner.invoke(app, ["export", str(ctc), "-f", "tflite", "-o", str(tmp_path / "x")])
    assert unknown.exit_code == 2
    no_head = runner.invoke(app, ["export", str(enc := encoder), "-f", "onnx", "-o", str(tmp_path / "e.onnx")])
    assert no_head.exit_code == 2 and "no CTC head" in no_head.output and not (tmp_path / "e.onnx").exists()
    assert runner.invoke(app, ["export", str(enc), "-f", "safetensors", "-o", str(tmp_path / "e.safetensors")]
                         ).exit_code == 0
    (tmp_path / "file").write_text("x")
    unwritable = runner.invoke(app, ["export", str(ctc), "-f", "onnx", "-o", str(tmp_path / "file" / "m.onnx")])
    assert unwritable.exit_code == 2 and "cannot write" in unwritable.output
    result = subprocess.run([sys.executable, "-m", "w2v2cli", "export", ctc, "-f", "pt2", "--quantize", "int8",
                             "-o", tmp_path / "q.pt2"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "int8" in result.stderr


def test_a_failed_verification_leaves_nothing_behind(ctc_model, tmp_path, monkeypatch):
    monkeypatch.setitem(export_module.TOLERANCE, "onnx", Tolerance(0.0, 0.0))
    with pytest.raises(ExportError, match="logits off by"):
        export_model(ctc_model, "onnx", tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="not an empty folder"):
        (tmp_path / "busy").mkdir()
        (tmp_path / "busy" / "x").write_text("x")
        export_model(ctc_model, "hf", tmp_path / "busy")


def test_logit_difference_scales_with_each_logit():
    reference = torch.tensor([[1.0, -1e4, 0.5]])
    ulp = torch.nextafter(torch.tensor(-1e4), torch.tensor(0.0)) - torch.tensor(-1e4)  # 0.00098
    one_ulp_off = reference + torch.tensor([[0.0, float(ulp), 0.0]])
    assert logit_difference(one_ulp_off, reference, Tolerance(1e-4, 0.0))[1] > 1  # the old absolute check
    assert logit_difference(one_ulp_off, reference, export_module.TOLERANCE["hf"])[1] <= 1
    diff, used = logit_difference(reference + torch.tensor([[2e-4, 0.0, 0.0]]), reference, Tolerance(1e-4, 1e-6))
    assert diff == pytest.approx(2e-4, rel=1e-3) and used > 1  # a small logit keeps the absolute bound
    assert logit_difference(reference * float("nan"), reference, Tolerance(1.0, 1.0))[1] != 0  # NaN fails


def tiny_ctc_model(vocab: Vocabulary) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(preset("tiny", vocab_size=len(vocab)), vocab).eval()


@pytest.fixture
def suppressing_model():
    """A CTC head that never emits two tokens: its bias holds them at -1e4 and -1e5, where one float32 ulp is
    0.00098 and 0.0078."""
    model = tiny_ctc_model(Vocabulary.from_characters("ABCDEFGHIJKLMNOPQRSTUVWXYZ'"))
    with torch.no_grad():
        model.ctc_head.weight.normal_(0, 0.5)
        model.ctc_head.bias[-2:] = torch.tensor([-1e4, -1e5])
    return model


@pytest.mark.parametrize("fmt,name", [("hf", "hf"), ("onnx", "m.onnx"), ("pt2", "m.pt2"),
                                      ("torchscript", "m.pt"), ("safetensors", "m.safetensors")])
def test_logits_held_at_large_magnitudes_verify(suppressing_model, tmp_path, fmt, name):
    pytest.importorskip("transformers")
    report = export_model(suppressing_model, fmt, tmp_path / name)
    assert report.verified and report.transcripts_equal and report.tolerance_used <= 1
    if fmt == "hf":
        written = load_file(tmp_path / name / "model.safetensors")
        assert torch.equal(written["lm_head.bias"], suppressing_model.ctc_head.bias)


@pytest.mark.parametrize("token,offset", [(0, 0.01), (-2, 1.0)])  # an ordinary token; one held at -1e4
def test_a_wrong_weight_is_still_refused(suppressing_model, tmp_path, monkeypatch, token, offset):
    pytest.importorskip("transformers")
    exact = hf_module.hf_state

    def perturbed(model):
        state = exact(model)
        state["lm_head.bias"] = state["lm_head.bias"].clone()
        state["lm_head.bias"][token] += offset
        return state

    monkeypatch.setattr(hf_module, "hf_state", perturbed)
    with pytest.raises(ExportError, match="does not reproduce the model"):
        export_model(suppressing_model, "hf", tmp_path / "hf")
    assert list(tmp_path.iterdir()) == []


class _BrokenImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds one package and fails while running it, the way onnx fails beside ml-dtypes 0.7 and numpy 1.26."""

    def __init__(self, name):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname == self.name else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise SystemError("<built-in function __import__> returned a result with an exception set")


def _break_import(monkeypatch, name, how):
    monkeypatch.delitem(sys.modules, name, raising=False)
    if how == "absent":
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    else:
        monkeypatch.setattr(sys, "meta_path", [_BrokenImport(name), *sys.meta_path])


@pytest.mark.parametrize("how", ["absent", "broken"])
def test_export_says_in_one_line_when_onnx_cannot_be_imported(tmp_path, monkeypatch, how):
    model = save_model(tiny_ctc_model(Vocabulary.from_characters("AB")), tmp_path / "m.safetensors")
    _break_import(monkeypatch, "onnx", how)
    result = runner.invoke(app, ["export", str(model), "-f", "onnx", "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert "onnx cannot be imported" in result.stderr and "pip install 'w2v2cli[export]'" in result.stderr
    assert ("SystemError" in result.stderr) == (how == "broken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_transcribe_says_in_one_line_when_onnxruntime_cannot_be_imported(tmp_path, monkeypatch):
    export_model(tiny_ctc_model(Vocabulary.from_characters("AB")), "onnx", tmp_path / "m.onnx", verify=False)
    _break_import(monkeypatch, "onnxruntime", "broken")
    wav = str(sorted(SPEECH.glob("*.wav"))[0])
    result = runner.invoke(app, ["transcribe", "--model", str(tmp_path / "m.onnx"), wav])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "onnxruntime cannot be imported (SystemError" in result.stderr
