"""The command line: help lists implemented commands, `info` renders library data, errors are one line."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import make_hf_folder
from typer.testing import CliRunner

from w2v2cli import build_model, preset, save_model
from w2v2cli.cli import app

runner = CliRunner()


def w2v2(*args):
    """Run the real entry point in a subprocess, as a user's shell would."""
    return subprocess.run([sys.executable, "-m", "w2v2cli", *map(str, args)], capture_output=True, text=True)


@pytest.fixture
def native_model(tmp_path, vocab):
    torch.manual_seed(0)
    return save_model(build_model(preset("tiny", vocab_size=len(vocab)), vocab), tmp_path / "tiny.safetensors")


def test_help_lists_only_implemented_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    listed = {c.name for c in __import__("typer").main.get_command(app).commands.values()}
    assert listed == {"align", "download", "evaluate", "export", "finetune", "info", "lm", "models", "pretrain",
                      "transcribe"}
    assert "info" in result.output


def test_version():
    result = w2v2("--version")
    assert result.returncode == 0 and result.stdout.startswith("w2v2 ")


def test_info_native_file(native_model):
    result = runner.invoke(app, ["info", str(native_model)])
    assert result.exit_code == 0, result.output
    assert "tiny" in result.output and "<pad>" in result.output


def test_info_json_native_and_hf(native_model, tmp_path):
    data = json.loads(runner.invoke(app, ["info", str(native_model), "--json"]).output)
    assert data["architecture"] == "tiny" and data["vocab"]["size"] == 30
    assert data["parameters"]["total"] == sum(v for k, v in data["parameters"].items() if k != "total") + 64
    folder = tmp_path / "hf"
    make_hf_folder(folder, "layer")
    data = json.loads(runner.invoke(app, ["info", str(folder), "--json"]).output)
    assert data["format"] == "Hugging Face folder" and data["config"]["layer_norm_first"] is True
    assert data["vocab"]["tokens"][:5] == ["<pad>", "<s>", "</s>", "<unk>", "|"]


def test_info_hf_folder_renders_table(tmp_path):
    make_hf_folder(tmp_path, "group")
    result = w2v2("info", tmp_path)
    assert result.returncode == 0 and "Hugging Face folder" in result.stdout and result.stderr == ""


@pytest.mark.parametrize("make_bad", ["missing", "text", "not-a-model-folder"])
def test_bad_model_is_one_line_error(tmp_path, make_bad):
    path = tmp_path / "model.safetensors"
    if make_bad == "text":
        path.write_text("hello")
    elif make_bad == "not-a-model-folder":
        path = tmp_path
    result = w2v2("info", path)
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("w2v2: error: ") and str(path) in lines[0]
    assert "Traceback" not in result.stderr


def test_shell_completion_offers_commands(tmp_path):
    import os

    env = {**os.environ, "_W2V2_COMPLETE": "complete_bash", "COMP_WORDS": "w2v2 in", "COMP_CWORD": "1"}
    result = subprocess.run([sys.executable, "-m", "w2v2cli"], capture_output=True, text=True, env=env)
    assert result.stdout.split() == ["info"]  # "in" completes to the one command starting with it


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_committed_completion_scripts_are_current(shell):
    from pathlib import Path

    from typer._completion_shared import get_completion_script

    committed = (Path(__file__).parent.parent / "completions" / f"w2v2.{shell}").read_text()
    expected = get_completion_script(prog_name="w2v2", complete_var="_W2V2_COMPLETE", shell=shell)
    assert committed.strip() == expected.strip(), "run `make completions`"


def test_a_bad_option_value_is_a_usage_error_not_an_internal_one(tmp_path):
    result = w2v2("transcribe", "--format", "bogus", "x.wav")
    assert result.returncode == 2 and "Invalid value" in result.stderr and "internal error" not in result.stderr


ALLOCATION_PROBE = """
import os, sys, torch
from w2v2cli.cli import _tune_memory_for_large_tensors
_tune_memory_for_large_tensors()
x = torch.ones(16 << 18)  # 16 MB: past PyTorch's 2 MB huge-page threshold
huge = sum(int(line.split()[1]) for line in open("/proc/self/smaps") if line.startswith("AnonHugePages"))
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), huge)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="transparent huge pages are a Linux feature")
def test_allocator_modes():
    import os
    from pathlib import Path

    def probe(mode):
        env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"} | {"W2V2_ALLOCATOR": mode}
        return subprocess.run([sys.executable, "-c", ALLOCATION_PROBE], capture_output=True, text=True, env=env)

    fast, lean = probe("fast"), probe("lean")
    assert fast.returncode == 0 and lean.returncode == 0, fast.stderr + lean.stderr
    assert fast.stdout.split()[0] == "1" and lean.stdout.split()[0] == "None"
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists() and "[never]" not in thp.read_text():  # the kernel grants huge pages to tensors that ask
        assert int(fast.stdout.split()[1]) > 0 and int(lean.stdout.split()[1]) == 0

    bad = probe("turbo")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == "w2v2: error: W2V2_ALLOCATOR must be fast or lean, not 'turbo'"


def test_a_reader_that_leaves_early_is_not_an_error(tmp_path, native_model):
    import soundfile as sf

    for i in range(8):
        sf.write(tmp_path / f"{i}.wav", np.random.default_rng(i).normal(0, 0.1, 16000).astype("float32"), 16000)
    # `true` reads nothing and exits at once: every write finds the pipe closed, however fast the model is (a
    # reader that takes one byte races the writer when the whole output fits in the pipe's buffer).
    command = f"{sys.executable} -m w2v2cli transcribe -m {native_model} --batch-size 1 {tmp_path}/*.wav | true"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True)
    assert result.stderr == "" and result.returncode in (0, 141)


def test_a_folder_where_audio_belongs_is_named_in_one_line(tmp_path, native_model):
    """align takes one audio file: a folder fails that item (`path: reason`, exit 1); evaluate reads a data
    source: a folder without audio is a one-line error."""
    folder = tmp_path / "x.wav"
    folder.mkdir()
    result = w2v2("align", "-m", native_model, folder, "hello", "-q")
    assert result.returncode == 1 and result.stderr == f"{folder}: is a directory, not an audio file\n"
    result = w2v2("evaluate", "-m", native_model, "--data", folder)
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"w2v2: error: {folder}: no usable audio in this data source "
                                                  "(no audio files in this folder)"]
