"""Hugging Face folders that are unusual or broken: clear errors, no tracebacks, sensible vocabularies."""

import json

import pytest
from helpers import VOCAB, make_hf_folder

from w2v2cli import load_model
from w2v2cli.errors import ModelFileError


def test_added_tokens_beyond_the_head_are_ignored(tmp_path):
    make_hf_folder(tmp_path, "group")
    (tmp_path / "added_tokens.json").write_text(json.dumps({"<extra>": len(VOCAB), "<more>": len(VOCAB) + 1}))
    model = load_model(tmp_path)
    assert model.vocab.tokens == tuple(VOCAB) and model.vocab.blank == 0 and model.vocab.word_delimiter == "|"


def test_head_larger_than_vocab_gets_inert_tokens(tmp_path):
    make_hf_folder(tmp_path, "group")
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(VOCAB[:-2])}))
    model = load_model(tmp_path)
    assert model.vocab.tokens[-2:] == (f"<unused_{len(VOCAB) - 2}>", f"<unused_{len(VOCAB) - 1}>")
    assert model.vocab.ids_to_text([len(VOCAB) - 1, 5]) == VOCAB[5]


@pytest.mark.parametrize(
    "breakage, reason",
    [
        ("no-config", "config.json is missing"),
        ("bad-json", "unreadable JSON"),
        ("no-weights", "no weights"),
        ("no-vocab", "vocab.json is missing"),
        ("multilingual", "one vocabulary per language: choose one with --language (eng, fra)"),
        ("vocab-too-big", "does not fit the CTC head"),
        ("other-model", "model_type 'whisper' is not a model this toolkit runs"),
        ("adapter", "adapter"),
        ("wrong-shape", "wrong shape"),
    ],
)
def test_broken_folders_give_one_clear_error(tmp_path, breakage, reason):
    make_hf_folder(tmp_path, "group")
    config = json.loads((tmp_path / "config.json").read_text())
    if breakage == "no-config":
        (tmp_path / "config.json").unlink()
    elif breakage == "bad-json":
        (tmp_path / "config.json").write_text("{ not json")
    elif breakage == "no-weights":
        (tmp_path / "model.safetensors").unlink()
    elif breakage == "no-vocab":
        (tmp_path / "vocab.json").unlink()
    elif breakage == "multilingual":
        (tmp_path / "vocab.json").write_text(json.dumps({"eng": {"a": 0}, "fra": {"b": 0}}))
    elif breakage == "vocab-too-big":
        (tmp_path / "vocab.json").write_text(json.dumps({f"t{i}": i for i in range(len(VOCAB) + 3)}))
    elif breakage == "other-model":
        config["model_type"] = "whisper"
    elif breakage == "adapter":
        config["add_adapter"] = True
    elif breakage == "wrong-shape":
        config["intermediate_size"] = 100
    if breakage in ("other-model", "adapter", "wrong-shape"):
        (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError) as err:
        load_model(tmp_path)
    assert reason in str(err.value) and "\n" not in str(err.value)
