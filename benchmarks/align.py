"""Forced-alignment throughput and long-audio memory.

Usage: .venv/bin/python benchmarks/align.py [--utterances 64] [--long-minutes 60] [--threads 2]

1. The alignment step alone on CPU: emissions of 64 utterances of 5-20 s (50 frames/s, 32 classes, a
   13-characters-per-second transcript), aligned by w2v2's engine choice (`align_states`), by its checkpointed
   Viterbi forced for every size, and by torchaudio.functional.forced_align one utterance at a time.
2. A long file end to end: `python -m w2v2cli align` on one synthetic WAV with a transcript of matching length,
   base-config random model, in a fresh process; peak RSS from getrusage.
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from long_audio import write_long_wav  # noqa: E402

from w2v2cli import Vocabulary, build_model, preset, save_model  # noqa: E402
from w2v2cli.align import align_states, viterbi_states  # noqa: E402

WORDS = "the of and to in that it was for on are with as his they be at one have this from".upper().split()


def step_benchmark(count: int):
    rng = np.random.default_rng(0)
    problems = []
    for _ in range(count):
        frames = int(rng.uniform(5, 20) * 50)
        targets = rng.integers(1, 32, int(frames * 13 / 50))
        log_probs = torch.from_numpy(rng.standard_normal((frames, 32)).astype(np.float32) * 3).log_softmax(-1)
        problems.append((log_probs, targets))
    audio_seconds = sum(lp.shape[0] for lp, _ in problems) / 50
    timings = {}
    start = time.perf_counter()
    for lp, tg in problems:
        F.forced_align(lp[None], torch.from_numpy(tg)[None], blank=0)
    timings["torchaudio forced_align, one at a time"] = time.perf_counter() - start
    start = time.perf_counter()
    for lp, tg in problems:
        align_states(lp, tg, 0)
    timings["w2v2 align_states (engine chosen by size)"] = time.perf_counter() - start
    start = time.perf_counter()
    for lp, tg in problems:
        viterbi_states(lp.numpy(), tg, 0)
    timings["w2v2 checkpointed Viterbi, every size"] = time.perf_counter() - start
    print(f"alignment step alone: {count} utterances, {audio_seconds:.0f} s of audio")
    print()
    print("| engine | audio s / s |")
    print("| --- | --- |")
    for name, seconds in timings.items():
        print(f"| {name} | {audio_seconds / seconds:,.0f} |")
    print()


def long_benchmark(minutes: float, threads: int):
    vocab = Vocabulary.from_characters("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = save_model(build_model(preset("base", vocab_size=len(vocab)), vocab), tmp / "base.safetensors")
        audio = tmp / "long.wav"
        write_long_wav(audio, minutes)
        text = []
        while sum(len(w) + 1 for w in text) < minutes * 60 * 13:  # ~13 characters per second of speech
            text.append(str(rng.choice(WORDS)))
        (tmp / "t.txt").write_text(" ".join(text))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "w2v2cli", "align", "-m", str(model), str(audio),
                               "@" + str(tmp / "t.txt"), "--threads", str(threads), "-q", "-f", "ctm"],
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode:
            raise SystemExit(proc.stderr)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        words = len(proc.stdout.splitlines())
    print(f"long file: {minutes:g} min, {len(text)} words ({sum(map(len, text))} characters), base config, "
          f"{threads} threads: peak RSS {peak:.0f} MB, wall {wall:.0f} s ({minutes * 60 / wall:.1f}x real time), "
          f"{words} words aligned")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--utterances", type=int, default=64)
    parser.add_argument("--long-minutes", type=float, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    print()
    step_benchmark(args.utterances)
    if args.long_minutes:
        long_benchmark(args.long_minutes, args.threads)


if __name__ == "__main__":
    main()
