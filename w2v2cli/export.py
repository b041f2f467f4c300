"""`w2v2 export`: ONNX, torch.export (.pt2), TorchScript, Hugging Face and safetensors, each verified.

Every export is written beside its destination under a temporary name, run on a padded batch of three
utterances of different lengths and on each utterance alone, compared with the PyTorch model (every logit of the
valid frames within its format's `Tolerance`, greedy transcripts), and only then renamed into place. A failed
check leaves nothing behind and reports the measured difference.

The exported graphs take `waveforms` (batch, samples) float32 and `lengths` (batch,) int64 and return `logits`
(batch, frames, vocab) and `frame_lengths` (batch,), with dynamic batch and time axes. They contain the model's
inference path only: no dropout, layerdrop or masking, and no shortcut that depends on the values of the batch
(the model switches to its general masked path while being traced).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .decode import greedy_decode
from .errors import ConfigError, W2V2Error
from .io.common import import_optional
from .io.native import load_native, save_model
from .model import Wav2Vec2
from .onnx_model import OnnxModel, min_samples

FORMATS = ("onnx", "pt2", "torchscript", "hf", "safetensors")
SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".pt", "safetensors": ".safetensors"}
TRANSFORMERS_INSTALL = "pip install transformers, or skip the check with --no-verify"


@dataclass(frozen=True)
class Tolerance:
    """How far an export's logit may be from the model's logit b: |export - b| <= atol + rtol * |b|.

    atol covers another runtime's summation order; rtol covers the rounding of each logit at its own magnitude,
    which no runtime can do better than: one float32 ulp is 6e-8 to 1.2e-7 of the value, so a logit of -1e4 (a
    token the CTC head suppresses with its bias) is only defined to 0.00098, ten times transformers' atol."""

    atol: float
    rtol: float

    def __str__(self) -> str:
        return f"{self.atol:g} + {self.rtol:g} x |logit|"


FP32_RTOL = 1e-6  # about 8 to 16 float32 ulps
# fp32, per format (ONNX, pt2, TorchScript: 1e-3; transformers: 1e-4). safetensors: the weights are compared
# exactly; logits may differ by the ~1e-5 of batched vs single runs.
TOLERANCE = {"onnx": Tolerance(1e-3, FP32_RTOL), "pt2": Tolerance(1e-3, FP32_RTOL),
             "torchscript": Tolerance(1e-3, FP32_RTOL), "hf": Tolerance(1e-4, FP32_RTOL),
             "safetensors": Tolerance(1e-4, FP32_RTOL)}
# fp16 weights move logits by ~1e-2 on BASE, and each weight by up to 2^-11 of itself; the transcripts must hold.
FP16_TOLERANCE = Tolerance(0.1, 1e-3)
# int8 moves logits by what the activations' scale makes it, not each logit's: measured up to 3.8 on a random
# tiny model, 0.7 on the embedded one, 0.3 on a random BASE. This bound catches a broken graph, not a lossy one.
INT8_TOLERANCE = Tolerance(5.0, 0.1)


class ExportError(W2V2Error):
    """An export that could not be written or did not reproduce the model."""

    exit_code = 1


@dataclass
class ExportReport:
    format: str
    path: str
    verified: bool
    max_abs_diff: float | None = None
    tolerance: str | None = None
    tolerance_used: float | None = None  # the largest |diff| / (atol + rtol |logit|): at most 1 to pass
    transcripts_equal: bool | None = None
    transcript_agreement: float | None = None  # fraction of test utterances with identical greedy text
    seconds: float = 0.0
    size_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class _Logits(nn.Module):
    """The traced signature: (waveforms, lengths) -> (logits, frame_lengths)."""

    def __init__(self, model: Wav2Vec2):
        super().__init__()
        self.model = model

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor):
        return self.model(waveforms, lengths)


def verification_inputs(sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of three utterances (1.3 s, 0.7 s, 2.1 s) of deterministic speech-like audio."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([int(1.3 * sample_rate), int(0.7 * sample_rate), int(2.1 * sample_rate)])
    waveforms = torch.zeros(3, int(lengths.max()))
    for row, n in enumerate(lengths.tolist()):
        t = torch.arange(n) / sample_rate
        f0 = 110 + 60 * torch.sin(2 * math.pi * (0.5 + row) * t)
        phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
        voiced = sum(torch.sin(k * phase) / k for k in range(1, 6))
        envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t + row)
        waveforms[row, :n] = 0.3 * voiced * envelope + 0.02 * torch.randn(n, generator=g)
    return waveforms, lengths


def logit_difference(logits: torch.Tensor, reference: torch.Tensor, tolerance: Tolerance) -> tuple[float, float]:
    """(max |logits - reference|, max |logits - reference| / (atol + rtol |reference|)) over two equal-shaped
    tensors: the export's and the model's logits of one utterance's valid frames. The second is at most 1 where
    every logit is within `tolerance`; NaN anywhere makes both NaN, which no check passes."""
    diff = (logits.float() - reference.float()).abs()
    if not diff.numel():
        return 0.0, 0.0
    allowed = tolerance.atol + tolerance.rtol * reference.float().abs()
    return float(diff.max()), float((diff / allowed).max())


def _compare(model: Wav2Vec2, run: Callable, tolerance: Tolerance, batch: bool = True) -> tuple[float, float, float]:
    """(max abs logit difference, `logit_difference`'s tolerance used, fraction of identical greedy transcripts)
    of `run`, which maps (waveforms, lengths) to (logits, frame_lengths), against the model on valid frames:
    padded batch and single utterances. Differing frame counts count as infinitely far."""
    waveforms, lengths = verification_inputs(model.config.sample_rate)
    with torch.inference_mode():
        ref, ref_frames = model(waveforms, lengths)
    cases = [(waveforms, lengths, list(range(3)))] if batch else []
    cases += [(waveforms[i:i + 1, : lengths[i]], lengths[i:i + 1], [i]) for i in range(3)]
    diffs, used, same, total = [], [], 0, 0
    for w, n, rows in cases:
        with torch.inference_mode():
            logits, frames = run(w, n)
        logits, frames = torch.as_tensor(logits).float(), torch.as_tensor(frames)
        for out_row, i in enumerate(rows):
            T = int(ref_frames[i])
            if int(frames[out_row]) != T:
                return math.inf, math.inf, 0.0
            diff, fraction = logit_difference(logits[out_row, :T], ref[i, :T], tolerance)
            diffs.append(diff)
            used.append(fraction)
            if model.vocab is not None:
                ours = greedy_decode(ref[i:i + 1, :T], ref_frames[i:i + 1], model.vocab)
                theirs = greedy_decode(logits[out_row:out_row + 1, :T], frames[out_row:out_row + 1], model.vocab)
                same += ours == theirs
                total += 1
    # torch's max, unlike Python's, keeps a NaN.
    return float(torch.tensor(diffs).max()), float(torch.tensor(used).max()), (same / total if total else 1.0)


@contextlib.contextmanager
def _staged(output: Path, is_dir: bool):
    """A temporary path beside `output`; renamed over it when the block succeeds, removed otherwise."""
    output = output.resolve()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        if is_dir:
            tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=output.suffix, dir=output.parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:
        raise ConfigError(f"--output {output}: cannot write there ({exc.strerror or exc})") from None
    try:
        yield tmp
        if is_dir and output.exists():
            shutil.rmtree(output)
        os.replace(tmp, output)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _export_onnx(model: Wav2Vec2, path: Path, opset: int) -> None:
    onnx = import_optional("onnx")
    waveforms, lengths = verification_inputs(model.config.sample_rate)
    import warnings

    with warnings.catch_warnings():  # the tracer's notes about Python-level shape checks are expected here
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Logits(model).eval(), (waveforms, lengths), str(path), input_names=["waveforms", "lengths"],
            output_names=["logits", "frame_lengths"], opset_version=opset, dynamo=False,
            dynamic_axes={"waveforms": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
                          "logits": {0: "batch", 1: "frames"}, "frame_lengths": {0: "batch"}},
        )
    proto = onnx.load(str(path))
    metadata = {"w2v2_format": "1", "w2v2_config": model.config.to_json(),
                "min_samples": str(min_samples(model.config))}
    if model.vocab is not None:
        metadata["w2v2_vocab"] = model.vocab.to_json()
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def _export_onnx_int8(model: Wav2Vec2, path: Path, opset: int) -> None:
    quantization = import_optional("onnxruntime.quantization")
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = Path(scratch) / "fp32.onnx"
        _export_onnx(model, fp32, opset)
        # Matmuls only, per output channel: int8 convolutions (ConvInteger) are slower than fp32 ones in
        # onnxruntime and the feature encoder is where most error would enter.
        quantization.quantize_dynamic(str(fp32), str(path), weight_type=quantization.QuantType.QInt8,
                                      per_channel=True, op_types_to_quantize=["MatMul", "Gemm"])


def _export_pt2(model: Wav2Vec2, path: Path) -> None:
    waveforms, lengths = verification_inputs(model.config.sample_rate)
    batch = torch.export.Dim("batch", min=1, max=4096)
    samples = torch.export.Dim("samples", min=min_samples(model.config), max=model.config.sample_rate * 3600 * 4)
    program = torch.export.export(_Logits(model).eval(), (waveforms, lengths),
                                  dynamic_shapes={"waveforms": {0: batch, 1: samples}, "lengths": {0: batch}})
    torch.export.save(program, str(path))


def _export_torchscript(model: Wav2Vec2, path: Path) -> None:
    waveforms, lengths = verification_inputs(model.config.sample_rate)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(_Logits(model).eval(), (waveforms, lengths), check_trace=False)
    torch.jit.save(traced, str(path))


def _hf_runner(path: Path, model: Wav2Vec2) -> Callable:
    transformers = import_optional("transformers", TRANSFORMERS_INSTALL)
    transformers.utils.logging.disable_progress_bar()
    from .io.hf import LAYOUTS

    hf_class = getattr(transformers, f"{LAYOUTS[model.config.family].architecture}ForCTC")  # HubertForCTC, ...
    hf = hf_class.from_pretrained(str(path)).eval()
    extractor = transformers.Wav2Vec2FeatureExtractor.from_pretrained(str(path))

    def run(waveforms, lengths):
        # transformers normalizes in its feature extractor; one at a time where padding matters (BATCH_NOTE).
        inputs = extractor([w[: int(n)].numpy() for w, n in zip(waveforms, lengths)],
                           sampling_rate=model.config.sample_rate, return_tensors="pt", padding=True)
        with torch.inference_mode():
            logits = hf(inputs.input_values, attention_mask=inputs.get("attention_mask")).logits
        return logits, model.frame_lengths(lengths)

    return run


def _check_options(model: Wav2Vec2, fmt: str, output: Path, quantize: str | None, precision: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize {quantize!r}: only int8 is available")
    if quantize and fmt != "onnx":
        raise ConfigError("--quantize int8 is for --format onnx (onnxruntime's dynamic quantization)")
    if precision not in ("fp32", "fp16"):
        raise ConfigError(f"--precision {precision!r}: choose fp32 or fp16")
    if precision == "fp16" and fmt not in ("safetensors", "hf"):
        raise ConfigError("--precision fp16 is for --format safetensors and hf (fp16 storage)")
    if fmt in ("onnx", "pt2", "torchscript", "hf") and (model.ctc_head is None or model.vocab is None):
        raise ConfigError(f"--format {fmt} exports a CTC model and this model has no CTC head; use --format "
                          "safetensors for an encoder")
    if fmt != "hf" and output.is_dir():
        raise ConfigError(f"--output {output}: is a folder; give a file name ending in {SUFFIXES[fmt]}")
    if fmt == "hf" and output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"--output {output}: exists and is not an empty folder")


def _check_packages(fmt: str, quantize: str | None, verify: bool) -> None:
    """Import the optional packages this export needs before any work, so a missing one costs nothing."""
    if fmt == "onnx":
        import_optional("onnx")
        if verify or quantize:
            import_optional("onnxruntime")
    if fmt == "hf" and verify:
        import_optional("transformers", TRANSFORMERS_INSTALL)


def export_model(model: Wav2Vec2, fmt: str, output, *, quantize: str | None = None, precision: str = "fp32",
                 opset: int = 17, verify: bool = True, threads: int | None = None) -> ExportReport:
    """Export `model` (a loaded w2v2 model) to `output` in `fmt`, verify it, and return what was measured."""
    output = Path(output)
    _check_options(model, fmt, output, quantize, precision)
    _check_packages(fmt, quantize, verify)
    # Exports are traced on the CPU in fp32 and eval mode; the caller's model is left as it was.
    first = next(model.parameters())
    if first.device.type != "cpu" or first.dtype != torch.float32:
        model = copy.deepcopy(model).float().cpu()
    was_training = model.training
    try:
        return _export_checked(model.eval(), fmt, output, quantize, precision, opset, verify, threads)
    finally:
        model.train(was_training)


def _export_checked(model, fmt, output: Path, quantize, precision, opset, verify, threads) -> ExportReport:
    start = time.perf_counter()
    report = ExportReport(fmt, str(output), verified=False)
    with _staged(output, is_dir=fmt == "hf") as tmp:
        try:
            load = _write(model, fmt, tmp, quantize, precision, opset, threads, report)
            runner = load() if verify else None
        except W2V2Error:
            raise
        except Exception as exc:
            raise ExportError(f"{fmt} export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        if verify:
            _verify(model, fmt, runner, quantize, precision, report)
        report.size_bytes = (sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file()) if tmp.is_dir()
                             else tmp.stat().st_size)
    report.seconds = time.perf_counter() - start
    return report


def _write(model, fmt, tmp: Path, quantize, precision, opset, threads, report) -> Callable[[], Callable]:
    """Write the export to `tmp`; return what loads it back, as a runner of (waveforms, lengths), when called."""
    if fmt == "onnx":
        if quantize:
            _export_onnx_int8(model, tmp, opset)
            report.notes.append("int8: dynamic per-channel quantization of the matmul weights (onnxruntime)")
        else:
            _export_onnx(model, tmp, opset)
        return lambda: OnnxModel(tmp, threads)
    if fmt == "pt2":
        _export_pt2(model, tmp)
        return lambda: torch.export.load(str(tmp)).module()
    if fmt == "torchscript":
        _export_torchscript(model, tmp)
        return lambda: torch.jit.load(str(tmp))
    dtype = torch.float16 if precision == "fp16" else torch.float32
    if fmt == "hf":
        from .io.hf import save_hf_folder

        save_hf_folder(model, tmp, dtype)
        if model.config.feature_norm == "group":
            report.notes.append("group-norm model: transformers' outputs depend on padding; verified one "
                                "utterance at a time (see the folder's README)")
        return lambda: _hf_runner(tmp, model)
    # safetensors: the native format, optionally with fp16 storage.
    stored = model if dtype == torch.float32 else copy.deepcopy(model).half()
    save_model(stored, tmp)
    return lambda: _native_runner(model, tmp, exact=dtype == torch.float32)


def _native_runner(model: Wav2Vec2, path: Path, exact: bool) -> Callable:
    reloaded = load_native(path)
    if exact:
        original, read_back = model.state_dict(), reloaded.state_dict()
        if original.keys() != read_back.keys() or not all(torch.equal(original[k], read_back[k]) for k in original):
            raise ExportError("safetensors export: the weights read back differ from the model's")
    return reloaded.float().eval()


def tolerance_for(fmt: str, quantize: str | None = None, precision: str = "fp32") -> Tolerance:
    """The logit tolerance an export in `fmt` (quantized, or stored in `precision`) must meet."""
    if quantize:
        return INT8_TOLERANCE
    return FP16_TOLERANCE if precision == "fp16" else TOLERANCE[fmt]


def _verify(model, fmt, runner, quantize, precision, report: ExportReport) -> None:
    tolerance = tolerance_for(fmt, quantize, precision)
    from .io.hf import padding_free_in_transformers

    # transformers' batched outputs of some models depend on padding (io/hf.py, BATCH_NOTE).
    diff, used, agreement = _compare(model, runner, tolerance,
                                     batch=not (fmt == "hf" and not padding_free_in_transformers(model.config)))
    report.max_abs_diff, report.tolerance, report.tolerance_used = diff, str(tolerance), used
    report.transcript_agreement, report.transcripts_equal = agreement, agreement == 1.0
    if quantize:
        # int8 changes the numbers by design: its looser tolerance catches a broken graph; the transcripts it
        # keeps are reported, not enforced.
        report.notes.append(f"int8 vs fp32: {agreement:.0%} of test transcripts identical, max logit diff "
                            f"{diff:.3g}")
    if not (used <= 1.0 and (quantize or report.transcripts_equal)):
        raise ExportError(
            f"{fmt} export does not reproduce the model: logits off by up to {diff:.3g} ({used:.3g}x the "
            f"tolerance {tolerance}), {agreement:.0%} of greedy transcripts identical; nothing was written"
        )
    report.verified = True
