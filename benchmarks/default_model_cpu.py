"""Speed of the embedded model through `w2v2 transcribe` on CPU, with the machine's own ceiling beside it.

Usage: .venv/bin/python benchmarks/default_model_cpu.py [DATA ...] [--rounds 2] [--threads 2]
                                                         [--precisions fp32,bf16]

DATA: folders or manifests, as every training command reads them (the recipe's test split, e.g.
/work/corpus/test.jsonl, is what docs/benchmarks.md's figures use). Without DATA, 300 seeded slices of 2-6 s are cut
from `sample_audio/` into a temporary folder.

Each round runs `w2v2 transcribe` once per precision, interleaved, as a fresh process (model load included),
greedy, on the embedded model. Two speeds per run: the one `transcribe` reports (first file to last) and the
whole command's wall time. The same CPU's speed varies between sessions and even within an hour, so the
script also measures what the machine can do right now: fp32 and bf16 matrix products (2048 x 2048) on the
same threads, and the model's work per audio second (counted from its config by w2v2cli/train/flops.py). The
share of the ceiling the model reaches is comparable across machines and days; the x real time alone is not.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pretrain_throughput import cpu_name  # noqa: E402

from w2v2cli import load_model  # noqa: E402
from w2v2cli.data import read_source  # noqa: E402
from w2v2cli.inference import cpu_has_native_bf16  # noqa: E402
from w2v2cli.train.flops import forward_flops  # noqa: E402

MODEL = ROOT / "w2v2cli" / "models" / "default.safetensors"
REPORT = re.compile(r"([\d,.]+) s of audio in ([\d.]+) s \(([\d.]+)x real time\)")


def matmul_ceiling(threads: int, dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an n x n matrix product on `threads` threads: the ceiling a compute-bound model can reach."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def model_gflop_per_second(utterances) -> float:
    """The embedded model's forward FLOPs per audio second over these utterances, each run whole, as transcribe
    does for files up to 30 s."""
    cfg = load_model(MODEL).config
    flops = sum(forward_flops(cfg, u.num_samples) for u in utterances)
    return flops / (sum(u.num_samples for u in utterances) / cfg.sample_rate) / 1e9


def slices(folder: Path, count: int = 300) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    source = np.concatenate([sf.read(p, dtype="float32")[0] for p in sorted((ROOT / "sample_audio").glob("*.wav"))])
    for i in range(count):
        n = int(rng.uniform(2, 6) * 16000)
        start = int(rng.integers(0, len(source) - n))
        sf.write(folder / f"{i:03d}.wav", source[start:start + n], 16000, subtype="PCM_16")


def cpu_times() -> list[int] | None:
    """The machine's cpu line of /proc/stat (user, nice, system, idle, iowait, irq, softirq, steal, ...)."""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None


def run_transcribe(paths: list[Path], precision: str, threads: int, listing: Path) -> dict:
    command = [sys.executable, "-m", "w2v2cli", "transcribe", "--model", "embedded", "--precision", precision,
               "--threads", str(threads), "--format", "jsonl", "-"]
    before, start = cpu_times(), time.perf_counter()
    done = subprocess.run(command, input=listing.read_text(), capture_output=True, text=True, cwd=ROOT)
    wall, after = time.perf_counter() - start, cpu_times()
    # Time the hypervisor gave this machine's CPUs to others while the command ran, as a share of all CPU time.
    steal = None
    if before and after and len(after) > 7 and sum(after) > sum(before):
        steal = (after[7] - before[7]) / (sum(after[:8]) - sum(before[:8]))
    if done.returncode != 0:
        raise SystemExit(f"w2v2 transcribe --precision {precision} failed: {done.stderr.strip()[-500:]}")
    found = REPORT.findall(done.stderr)
    if not found:
        raise SystemExit(f"no speed line in transcribe's output: {done.stderr.strip()[-300:]}")
    audio_s, loop_s, x = (float(v.replace(",", "")) for v in found[-1])
    texts = {r["path"]: r.get("text") for r in map(json.loads, done.stdout.splitlines())}
    return {"precision": precision, "audio_s": audio_s, "loop_s": loop_s, "x_loop": x, "wall_s": wall,
            "x_wall": audio_s / wall, "steal": steal, "texts": texts}


def spread(values: list[float]) -> str:
    lo, hi = round(min(values)), round(max(values))
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="*")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    native = {True: "yes", False: "no", None: "unknown"}[cpu_has_native_bf16()]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.data:
            slices(tmp / "slices")
        utterances = [u for spec in (args.data or [tmp / "slices"]) for u in read_source(spec).utterances]
        paths = [u.path for u in utterances]
        listing = tmp / "files.txt"
        listing.write_text("".join(f"{p}\n" for p in paths))
        print(f"machine: {cpu_name()}, bf16 in hardware: {native}; torch {torch.__version__}", file=sys.stderr)
        work = model_gflop_per_second(utterances)
        runs = []
        ceilings = {"fp32": [], "bf16": []}
        for r in range(args.rounds):
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                ceilings[name].append(matmul_ceiling(args.threads, dtype))
            for precision in precisions:
                run = run_transcribe(paths, precision, args.threads, listing)
                runs.append(run)
                stolen = "" if run["steal"] is None else f", CPU time stolen by the hypervisor {run['steal']:.1%}"
                print(f"round {r + 1}, {precision}: {run['x_loop']:.1f}x (first file to last), "
                      f"{run['x_wall']:.1f}x (whole command){stolen}", file=sys.stderr)

    audio_s = runs[0]["audio_s"]
    print(f"\n{len(paths)} files, {audio_s:,.1f} s of audio; {args.threads} threads; model work "
          f"{work:.3f} GFLOP per audio second; matmul ceiling now: fp32 {spread(ceilings['fp32'])} GFLOP/s, "
          f"bf16 {spread(ceilings['bf16'])} GFLOP/s\n")
    print("| precision | x real time, first file to last | whole command | model GFLOP/s | of the matmul ceiling "
          "at that precision |")
    print("| --- | --- | --- | --- | --- |")
    for precision in precisions:
        mine = [r for r in runs if r["precision"] == precision]
        rate = work * float(np.median([r["x_loop"] for r in mine]))
        ceiling = float(np.median(ceilings["bf16" if precision == "bf16" else "fp32"]))
        print(f"| {precision} | {spread([r['x_loop'] for r in mine])}x | {spread([r['x_wall'] for r in mine])}x "
              f"| {rate:.0f} | {rate / ceiling:.0%} |")
    if len(precisions) > 1:
        first = next(r for r in runs if r["precision"] == precisions[0])["texts"]
        for precision in precisions[1:]:
            other = next(r for r in runs if r["precision"] == precision)["texts"]
            differ = sum(first[k] != other.get(k) for k in first)
            print(f"\ntranscripts that differ between {precisions[0]} and {precision}: {differ} of {len(first)}")


if __name__ == "__main__":
    main()
