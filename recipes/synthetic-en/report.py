"""The recipe's results table (Markdown) from each run's `wer.json` (`w2v2 evaluate --json`) and `metrics.jsonl`:
updates, training speed and training minutes per run, WER / CER per set (greedy, and beam search with the word LM
where `wer-lm.json` exists), and the pretrained-vs-scratch comparison on the held-out espeak-ng voices.

Usage:
    python recipes/synthetic-en/report.py WORK_DIR [RUN ...]
    (default runs: finetune-1h, scratch-1h and the embedded model's rounds ship, ship-2, ...)
"""

from __future__ import annotations

import json
import sys
from itertools import pairwise
from pathlib import Path

SET_NAMES = (("dev", "held-out sentences, training voices"), ("test", "held-out sentences and voices"),
             ("test_espeak", "test: held-out espeak-ng voices"), ("test_slt", "test: flite slt"),
             ("sample_audio", "sample_audio/"))

# A gap between log records this many times the run's median gap is an interruption (a crash or a stopped
# session, then a resume), counted as one median gap.
INTERRUPTION = 10


def training_figures(run: Path) -> tuple[int, float, float | None]:
    """(updates, mean audio-seconds per second, training minutes or None) of a run, from its metrics log. The
    minutes come from the records' wall-clock times (validation included, interruptions counted as a usual gap);
    updates logged by a version that wrote no times are counted at the timed updates' median pace."""
    updates, speeds, timed = 0, [], []
    path = run / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        record = json.loads(line)
        if "time" in record:
            timed.append((record["update"], record["time"]))
        if "valid" in record or "audio_seconds_per_second" not in record:
            continue
        updates = record["update"]
        speeds.append(record["audio_seconds_per_second"])
    minutes = None
    pairs = [(b[1] - a[1], b[0] - a[0]) for a, b in pairwise(timed) if b[1] >= a[1]]
    if pairs:
        gaps = sorted(gap for gap, _ in pairs)
        median = gaps[len(gaps) // 2]
        paces = sorted(gap / steps for gap, steps in pairs if steps > 0 and gap <= INTERRUPTION * median)
        pace = paces[len(paces) // 2] if paces else 0.0
        seconds = sum(gap if gap <= INTERRUPTION * median else median for gap, _ in pairs)
        minutes = (seconds + timed[0][0] * pace) / 60  # the updates before the first timed record
    return updates, sum(speeds) / len(speeds) if speeds else 0.0, minutes


def ship_rounds(work: Path) -> list[str]:
    """The embedded model's rounds present in WORK, in order: ship, ship-2, ship-3, ..."""
    rounds, k = [], 1
    while (work / (name := "ship" if k == 1 else f"ship-{k}")).is_dir():
        rounds.append(name)
        k += 1
    return rounds


def row(work: Path, name: str, results: str = "wer.json", label: str | None = None) -> str:
    result = json.loads((work / name / results).read_text())
    by_set = {}
    for entry in result["sets"]:
        for key, _ in SET_NAMES:
            if Path(entry["set"]).stem == key or Path(entry["set"]).name == key:
                by_set[key] = entry
    cells = [f"{by_set[k]['wer']:.1%} / {by_set[k]['cer']:.1%}" if k in by_set else "-" for k, _ in SET_NAMES]
    updates, speed, minutes = training_figures(work / name)
    took = f"{minutes:.0f}" if minutes is not None else "-"
    return f"| {label or name} | {updates} | {speed:.0f} | {took} | " + " | ".join(cells) + " |"


def main() -> int:
    work = Path(sys.argv[1])
    runs = sys.argv[2:] or ["finetune-1h", "scratch-1h", *ship_rounds(work)]
    sets = " | ".join(f"{label} WER / CER" for _, label in SET_NAMES)
    header = f"| run | updates | audio-s/s | minutes | {sets} |"
    print(header)
    print("|" + " --- |" * (4 + len(SET_NAMES)))
    for name in runs:
        if (work / name / "wer.json").exists():
            print(row(work, name))
        if (work / name / "wer-lm.json").exists():  # the run stage's beam search with the word LM
            print(row(work, name, "wer-lm.json", f"{name}, beam + word LM"))
    print()
    print("| stage | updates | training minutes |")
    print("| --- | --- | --- |")
    for name in ("pretrain", "finetune-1h", "scratch-1h", *ship_rounds(work)):
        if (work / name).is_dir():
            updates, _, minutes = training_figures(work / name)
            print(f"| {name} | {updates} | {f'{minutes:.0f}' if minutes is not None else '-'} |")
    comparison = pretraining_gain(work)
    if comparison:
        print()
        print(comparison)
    return 0


def pretraining_gain(work: Path, key: str = "test_espeak") -> str | None:
    """The paper's claim on the target set: finetune-1h's WER against scratch-1h's, relative, with the paired
    bootstrap interval of the difference when both runs wrote per-utterance records (`--utterances`)."""
    runs = {}
    for name in ("finetune-1h", "scratch-1h"):
        path = work / name / "wer.json"
        if not path.exists():
            return None
        sets = {Path(e["set"]).stem: e for e in json.loads(path.read_text())["sets"]}
        if key not in sets:
            return None
        runs[name] = sets[key]
    pretrained, scratch = runs["finetune-1h"]["wer"], runs["scratch-1h"]["wer"]
    relative = (scratch - pretrained) / scratch if scratch else 0.0
    line = (f"pretrain + finetune-1h vs scratch-1h on {key}: WER {pretrained:.1%} vs {scratch:.1%}, "
            f"{relative:+.1%} relative (target: at least +30%)")
    files = [work / name / "utterances.jsonl" for name in ("finetune-1h", "scratch-1h")]
    if all(f.exists() for f in files):
        from w2v2cli.scoring import paired_comparison

        records = []
        for f in files:
            rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
            records.append({r["id"]: r for r in rows if Path(r["set"]).stem == key and not r.get("error")})
        ids = sorted(set(records[0]) & set(records[1]))
        if ids:
            c = paired_comparison([records[0][i]["word_errors"] for i in ids],
                                  [records[1][i]["word_errors"] for i in ids], [records[0][i]["words"] for i in ids])
            line += (f"; difference {100 * c.difference:+.1f} points, 95% interval {100 * c.low:+.1f} to "
                     f"{100 * c.high:+.1f} (paired bootstrap over {c.utterances} utterances)")
    return line


if __name__ == "__main__":
    sys.exit(main())
