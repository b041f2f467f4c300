"""GPU throughput of batched transcription, end to end from decoded PCM in memory to text.

Usage: python benchmarks/transcribe_gpu.py [--hours 1] [--precision bf16] [--batch-seconds 300]

A randomly initialized base-config model; synthetic utterances of 2-20 s held in memory (decoding files is
measured by transcribe_cpu.py). Times the emission runner plus greedy decoding of every utterance, after one
warm-up pass, and reports x real time and model FLOP utilization, counting 14.8 GFLOP per audio second for
base against the card's dense bf16 peak (H100/H200 SXM: 989 TFLOP/s).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import speechlike

from w2v2cli import Vocabulary, build_model, preset
from w2v2cli.decode import GreedyDecoder
from w2v2cli.inference import EmissionRunner

GFLOP_PER_AUDIO_SECOND = 14.8
PEAK_TFLOPS = {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--batch-seconds", type=float, default=300.0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs CUDA")
    vocab = Vocabulary.from_characters("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
    model = build_model(preset("base", vocab_size=len(vocab)), vocab).cuda().eval()
    rate = model.config.sample_rate
    rng = np.random.default_rng(0)
    audio, total = [], 0.0
    while total < args.hours * 3600:
        seconds = float(rng.uniform(2, 20))
        audio.append(torch.from_numpy(speechlike(int(seconds * rate), seed=len(audio), sample_rate=rate)))
        total += seconds
    runner = EmissionRunner(model, "cuda", args.precision, batch_seconds=args.batch_seconds)
    decoder = GreedyDecoder(vocab, runner.frame_seconds)
    runner.run(audio[:64])  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    texts = [decoder(e)[0] for e in runner.run(audio)]
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    tflops = GFLOP_PER_AUDIO_SECOND * total / elapsed / 1000
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, {args.precision}, "
          f"batch {args.batch_seconds:g} s")
    print(f"{len(texts)} utterances, {total / 3600:.2f} h of audio in {elapsed:.2f} s: {total / elapsed:,.0f}x real "
          f"time, {tflops:.0f} TFLOP/s = {tflops / PEAK_TFLOPS[args.precision]:.1%} model FLOP utilization")


if __name__ == "__main__":
    main()
