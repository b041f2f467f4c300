"""recipes/synthetic-en/run.sh with a stand-in for `w2v2`: the embedded model's five runs in order, each from the
one before, a four-run work folder moved into the five-run layout once, and bad settings as one-line errors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "recipes" / "synthetic-en" / "run.sh"

STUB = """#!/usr/bin/env bash
out=""; init=""; precision=""
while [ $# -gt 0 ]; do
  case $1 in --output) out=$2;; --init) init=$2;; --precision) precision=$2;; esac
  shift
done
echo "$init -> $out ${precision:-default}" >> "$CALLS"
mkdir -p "$out" && touch "$out/model.safetensors"
"""


@pytest.fixture()
def work(tmp_path):
    (tmp_path / "w" / "corpus").mkdir(parents=True)
    for name in ("test.jsonl", "test_espeak.jsonl"):
        (tmp_path / "w" / "corpus" / name).touch()
    stub = tmp_path / "w2v2"
    stub.write_text(STUB)
    stub.chmod(0o755)
    return tmp_path


def run(work: Path, stages: str, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "W2V2": str(work / "w2v2"), "CALLS": str(work / "calls"), "STAGES": stages, **env}
    return subprocess.run(["bash", str(RUN), str(work / "w")], env=environment, capture_output=True, text=True,
                          timeout=60)


def calls(work: Path) -> list[str]:
    return (work / "calls").read_text().replace(str(work / "w") + "/", "").splitlines()


def test_the_ship_stage_runs_five_runs_each_from_the_one_before(work):
    result = run(work, "ship")
    assert result.returncode == 0, result.stderr
    assert calls(work) == [
        "scratch -> ship-1 default",
        "ship-1/model.safetensors -> ship-2 default",
        "ship-2/model.safetensors -> ship-3 default",
        "ship-3/model.safetensors -> ship-4 default",
        "ship-4/model.safetensors -> ship bf16",
    ]
    assert run(work, "ship", SHIP_PRECISION="fp32").returncode == 0
    assert calls(work)[-1] == "ship-4/model.safetensors -> ship fp32"


def test_a_four_run_work_folder_moves_its_last_run_to_ship_4_once(work):
    old = work / "w" / "ship"
    old.mkdir()
    (old / "checkpoint-of-run-4").touch()
    result = run(work, "ship")
    assert result.returncode == 0, result.stderr
    assert "moving the four-run recipe's last run to ship-4" in result.stderr
    assert (work / "w" / "ship-4" / "checkpoint-of-run-4").exists()
    assert not (work / "w" / "ship" / "checkpoint-of-run-4").exists()
    # A rerun leaves the five-run layout as it is.
    result = run(work, "ship")
    assert result.returncode == 0 and "moving" not in result.stderr
    assert (work / "w" / "ship-4" / "checkpoint-of-run-4").exists()


def test_bad_settings_stop_with_one_line(work):
    result = run(work, "ship polish")
    assert result.returncode == 2 and "unknown stage 'polish'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    (work / "w" / "corpus" / "test.jsonl").unlink()
    result = run(work, "ship")
    assert result.returncode == 2 and "no corpus" in result.stderr
    assert not (work / "calls").exists()
