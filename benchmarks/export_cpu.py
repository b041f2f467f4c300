"""Exported models on CPU: PyTorch eager fp32 and bf16, ONNX Runtime fp32 and int8, torch dynamic int8.

Usage:
    .venv/bin/python benchmarks/export_cpu.py [--model MODEL] [--config base] [--threads 2] [--files 12]

Without --model a randomly initialized CTC model of --config is used (its transcripts are arbitrary but every
runtime must reproduce them). The same waveforms (synthetic speech-like audio, 4-12 s, --files of them) go
through each runtime one utterance at a time after one warm-up pass; reported: audio seconds per second and the
fraction of greedy transcripts identical to eager fp32, plus the character error rate between them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import speechlike

from w2v2cli import Vocabulary, build_model, load_model, preset
from w2v2cli.decode import greedy_decode
from w2v2cli.export import export_model
from w2v2cli.onnx_model import OnnxModel
from w2v2cli.scoring import error_counts


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path)
    parser.add_argument("--config", default="base")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.model:
        model = load_model(args.model)
    else:
        vocab = Vocabulary.from_characters("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
        torch.manual_seed(0)
        model = build_model(preset(args.config, vocab_size=len(vocab)), vocab).eval()
    g = torch.Generator().manual_seed(0)
    seconds = [4 + 8 * float(torch.rand((), generator=g)) for _ in range(args.files)]
    rate = model.config.sample_rate
    waves = [torch.from_numpy(speechlike(int(s * rate), seed=i, sample_rate=rate)) for i, s in enumerate(seconds)]
    total = sum(seconds)

    def eager(dtype):
        def run(w, n):
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                return model(w, n)
        return run

    runtimes = {"pytorch eager fp32": eager(torch.float32), "pytorch eager bf16": eager(torch.bfloat16)}
    quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    runtimes["pytorch dynamic int8 (Linear)"] = lambda w, n: quantized(w, n)
    with tempfile.TemporaryDirectory() as tmp:
        export_model(model, "onnx", Path(tmp) / "m.onnx", verify=False)
        export_model(model, "onnx", Path(tmp) / "m8.onnx", quantize="int8", verify=False)
        runtimes["onnxruntime fp32"] = OnnxModel(Path(tmp) / "m.onnx", args.threads)
        runtimes["onnxruntime int8"] = OnnxModel(Path(tmp) / "m8.onnx", args.threads)
        results, reference = {}, None
        for name, run in runtimes.items():
            texts = []
            run(waves[0][None], torch.tensor([len(waves[0])]))  # warm-up
            start = time.perf_counter()
            for w in waves:
                logits, frames = run(w[None], torch.tensor([len(w)]))
                texts.append(greedy_decode(torch.as_tensor(logits).float(), torch.as_tensor(frames), model.vocab)[0])
            elapsed = time.perf_counter() - start
            reference = reference or texts
            errors = [error_counts(r, t) for r, t in zip(reference, texts)]
            cer = sum(e.char_errors for e in errors) / max(1, sum(e.chars for e in errors))
            results[name] = {"audio_seconds_per_second": round(total / elapsed, 2),
                             "identical_transcripts": sum(a == b for a, b in zip(reference, texts)) / len(texts),
                             "cer_vs_fp32": round(cer, 4)}
            print(f"{name:32s} {total / elapsed:8.2f} audio s/s  identical {results[name]['identical_transcripts']:.0%}"
                  f"  CER vs fp32 {cer:.2%}", file=sys.stderr)
    out = {"model": str(args.model or f"random {args.config}"), "threads": args.threads, "audio_seconds": total,
           "results": results}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
