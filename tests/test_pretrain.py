"""The training loop through `pretrain`: learning on real speech, exact resume after SIGKILL, skipped files,
non-finite guards, and errors before any work (two processes under torchrun: test_ddp.py)."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import run_cli
from safetensors.torch import load_file

from w2v2cli import load_model
from w2v2cli.errors import ConfigError, TrainingError
from w2v2cli.io.checkpoint import load_pretraining_head
from w2v2cli.train.config import TrainConfig
from w2v2cli.train.objectives import PretrainObjective
from w2v2cli.train.pretrain import pretrain

SPEECH = Path(__file__).resolve().parent / "fixtures" / "speech"  # three TTS utterances, 3-5 s each
SMALL = {"max_tokens": 100_000, "max_sample_size": 48_000, "min_sample_size": 16_000, "num_workers": 0, "log_every": 5,
             "save_every": 10, "lr": 2e-3}


def cli(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "w2v2cli", *map(str, args)], capture_output=True, text=True,
                          env=env, **kwargs)


def cli_args(output, updates, quiet=True, **extra):
    args = ["pretrain", "--train", SPEECH, "--output", output, "--config", "tiny", "--max-updates", updates,
            "--max-tokens", 100_000, "--max-sample-size", 48_000, "--min-sample-size", 16_000, "--log-every", 5,
            "--save-every", 10, "--lr", 2e-3] + (["--quiet"] if quiet else [])
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", value]
    return args


def metrics(output):
    return [json.loads(line) for line in (Path(output) / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_loss_falls_and_accuracy_rises_on_speech(tmp_path):
    cfg = TrainConfig(max_updates=300, warmup=0.1, **{**SMALL, "max_sample_size": 64_000, "max_tokens": 200_000,
                                                       "log_every": 25, "save_every": 1000})
    summary = pretrain(SPEECH, tmp_path / "run", config="tiny", train_config=cfg)
    records = [r for r in metrics(tmp_path / "run") if "loss" in r]
    early, late = records[1], records[-1]  # records[0] still holds the first, largest losses of the warm-up
    assert late["loss"] < early["loss"] - 0.3, (early, late)
    assert late["accuracy"] > 2 * early["accuracy"] and late["accuracy"] > 0.15, (early, late)
    # The context vectors first drift towards one direction (the chance plateau), then spread out as the loss
    # leaves chance: the logged context_cosine shows both.
    peak = max(r["context_cosine"] for r in records)
    assert peak > 0.9 and late["context_cosine"] < peak - 0.3, [r["context_cosine"] for r in records]
    assert summary["update"] == 300 and summary["skipped_files"] == 0
    for key in ("update", "loss", "accuracy", "code_perplexity", "prob_perplexity", "context_cosine", "temperature",
                "lr", "grad_norm", "audio_seconds_per_second"):
        assert key in late
    # The written model is a normal model file; the pretraining head rides along for continued pretraining.
    model = load_model(summary["model"])
    hidden, _frames = model(torch.randn(1, 16000))
    assert hidden.shape == (1, 49, 64)
    head, _ = load_pretraining_head(summary["model"])
    assert "quantizer.codevectors" in head


@pytest.mark.slow
def test_sigkill_and_resume_end_with_bitwise_identical_weights(tmp_path):
    # One thread: with several, oneDNN's conv weight-gradient reductions may be ordered differently in two
    # processes (up to ~1e-6 between two uninterrupted runs), which has nothing to do with resuming.
    args = {"threads": 1, "num_workers": 2}
    straight = cli(*cli_args(tmp_path / "a", 30, **args))
    assert straight.returncode == 0, straight.stderr
    run = subprocess.Popen([sys.executable, "-m", "w2v2cli", *map(str, cli_args(tmp_path / "b", 30, **args))],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "b" / "checkpoints" / "checkpoint_000000010.pt"
    deadline = time.time() + 120
    while not first.exists() and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let it get past the checkpoint, into updates that will be lost
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert run.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "b" / "model.safetensors").exists() or first.exists()
    resumed = cli(*cli_args(tmp_path / "b", 30, quiet=False, **args))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # metrics.jsonl holds each update once, with the same figures.
    assert [r["update"] for r in metrics(tmp_path / "b")] == [r["update"] for r in metrics(tmp_path / "a")]
    assert [r["loss"] for r in metrics(tmp_path / "b")] == [r["loss"] for r in metrics(tmp_path / "a")]


def test_rerunning_a_finished_run_does_nothing_and_a_longer_one_continues(tmp_path):
    cfg = TrainConfig(max_updates=4, **SMALL)
    pretrain(SPEECH, tmp_path, config="tiny", train_config=cfg)
    before = (tmp_path / "model.safetensors").stat().st_mtime_ns
    assert pretrain(SPEECH, tmp_path, config="tiny", train_config=cfg)["update"] == 4
    assert (tmp_path / "model.safetensors").stat().st_mtime_ns == before
    assert pretrain(SPEECH, tmp_path, config="tiny", train_config=cfg.replace(max_updates=6))["update"] == 6


def test_resuming_with_another_model_config_is_refused(tmp_path):
    cfg = TrainConfig(max_updates=2, **SMALL)
    pretrain(SPEECH, tmp_path, config="tiny", train_config=cfg)
    with pytest.raises(TrainingError, match="use a new output folder"):
        pretrain(SPEECH, tmp_path, config="tiny", train_config=cfg, pretrain_overrides={"mask_prob": 0.5})


def test_a_corrupt_file_is_skipped_and_counted(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SPEECH, data)
    (data / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40))
    events = []
    cfg = TrainConfig(max_updates=4, **{**SMALL, "max_tokens": 48_000})
    # The header of broken.wav is unreadable: it is a data problem reported before training.
    summary = pretrain(data, tmp_path / "run", config="tiny", train_config=cfg, on_event=events.append)
    assert summary["update"] == 4 and summary["data_problems"] == 1
    assert any(e["event"] == "data_problem" and "broken.wav" in e["problem"] for e in events)


def test_a_file_that_fails_to_decode_during_training_is_skipped(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SPEECH, data)
    # A WAV whose header is fine but whose data chunk claims far more bytes than the file holds.
    good = (data / "quick_brown_fox.wav").read_bytes()
    (data / "truncated.wav").write_bytes(good[: len(good) // 2])
    events = []
    cfg = TrainConfig(max_updates=6, **{**SMALL, "max_tokens": 48_000})
    summary = pretrain(data, tmp_path / "run", config="tiny", train_config=cfg, on_event=events.append)
    assert summary["update"] == 6
    assert summary["skipped_files"] >= 1
    assert any(e["event"] == "skipped_file" and "truncated" in e["item"] for e in events)
    assert metrics(tmp_path / "run")[-1]["skipped_files"] >= 1


def test_non_finite_updates_are_skipped_then_training_stops(tmp_path, monkeypatch):
    real_step = PretrainObjective.step
    poisoned = set()

    def step(self, module, batch):
        result = real_step(self, module, batch)
        if self.update in poisoned:
            result.loss = result.loss * float("nan")
        return result

    def start_update(self, module, update):
        module.set_update(update)
        self.update = update

    monkeypatch.setattr(PretrainObjective, "step", step)
    monkeypatch.setattr(PretrainObjective, "start_update", start_update)
    events = []
    poisoned.update({2})
    cfg = TrainConfig(max_updates=5, max_bad_updates=3, **SMALL)
    summary = pretrain(SPEECH, tmp_path / "one", config="tiny", train_config=cfg, on_event=events.append)
    assert summary["skipped_updates"] == 1 and summary["update"] == 5
    bad = [e for e in events if e["event"] == "nonfinite"]
    assert len(bad) == 1 and bad[0]["update"] == 3 and bad[0]["ids"]
    poisoned.update({3, 4})
    with pytest.raises(TrainingError, match="3 updates in a row had a non-finite loss"):
        pretrain(SPEECH, tmp_path / "three", config="tiny", train_config=cfg)


def test_bad_arguments_fail_before_any_work(tmp_path):
    missing = run_cli("pretrain", "--train", tmp_path / "nope", "--output", tmp_path / "out", "--config", "tiny")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "nope" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    too_big = run_cli("pretrain", "--train", SPEECH, "--output", tmp_path / "out", "--max-tokens", 1000)
    assert too_big.returncode == 2 and "--max-sample-size" in too_big.stderr
    preset = run_cli("pretrain", "--train", SPEECH, "--output", tmp_path / "out", "--config", "huge")
    assert preset.returncode == 2 and "--config" in preset.stderr
    (tmp_path / "file").write_text("x")
    not_dir = run_cli(*cli_args(tmp_path / "file", 1))
    assert not_dir.returncode == 2 and "not a folder" in not_dir.stderr
    with pytest.raises(ConfigError, match="not both"):
        pretrain(SPEECH, tmp_path / "x", config="tiny", init=tmp_path / "m.safetensors")
    with pytest.raises(ConfigError, match="conv_init only goes with a new model"):
        pretrain(SPEECH, tmp_path / "y", init=tmp_path / "m.safetensors", conv_init="envelope")
    unknown = run_cli("pretrain", "--train", SPEECH, "--output", tmp_path / "z", "--config", "tiny", "--conv-init", "x")
    assert unknown.returncode == 2 and "--conv-init 'x'" in unknown.stderr and not (tmp_path / "z").exists()
    negative = run_cli(*cli_args(tmp_path / "w", 1), "--diversity-weight", -0.5)
    assert negative.returncode == 2 and "--diversity-weight -0.5" in negative.stderr and not (tmp_path / "w").exists()
    assert len(negative.stderr.strip().splitlines()) == 1
    for bad in (["0.5", "2", "0.9"], ["2", "0.5", "1.5"], ["2", "0", "0.9"]):
        temp = run_cli(*cli_args(tmp_path / "t", 1), "--latent-temp", *bad)
        assert temp.returncode == 2 and "--latent-temp" in temp.stderr and not (tmp_path / "t").exists()
        assert len(temp.stderr.strip().splitlines()) == 1


def test_the_diversity_weight_reaches_the_loss(tmp_path):
    """--diversity-weight: the loss is contrastive + weight x diversity (+ penalty) per target, and the weight is
    part of the run's identity, so a resume with another weight is refused rather than silently mixed."""
    cfg = TrainConfig(max_updates=2, **SMALL)
    out = tmp_path / "d"
    pretrain(SPEECH, out, config="tiny", train_config=cfg, pretrain_overrides={"diversity_weight": 2.0})
    logged = [m for m in metrics(out) if "contrastive" in m]
    assert logged
    for m in logged:
        expected = m["contrastive"] + 2.0 * m["diversity"] + 10.0 * m["feature_penalty"]
        assert m["loss"] == pytest.approx(expected, rel=1e-4)
    longer = TrainConfig(max_updates=4, **SMALL)
    with pytest.raises(TrainingError, match="another model or objective"):
        pretrain(SPEECH, out, config="tiny", train_config=longer, pretrain_overrides={"diversity_weight": 0.1})


def test_the_latent_temperature_follows_its_schedule(tmp_path):
    """--latent-temp START END DECAY: update n (counted from 1) trains at max(START x DECAY^(n-1), END), so a
    short run can anneal as far as a long one; the logged temperature shows it."""
    out = tmp_path / "t"
    result = cli(*cli_args(out, 10), "--latent-temp", "1.5", "0.6", "0.8")
    assert result.returncode == 0, result.stderr
    temps = {m["update"]: m["temperature"] for m in metrics(out) if "temperature" in m}
    assert temps and max(temps) == 10
    for update, temp in temps.items():
        assert temp == pytest.approx(max(1.5 * 0.8 ** (update - 1), 0.6), rel=1e-6)
    assert temps[10] == pytest.approx(0.6)
    with pytest.raises(TrainingError, match="another model or objective"):  # part of the run's identity
        pretrain(SPEECH, out, config="tiny", train_config=TrainConfig(max_updates=12, **SMALL))


def test_pretraining_continues_from_a_written_model(tmp_path):
    cfg = TrainConfig(max_updates=2, **SMALL)
    first = pretrain(SPEECH, tmp_path / "a", config="tiny", train_config=cfg, conv_init="envelope")
    second = pretrain(SPEECH, tmp_path / "b", init=first["model"], train_config=cfg)
    assert load_model(first["model"]).config.conv_init == load_model(second["model"]).config.conv_init == "envelope"
    head_a, config_a = load_pretraining_head(first["model"])
    head_b, config_b = load_pretraining_head(second["model"])
    assert config_a == config_b and head_a.keys() == head_b.keys()


def test_a_seeded_subset_bootstraps_and_the_full_data_continues_from_it(tmp_path):
    """`--minutes`: the bootstrap run trains on the seeded subset it lists in train_subset.jsonl (the same
    selection every time); the continuation on all the audio starts from its weights and head."""
    cfg = TrainConfig(max_updates=2, **SMALL)
    first = pretrain(SPEECH, tmp_path / "boot", config="tiny", train_config=cfg, hours=4.5 / 3600)
    listed = [json.loads(line) for line in (tmp_path / "boot" / "train_subset.jsonl").read_text().splitlines()]
    assert len(listed) == 1 and 3.0 <= listed[0]["duration"] <= 5.0
    again = pretrain(SPEECH, tmp_path / "again", config="tiny", train_config=cfg, hours=4.5 / 3600)
    listed_again = (tmp_path / "again" / "train_subset.jsonl").read_text()
    assert listed_again == (tmp_path / "boot" / "train_subset.jsonl").read_text()
    assert again["update"] == first["update"] == 2
    full = pretrain(SPEECH, tmp_path / "full", init=first["model"], train_config=cfg)
    assert full["update"] == 2 and not (tmp_path / "full" / "train_subset.jsonl").exists()
    both = cli(*cli_args(tmp_path / "x", 1), "--hours", 1, "--minutes", 1)
    assert both.returncode == 2 and "not both" in both.stderr and "Traceback" not in both.stderr
    zero = cli(*cli_args(tmp_path / "y", 1), "--minutes", 0)
    assert zero.returncode == 2 and "--minutes" in zero.stderr and len(zero.stderr.strip().splitlines()) == 1
    too_much = cli(*cli_args(tmp_path / "z", 1), "--hours", 5)
    assert too_much.returncode == 2 and "--hours 5" in too_much.stderr and not (tmp_path / "z" / "checkpoints").exists()
