"""Models by name (w2v2cli/hub.py) against a stand-in Hub on 127.0.0.1 (tests/hub_server.py): never the network."""

import json
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch
from helpers import SAMPLE_RATE, run_cli, speechlike
from safetensors.torch import save_file

from w2v2cli.errors import ConfigError
from w2v2cli.hub import (
    EMBEDDED_MODEL,
    MODELS,
    HubUnreachableError,
    ModelSpecError,
    NoWeightsError,
    RemoteFileNotFoundError,
    RepoAccessError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UnknownLanguageError,
    download,
    download_file,
    parse_model_spec,
    resolve,
)

NEEDED = ("config.json", "vocab.json", "preprocessor_config.json", "model.safetensors")
UNNEEDED = ("pytorch_model.bin", "flax_model.msgpack", "tf_model.h5", "adapter.fra.safetensors", "README.md",
            ".gitattributes")
DEMO = "or use --model embedded (the synthetic-speech demo model)"


def make_repo(folder: Path, files, marker: str = "main") -> Path:
    """A tiny model repo: real JSON and safetensors/pickle weights of one small tensor, `marker` in each file."""
    for name in files:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "config.json":  # what check_config needs of a wav2vec 2.0 config (no defaults for the conv stack)
            path.write_text(json.dumps({"model_type": "wav2vec2", "architectures": ["Wav2Vec2ForCTC"],
                                        "conv_dim": [32, 32], "conv_kernel": [10, 3], "conv_stride": [5, 2],
                                        "marker": marker}))
        elif name == "vocab.json":
            path.write_text(json.dumps({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3}))
        elif name == "model.safetensors.index.json":
            path.write_text(json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors",
                                                       "b": "model-00002-of-00002.safetensors"}}))
        elif name.endswith(".safetensors"):
            save_file({"weight": torch.arange(4.0)}, str(path), metadata={"marker": marker})
        elif name.endswith(".bin"):
            torch.save({"weight": torch.arange(4.0), "marker": torch.tensor(len(marker))}, path)
        else:
            path.write_text(f"{name} at {marker}\n")
    return folder


def files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# -- the alias table and --model parsing (no Hub) --------------------------------------------------------------

def test_alias_table_names_the_models_and_their_licences():
    assert (MODELS["base-960h"].repo_id, MODELS["base-960h"].licence) == ("facebook/wav2vec2-base-960h", "Apache-2.0")
    assert MODELS["large-960h-lv60-self"].repo_id == "facebook/wav2vec2-large-960h-lv60-self"
    assert (MODELS["mms-1b-all"].repo_id, MODELS["mms-1b-all"].licence) == ("facebook/mms-1b-all", "CC-BY-NC-4.0")
    assert MODELS["embedded"].repo_id is None
    for name, entry in MODELS.items():
        assert entry.name == name and entry.params_m > 0 and entry.download_mb > 0
        assert parse_model_spec(name).kind == "alias"


def test_alias_parses_to_its_repo_and_revision():
    spec = parse_model_spec("base-960h")
    assert (spec.kind, spec.alias, spec.repo_id, spec.revision) == ("alias", "base-960h",
                                                                    "facebook/wav2vec2-base-960h", "main")


@pytest.mark.parametrize("text, repo_id, revision", [
    ("org/name", "org/name", None),
    ("org/name@v1", "org/name", "v1"),
    ("facebook/wav2vec2-base-960h@refs/pr/7", "facebook/wav2vec2-base-960h", "refs/pr/7"),
    ("my_org/model.v2@" + "a" * 40, "my_org/model.v2", "a" * 40),
])
def test_repo_id_with_optional_revision(text, repo_id, revision):
    spec = parse_model_spec(text)
    assert (spec.kind, spec.repo_id, spec.revision, spec.path) == ("repo", repo_id, revision, None)


def test_an_existing_path_comes_first(tmp_path, monkeypatch):
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(b"")
    assert parse_model_spec(str(weights)).path == weights
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert parse_model_spec("org/name").kind == "path"  # a cloned repo folder, not a Hub look-up
    assert resolve("org/name") == Path("org/name")


@pytest.mark.parametrize("text", ["m.safetensors", "runs/model.safetensors", "./missing", "~/missing/model",
                                  "org/name@", "org/na me", "a/b/c", "-org/name", "org/name-", "org--x/name",
                                  "org/na..me", "org/name.git", "org/", "base-960", "facebook/wav2vec2 base"])
def test_neither_a_path_nor_a_name_is_one_line_naming_it(text):
    with pytest.raises(ModelSpecError) as raised:
        parse_model_spec(text)
    assert str(raised.value) == f"{text}: no such file, and not a model name (see w2v2 models)"
    assert raised.value.exit_code == 4


def test_download_refuses_a_malformed_repo_id_before_any_request(start_hub, tmp_path):
    hub = start_hub({"org/name": {"main": make_repo(tmp_path / "repo", NEEDED)}})
    with pytest.raises(ModelSpecError, match=r"^org/na\.\.me: no such file, and not a model name"):
        download("org/na..me")
    assert hub.hits() == []


def test_embedded_is_the_packaged_file_and_is_never_downloaded(hf_home):
    assert parse_model_spec("embedded").path == EMBEDDED_MODEL
    assert resolve("embedded") == EMBEDDED_MODEL and EMBEDDED_MODEL.is_file()
    assert not hf_home.exists()


# -- downloads ----------------------------------------------------------------------------------------------

def test_only_the_needed_files_come_and_only_once(start_hub, hf_home, tmp_path):
    wanted = NEEDED + ("tokenizer_config.json", "special_tokens_map.json")
    repo = make_repo(tmp_path / "repo", wanted + UNNEEDED)
    hub = start_hub({"org/name": {"main": repo}})

    folder = resolve("org/name", progress=False)
    assert folder.is_relative_to(hf_home)  # HF_HOME, read when called
    assert files_in(folder) == set(wanted)
    assert sorted(hub.fetched()) == sorted(wanted)
    assert (folder / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()

    hub.clear()
    assert resolve("org/name", progress=False) == folder
    assert [hit.kind for hit in hub.hits()] == ["info"]  # which commit is main now; no file requested


def test_a_downloaded_transformers_folder_loads_as_the_original(start_hub, tmp_path):
    from helpers import make_hf_folder

    from w2v2cli import load_model

    make_hf_folder(tmp_path / "saved")  # transformers 5 writes processor_config.json, not preprocessor_config.json
    (tmp_path / "saved" / "README.md").write_text("a model card\n")
    start_hub({"org/tiny": {"main": tmp_path / "saved"}})
    folder = resolve("org/tiny", progress=False)
    assert files_in(folder) == files_in(tmp_path / "saved") - {"README.md"}
    original, downloaded = load_model(tmp_path / "saved").state_dict(), load_model(folder).state_dict()
    assert original.keys() == downloaded.keys()
    assert all(torch.equal(original[name], downloaded[name]) for name in original)


def test_hf_hub_cache_wins_over_hf_home(start_hub, tmp_path, monkeypatch):
    start_hub({"org/name": {"main": make_repo(tmp_path / "repo", NEEDED)}})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert download("org/name", progress=False).is_relative_to(tmp_path / "elsewhere")


def test_a_repo_without_safetensors_gets_its_pickle(start_hub, tmp_path):
    old = ("config.json", "vocab.json", "pytorch_model.bin", "flax_model.msgpack", "adapter.fra.safetensors")
    hub = start_hub({"org/old": {"main": make_repo(tmp_path / "repo", old)}})
    folder = download("org/old", progress=False)
    assert files_in(folder) == {"config.json", "vocab.json", "pytorch_model.bin"}
    assert [hit.kind for hit in hub.hits("info")] == ["info"]  # the second pass reuses the commit and listing


def test_sharded_safetensors_and_the_language_model_folder(start_hub, tmp_path):
    wanted = ("config.json", "vocab.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
              "model-00002-of-00002.safetensors", "alphabet.json", "language_model/attrs.json",
              "language_model/unigrams.txt", "language_model/5gram.bin")
    start_hub({"org/lm": {"main": make_repo(tmp_path / "repo", wanted + UNNEEDED + ("adapter.deu.safetensors",))}})
    assert files_in(download("org/lm", progress=False)) == set(wanted)


def test_a_revision_gets_its_own_files(start_hub, tmp_path):
    hub = start_hub({"org/name": {"main": make_repo(tmp_path / "main", NEEDED, "main"),
                                  "v1": make_repo(tmp_path / "v1", NEEDED, "v1")}})
    v1 = resolve("org/name@v1", progress=False)
    main = resolve("org/name", progress=False)
    assert v1 != main
    assert json.loads((v1 / "config.json").read_text())["marker"] == "v1"
    assert json.loads((main / "config.json").read_text())["marker"] == "main"

    hub.clear()  # a commit never changes: cached, it needs no request at all
    assert resolve(f"org/name@{v1.name}", progress=False) == v1
    assert hub.hits() == []


def test_an_unknown_revision_names_repo_and_revision(start_hub, tmp_path):
    start_hub({"org/name": {"main": make_repo(tmp_path / "repo", NEEDED)}})
    with pytest.raises(RevisionNotFoundError) as raised:
        resolve("org/name@v9", progress=False)
    assert str(raised.value) == 'org/name: no revision "v9" on the Hub'
    assert raised.value.exit_code == 4


def test_an_unknown_repo_is_one_line(start_hub, tmp_path):
    start_hub({"org/name": {"main": make_repo(tmp_path / "repo", NEEDED)}})
    with pytest.raises(RepoNotFoundError) as raised:
        resolve("org/missing", progress=False)
    assert str(raised.value) == ("org/missing: no such model on the Hub (if it is private, set HF_TOKEN to a token "
                                 "that can read it)")


def test_a_gated_repo_needs_a_token_with_access(start_hub, tmp_path, monkeypatch):
    hub = start_hub({"org/gated": {"main": make_repo(tmp_path / "repo", NEEDED)}}, gated={"org/gated": {"hf_yes"}})
    for token in (None, "hf_no"):  # the Hub answers 401 without a token, 403 with one that has no access
        if token:
            monkeypatch.setenv("HF_TOKEN", token)
        with pytest.raises(RepoAccessError) as raised:
            download("org/gated", progress=False)
        assert str(raised.value) == ("org/gated is gated: it needs access granted on the Hub and HF_TOKEN set to a "
                                     "token of an account that has it")
    monkeypatch.setenv("HF_TOKEN", "hf_yes")
    assert files_in(download("org/gated", progress=False)) == set(NEEDED)
    assert {hit.token for hit in hub.hits("resolve", "GET")} == {"hf_yes"}


def test_a_repo_without_weights_is_one_line(start_hub, tmp_path):
    start_hub({"org/empty": {"main": make_repo(tmp_path / "repo", ("config.json", "README.md"))}})
    with pytest.raises(NoWeightsError) as raised:
        download("org/empty", progress=False)
    assert str(raised.value) == ("org/empty has no usable weights (model.safetensors, a sharded "
                                 "model.safetensors.index.json, or pytorch_model.bin)")


def test_a_language_fetches_its_adapter_into_the_snapshot(start_hub, tmp_path, monkeypatch):
    """resolve(name, language=) puts adapter.LANG.safetensors beside the weights (no other adapter comes); a
    language the repo lacks is one line listing those it has, a long list cut short; offline, a cached adapter
    is enough."""
    languages = [f"l{i:02d}" for i in range(25)]
    repo = make_repo(tmp_path / "repo", NEEDED)
    for code in languages:  # each its own bytes: the cache keeps one blob for equal files and fetches it once
        save_file({"weight": torch.arange(4.0)}, str(repo / f"adapter.{code}.safetensors"), metadata={"code": code})
    hub = start_hub({"facebook/mms-1b-all": {"main": repo}, "org/plain": {"main": make_repo(tmp_path / "p", NEEDED)}})
    folder = resolve("mms-1b-all", language="l07", progress=False)
    assert files_in(folder) == set(NEEDED) | {"adapter.l07.safetensors"}
    assert (folder / "adapter.l07.safetensors").read_bytes() == (repo / "adapter.l07.safetensors").read_bytes()
    assert [f for f in hub.fetched() if f.startswith("adapter.")] == ["adapter.l07.safetensors"]

    with pytest.raises(UnknownLanguageError) as raised:
        resolve("mms-1b-all", language="fra", progress=False)
    assert str(raised.value) == ("facebook/mms-1b-all: no adapter for --language fra (adapter.fra.safetensors); it "
                                 f"has 25 languages: {', '.join(languages[:20])} and 5 more")
    with pytest.raises(UnknownLanguageError, match="it has no language adapters"):
        resolve("org/plain", language="fra", progress=False)
    with pytest.raises(ConfigError, match="language code"):
        resolve("mms-1b-all", language="../x", progress=False)

    hub.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve("mms-1b-all", language="l07", progress=False) == folder
    assert hub.hits() == []
    with pytest.raises(UnknownLanguageError):  # the cached listing says so without the Hub
        resolve("mms-1b-all", language="fra", progress=False)
    with pytest.raises(HubUnreachableError):  # in the listing, not cached, and offline
        resolve("mms-1b-all", language="l08", progress=False)


def test_download_file_fetches_one_adapter(start_hub, tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo", NEEDED + ("adapter.fra.safetensors", "adapter.deu.safetensors"))
    hub = start_hub({"facebook/mms-1b-all": {"main": repo}})
    adapter = download_file("facebook/mms-1b-all", "adapter.fra.safetensors", progress=False)
    assert adapter.read_bytes() == (repo / "adapter.fra.safetensors").read_bytes()
    assert hub.fetched() == ["adapter.fra.safetensors"]

    with pytest.raises(RemoteFileNotFoundError) as raised:
        download_file("facebook/mms-1b-all", "adapter.xyz.safetensors", progress=False)
    assert str(raised.value) == "facebook/mms-1b-all: no file adapter.xyz.safetensors on the Hub"

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert download_file("facebook/mms-1b-all", "adapter.fra.safetensors") == adapter
    with pytest.raises(HubUnreachableError) as raised:
        download_file("facebook/mms-1b-all", "adapter.deu.safetensors")
    assert str(raised.value).startswith("facebook/mms-1b-all/adapter.deu.safetensors is not cached and the Hub "
                                        "cannot be reached (HF_HUB_OFFLINE is set): fetch it where there is network")


# -- without the Hub ----------------------------------------------------------------------------------------

def test_offline_with_a_warm_cache_asks_nothing(start_hub, tmp_path, monkeypatch):
    hub = start_hub({"org/name": {"main": make_repo(tmp_path / "new", NEEDED + UNNEEDED)},
                     "org/old": {"main": make_repo(tmp_path / "old", ("config.json", "pytorch_model.bin"))}})
    folders = [resolve(name, progress=False) for name in ("org/name", "org/old")]
    hub.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # after huggingface_hub's import: read at the call
    assert [resolve(name, progress=False) for name in ("org/name", "org/old")] == folders
    assert files_in(folders[1]) == {"config.json", "pytorch_model.bin"}
    assert hub.hits() == []


def test_offline_with_a_cold_cache_names_both_remedies(start_hub, tmp_path, monkeypatch):
    hub = start_hub({"facebook/wav2vec2-base-960h": {"main": make_repo(tmp_path / "repo", NEEDED)}})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnreachableError) as raised:
        resolve("base-960h", progress=False)
    assert str(raised.value) == ("facebook/wav2vec2-base-960h is not cached and the Hub cannot be reached "
                                 '(HF_HUB_OFFLINE is set): run "w2v2 download base-960h" where there is network, '
                                 f"{DEMO}")
    assert raised.value.exit_code == 4
    with pytest.raises(HubUnreachableError, match='run "w2v2 download org/name@v1" where there is network'):
        resolve("org/name@v1", progress=False)
    assert hub.hits() == []


def test_a_stopped_hub_with_a_cold_cache_names_both_remedies(start_hub, tmp_path):
    hub = start_hub({"org/name": {"main": make_repo(tmp_path / "repo", NEEDED)}})
    hub.stop()  # connection refused
    with pytest.raises(HubUnreachableError) as raised:
        resolve("org/name", progress=False)
    assert str(raised.value) == ('org/name is not cached and the Hub cannot be reached: run "w2v2 download '
                                 f'org/name" where there is network, {DEMO}')


def test_a_stopped_hub_fails_at_once_for_a_file_or_a_commit(start_hub, tmp_path):
    # huggingface_hub alone retries these for ~23 s before giving up
    hub = start_hub({"org/name": {"main": make_repo(tmp_path / "repo", NEEDED)}})
    hub.stop()
    started = time.monotonic()
    with pytest.raises(HubUnreachableError, match=r"^org/name/adapter\.fra\.safetensors is not cached"):
        download_file("org/name", "adapter.fra.safetensors", progress=False)
    with pytest.raises(HubUnreachableError, match=f'run "w2v2 download org/name@{"a" * 40}"'):
        download("org/name", "a" * 40, progress=False)
    assert time.monotonic() - started < 5


def test_a_stopped_hub_with_a_warm_cache_still_resolves(start_hub, tmp_path):
    hub = start_hub({"org/name": {"main": make_repo(tmp_path / "repo", NEEDED + ("adapter.fra.safetensors",))}})
    folder = resolve("org/name", progress=False)
    adapter = download_file("org/name", "adapter.fra.safetensors", progress=False)
    hub.stop()
    assert resolve("org/name", progress=False) == folder
    assert download_file("org/name", "adapter.fra.safetensors", progress=False) == adapter


def test_progress_goes_to_stderr_and_can_be_silenced(start_hub, tmp_path, capfd):
    """Not on a terminal (a log, a pipe): no bars, one line saying how much came; nothing once cached; nothing
    with progress=False; never anything on stdout."""
    from rich.filesize import decimal

    repos = {name: make_repo(tmp_path / name, NEEDED, name) for name in ("a", "b")}
    start_hub({f"org/{name}": {"main": folder} for name, folder in repos.items()})
    download("org/a")
    size = sum(p.stat().st_size for p in repos["a"].iterdir())
    assert capfd.readouterr() == ("", f"org/a: downloaded {decimal(size)} into the Hugging Face cache\n")
    download("org/a")
    assert capfd.readouterr() == ("", "")
    download("org/b", progress=False)
    assert capfd.readouterr() == ("", "")


def test_progress_bars_on_a_terminal_are_rich_and_transient(start_hub, tmp_path, capfd, monkeypatch):
    """On a terminal huggingface_hub's bars are drawn by Rich (files counted, bytes as sizes) and cleared; the
    command line's stdout carries only the result (w2v2 download: the folder), and --quiet silences it all."""
    import io

    from rich.console import Console

    import w2v2cli.download_progress as download_progress

    terminal = io.StringIO()
    monkeypatch.setattr(download_progress, "stderr_console",
                        lambda: Console(file=terminal, force_terminal=True, width=120, highlight=False))
    start_hub({f"org/{name}": {"main": make_repo(tmp_path / name, NEEDED, name)} for name in ("a", "b")})
    result = run_cli("download", "org/a")
    assert result.returncode == 0 and result.stdout == f"{resolve('org/a', progress=False)}\n"
    drawn = terminal.getvalue()
    # The last Hub call's bars (the weights: one file) are drawn when the display stops; the configs' come and go
    # between refreshes, too fast to be sure to be drawn.
    weights = (tmp_path / "a" / "model.safetensors").stat().st_size
    assert "Fetching 1 files" in drawn and "1/1" in drawn and f"{weights} bytes/{weights} bytes" in drawn
    size = sum(p.stat().st_size for p in (tmp_path / "a").iterdir())
    # The bars are cleared (Rich's erase-line code last), then one line says what came.
    assert drawn.rsplit("\x1b[2K", 1)[1] == f"org/a: downloaded {size} bytes into the Hugging Face cache\n"
    terminal.truncate(0)
    terminal.seek(0)
    quiet = run_cli("download", "org/b", "-q")
    assert quiet.returncode == 0 and quiet.stderr == "" and terminal.getvalue() == ""
    assert capfd.readouterr() == ("", "")


def test_an_unsupported_model_is_refused_before_its_weights_are_fetched(start_hub, tmp_path):
    """config.json comes first and is checked (io/hf.py check_config): a Whisper repo is one line, exit 4, and its
    weights are never asked for, so a 4 GB model this toolkit cannot run costs a few kilobytes."""
    repo = make_repo(tmp_path / "repo", NEEDED)
    (repo / "config.json").write_text(json.dumps({"model_type": "whisper", "architectures": ["WhisperForCTC"]}))
    hub = start_hub({"openai/whisper-tiny": {"main": repo}})
    wav = tmp_path / "a.wav"
    sf.write(wav, speechlike(8000), SAMPLE_RATE)
    result = run_cli("transcribe", "--model", "openai/whisper-tiny", wav, "-q")
    assert result.returncode == 4 and result.stdout == ""
    assert result.stderr.startswith("w2v2: error: ") and result.stderr.count("\n") == 1
    assert "whisper" in result.stderr and "Traceback" not in result.stderr
    assert "config.json" in hub.fetched() and "model.safetensors" not in hub.fetched()
    assert not any(h.filename == "model.safetensors" for h in hub.hits("resolve"))  # not even a HEAD
