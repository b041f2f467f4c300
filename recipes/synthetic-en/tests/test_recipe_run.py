"""recipes/synthetic-en/run.sh with a stand-in for `w2v2`: the embedded model's rounds (the first from scratch
with the pre-LN config, each later one from the round before), an older recipe's last run moved out of its way once,
and bad settings as one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs run.sh stage by stage

RUN = Path(__file__).resolve().parents[1] / "run.sh"

STUB = """#!/usr/bin/env bash
cmd=$1; first=$2; out=""; init=""; precision=""; config=""; lr=""; updates=""; model=""; utterances=""; lm=""
train=""; threads=""
while [ $# -gt 0 ]; do
  case $1 in --output) out=$2;; --init) init=$2;; --precision) precision=$2;; --config) config=$2;; --lr) lr=$2;;
    --max-updates) updates=$2;; -m) model=$2;; --utterances) utterances=$2;; --lm) lm=" lm";;
    --train) [[ $2 == */train.jsonl ]] || train=" ${2##*/}";; --threads) threads=$2;; esac
  shift
done
if [ "$cmd" = lm ]; then echo "lm $first -> $out" >> "$CALLS"; touch "$out"; exit 0; fi
if [ "$cmd" = evaluate ]; then
  echo "evaluate $model$lm" >> "$CALLS"
  [ -z "$utterances" ] || echo '{"set": "c/dev.jsonl", "id": "u1", "word_errors": 1, "words": 4}' > "$utterances"
  echo '{"sets": [{"set": "c/dev.jsonl", "wer": 0.25, "cer": 0.1}]}'; exit 0
fi
echo "$init $config -> $out ${precision:-default} $lr $updates$train" >> "$CALLS"
echo "${out##*/} $threads" >> "$CALLS.threads"
mkdir -p "$out" && touch "$out/model.safetensors"
"""


@pytest.fixture()
def work(tmp_path):
    (tmp_path / "w" / "corpus").mkdir(parents=True)
    for name in ("train.jsonl", "train_clean.jsonl", "test.jsonl", "test_espeak.jsonl"):
        (tmp_path / "w" / "corpus" / name).touch()
    stub = tmp_path / "w2v2"
    stub.write_text(STUB)
    stub.chmod(0o755)
    return tmp_path


def _native_bf16() -> str:
    """run.sh's SHIP_PRECISION default on this machine: bf16 where the CPU computes it, else fp32."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "fp32"
    return "bf16" if flags & {"avx512_bf16", "amx_bf16"} else "fp32"


NATIVE = _native_bf16()


def run(work: Path, stages: str, **env) -> subprocess.CompletedProcess:
    inherited = {k: v for k, v in os.environ.items() if k != "SHIP_PRECISION"}
    environment = {**inherited, "W2V2": str(work / "w2v2"), "CALLS": str(work / "calls"), "STAGES": stages,
                   "PYTHON": sys.executable, **env}
    return subprocess.run(["bash", str(RUN), str(work / "w")], env=environment, capture_output=True, text=True,
                          timeout=60)


def calls(work: Path) -> list[str]:
    return (work / "calls").read_text().replace(str(work / "w") + "/", "").splitlines()


def test_the_ship_stage_trains_each_round_from_the_one_before(work):
    result = run(work, "ship")
    assert result.returncode == 0, result.stderr
    assert calls(work) == [f"scratch small-preln -> ship {NATIVE} 3e-3 7000 train_clean.jsonl",
                           f"ship/model.safetensors  -> ship-2 {NATIVE} 1e-3 3000 train_clean.jsonl"]
    assert all((work / "w" / name).exists() for name in ("ship/.one-run", "ship/.done", "ship-2/.done"))
    # Finished rounds are not run again; a new round starts from the last one, with the knobs reaching it.
    result = run(work, "ship")
    assert result.returncode == 0 and "moving" not in result.stderr and len(calls(work)) == 2
    rounds = "7000:3e-3:clean 3000:1e-3:clean 4000:5e-4"
    result = run(work, "ship", SHIP_ROUNDS=rounds, SHIP_PRECISION="fp32")
    assert result.returncode == 0, result.stderr
    assert calls(work)[2:] == ["ship-2/model.safetensors  -> ship-3 fp32 5e-4 4000"]
    # An interrupted round (no .done) is called again: the trainer resumes it from its checkpoints.
    (work / "w" / "ship-3" / ".done").unlink()
    assert run(work, "ship", SHIP_ROUNDS=rounds).returncode == 0
    assert calls(work)[3:] == [f"ship-2/model.safetensors  -> ship-3 {NATIVE} 5e-4 4000"]


def test_a_round_can_train_on_the_audio_before_augmentation(work):
    rounds = "300:2e-3 200:5e-4:clean"
    (work / "w" / "corpus" / "train_clean.jsonl").unlink()
    result = run(work, "ship", SHIP_ROUNDS=rounds)  # no clean manifest: one line before any round is trained
    assert result.returncode == 2 and "train_clean.jsonl (rerun the corpus stage" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (work / "calls").exists()
    (work / "w" / "corpus" / "train_clean.jsonl").touch()
    result = run(work, "ship", SHIP_ROUNDS=rounds)
    assert result.returncode == 0, result.stderr
    assert calls(work) == [f"scratch small-preln -> ship {NATIVE} 2e-3 300",
                           f"ship/model.safetensors  -> ship-2 {NATIVE} 5e-4 200 train_clean.jsonl"]
    # Bad rounds are refused before any stage runs, even when the ship stage is not asked for.
    result = run(work, "pretrain", SHIP_ROUNDS="300:2e-3:noisy")
    assert result.returncode == 2 and "'300:2e-3:noisy' is not" in result.stderr and len(calls(work)) == 2


def test_the_ship_rounds_train_on_one_thread_unless_told(work):
    # The shipped model was trained on one thread; the thread count changes the rounding, so the default retraces
    # it. THREADS still sets the other stages; SHIP_THREADS the rounds.
    assert run(work, "pretrain ship", THREADS="2").returncode == 0
    assert (work / "calls.threads").read_text().splitlines() == ["pretrain 2", "ship 1", "ship-2 1"]
    assert run(work, "ship", SHIP_ROUNDS="7000:3e-3:clean 3000:1e-3:clean 500:1e-3", SHIP_THREADS="2").returncode == 0
    assert (work / "calls.threads").read_text().splitlines()[3:] == ["ship-3 2"]


def test_ship_config_picks_the_first_rounds_preset(work):
    assert run(work, "ship", SHIP_CONFIG="small", SHIP_ROUNDS="300:1e-3").returncode == 0
    assert calls(work) == [f"scratch small -> ship {NATIVE} 1e-3 300"]


def test_pretrain_and_the_one_hour_runs(work):
    result = run(work, "pretrain finetune")
    assert result.returncode == 0, result.stderr
    assert calls(work) == [" small-preln -> pretrain default 1e-3 3000",
                           "pretrain/model.safetensors  -> finetune-1h default 1e-3 1600",
                           "scratch small-preln -> scratch-1h default 2e-3 1600"]
    assert "--conv-init envelope --mask-length 2 --mask-prob 0.3" in RUN.read_text()
    assert '--freeze-updates 100 --train-feature-encoder "${FT[@]}"' in RUN.read_text()
    assert "CONFIG=${CONFIG:-small-preln}" in RUN.read_text() and "--lr 1e-3 --warmup 0.1" in RUN.read_text()
    # Finished runs are not repeated; the knobs reach the commands.
    assert run(work, "pretrain finetune").returncode == 0 and len(calls(work)) == 3
    (work / "w" / "scratch-1h" / ".done").unlink()
    assert run(work, "finetune", SCRATCH_CONFIG="tiny", FINETUNE_UPDATES="50").returncode == 0
    assert calls(work)[3:] == ["scratch tiny -> scratch-1h default 2e-3 50"]


def test_the_lm_stage_uses_only_training_sentences(work):
    text = work / "w" / "corpus" / "text"
    text.mkdir()
    rows = [{"transcript": "A TRAINING SENTENCE", "split": "train"}, {"transcript": "A DEV SENTENCE", "split": "dev"},
            {"transcript": "A TEST SENTENCE", "split": "test"}, {"transcript": "ANOTHER ONE", "split": "train"}]
    (text / "sentences.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run(work, "lm")
    assert result.returncode == 0, result.stderr
    assert calls(work) == ["lm lm_train.txt -> lm.arpa"]
    assert (work / "w" / "lm_train.txt").read_text() == "A TRAINING SENTENCE\nANOTHER ONE\n"
    assert run(work, "lm").returncode == 0 and len(calls(work)) == 1  # cached


def test_a_round_trained_from_an_older_model_stops_the_stage(work):
    assert run(work, "ship").returncode == 0
    model = work / "w" / "ship" / "model.safetensors"
    later = (work / "w" / "ship-2" / ".done").stat().st_mtime + 60
    os.utime(model, (later, later))  # round 1 retrained after round 2 finished
    result = run(work, "ship")
    assert result.returncode == 2 and "trained from an older ship" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and len(calls(work)) == 2


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
    (work / "w" / "corpus" / "test.jsonl").touch()
    for rounds, message in (("6000", "'6000' is not UPDATES:LR"), ("6000:fast", "'6000:fast' is not UPDATES:LR"),
                            ("0:1e-3", "'0:1e-3' is not UPDATES:LR"), (" ", "SHIP_ROUNDS is empty"),
                            ("6000:2e-3:noisy", "'6000:2e-3:noisy' is not"), ("6000:2e-3:", "'6000:2e-3:' is not"),
                            ("6000:2e-3:clean:1", "'6000:2e-3:clean:1' is not")):
        result = run(work, "ship", SHIP_ROUNDS=rounds)
        assert result.returncode == 2 and message in result.stderr, (rounds, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (work / "calls").exists()


def test_the_evaluate_stage_scores_every_run_and_the_packaged_model(work, tmp_path):
    assert run(work, "ship", SHIP_ROUNDS="300:1e-3 200:1e-3").returncode == 0
    for name in ("dev.jsonl", "test_slt.jsonl"):
        (work / "w" / "corpus" / name).touch()
    packaged = tmp_path / "default.safetensors"
    packaged.touch()
    result = run(work, "evaluate", SHIP_ROUNDS="300:1e-3 200:1e-3", PACKAGED=str(packaged))
    assert result.returncode == 0, result.stderr
    # finetune-1h and scratch-1h have no model: skipped; both rounds, then the packaged file.
    assert calls(work)[2:] == ["evaluate ship/model.safetensors", "evaluate ship-2/model.safetensors",
                               f"evaluate {packaged}"]
    assert (work / "w" / "packaged" / "wer.json").exists() and (work / "w" / "packaged" / "utterances.jsonl").exists()
    results = (work / "w" / "results.md").read_text()
    assert "| packaged embedded model | - | - | - | 25.0% / 10.0% |" in results
    assert "| held-out sentences, training voices | 25.0% | 25.0% | +0.0 (+0.0 to +0.0) | yes |" in results
    # A rerun keeps every score whose model and sets are unchanged; a retrained model is scored again.
    result = run(work, "evaluate", SHIP_ROUNDS="300:1e-3 200:1e-3", PACKAGED=str(packaged))
    assert result.returncode == 0 and len(calls(work)) == 5 and "evaluate ship-2: scored already" in result.stderr
    os.utime(work / "w" / "ship-2" / "model.safetensors", (1e9, 1e9))
    assert run(work, "evaluate", SHIP_ROUNDS="300:1e-3 200:1e-3", PACKAGED=str(packaged)).returncode == 0
    assert calls(work)[5:] == ["evaluate ship-2/model.safetensors"]
    # With a word LM every model is scored twice, and again with other weights; without a packaged file there
    # is nothing to compare with.
    (work / "w" / "lm.arpa").touch()
    result = run(work, "evaluate", SHIP_ROUNDS="300:1e-3", PACKAGED=str(tmp_path / "none"))
    assert result.returncode == 0, result.stderr
    assert calls(work)[6:] == ["evaluate ship/model.safetensors lm"]
    result = run(work, "evaluate", SHIP_ROUNDS="300:1e-3", PACKAGED=str(tmp_path / "none"), LM_ALPHA="0.7")
    assert result.returncode == 0, result.stderr
    assert calls(work)[7:] == ["evaluate ship/model.safetensors lm"]
