"""Training throughput: audio seconds per second per device, and model FLOP utilization (MFU) on GPUs.

Usage:
    .venv/bin/python benchmarks/pretrain_throughput.py --config tiny --updates 40
    .venv/bin/python benchmarks/pretrain_throughput.py --config base --updates 60 --num-workers 8   # on a GPU
    .venv/bin/python benchmarks/pretrain_throughput.py --objective finetune --config base ...       # CTC
    torchrun --nproc-per-node 8 benchmarks/pretrain_throughput.py --config base ...                 # per device

It writes synthetic speech-like audio (WAV, 16 kHz, lengths uniform in [--min-seconds, --max-seconds]) to a
temporary folder and runs the real `pretrain` (data loading, masking, quantizer, loss, AdamW, logging) with
fairseq's BASE batch (--max-tokens 1.4M samples) unless told otherwise. With --objective finetune it runs
`finetune` (CTC, random 15-characters-per-second transcripts, no frozen-encoder phase, so the whole
Transformer trains as in the steady state of a real run) from a randomly initialized encoder whose CNN stays
frozen, as a pretrained one's does (--train-feature-encoder trains it too). Throughput is read from metrics.jsonl,
leaving out the first log interval (start-up, allocator and kernel warm-up). MFU = training FLOPs per audio
second (3 x forward, counted from the config in w2v2cli/train/flops.py) x audio seconds per second / peak
dense bf16 FLOPs of the device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import speechlike

from w2v2cli import build_model, save_model
from w2v2cli.config import preset
from w2v2cli.inference import resolve_precision
from w2v2cli.train.config import FinetuneConfig, TrainConfig
from w2v2cli.train.finetune import finetune
from w2v2cli.train.flops import train_flops_per_audio_second
from w2v2cli.train.pretrain import pretrain


def cpu_name() -> str:
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return f"{names[0]} ({os.cpu_count()} cores)" if names else platform.machine()


def write_corpus(folder: Path, hours: float, min_s: float, max_s: float, sample_rate: int, seed: int = 0) -> float:
    """WAV files at `sample_rate` plus train.jsonl with random letter transcripts (for the CTC objective)."""
    rng = np.random.default_rng(seed)
    total, i = 0.0, 0
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ   "))
    with open(folder / "train.jsonl", "w") as manifest:
        while total < hours * 3600:
            seconds = float(rng.uniform(min_s, max_s))
            path = folder / f"utt{i:05d}.wav"
            audio = speechlike(int(seconds * sample_rate), seed=i, sample_rate=sample_rate)
            sf.write(path, audio, sample_rate, subtype="PCM_16")
            text = " ".join("".join(rng.choice(letters, int(15 * seconds))).split())
            manifest.write(json.dumps({"audio": str(path), "text": text, "duration": seconds}) + "\n")
            total += seconds
            i += 1
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--objective", choices=("pretrain", "finetune"), default="pretrain")
    parser.add_argument("--config", default="base")
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=1_400_000)
    parser.add_argument("--max-sample-size", type=int, default=250_000)
    parser.add_argument("--hours", type=float, default=0.5, help="synthetic corpus size")
    parser.add_argument("--min-seconds", type=float, default=10.0)
    parser.add_argument("--max-seconds", type=float, default=16.0)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--train-feature-encoder", action="store_true",
                        help="finetune: train the CNN too, as the embedded model's runs from scratch do")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()

    rank0 = os.environ.get("RANK", "0") == "0"
    rate = preset(args.config).sample_rate
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(os.environ.get("W2V2_BENCH_DATA", Path(tmp) / "audio"))
        if not data.exists() or not any(data.iterdir()):
            data.mkdir(parents=True, exist_ok=True)
            write_corpus(data, args.hours, args.min_seconds, args.max_seconds, rate)
        cfg = TrainConfig(
            max_updates=args.updates, max_tokens=args.max_tokens, max_sample_size=args.max_sample_size,
            min_sample_size=rate, log_every=args.log_every, save_every=10**9, warmup=0.1,
            precision=args.precision, device=args.device, num_workers=args.num_workers,
            activation_checkpointing=args.activation_checkpointing,
        )
        if args.objective == "pretrain":
            summary = pretrain(data, Path(tmp) / "run", config=args.config, train_config=cfg)
        else:
            tune = FinetuneConfig(freeze_updates=0, train_feature_encoder=args.train_feature_encoder)
            cfg = cfg.replace(max_sample_size=args.max_tokens, min_sample_size=0, schedule="tri_stage",
                              hold=0.4, lr=5e-5)
            # A saved random encoder stands in for a pretrained one: its CNN stays frozen, as in real fine-tuning,
            # unless --train-feature-encoder (as with --init scratch, and the embedded model's later runs).
            init = save_model(build_model(preset(args.config)), Path(tmp) / "init.safetensors")
            summary = finetune(data / "train.jsonl", Path(tmp) / "run", init=init, train_config=cfg,
                               finetune_config=tune)
        records = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    steady = [r for r in records if "audio_seconds_per_second" in r][1:]
    if not rank0:
        return
    world = summary["world_size"]
    per_device = float(np.mean([r["audio_seconds_per_second"] for r in steady])) / world
    utterance_s = min(args.max_sample_size / rate, (args.min_seconds + args.max_seconds) / 2)
    flops = train_flops_per_audio_second(preset(args.config), utterance_s)
    on_gpu = torch.cuda.is_available() and args.device != "cpu"
    device = torch.cuda.get_device_name(0) if on_gpu else cpu_name()
    result = {
        "objective": args.objective, "config": args.config,
        "train_feature_encoder": args.objective == "finetune" and args.train_feature_encoder,
        "device": device, "devices": world, "threads": torch.get_num_threads(),
        "max_tokens": args.max_tokens, "updates": args.updates,
        "precision": resolve_precision(args.precision, torch.device("cuda" if on_gpu else "cpu")),
        "audio_seconds_per_second_per_device": round(per_device, 2),
        "train_gflop_per_audio_second": round(flops / 1e9, 2),
        "achieved_tflops_per_device": round(per_device * flops / 1e12, 3),
        "mfu": steady[-1].get("mfu"),
        "gpu_memory_gb": steady[-1].get("gpu_memory_gb"),
        "loss_first_last": [round(records[0]["loss"], 3), round(records[-1]["loss"], 3)],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
