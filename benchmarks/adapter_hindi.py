"""Adapter fine-tuning on a language the model never heard: espeak-ng Hindi on the embedded English model, CPU.

Usage: .venv/bin/python benchmarks/adapter_hindi.py [--out DIR] [--train 300] [--test 40] [--updates 600]
                                                    [--lr 2e-3] [--threads 2] [--seed 0]

Writes seeded Hindi sentences (random 3-7 word sequences over ~90 common words, in Devanagari with its vowel signs
and viramas), speaks them with espeak-ng (`-v hi`, speed and pitch varied per sentence), and runs

    w2v2 finetune --init embedded --adapter hin --train train.jsonl --valid test.jsonl ...

which adds fresh attention adapters (16 wide) to the embedded model and trains only them and a new CTC head over
the Devanagari graphemes of the transcripts. Then `w2v2 evaluate` scores the held-out sentences (other word
sequences of the same words and voices) and the script prints one JSON line: the final CER/WER, the validation CER
along the run (the first is after valid_every updates), trainable and total parameters, wall time, machine,
torch version. A model that outputs nothing has a CER of 100%. The test sentences
share the training vocabulary; the figure says the adapters learn Hindi sounds from an English encoder, not that
the model transcribes open Hindi.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
W2V2 = [sys.executable, "-m", "w2v2cli"]

WORDS = (  # noqa: SIM905 (one string reads better than 90 quoted words)
    "मैं तुम वह हम आप यह घर पानी खाना जाना आना बड़ा छोटा अच्छा दिन रात किताब स्कूल लड़का लड़की माँ पिता दोस्त "
    "शहर गाँव सड़क पेड़ फूल आसमान नीला लाल हरा है हैं था थी में पर से को का की के और लेकिन बहुत आज कल सुबह "
    "शाम काम समय नमस्ते दुनिया भारत भाषा हिंदी बात सवाल जवाब सुंदर नया पुराना गाड़ी रेल बाज़ार चाय दूध फल "
    "सब्ज़ी खेल गाना पढ़ना लिखना देखना सुनना बोलना चलना सोना उठना कमरा दरवाज़ा खिड़की रास्ता पहाड़ नदी "
    "समुद्र बारिश धूप हवा ठंडा गरम"
).split()


def sentences(count: int, rng: random.Random) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))) for _ in range(count)]


def speak(texts: list[str], folder: Path, rng: random.Random) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, text in enumerate(texts):
        wav = folder / f"{i:04d}.wav"
        speed, pitch = rng.randint(130, 190), rng.randint(30, 70)
        subprocess.run(["espeak-ng", "-v", "hi", "-s", str(speed), "-p", str(pitch), "-w", str(wav), text],
                       check=True, capture_output=True)
        lines.append(json.dumps({"audio": str(wav), "text": text}, ensure_ascii=False))
    manifest = folder.with_suffix(".jsonl")
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def score(model: str, data: Path, threads: int) -> dict:
    run = subprocess.run(W2V2 + ["evaluate", "--model", model, "--data", str(data), "--json", "--threads",
                                 str(threads)], check=True, capture_output=True, text=True, cwd=ROOT)
    result = json.loads(run.stdout)["sets"][0]
    return {"cer": result["cer"], "wer": result["wer"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/adapter_hindi"))
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--test", type=int, default=40)
    parser.add_argument("--updates", type=int, default=600)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        sys.exit("adapter_hindi: needs espeak-ng (apt-get install espeak-ng)")
    rng = random.Random(args.seed)
    if args.out.exists():
        shutil.rmtree(args.out)
    train = speak(sentences(args.train, rng), args.out / "train", rng)
    test = speak(sentences(args.test, rng), args.out / "test", rng)
    run_dir = args.out / "run"
    command = W2V2 + [
        "finetune", "--init", "embedded", "--adapter", "hin", "--train", str(train), "--valid", str(test),
        "--output", str(run_dir), "--max-updates", str(args.updates), "--lr", str(args.lr),
        "--max-tokens", "400000", "--update-freq", "1", "--valid-every", str(max(1, args.updates // 4)),
        "--mask-prob", "0.3", "--mask-channel-prob", "0.1", "--seed", str(args.seed), "--threads", str(args.threads),
        "--quiet",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    curve = [{"update": r["update"], "cer": round(r["valid"]["cer"], 4)}
             for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "valid" in r]
    from w2v2cli import load_model

    model = load_model(run_dir / "model.safetensors")
    trainable = sum(p.numel() for n, p in model.named_parameters() if ".adapter." in n or n.startswith("ctc_head."))
    print(json.dumps({
        "command": " ".join(command[2:]), "train_sentences": args.train, "test_sentences": args.test,
        "after": score(str(run_dir / "model.safetensors"), test, args.threads),
        "trainable_parameters": trainable, "total_parameters": model.num_parameters(),
        "vocab_size": len(model.vocab), "train_seconds": round(seconds, 1), "validation": curve,
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
