"""Throughput of `transcribe` against transformers on CPU, same weights, same files, both greedy.

Usage: .venv/bin/python benchmarks/transcribe_cpu.py [--files 30] [--threads 2] [--form group|layer]

A randomly initialized base-config Wav2Vec2ForCTC (transformers) is saved as a Hugging Face folder and read
back by w2v2cli.load_model, so both sides run identical weights. ~30 files of 2-20 s of synthetic audio are
written to a temporary folder. transformers runs its usual recipe: the feature extractor pads batches of 8 in
file order, then model(...).logits.argmax(-1) and batch_decode. w2v2 runs `transcribe` (what the CLI calls),
decoding audio from disk. Token agreement is measured per frame against transformers run one file at a time,
the reference that padding cannot disturb.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import make_hf_folder, speechlike

from w2v2cli import load_model
from w2v2cli.inference import EmissionRunner
from w2v2cli.transcribe import transcribe

BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
            num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--form", default="group", choices=["group", "layer"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    seconds = rng.uniform(2, 20, args.files)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        hf_model, extractor, tokenizer = make_hf_folder(tmp / "model", args.form, size=BASE)
        model = load_model(tmp / "model")
        rate = model.config.sample_rate
        paths = []
        for i, s in enumerate(seconds):
            paths.append(tmp / f"{i:03d}.wav")
            sf.write(paths[-1], speechlike(int(s * rate), seed=i, sample_rate=rate), rate, subtype="PCM_16")
        audio = [sf.read(p, dtype="float32")[0] for p in paths]
        total = sum(len(a) for a in audio) / rate

        # transformers: padded batches of 8 in file order, greedy.
        with torch.inference_mode():
            hf_model(**extractor(audio[:2], sampling_rate=rate, return_tensors="pt", padding=True))  # warm-up
            start = time.perf_counter()
            hf_text = []
            for i in range(0, len(audio), 8):
                inputs = extractor(audio[i:i + 8], sampling_rate=rate, return_tensors="pt", padding=True)
                hf_text += tokenizer.batch_decode(hf_model(**inputs).logits.argmax(-1))
            hf_seconds = time.perf_counter() - start
            reference = [hf_model(**extractor([a], sampling_rate=rate, return_tensors="pt")).logits[0].argmax(-1)
                         for a in audio]

        rows = []
        for precision in ("fp32", "bf16"):
            transcribe(model, paths[:2], precision=precision)  # warm-up
            start = time.perf_counter()
            results = transcribe(model, paths, precision=precision)
            elapsed = time.perf_counter() - start
            runner = EmissionRunner(model, precision=precision)
            ours = runner.run([torch.from_numpy(a) for a in audio])
            agree = np.mean([float((o.argmax(-1) == r).float().mean()) for o, r in zip(ours, reference)])
            same_text = np.mean([res.text == _clean(ref_text) for res, ref_text in
                                 zip(results, [tokenizer.decode(r) for r in reference])])
            rows.append((precision, elapsed, agree, same_text))

    print(f"machine: {platform.machine()}, {args.threads} threads, torch {torch.__version__}; base config "
          f"({args.form} norm), {args.files} files, {total:.0f} s of audio")
    print()
    print("| system | precision | audio s / s | vs transformers | frame tokens = transformers (single) | "
          "transcripts = transformers (single) |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| transformers, batch 8 | fp32 | {total / hf_seconds:.1f} | 1.00x | - | - |")
    for precision, elapsed, agree, same in rows:
        print(f"| w2v2 transcribe | {precision} | {total / elapsed:.1f} | {hf_seconds / elapsed:.2f}x | "
              f"{agree:.2%} | {same:.0%} |")


def _clean(text: str) -> str:
    for marker in ("<s>", "</s>", "<unk>", "<pad>"):
        text = text.replace(marker, "")
    return " ".join(text.split())


if __name__ == "__main__":
    main()
