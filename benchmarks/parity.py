"""Measure parity with transformers and batch invariance; print a Markdown table for docs/benchmarks.md.

Usage: .venv/bin/python benchmarks/parity.py [--device cpu|cuda]

Models are randomly initialized (no checkpoints can be downloaded here): transformers builds each reference
model, saves it with save_pretrained, and w2v2cli.load_model reads the folder back.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import SMALL, hf_logits, make_hf_folder, speechlike

from w2v2cli import load_model

BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
            num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16)
# 10x between the shortest and the longest utterance.
LENGTHS = [64000, 6400, 30000, 17777]


def batch(waveforms, device):
    lengths = torch.tensor([len(w) for w in waveforms])
    x = torch.zeros(len(waveforms), int(lengths.max()))
    for i, w in enumerate(waveforms):
        x[i, : len(w)] = torch.from_numpy(w)
    return x.to(device), lengths.to(device)


def measure(size_name, size, form, device):
    with tempfile.TemporaryDirectory() as tmp:
        hf_model, extractor, _ = make_hf_folder(Path(tmp), form, size=size)
        model = load_model(tmp, device=device)
    waveforms = [speechlike(n, seed=i) for i, n in enumerate(LENGTHS)]
    parity = invariance = hf_batched = 0.0
    with torch.no_grad():
        logits, frames = model(*batch(waveforms, device))
        for i, w in enumerate(waveforms):
            ref = hf_logits(hf_model, extractor, [w])
            alone, _ = model(*batch([w], device))
            parity = max(parity, (alone[0].cpu() - ref[0]).abs().max().item())
            invariance = max(invariance, (logits[i, : frames[i]] - alone[0]).abs().max().item())
        # transformers on the same padded batch, with the attention mask its feature extractor gives.
        extractor.return_attention_mask = True
        ref_batch = hf_logits(hf_model, extractor, waveforms)
        for i, w in enumerate(waveforms):
            ref = hf_logits(hf_model, extractor, [w])
            n = ref.shape[1]
            hf_batched = max(hf_batched, (ref_batch[i, :n] - ref[0]).abs().max().item())
    return parity, invariance, hf_batched


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {args.device}")
    print()
    print("| model | feature encoder | max abs diff vs transformers (single) | w2v2 batched vs single | "
          "transformers batched vs single |")
    print("| --- | --- | --- | --- | --- |")
    for size_name, size in (("small", SMALL), ("base", BASE)):
        for form in ("group", "layer"):
            parity, invariance, hf_batched = measure(size_name, size, form, args.device)
            print(f"| {size_name} | {form} | {parity:.1e} | {invariance:.1e} | {hf_batched:.1e} |")


if __name__ == "__main__":
    main()
