"""recipes/synthetic-en/run.sh with a stand-in for `w2v2`: the embedded model's one run from scratch with the
pre-LN config, an older recipe's last run moved out of its way once, and bad settings as one-line errors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "recipes" / "synthetic-en" / "run.sh"

STUB = """#!/usr/bin/env bash
out=""; init=""; precision=""; config=""
while [ $# -gt 0 ]; do
  case $1 in --output) out=$2;; --init) init=$2;; --precision) precision=$2;; --config) config=$2;; esac
  shift
done
echo "$init $config -> $out ${precision:-default}" >> "$CALLS"
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


def test_the_ship_stage_is_one_run_from_scratch_with_the_pre_ln_config(work):
    result = run(work, "ship")
    assert result.returncode == 0, result.stderr
    assert calls(work) == ["scratch small-preln -> ship bf16"]
    assert (work / "w" / "ship" / ".one-run").exists()
    # Rerunning resumes the same folder (the trainer resumes from its checkpoints); the knobs reach the command.
    result = run(work, "ship", SHIP_PRECISION="fp32", SHIP_CONFIG="small")
    assert result.returncode == 0 and "moving" not in result.stderr
    assert calls(work)[-1] == "scratch small -> ship fp32"


def test_an_older_recipes_ship_folder_moves_to_ship_old_once(work):
    old = work / "w" / "ship"
    old.mkdir()
    (old / "checkpoint-of-run-5").touch()
    result = run(work, "ship")
    assert result.returncode == 0, result.stderr
    assert "moving the older recipe's last run to ship-old" in result.stderr
    assert (work / "w" / "ship-old" / "checkpoint-of-run-5").exists()
    assert not (work / "w" / "ship" / "checkpoint-of-run-5").exists()
    result = run(work, "ship")
    assert result.returncode == 0 and "moving" not in result.stderr
    # An older ship/ while ship-old/ is taken: one line, nothing run, nothing moved.
    (work / "w" / "ship" / ".one-run").unlink()
    before = len(calls(work))
    result = run(work, "ship")
    assert result.returncode == 2 and "ship-old exists" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and len(calls(work)) == before


def test_bad_settings_stop_with_one_line(work):
    result = run(work, "ship polish")
    assert result.returncode == 2 and "unknown stage 'polish'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    (work / "w" / "corpus" / "test.jsonl").unlink()
    result = run(work, "ship")
    assert result.returncode == 2 and "no corpus" in result.stderr
    assert not (work / "calls").exists()
