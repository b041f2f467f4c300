"""Forced-alignment throughput and long-audio memory.

Usage: .venv/bin/python benchmarks/align.py [--utterances 64] [--hour-minutes 60] [--long-minutes 60]
                                            [--threads 2] [--devices cpu,cuda]

1. The alignment step alone, on each device (CUDA when available): emissions of 64 utterances of 5-20 s
   (50 frames/s, 32 classes, a 13-characters-per-second transcript), aligned by torchaudio.functional.forced_align
   one utterance at a time, by w2v2's NumPy checkpointed Viterbi one at a time (CPU), by w2v2's batched torch
   Viterbi (`viterbi_batch`, the whole batch at once on that device) and by the engine `align_batch` picks for
   the device (`ENGINES`). Audio seconds aligned per second.
2. One file of `--hour-minutes` of emissions, the alignment step alone: the NumPy checkpointed Viterbi on CPU
   (torchaudio would need frames x states bytes of back-pointers there), and on CUDA the batched torch Viterbi
   and torchaudio's CUDA kernel. Seconds, and peak CUDA memory.
3. A long file end to end: `python -m w2v2cli align` on one synthetic WAV with a transcript of matching length,
   base-config random model, in a fresh process; peak RSS from getrusage.

Numbers are only comparable on an idle machine: other jobs on the same cores slow every engine unevenly.
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
from long_audio import write_long_wav

from w2v2cli import Vocabulary, build_model, preset, save_model
from w2v2cli.align import ENGINES, align_batch, viterbi_states

WORDS = "the of and to in that it was for on are with as his they be at one have this from".upper().split()
FRAMES_PER_SECOND = 50


def random_problem(rng, seconds: float) -> tuple[torch.Tensor, np.ndarray]:
    frames = int(seconds * FRAMES_PER_SECOND)
    targets = rng.integers(1, 32, int(frames * 13 / FRAMES_PER_SECOND))
    log_probs = torch.from_numpy(rng.standard_normal((frames, 32)).astype(np.float32) * 3).log_softmax(-1)
    return log_probs, targets


def timed(run, problems, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run(problems, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def torchaudio_each(problems, device):
    for log_probs, targets in problems:
        F.forced_align(log_probs[None].to(device), torch.from_numpy(targets)[None].to(device), blank=0)


def numpy_each(problems, device):
    for log_probs, targets in problems:
        viterbi_states(log_probs.numpy(), targets, 0)


def batched(problems, device):
    align_batch(problems, 0, device, engine="batch")


def default(problems, device):
    align_batch(problems, 0, device)


def engines_for(device: torch.device) -> dict:
    engines = {"torchaudio forced_align, one at a time": torchaudio_each}
    if device.type == "cpu":
        engines["w2v2 NumPy checkpointed Viterbi, one at a time"] = numpy_each
    engines["w2v2 batched torch Viterbi (viterbi_batch)"] = batched
    engines[f"w2v2 align_batch default ({ENGINES.get(device.type)!r})"] = default
    return engines


def step_benchmark(count: int, devices: list[torch.device]):
    rng = np.random.default_rng(0)
    problems = [random_problem(rng, rng.uniform(5, 20)) for _ in range(count)]
    audio_seconds = sum(lp.shape[0] for lp, _ in problems) / FRAMES_PER_SECOND
    print(f"alignment step alone: {count} utterances, {audio_seconds:.0f} s of audio")
    print()
    print("| device | engine | audio s / s |")
    print("| --- | --- | --- |")
    for device in devices:
        for name, run in engines_for(device).items():
            run(problems[:2], device)  # warm-up: CUDA context, kernels, allocator
            seconds = timed(run, problems, device)
            print(f"| {device.type} | {name} | {audio_seconds / seconds:,.0f} |", flush=True)
    print()


def hour_benchmark(minutes: float, devices: list[torch.device]):
    log_probs, targets = random_problem(np.random.default_rng(2), minutes * 60)
    states = 2 * len(targets) + 1
    print(f"one file, alignment step alone: {minutes:g} min, {log_probs.shape[0]} frames x {states} states")
    print()
    print("| device | engine | seconds | audio s / s | peak CUDA memory |")
    print("| --- | --- | --- | --- | --- |")
    for device in devices:
        if device.type == "cuda":
            runs = {"w2v2 batched torch Viterbi": batched, "torchaudio forced_align": torchaudio_each}
        else:
            runs = {"w2v2 NumPy checkpointed Viterbi": numpy_each}
        for name, run in runs.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds = timed(run, [(log_probs, targets)], device)
            memory = f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MB" if device.type == "cuda" else "-"
            print(f"| {device.type} | {name} | {seconds:.1f} | {minutes * 60 / seconds:,.0f} | {memory} |", flush=True)
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
    parser.add_argument("--hour-minutes", type=float, default=60, help="0 skips the one-file alignment step")
    parser.add_argument("--long-minutes", type=float, default=60, help="0 skips the end-to-end run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device(d) for d in args.devices.split(",")]
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    print(f"machine: {platform.machine()}{gpu}, torch {torch.__version__}, {args.threads} threads")
    print()
    if args.utterances:
        step_benchmark(args.utterances, devices)
    if args.hour_minutes:
        hour_benchmark(args.hour_minutes, devices)
    if args.long_minutes:
        long_benchmark(args.long_minutes, args.threads)


if __name__ == "__main__":
    main()
