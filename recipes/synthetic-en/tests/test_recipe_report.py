"""recipes/synthetic-en/report.py: training figures per run from metrics.jsonl, with interruptions counted as a
usual gap."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("recipe_report", ROOT / "recipes/synthetic-en/report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_metrics(run: Path, updates: int, seconds_per_update: float, speed: float, pause_after: int | None = None):
    """A metrics log with a record every 10 updates, one validation record, and optionally a long pause (a
    stopped session) after update `pause_after`."""
    run.mkdir(parents=True)
    now, lines = 1000.0, []
    for update in range(10, updates + 1, 10):
        now += 10 * seconds_per_update
        if pause_after is not None and update == pause_after + 10:
            now += 3600.0
        lines.append({"update": update, "loss": 1.0, "audio_seconds_per_second": speed, "time": now})
        if update == updates:
            lines.append({"update": update, "valid": {"wer": 0.5}, "time": now + 1})
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_one_run_counts_its_updates_speed_and_minutes(report, tmp_path):
    write_metrics(tmp_path / "scratch-1h", updates=100, seconds_per_update=3.0, speed=27.0)
    updates, speed, minutes = report.training_figures(tmp_path / "scratch-1h")
    assert updates == 100 and speed == pytest.approx(27.0)
    # 9 gaps of 30 s between the records, the 30 s before the first one, and the 1 s validation record.
    assert minutes == pytest.approx((10 * 30 + 1) / 60)


def test_an_interruption_counts_as_a_usual_gap(report, tmp_path):
    write_metrics(tmp_path / "a", updates=200, seconds_per_update=3.0, speed=27.0)
    write_metrics(tmp_path / "b", updates=200, seconds_per_update=3.0, speed=27.0, pause_after=100)
    assert report.training_figures(tmp_path / "b")[2] == pytest.approx(report.training_figures(tmp_path / "a")[2])


def test_the_stage_table_lists_every_round_of_the_embedded_model(report, tmp_path, capsys, monkeypatch):
    for name, updates in (("ship", 60), ("ship-2", 80), ("ship-4", 40)):  # ship-3 missing: ship-4 is not a round
        write_metrics(tmp_path / name, updates=updates, seconds_per_update=1.0, speed=30.0)
    assert report.ship_rounds(tmp_path) == ["ship", "ship-2"]
    monkeypatch.setattr("sys.argv", ["report.py", str(tmp_path)])
    assert report.main() == 0
    out = capsys.readouterr().out
    assert "| ship | 60 |" in out and "| ship-2 | 80 |" in out and "ship-4" not in out


def test_a_run_scored_with_the_word_lm_gets_a_second_row(report, tmp_path, capsys, monkeypatch):
    write_metrics(tmp_path / "ship", updates=60, seconds_per_update=1.0, speed=30.0)
    for name, wer in (("wer.json", 0.5), ("wer-lm.json", 0.25)):
        sets = [{"set": "corpus/dev.jsonl", "wer": wer, "cer": wer / 3}]
        (tmp_path / "ship" / name).write_text(json.dumps({"sets": sets}))
    monkeypatch.setattr("sys.argv", ["report.py", str(tmp_path), "ship"])
    assert report.main() == 0
    out = capsys.readouterr().out
    assert "| ship | 60 | 30 | 1 | 50.0% / 16.7% |" in out
    assert "| ship, beam + word LM | 60 | 30 | 1 | 25.0% / 8.3% |" in out


def write_utterances(run: Path, errors: list[int], words: int = 10, offset: int = 0):
    """utterances.jsonl of a run on the dev set: one record per utterance with these word errors."""
    run.mkdir(parents=True, exist_ok=True)
    rows = [{"set": "corpus/dev.jsonl", "id": f"dev-{i + offset:06d}", "word_errors": e, "words": words}
            for i, e in enumerate(errors)]
    rows.append({"set": "corpus/dev.jsonl", "id": "broken", "error": "unreadable"})
    (run / "utterances.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_last_round_is_compared_with_the_packaged_model(report, tmp_path, capsys, monkeypatch):
    for name in ("ship", "ship-2"):
        write_metrics(tmp_path / name, updates=60, seconds_per_update=1.0, speed=30.0)
    write_utterances(tmp_path / "ship", [9] * 40)  # round 1 is not compared: ship-2 is the last round
    write_utterances(tmp_path / "ship-2", [5, 4] * 20)
    write_utterances(tmp_path / "packaged", [4, 5] * 20)  # the same errors in all, other utterances
    (tmp_path / "packaged" / "wer.json").write_text(json.dumps({"sets": [{"set": "corpus/dev.jsonl", "wer": 0.45,
                                                                          "cer": 0.15}]}))
    monkeypatch.setattr("sys.argv", ["report.py", str(tmp_path)])
    assert report.main() == 0
    out = capsys.readouterr().out
    assert "| packaged embedded model | - | - | - | 45.0% / 15.0% |" in out
    row = next(line for line in out.splitlines() if line.startswith("| held-out sentences, training voices |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["45.0%", "45.0%"] and cells[3].startswith("+0.0 (-") and cells[4] == "yes"

    write_utterances(tmp_path / "ship-2", [9] * 40)  # far worse on every utterance: not the same model
    assert "| ship-2 (this work folder) WER |" in report.reproduction(tmp_path, "ship-2")
    assert report.reproduction(tmp_path, "ship-2").splitlines()[-1].endswith("| no |")
    write_utterances(tmp_path / "ship-2", [9] * 40, offset=100)  # no utterance in common: no table
    assert report.reproduction(tmp_path, "ship-2") is None
