"""Training with two processes under torchrun (gloo on CPU), run the way users run it.

Every collective must be reached by every rank in the same order; a rank that decides differently waits in one
forever. So every run here has a time limit (a hang fails the test instead of stalling the suite), and
`torchrun --standalone` binds a free port itself, so runs never collide with each other or with another suite.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from w2v2cli import load_model

SPEECH = Path(__file__).resolve().parent / "fixtures" / "speech"  # three TTS utterances, 3-5 s each
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))
SMALL = ["--max-tokens", 100_000, "--num-workers", 0, "--threads", 1, "--quiet"]

pytestmark = pytest.mark.slow


def torchrun(command: str, output: Path, updates: int, *extra, timeout: int = 240) -> dict:
    """One two-process run of `w2v2 COMMAND`; its summary line (rank 0 alone prints one)."""
    args = [TORCHRUN, "--standalone", "--nproc-per-node", 2, "-m", "w2v2cli", command, "--output", output,
            "--max-updates", updates, *SMALL, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen(list(map(str, args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        stdout, stderr = run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: torchrun then stops its workers (each in a session of its own) before it exits.
        run.terminate()
        try:
            stderr = run.communicate(timeout=60)[1]
        except subprocess.TimeoutExpired:
            run.kill()
            stderr = ""
        pytest.fail(f"torchrun did not end within {timeout} s (ranks out of step?):\n{stderr[-3000:]}")
    assert run.returncode == 0, stderr[-3000:]
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def pretrain(output: Path, updates: int, *extra) -> dict:
    return torchrun("pretrain", output, updates, "--train", SPEECH, "--config", "tiny", "--max-sample-size", 48_000,
                    "--min-sample-size", 16_000, *extra)


def test_back_to_back_runs_end_and_leave_the_model(tmp_path):
    """Each rank used to decide from the file system whether to checkpoint once more after the last update; one
    that looked before rank 0 had written the model file entered a collective the other never reached."""
    for run in range(3):
        summary = pretrain(tmp_path / f"run{run}", 4)
        assert summary["update"] == 4 and summary["world_size"] == 2 and summary["ranks_in_sync"] is True
        load_model(tmp_path / f"run{run}" / "model.safetensors")


def test_resume_rerun_and_a_missing_model_file(tmp_path):
    """Rank 0 picks the checkpoint every rank resumes from; a rerun of a finished run trains nothing and writes
    a missing model file again."""
    pretrain(tmp_path, 3, "--save-every", 2)
    state = torch.load(tmp_path / "checkpoints" / "checkpoint_000000003.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # both ranks' RNG streams, for exact resume
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    (tmp_path / "model.safetensors").unlink()
    assert pretrain(tmp_path, 3)["update"] == 3
    load_model(tmp_path / "model.safetensors")
    longer = pretrain(tmp_path, 5)
    assert longer["update"] == 5 and longer["ranks_in_sync"] is True
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["update"] for m in metrics if "loss" in m] == [3, 5]


def test_finetuning_validates_with_both_processes(tmp_path):
    """CTC targets travel in the batches of both ranks; validation sums both ranks' shares, and rank 0 keeps the
    best model by WER."""
    manifest = tmp_path / "train.jsonl"
    lines = [line.split("\t") for line in (SPEECH / "transcripts.tsv").read_text().splitlines()]
    manifest.write_text("".join(json.dumps({"audio": str(SPEECH / audio), "text": text}) + "\n"
                                for audio, text in lines))
    summary = torchrun("finetune", tmp_path / "run", 4, "--train", manifest, "--valid", manifest, "--init", "scratch",
                       "--config", "tiny", "--valid-every", 2, "--freeze-updates", 0, "--lr", 2e-3)
    assert summary["update"] == 4 and summary["train_utterances"] == 3 and summary["best_wer"] >= 0
    valid = [json.loads(line)["valid"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if "valid" in line]
    # Validation shards whole batches like training, leaving out the surplus batch (at most one per rank).
    assert [v["update"] for v in valid] == [2, 4] and all(2 <= v["utterances"] <= 3 for v in valid)
    load_model(tmp_path / "run" / "model.safetensors")
    load_model(tmp_path / "run" / "last.safetensors")
