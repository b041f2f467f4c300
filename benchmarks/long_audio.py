"""Peak memory and time of `w2v2 transcribe` on long files, under either W2V2_ALLOCATOR mode (figures in
docs/benchmarks.md, Long audio; the modes in README, Memory and speed); with `lean`, peak memory grows only by
the decoded waveform.

Usage: .venv/bin/python benchmarks/long_audio.py [--minutes 10 30 60] [--threads 2] [--allocator fast|lean]

Writes a 16-bit WAV of synthetic speech-like audio per length at the model's rate (16 kHz), a randomly initialized
base-config model, and runs the installed command line (`python -m w2v2cli transcribe`) on each file in a fresh
process, reading the child's peak resident set size from the kernel (getrusage). The decoded waveform alone is
4 bytes x rate x seconds (230 MB per hour at 16 kHz).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import speechlike

from w2v2cli import ModelConfig, Vocabulary, build_model, preset, save_model
from w2v2cli.cli import MALLOPT


def write_long_wav(path: Path, minutes: float, sample_rate: int = ModelConfig.sample_rate) -> None:
    with sf.SoundFile(path, "w", samplerate=sample_rate, channels=1, subtype="PCM_16") as f:
        for i in range(int(minutes * 6)):  # 10-second blocks
            f.write(speechlike(10 * sample_rate, seed=i, sample_rate=sample_rate))


def run(model: Path, audio: Path, threads: int, allocator: str) -> tuple[float, float, str]:
    start = time.perf_counter()
    env = {**os.environ, "W2V2_ALLOCATOR": allocator}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, "-m", "w2v2cli", "transcribe", "-m", str(model), str(audio),
                           "--threads", str(threads), "-q", "-f", "json"], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert peak_kb >= before  # ru_maxrss of children is the max over all waited-for children
    return peak_kb / 1024, time.perf_counter() - start, proc.stdout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 30, 60])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--allocator", choices=sorted(MALLOPT), default="fast", help="W2V2_ALLOCATOR of the runs")
    args = parser.parse_args()
    vocab = Vocabulary.from_characters("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = preset("base", vocab_size=len(vocab))
        model = save_model(build_model(config, vocab), tmp / "base.safetensors")
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {args.threads} threads, "
              f"torch {torch.__version__}; base config, default --chunk-seconds 30 and --batch-seconds 30, "
              f"W2V2_ALLOCATOR={args.allocator}")
        print()
        print("| audio | decoded waveform | peak RSS | peak RSS - waveform | wall time | x real time |")
        print("| --- | --- | --- | --- | --- | --- |")
        # Longest first: RUSAGE_CHILDREN keeps the maximum over children, so each later (shorter) run is
        # measured in a fresh interpreter started by a small wrapper instead.
        for minutes in sorted(args.minutes):
            audio = tmp / f"{minutes:g}min.wav"
            write_long_wav(audio, minutes, config.sample_rate)
            wrapper = subprocess.run(
                [sys.executable, __file__, "--measure", str(model), str(audio), str(args.threads), args.allocator],
                capture_output=True, text=True,
            )
            if wrapper.returncode:
                raise SystemExit(wrapper.stderr)
            peak_mb, wall = map(float, wrapper.stdout.split())
            waveform_mb = minutes * 60 * config.sample_rate * 4 / 2**20
            print(f"| {minutes:g} min | {waveform_mb:.0f} MB | {peak_mb:.0f} MB | {peak_mb - waveform_mb:.0f} MB | "
                  f"{wall:.0f} s | {minutes * 60 / wall:.1f} |", flush=True)
            audio.unlink()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        peak, wall, _ = run(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        print(peak, wall)
    else:
        main()
