"""The recipe's results table (Markdown) from each run's `wer.json` (`w2v2 evaluate --json`) and `metrics.jsonl`:
updates, training speed and training minutes per run, WER / CER per set (greedy, and beam search with the word LM
where `wer-lm.json` exists), the pretrained-vs-scratch comparison on the held-out espeak-ng voices, and the last
round of the embedded model against the packaged one (`packaged/`, scored by the evaluate stage) set by set.

Usage:
    python recipes/synthetic-en/report.py WORK_DIR [RUN ...]
    (default runs: finetune-1h, scratch-1h, the embedded model's rounds ship, ship-2, ... and packaged)
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
    if not (work / name / "metrics.jsonl").exists():  # the packaged model: trained elsewhere
        return f"| {label or name} | - | - | - | " + " | ".join(cells) + " |"
    updates, speed, minutes = training_figures(work / name)
    took = f"{minutes:.0f}" if minutes is not None else "-"
    return f"| {label or name} | {updates} | {speed:.0f} | {took} | " + " | ".join(cells) + " |"


def main() -> int:
    work = Path(sys.argv[1])
    runs = sys.argv[2:] or ["finetune-1h", "scratch-1h", *ship_rounds(work), "packaged"]
    sets = " | ".join(f"{label} WER / CER" for _, label in SET_NAMES)
    header = f"| run | updates | audio-s/s | minutes | {sets} |"
    print(header)
    print("|" + " --- |" * (4 + len(SET_NAMES)))
    for name in runs:
        label = "packaged embedded model" if name == "packaged" else None
        if (work / name / "wer.json").exists():
            print(row(work, name, label=label))
        if (work / name / "wer-lm.json").exists():  # the run stage's beam search with the word LM
            print(row(work, name, "wer-lm.json", f"{label or name}, beam + word LM"))
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
    rounds = ship_rounds(work)
    table = reproduction(work, rounds[-1]) if rounds else None
    if table:
        print()
        print(table)
    return 0


def utterance_records(path: Path) -> dict[str, dict[str, dict]]:
    """`--utterances` records by set (the manifest's stem or the folder's name) and id; errors left out."""
    by_set: dict[str, dict[str, dict]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if not record.get("error"):
                by_set.setdefault(Path(record["set"]).stem, {})[record["id"]] = record
    return by_set


def paired(first: dict[str, dict], second: dict[str, dict]):
    """The paired bootstrap comparison of two runs' records of one set, over the utterances both scored."""
    from w2v2cli.scoring import paired_comparison

    ids = sorted(set(first) & set(second))
    if not ids or not sum(first[i]["words"] for i in ids):
        return None
    return paired_comparison([first[i]["word_errors"] for i in ids], [second[i]["word_errors"] for i in ids],
                             [first[i]["words"] for i in ids])


def reproduction(work: Path, run: str) -> str | None:
    """The recipe's last round against the packaged model, set by set, greedy: both WERs and the paired
    bootstrap interval of the difference, and whether that interval holds zero (the same model within the
    noise of the test sets). Needs both runs' `utterances.jsonl` (the evaluate stage writes them)."""
    files = [work / run / "utterances.jsonl", work / "packaged" / "utterances.jsonl"]
    if not all(f.exists() for f in files):
        return None
    ours, packaged = (utterance_records(f) for f in files)
    lines = [f"| set | {run} (this work folder) WER | packaged model WER | difference (95% interval) "
             "| within noise: interval holds 0 |",
             "| --- | --- | --- | --- | --- |"]
    for key, label in SET_NAMES:
        c = paired(ours.get(key, {}), packaged.get(key, {}))
        if c is None:
            continue
        within = "yes" if c.low <= 0 <= c.high else "no"
        lines.append(f"| {label} | {c.wer_a:.1%} | {c.wer_b:.1%} | {100 * c.difference:+.1f} ({100 * c.low:+.1f} to "
                     f"{100 * c.high:+.1f}) | {within} |")
    return "\n".join(lines) if len(lines) > 2 else None


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
        c = paired(*(utterance_records(f).get(key, {}) for f in files))
        if c is not None:
            line += (f"; difference {100 * c.difference:+.1f} points, 95% interval {100 * c.low:+.1f} to "
                     f"{100 * c.high:+.1f} (paired bootstrap over {c.utterances} utterances)")
    return line


if __name__ == "__main__":
    sys.exit(main())
