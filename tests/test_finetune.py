"""CTC fine-tuning and evaluation: learning on speech, hours subsets, preflight, resume, WER tables, bad input."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from w2v2cli import Vocabulary, build_model, load_model, preset, save_model
from w2v2cli.cli import app
from w2v2cli.data import Utterance, read_source
from w2v2cli.data.subset import select_hours
from w2v2cli.errors import ConfigError, ModelFileError
from w2v2cli.evaluate import evaluate
from w2v2cli.text import encode_transcript, training_characters
from w2v2cli.train.config import FinetuneConfig, recipe_for_hours
from w2v2cli.train.finetune import SUBSET_FILE, ctc_frames_needed, finetune, recipe_defaults, with_ctc_head

SPEECH = Path(__file__).resolve().parent / "fixtures" / "speech"
runner = CliRunner()


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    """The three sample utterances as a JSONL manifest with their transcripts."""
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    lines = []
    for line in (SPEECH / "transcripts.tsv").read_text().splitlines():
        audio, text = line.split("\t")
        lines.append(json.dumps({"audio": str(SPEECH / audio), "text": text.title() + "."}))
    path.write_text("\n".join(lines) + "\n")
    return path


def configs(updates, **tune):
    def configure(hours):
        train, tuned = recipe_defaults(hours)
        train = train.replace(max_updates=updates, lr=2e-3, max_tokens=200_000, max_sample_size=200_000,
                              update_freq=1, log_every=50, valid_every=100, save_every=100, num_workers=0)
        return train, tuned.replace(**{"freeze_updates": 0, **tune})
    return configure


def metrics(output):
    return [json.loads(line) for line in (Path(output) / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_tiny_model_learns_to_transcribe_speech(labeled, tmp_path):
    events = []
    summary = finetune(labeled, tmp_path, valid=[labeled], init="scratch", config="tiny",
                       configure=configs(300), on_event=events.append)
    train = [r for r in metrics(tmp_path) if "loss" in r]
    assert train[-1]["loss"] < 0.5 * train[0]["loss"]
    valid = [r["valid"] for r in metrics(tmp_path) if "valid" in r]
    assert valid[-1]["wer"] < 1.0 and valid[-1]["cer"] < 0.6
    assert summary["best_wer"] == min(v["wer"] for v in valid)
    assert valid[-1]["best_wer"] == summary["best_wer"]
    report = next(e for e in events if e["event"] == "text_report")
    assert report["new_vocabulary"] and report["dropped"] == {".": 3}  # the sentence-final periods
    # The run's model is the best one by WER, a normal model file transcribe and evaluate use directly.
    model = load_model(summary["model"])
    scores = evaluate(model, [str(labeled)])
    assert scores[0].wer == pytest.approx(summary["best_wer"])
    assert all(u.hypothesis for u in scores[0].items)  # not all blanks
    assert (tmp_path / "last.safetensors").exists()


@pytest.mark.slow
def test_resume_keeps_the_best_wer_and_continues(labeled, tmp_path):
    first = finetune(labeled, tmp_path, valid=[labeled], init="scratch", config="tiny", configure=configs(100))
    events = []
    second = finetune(labeled, tmp_path, valid=[labeled], init="scratch", config="tiny", configure=configs(200),
                      on_event=events.append)
    start = next(e for e in events if e["event"] == "start")
    assert start["resumed_from"].endswith("checkpoint_000000100.pt") and start["update"] == 100
    assert second["update"] == 200 and second["best_wer"] <= first["best_wer"]


def test_preflight_skips_utterances_too_short_for_their_transcript(tmp_path):
    manifest = tmp_path / "train.jsonl"
    short = "THE QUICK BROWN FOX " * 20  # 400 characters for 3 s: more labels than frames
    manifest.write_text(
        json.dumps({"audio": str(SPEECH / "quick_brown_fox.wav"), "text": short, "id": "too_short"}) + "\n"
        + json.dumps({"audio": str(SPEECH / "self_supervised.flac"), "text": "SELF SUPERVISED", "id": "ok"}) + "\n"
        + json.dumps({"audio": str(SPEECH / "speech_recognition.wav"), "text": "123 !!", "id": "no_letters"}) + "\n"
    )
    events = []
    summary = finetune(manifest, tmp_path / "run", init="scratch", config="tiny", configure=configs(2),
                       on_event=events.append)
    skipped = {e["item"].split(": ")[1].split(" ")[0]: e["reason"] for e in events if e["event"] == "skipped_file"}
    assert "too_short" in skipped and "frames cannot fit" in skipped["too_short"]
    assert summary["train_utterances"] == 2  # "123" is spelled by the new vocabulary's digits
    assert ctc_frames_needed([1, 2, 2, 3]) == 5


def test_hours_subset_is_exact_balanced_and_reproducible():
    utterances = [Utterance(f"s{s}-{i}", Path(f"/x/{s}-{i}.flac"), 16000 * (3 + (i * 7 + s) % 13), "A", f"s{s}")
                  for s in range(6) for i in range(40)]
    target = 0.25  # hours
    subset = select_hours(utterances, target, seed=1)
    seconds = sum(u.num_samples for u in subset) / 16000
    assert abs(seconds - target * 3600) <= max(0.01 * target * 3600, 15)
    assert [u.id for u in subset] == [u.id for u in select_hours(utterances, target, seed=1)]
    assert [u.id for u in subset] != [u.id for u in select_hours(utterances, target, seed=2)]
    per_speaker = [sum(u.speaker == f"s{s}" for u in subset) for s in range(6)]
    assert max(per_speaker) - min(per_speaker) <= 2
    with pytest.raises(ConfigError, match="holds only"):
        select_hours(utterances, 100, seed=1)


def test_hours_subset_is_written_as_a_manifest_that_reads_back(labeled, tmp_path):
    finetune(labeled, tmp_path, init="scratch", config="tiny", hours=5 / 3600, configure=configs(1))
    subset = read_source(tmp_path / SUBSET_FILE, need_text=True)
    seconds = subset.num_samples / 16000
    assert abs(seconds - 5) <= max(0.05, max(u.num_samples for u in subset.utterances) / 16000)
    assert all(u.text for u in subset.utterances)


def test_vocabulary_of_an_initial_ctc_model_is_kept(labeled, tmp_path):
    vocab = Vocabulary.from_characters("abcdefghijklmnopqrstuvwxyz'")
    torch.manual_seed(0)
    path = save_model(build_model(preset("tiny", vocab_size=len(vocab)), vocab), tmp_path / "init.safetensors")
    events = []
    summary = finetune(labeled, tmp_path / "run", init=path, configure=configs(2), on_event=events.append)
    assert load_model(summary["model"]).vocab == vocab
    assert not next(e for e in events if e["event"] == "text_report")["new_vocabulary"]


def test_transcript_normalization():
    assert training_characters("Don’t stop—now!") == ("DON'T STOPNOW", ["—", "!"])
    vocab = Vocabulary.from_characters("abcdefghijklmnopqrstuvwxyz'")
    ids, text, dropped = encode_transcript("Café, 42 times", vocab)
    assert text == "cafe times" and dropped == [",", "4", "2"]
    assert vocab.ids_to_text(ids) == "cafe times"


def test_recipes_by_data_size():
    assert recipe_for_hours(10 / 60).name == "10m" and recipe_for_hours(1).name == "1h"
    assert recipe_for_hours(7).name == "10h" and recipe_for_hours(960).name == "100h"
    train, tune = recipe_defaults(1, world_size=2)
    assert (train.max_updates, train.lr, train.update_freq, train.schedule) == (13_000, 5e-5, 4, "tri_stage")
    assert (tune.freeze_updates, tune.mask_channel_prob, tune.layerdrop) == (10_000, 0.25, 0.1)
    assert recipe_defaults(100, world_size=8)[0].update_freq == 1
    with pytest.raises(ConfigError):
        FinetuneConfig(mask_prob=1.5)


def test_bad_input_fails_before_any_work(labeled, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigError):
        finetune(empty, tmp_path / "a", init="scratch", config="tiny")
    with pytest.raises(ConfigError, match="holds only"):
        finetune(labeled, tmp_path / "b", init="scratch", config="tiny", hours=2)
    with pytest.raises(ModelFileError, match="no such file"):
        finetune(labeled, tmp_path / "c", init=tmp_path / "missing.safetensors")
    with pytest.raises(ConfigError, match=r"config: init scratch needs a preset \(.*small-preln"):
        finetune(labeled, tmp_path / "d", init="scratch")
    letters = Vocabulary.from_characters("ABC")
    torch.manual_seed(0)
    init = save_model(build_model(preset("tiny", vocab_size=len(letters)), letters), tmp_path / "abc.safetensors")
    digits = tmp_path / "digits.jsonl"
    digits.write_text(json.dumps({"audio": str(SPEECH / "quick_brown_fox.wav"), "text": "xyz 123"}) + "\n")
    with pytest.raises(ConfigError, match="no utterance can be trained on"):
        finetune(digits, tmp_path / "e", init=init, configure=configs(1))
    with pytest.raises(ConfigError, match="conv_init only goes with init scratch"):
        finetune(labeled, tmp_path / "h", init=init, conv_init="envelope")
    for path in ("a", "b", "d", "h"):
        assert not (tmp_path / path).exists()
    result = subprocess.run([sys.executable, "-m", "w2v2cli", "finetune", "--init", tmp_path / "nope",
                             "--train", labeled, "--output", tmp_path / "f"], capture_output=True, text=True)
    assert result.returncode == 4 and result.stderr.count("\n") == 1 and "nope" in result.stderr
    both = runner.invoke(app, ["finetune", "--init", "scratch", "--config", "tiny", "--train", str(labeled),
                               "--output", str(tmp_path / "g"), "--hours", "1", "--minutes", "5"])
    assert both.exit_code == 2 and "not both" in both.output
    unknown = runner.invoke(app, ["finetune", "--init", "scratch", "--config", "tiny", "--train", str(labeled),
                                  "--output", str(tmp_path / "i"), "--conv-init", "xavier"])
    assert unknown.exit_code == 2 and "--conv-init 'xavier'" in unknown.output and not (tmp_path / "i").exists()


def test_evaluate_cli_table_json_and_worst_utterances(labeled, tmp_path):
    vocab = Vocabulary.from_characters("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
    torch.manual_seed(0)
    model = save_model(build_model(preset("tiny", vocab_size=len(vocab)), vocab), tmp_path / "m.safetensors")
    table = runner.invoke(app, ["evaluate", "-m", str(model), "--data", str(labeled), "--errors", "2"])
    assert table.exit_code == 0, table.output
    assert "WER" in table.output and "train.jsonl" in table.output and "2 worst utterances" in table.output
    as_json = runner.invoke(app, ["evaluate", "-m", str(model), "--data", str(labeled), "--json", "--errors", "1"])
    result = json.loads(as_json.output)["sets"][0]
    assert result["utterances"] == 3 and result["words"] == 26 and len(result["worst"]) == 1
    assert result["wer"] == result["word_errors"] / result["words"]
    bare = save_model(build_model(preset("tiny")), tmp_path / "bare.safetensors")
    no_head = runner.invoke(app, ["evaluate", "-m", str(bare), "--data", str(labeled)])
    assert no_head.exit_code == 2 and "no CTC head" in no_head.output


def test_evaluate_utterances_file_interval_and_paired_comparison(labeled, tmp_path):
    """--utterances writes every utterance; the WER has a bootstrap interval; --compare gives the paired
    difference against another model's file (zero against itself), and a bad file is a one-line error."""
    vocab = Vocabulary.from_characters("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(save_model(build_model(preset("tiny", vocab_size=len(vocab)), vocab),
                                 tmp_path / f"m{seed}.safetensors"))
    first = runner.invoke(app, ["evaluate", "-m", str(models[0]), "--data", str(labeled), "--json",
                                "--utterances", str(tmp_path / "u0.jsonl")])
    assert first.exit_code == 0, first.output
    result = json.loads(first.output)["sets"][0]
    low, high = result["wer_interval"]
    assert low <= result["wer"] <= high
    records = [json.loads(line) for line in (tmp_path / "u0.jsonl").read_text().splitlines()]
    assert len(records) == 3 and {r["set"] for r in records} == {str(labeled)}
    assert sum(r["word_errors"] for r in records) == result["word_errors"]
    assert all(r["reference"] and "hypothesis" in r for r in records)

    again = runner.invoke(app, ["evaluate", "-m", str(models[0]), "--data", str(labeled), "--json",
                                "--compare", str(tmp_path / "u0.jsonl")])
    same = json.loads(again.output)["sets"][0]["compare"]
    assert same["difference"] == 0 and same["interval"] == [0, 0] and not same["significant"]
    other = runner.invoke(app, ["evaluate", "-m", str(models[1]), "--data", str(labeled), "--json",
                                "--compare", str(tmp_path / "u0.jsonl")])
    versus = json.loads(other.output)["sets"][0]
    assert versus["compare"]["other_wer"] == result["wer"] and versus["compare"]["wer"] == versus["wer"]
    assert versus["compare"]["difference"] == pytest.approx(versus["wer"] - result["wer"])
    table = runner.invoke(app, ["evaluate", "-m", str(models[1]), "--data", str(labeled),
                                "--compare", str(tmp_path / "u0.jsonl")])
    assert table.exit_code == 0 and "vs other" in table.output and "WER 95%" in table.output

    (tmp_path / "bad.jsonl").write_text('{"id": "a"}\n')
    bad = subprocess.run([sys.executable, "-m", "w2v2cli", "evaluate", "-m", models[0], "--data", labeled,
                          "--compare", tmp_path / "bad.jsonl"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "bad.jsonl" in bad.stderr
    assert "line 1" in bad.stderr
    nowhere = runner.invoke(app, ["evaluate", "-m", str(models[0]), "--data", str(labeled),
                                  "--utterances", str(tmp_path / "missing" / "u.jsonl")])
    assert nowhere.exit_code == 2 and "missing" in nowhere.output


def test_bootstrap_intervals():
    from w2v2cli.scoring import paired_comparison, wer_interval

    words = [5 + i % 7 for i in range(400)]
    errors = [(i * 37) % (w + 1) for i, w in enumerate(words)]
    wer = sum(errors) / sum(words)
    low, high = wer_interval(errors, words)
    assert low < wer < high and high - low < 0.1
    assert wer_interval(errors, words) == (low, high)  # seeded: the same interval every time
    fewer = [max(0, e - 1) for e in errors]
    better = paired_comparison(fewer, errors, words)
    assert better.difference < 0 and better.high < 0 and better.significant and better.a_better == 1.0
    same = paired_comparison(errors, errors, words)
    assert same.difference == 0 and not same.significant
    with pytest.raises(ValueError):
        paired_comparison(errors, errors[:-1], words)


def test_cli_passes_feature_encoder_choice(monkeypatch, tmp_path):
    """--train-feature-encoder / --freeze-feature-encoder reach the fine-tuning config; left out, the recipe's
    default (frozen) stands."""
    from typer.testing import CliRunner

    import w2v2cli.train.finetune as library
    from w2v2cli.cli import app

    seen = []

    def fake(train, output, valid, init, config, hours, configure, on_event, conv_init=None):
        seen.append(configure(1.0)[1].train_feature_encoder)
        return {}

    monkeypatch.setattr(library, "finetune", fake)
    init = tmp_path / "m.safetensors"  # the CLI resolves --init (a path or a model name) before the library runs
    init.touch()
    base = ["finetune", "--init", str(init), "--train", "t.jsonl", "-o", str(tmp_path)]
    for extra in ([], ["--train-feature-encoder"], ["--freeze-feature-encoder"]):
        result = CliRunner().invoke(app, base + extra)
        assert result.exit_code == 0, result.output
    assert seen == [False, True, False]


def test_cli_sets_every_finetuning_field(monkeypatch, tmp_path):
    """Each FinetuneConfig field has an option that reaches the config; a bad value is a one-line error."""
    import w2v2cli.train.finetune as library

    seen = []

    def fake(train, output, valid, init, config, hours, configure, on_event, conv_init=None):
        seen.append(configure(1.0)[1])
        return {}

    monkeypatch.setattr(library, "finetune", fake)
    given = {"freeze_updates": 7, "mask_prob": 0.3, "mask_length": 2, "mask_channel_prob": 0.1,
             "mask_channel_length": 16, "layerdrop": 0.05, "dropout": 0.01, "attention_dropout": 0.02,
             "activation_dropout": 0.03, "feature_dropout": 0.04, "final_dropout": 0.06, "reinit_layers": 2,
             "adapter": "hin", "adapter_dim": 8}
    (tmp_path / "m.safetensors").touch()  # --init is resolved by the CLI, so it must exist
    args = ["finetune", "--init", str(tmp_path / "m.safetensors"), "--train", "t.jsonl", "-o", str(tmp_path)]
    for name, value in given.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    result = CliRunner().invoke(app, args + ["--train-feature-encoder"])
    assert result.exit_code == 0, result.output
    fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
    assert fields == set(given) | {"train_feature_encoder"}
    assert {name: getattr(seen[0], name) for name in given} == given and seen[0].train_feature_encoder
    bad = CliRunner().invoke(app, args[:7] + ["--mask-length", "0"])
    assert bad.exit_code != 0 and "mask-length must be >= 1, not 0" in bad.output and "Traceback" not in bad.output


def test_library_errors_are_worded_with_the_options_the_user_typed():
    """The library names settings by field (max_tokens); the CLI swaps in its options: a snake_case name wherever
    it stands alone, a one-word name where it opens the message or a clause, never a word inside a path or a
    value that merely looks like a setting."""
    from w2v2cli.cli.training import with_options

    options = {"max_tokens": "--max-tokens", "update_freq": "--update-freq", "train": "--train", "lr": "--lr",
               "output": "--output", "init": "--init"}
    assert (with_options("out of memory at update 3 with max_tokens 9: lower max_tokens, raise update_freq.", options)
            == "out of memory at update 3 with --max-tokens 9: lower --max-tokens, raise --update-freq.")
    assert with_options("train train: no utterance", options) == "--train train: no utterance"
    assert (with_options("output /data/train/max_tokens.txt: exists", options)
            == "--output /data/train/max_tokens.txt: exists")
    assert (with_options("invalid training config: lr must be > 0; init scratch is all fresh", options)
            == "invalid training config: --lr must be > 0; --init scratch is all fresh")
    assert with_options("--init x: the model's lr and init", options) == "--init x: the model's lr and init"


def test_reinit_layers_start_the_top_layers_afresh(labeled, tmp_path):
    """--reinit-layers N keeps every pretrained weight but the top N Transformer layers', which start from the
    seed's fresh draw; asking for more layers than the model has, or for it with scratch, is a clear error."""
    vocab = Vocabulary.from_characters("ABC")
    torch.manual_seed(0)
    first, second = build_model(preset("tiny")), build_model(preset("tiny"))
    top = first.config.num_layers - 1
    a, b = (with_ctc_head(m, vocab, FinetuneConfig(reinit_layers=1), seed=3).state_dict() for m in (first, second))
    kept = first.state_dict()
    for name, value in kept.items():
        if name.startswith(f"transformer.layers.{top}."):
            assert torch.equal(a[name], b[name]), name  # the seed's draw, whatever the pretrained weights
            assert value.dim() < 2 or not torch.equal(a[name], value), name  # biases and norms start alike
        else:
            assert torch.equal(a[name], value), name
    init = save_model(first, tmp_path / "init.safetensors")
    with pytest.raises(ConfigError, match=rf"^reinit_layers {top + 2}: .* has {top + 1} Transformer layers"):
        finetune(labeled, tmp_path / "a", init=init, configure=configs(1, reinit_layers=top + 2))
    with pytest.raises(ConfigError, match=r"^reinit_layers only goes with a pretrained model"):
        finetune(labeled, tmp_path / "b", init="scratch", config="tiny", configure=configs(1, reinit_layers=1))
    # The command line names the options the user typed.
    base = ["finetune", "--train", str(labeled), "--max-updates", "1", "--num-workers", "0"]
    too_many = runner.invoke(app, base + ["--init", str(init), "-o", str(tmp_path / "a"), "--reinit-layers",
                                          str(top + 2)])
    assert too_many.exit_code == 2
    assert f"--reinit-layers {top + 2}: {init} has {top + 1} Transformer layers" in " ".join(too_many.output.split())
    scratch = runner.invoke(app, base + ["--init", "scratch", "--config", "tiny", "-o", str(tmp_path / "b"),
                                         "--reinit-layers", "1"])
    assert scratch.exit_code == 2
    assert "--reinit-layers only goes with a pretrained model: --init scratch is all fresh" in scratch.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    summary = finetune(labeled, tmp_path / "c", init=init, configure=configs(2, reinit_layers=top + 1))
    assert summary["update"] == 2


def test_scratch_runs_with_one_seed_start_and_end_alike(labeled, tmp_path):
    """--init scratch draws its weights from the run's seed, not from whatever torch's global RNG holds."""
    def run(name, seed, global_seed):
        torch.manual_seed(global_seed)
        configure = configs(2)
        summary = finetune(labeled, tmp_path / name, init="scratch", config="tiny",
                           configure=lambda hours: (configure(hours)[0].replace(seed=seed), configure(hours)[1]))
        return load_model(summary["model"]).state_dict()

    a, b, c = run("a", 1, 123), run("b", 1, 456), run("c", 2, 123)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
