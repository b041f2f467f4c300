"""`w2v2 export`: every format written, run and compared with the model; transformers round trip; transcription
from an ONNX file; bad input leaves nothing behind."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from hf_utils import make_hf_folder
from w2v2cli import Vocabulary, build_model, load_model, preset, save_model
from w2v2cli import export as export_module
from w2v2cli.cli import app
from w2v2cli.errors import ConfigError
from w2v2cli.export import ExportError, export_model, verification_inputs

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
    assert report.verified and report.transcripts_equal
    assert report.max_abs_diff <= export_module.TOLERANCE[fmt]
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
        logits, frames = session.run(None, {"waveforms": torch.randn(batch, samples).numpy(),
                                            "lengths": torch.full((batch,), samples).numpy()})
        assert logits.shape[:2] == (batch, int(ctc_model.frame_lengths(torch.tensor([samples]))[0]))


def test_pt2_loads_with_plain_pytorch(ctc_model, tmp_path):
    export_model(ctc_model, "pt2", tmp_path / "m.pt2")
    waveforms, lengths = verification_inputs()
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
    monkeypatch.setitem(export_module.TOLERANCE, "onnx", -1.0)
    with pytest.raises(ExportError, match="max abs logit difference"):
        export_model(ctc_model, "onnx", tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="not an empty folder"):
        (tmp_path / "busy").mkdir()
        (tmp_path / "busy" / "x").write_text("x")
        export_model(ctc_model, "hf", tmp_path / "busy")
