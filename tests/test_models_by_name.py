"""`--model NAME` end to end: the CLI and load_model fetch a transformers folder from a stand-in Hub (tests/
hub_server.py, fixtures in conftest.py) into huggingface_hub's cache once, and transcribe as transformers does."""

import json

import pytest
import soundfile as sf
from helpers import SAMPLE_RATE, hf_logits, make_hf_folder, run_cli, speechlike, strip_markers

from w2v2cli import hub, load_model

REPO = "facebook/wav2vec2-base-960h"  # base-960h in the alias table
LENGTHS = (SAMPLE_RATE, 9999)


def reference(folder, seed):
    """A random transformers Wav2Vec2ForCTC folder and its greedy transcript of each test utterance."""
    model, extractor, tokenizer = make_hf_folder(folder, seed=seed)
    texts = [strip_markers(tokenizer.batch_decode(hf_logits(model, extractor, [w]).argmax(-1))[0])
             for w in waveforms()]
    assert all(texts)  # not a comparison of empty strings
    return texts


def waveforms():
    return [speechlike(n, seed=i) for i, n in enumerate(LENGTHS)]


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """Two revisions of the repo, each with transformers' transcripts: {revision: (folder, texts)}."""
    root = tmp_path_factory.mktemp("repos")
    return {revision: (root / revision, reference(root / revision, seed)) for revision, seed in (("main", 0),
                                                                                                 ("v1", 1))}


@pytest.fixture
def audio(tmp_path):
    paths = [tmp_path / "a.wav", tmp_path / "b.wav"]
    for path, w in zip(paths, waveforms()):
        sf.write(path, w, SAMPLE_RATE)
    return paths


@pytest.fixture
def hub_server(start_hub, repos):
    return start_hub({REPO: {revision: folder for revision, (folder, _) in repos.items()}})


def transcripts(model, audio):
    """`w2v2 transcribe --model MODEL a.wav b.wav` (no --model for None): the exit status, the texts in input order,
    and stderr."""
    result = run_cli("transcribe", *(["--model", model] if model is not None else []), *audio, "-f", "jsonl", "-q")
    texts = [json.loads(line)["text"] for line in result.stdout.splitlines()]
    return result.returncode, texts, result.stderr


def weights_fetched(server):
    return [name for name in server.fetched() if name.endswith(".safetensors")]


@pytest.mark.parametrize("name", [None, "base-960h", REPO])
def test_a_name_transcribes_as_transformers_and_downloads_once(name, hub_server, repos, audio, hf_home):
    assert transcripts(name, audio) == (0, repos["main"][1], "")
    assert weights_fetched(hub_server) == ["model.safetensors"]
    assert next(hf_home.rglob("model.safetensors")).is_file()  # in huggingface_hub's cache, under HF_HOME

    hub_server.clear()
    assert transcripts(name, audio) == (0, repos["main"][1], "")
    assert hub_server.fetched() == []  # a second run only asks which commit main is


def test_a_revision_selects_its_folder(hub_server, repos, audio):
    assert repos["v1"][1] != repos["main"][1]
    assert transcripts(f"{REPO}@v1", audio)[:2] == (0, repos["v1"][1])
    assert transcripts(REPO, audio)[:2] == (0, repos["main"][1])


def test_offline_with_a_warm_cache_asks_nothing(hub_server, repos, audio, monkeypatch):
    assert transcripts("base-960h", audio)[0] == 0
    hub_server.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert transcripts("base-960h", audio) == (0, repos["main"][1], "")
    assert hub_server.hits() == []


@pytest.mark.parametrize("name", [None, "base-960h"])
def test_offline_with_a_cold_cache_is_one_line_naming_both_remedies(name, hub_server, audio, monkeypatch):
    """No --model is the default model, base-960h: offline and not cached, it is the same one-line error, never
    a silent fall-back to the embedded model."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, texts, err = transcripts(name, audio)
    assert (code, texts) == (4, [])
    assert err.count("\n") == 1 and err.startswith("w2v2: error: facebook/wav2vec2-base-960h is not cached")
    assert '"w2v2 download base-960h"' in err and "--model embedded" in err
    assert hub_server.hits() == []


def test_without_model_align_and_evaluate_use_the_default_model_too(hub_server, audio, tmp_path, monkeypatch):
    """align and evaluate resolve no --model as transcribe does: offline with a cold cache, the same one line."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "a.txt").write_text("HELLO\n")
    for args in (["align", audio[0], "HELLO"], ["evaluate", "--data", tmp_path]):
        result = run_cli(*args)
        assert result.returncode == 4, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "w2v2 download base-960h" in result.stderr


def test_an_unknown_repo_is_one_line(hub_server, audio):
    code, texts, err = transcripts("facebook/no-such-model", audio)
    assert (code, texts) == (4, [])
    assert err == ("w2v2: error: facebook/no-such-model: no such model on the Hub (if it is private, set HF_TOKEN "
                   "to a token that can read it)\n")


def test_the_embedded_model_needs_no_hub(hub_server, audio, hf_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, texts, _ = transcripts("embedded", audio)
    assert code == 0 and len(texts) == 2
    assert hub_server.hits() == [] and not hf_home.exists()


def test_load_model_takes_the_same_names(hub_server, repos):
    import torch

    by_name = load_model("base-960h").state_dict()
    by_path = load_model(repos["main"][0]).state_dict()
    assert by_name.keys() == by_path.keys() and all(torch.equal(by_name[k], by_path[k]) for k in by_name)


def test_models_lists_the_alias_table():
    result = run_cli("models")
    assert result.returncode == 0
    for entry in hub.MODELS.values():
        assert entry.name in result.stdout and entry.licence in result.stdout
    listed = json.loads(run_cli("models", "--json").stdout)
    assert [row["name"] for row in listed] == list(hub.MODELS)
    assert listed[1]["repo_id"] == REPO and listed[1]["revision"] == "main"


def test_download_fetches_ahead_and_reports_each_failure(hub_server, repos, audio, monkeypatch):
    result = run_cli("download", "base-960h", "facebook/no-such-model", f"{REPO}@v1", "embedded", "-q")
    assert result.returncode == 4
    main, v1, embedded = (hub.resolve(s, progress=False) for s in ("base-960h", f"{REPO}@v1", "embedded"))
    assert result.stdout.splitlines() == [str(main), str(v1), str(embedded)]
    assert result.stderr == ("w2v2: error: facebook/no-such-model: no such model on the Hub (if it is private, set "
                             "HF_TOKEN to a token that can read it)\n")

    hub_server.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert transcripts(f"{REPO}@v1", audio) == (0, repos["v1"][1], "")
    assert hub_server.hits() == []


def test_every_command_that_takes_a_model_takes_a_name(hub_server, tmp_path, monkeypatch):
    import w2v2cli.train.finetune as library

    folder = hub.resolve("base-960h", progress=False)
    described = json.loads(run_cli("info", "base-960h", "--json").stdout)
    assert described["source"] == str(folder) and described["vocab"]["size"] == 32

    received = []
    monkeypatch.setattr(library, "finetune", lambda *args, init, **kwargs: received.append(init) or {})
    result = run_cli("finetune", "--init", f"{REPO}@main", "--train", "t.jsonl", "-o", tmp_path / "run", "-q")
    assert result.returncode == 0, result.stderr
    assert received == [folder]


def test_info_without_a_model_says_which_is_the_default_and_never_downloads_it(hub_server, repos):
    """`w2v2 info` works offline: a cold cache gets which model is the default and how to fetch it (exit 0, no
    request); once cached, it is described from the cache."""
    cold = run_cli("info", "--json")
    assert cold.returncode == 0, cold.stderr
    assert json.loads(cold.stdout) == {"default_model": {
        "name": "base-960h", "repo_id": REPO, "revision": "main", "cached": False,
        "download_mb": hub.MODELS["base-960h"].download_mb}}
    table = run_cli("info")
    assert table.returncode == 0 and "w2v2 download base-960h" in table.stdout and "embedded" in table.stdout
    assert hub_server.hits() == []

    folder = hub.resolve("base-960h", progress=False)
    hub_server.clear()
    warm = json.loads(run_cli("info", "--json").stdout)
    assert warm["source"] == str(folder) and warm["default_model"]["cached"] is True
    assert warm["vocab"]["size"] == len(json.loads((repos["main"][0] / "vocab.json").read_text()))
    assert "default model" in run_cli("info").stdout
    assert hub_server.hits() == []


def test_language_reaches_the_hub_and_the_loader_in_every_command(start_hub, repos, audio, tmp_path, monkeypatch):
    """--language fetches a Hub model's adapter into its snapshot and hands the language to load_model, in each
    command that runs a model (the loader is stood in for: loading adapters is io/hf.py's, tested there)."""
    import shutil

    import torch
    from safetensors.torch import save_file

    import w2v2cli.io.checkpoint as checkpoint
    from w2v2cli.errors import ModelFileError

    mms = shutil.copytree(repos["main"][0], tmp_path / "mms")
    save_file({"adapter": torch.zeros(2)}, str(mms / "adapter.fra.safetensors"))
    start_hub({"org/mms": {"main": mms}})
    received = []

    def loader(path, device="cpu", *, language=None):
        received.append((path, language))
        raise ModelFileError(path, "the stand-in loader stops here")

    monkeypatch.setattr(checkpoint, "load_model", loader)
    (tmp_path / "a.txt").write_text("HELLO\n")
    for args in (["transcribe", "-m", "org/mms", audio[0]], ["evaluate", "-m", "org/mms", "--data", tmp_path],
                 ["info", "org/mms"], ["export", "org/mms", "-f", "onnx", "-o", tmp_path / "m.onnx"]):
        result = run_cli(*args, "--language", "fra")
        assert result.returncode == 4 and "the stand-in loader stops here" in result.stderr, (args, result.stderr)
        path, language = received.pop()
        assert language == "fra" and (path / "adapter.fra.safetensors").is_file(), args
    result = run_cli("transcribe", "-m", "org/mms", audio[0], "--language", "deu", "-q")
    assert result.returncode == 4 and received == []
    assert result.stderr == ("w2v2: error: org/mms: no adapter for --language deu (adapter.deu.safetensors); it has "
                             "1 language: fra\n")
