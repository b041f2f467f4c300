"""The recipe's results table (Markdown) from each run's `wer.json` (`w2v2 evaluate --json`) and `metrics.jsonl`.

Usage:
    python recipes/synthetic-en/report.py WORK_DIR [RUN ...]    (default runs: finetune-1h scratch-1h ship)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SET_NAMES = (("dev", "held-out sentences, training voices"), ("test", "held-out sentences and voices"),
             ("test_espeak", "test: held-out espeak-ng voices"), ("test_slt", "test: flite slt"),
             ("sample_audio", "sample_audio/"))


def training_figures(run: Path) -> tuple[int, float]:
    """(updates, mean audio-seconds per second) of a run, from its metrics log."""
    updates, speeds = 0, []
    path = run / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        record = json.loads(line)
        if "valid" in record or "audio_seconds_per_second" not in record:
            continue
        updates = record["update"]
        speeds.append(record["audio_seconds_per_second"])
    return updates, sum(speeds) / len(speeds) if speeds else 0.0


def row(work: Path, name: str) -> str:
    result = json.loads((work / name / "wer.json").read_text())
    by_set = {}
    for entry in result["sets"]:
        for key, _ in SET_NAMES:
            if Path(entry["set"]).stem == key or Path(entry["set"]).name == key:
                by_set[key] = entry
    cells = [f"{by_set[k]['wer']:.1%} / {by_set[k]['cer']:.1%}" if k in by_set else "-" for k, _ in SET_NAMES]
    updates, speed = training_figures(work / name)
    return f"| {name} | {updates} | {speed:.0f} | " + " | ".join(cells) + " |"


def main() -> int:
    work = Path(sys.argv[1])
    runs = sys.argv[2:] or ["finetune-1h", "scratch-1h", "ship"]
    header = "| run | updates | audio-s/s | " + " | ".join(f"{label} WER / CER" for _, label in SET_NAMES) + " |"
    print(header)
    print("|" + " --- |" * (3 + len(SET_NAMES)))
    for name in runs:
        if (work / name / "wer.json").exists():
            print(row(work, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
