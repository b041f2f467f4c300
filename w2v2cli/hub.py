"""Models by name: the alias table, `--model` parsing, and downloads from the Hugging Face Hub.

A `--model` value is a local file or folder, an alias from `MODELS` (`base-960h`), or a Hub repo id with an
optional revision (`facebook/wav2vec2-base-960h@main`). `resolve` turns any of them into a local path; Hub models
land in huggingface_hub's own cache, so a model fetched once is reused by every later run, with or without network.

Only the files a wav2vec 2.0 CTC model needs are fetched: configs, vocabulary, tokenizer files, safetensors weights
(single or sharded), and pyctcdecode's `language_model/` folder when the repo has one. `pytorch_model.bin` is taken
only from repos without safetensors weights. The small files come first and config.json is checked
(io/hf.py `check_config`): a model this toolkit cannot run is refused before its weights are fetched. MMS keeps one
adapter per language beside its weights (~1,100 files): none is fetched with the model; `resolve(...,
language=...)` fetches the one a language needs.

huggingface_hub's settings are honoured: `HF_HOME` / `HF_HUB_CACHE` (the cache), `HF_HUB_OFFLINE` (cache only),
`HF_TOKEN` (gated and private repos) and `HF_ENDPOINT` (a mirror). huggingface_hub reads all but `HF_TOKEN` once,
when it is imported; they are read again here at each call, so a change made after import (a test, a notebook, a
CLI runner with its own environment) takes effect.

Usage:
    from w2v2cli.hub import resolve
    folder = resolve("base-960h")                                   # cached after the first call
    folder = resolve("mms-1b-all", language="fra")                  # the model and its French adapter
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from .errors import ConfigError, ModelFileError, W2V2Error

EMBEDDED_MODEL = Path(__file__).resolve().parent / "models" / "default.safetensors"
EMBEDDED_LM = EMBEDDED_MODEL.with_name("default-lm.arpa.gz")  # its word language model (lm.model_language_model)
# What transcribe, align and evaluate use without --model: a real English checkpoint, fetched on first use. Never
# the embedded model, which has only heard synthetic voices: a user's audio must not get its transcripts silently.
DEFAULT_MODEL = "base-960h"


@dataclass(frozen=True)
class ModelEntry:
    """One row of the alias table. Sizes are approximate, taken from the public model cards and file listings."""

    name: str                 # the alias users type
    repo_id: str | None       # Hugging Face Hub repo; None for the model inside the package
    revision: str | None      # branch, tag or commit fetched by default
    languages: str
    params_m: float           # parameters, millions
    download_mb: int          # weights fetched by `download`, MB
    licence: str              # SPDX identifier
    description: str


MODELS: dict[str, ModelEntry] = {entry.name: entry for entry in (
    ModelEntry("embedded", None, None, "English (synthetic speech only)", 5.2, 10, "MIT",
               "The synthetic-speech demo model inside the package: no download, fails on human voices"),
    ModelEntry("base-960h", "facebook/wav2vec2-base-960h", "main", "English", 95, 378, "Apache-2.0",
               "wav2vec 2.0 Base fine-tuned on LibriSpeech 960 h (character CTC)"),
    ModelEntry("large-960h-lv60-self", "facebook/wav2vec2-large-960h-lv60-self", "main", "English", 317, 1260,
               "Apache-2.0", "wav2vec 2.0 Large pre-trained on Libri-Light 60k h, fine-tuned on LibriSpeech 960 h "
               "with self-training (character CTC)"),
    ModelEntry("mms-1b-all", "facebook/mms-1b-all", "main", "1,162 languages, one adapter each", 1000, 3860,
               "CC-BY-NC-4.0",
               "Massively Multilingual Speech 1B; --language CODE fetches and loads that language's adapter"),
)}

# What `download` fetches besides the weights, first, so that config.json can be checked before the weights come.
# The loader reads all of these when present (io/hf.py); alphabet.json and language_model/ (a word LM, possibly
# large, so it comes with the weights) are what transformers' Wav2Vec2ProcessorWithLM saves for pyctcdecode.
MODEL_FILES = ("config.json", "preprocessor_config.json", "processor_config.json", "vocab.json",
               "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "alphabet.json")
LANGUAGE_MODEL_FILES = "language_model/*"
SAFETENSORS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors")
PICKLE_WEIGHTS = "pytorch_model.bin"
ADAPTER = "adapter.{language}.safetensors"  # MMS: one per language, fetched only for --language
SHOWN_LANGUAGES = 20  # an error lists this many of a repo's languages (MMS has 1,162)

_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"{_PART}/{_PART}")  # huggingface_hub's validate_repo_id, with the namespace required
_COMMIT = re.compile(r"[0-9a-f]{40}")
_LANGUAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
_ADAPTER_FILE = re.compile(r"adapter\.([A-Za-z0-9][A-Za-z0-9_-]*)\.safetensors")
_MODEL_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".onnx", ".json")


class ModelSpecError(ModelFileError):
    """A `--model` value that is neither an existing file or folder, nor an alias, nor a Hub repo id."""

    def __init__(self, spec: str):
        super().__init__(spec, "no such file, and not a model name (see w2v2 models)")


class HubError(W2V2Error):
    """A Hub model that cannot be had; the message names the repo."""

    exit_code = 4  # the code of every unusable model (ModelFileError)

    def __init__(self, repo_id: str, message: str):
        self.repo_id = repo_id
        super().__init__(message)


class HubUnreachableError(HubError):
    """Not in the cache, and the Hub cannot be reached: no network, the server is down, or HF_HUB_OFFLINE is set."""

    def __init__(self, repo_id: str, revision: str | None = None, *, filename: str | None = None,
                 offline: bool = False):
        self.revision, self.filename, self.offline = revision, filename, offline
        what = f"{repo_id}/{filename}" if filename else _display(repo_id, revision)
        why = " (HF_HUB_OFFLINE is set)" if offline else ""
        fetch = "fetch it" if filename else f'run "w2v2 download {_download_name(repo_id, revision)}"'
        super().__init__(repo_id, f"{what} is not cached and the Hub cannot be reached{why}: {fetch} where there "
                                  "is network, or use --model embedded (the synthetic-speech demo model)")


class RepoNotFoundError(HubError):
    """No such repo on the Hub (or a private one the token cannot read: the Hub answers both alike)."""

    def __init__(self, repo_id: str):
        super().__init__(repo_id, f"{repo_id}: no such model on the Hub (if it is private, set HF_TOKEN to a token "
                                  "that can read it)")


class RevisionNotFoundError(HubError):
    """The repo exists but has no such branch, tag or commit."""

    def __init__(self, repo_id: str, revision: str):
        self.revision = revision
        super().__init__(repo_id, f'{repo_id}: no revision "{revision}" on the Hub')


class RepoAccessError(HubError):
    """A gated or private repo that the request's token (if any) may not read."""

    def __init__(self, repo_id: str, *, gated: bool):
        self.gated = gated
        kind = "gated" if gated else "not readable without access"
        super().__init__(repo_id, f"{repo_id} is {kind}: it needs access granted on the Hub and HF_TOKEN set to a "
                                  "token of an account that has it")


class RemoteFileNotFoundError(HubError):
    """`download_file` asked for a file the repo does not hold at that revision."""

    def __init__(self, repo_id: str, filename: str, revision: str | None):
        self.filename, self.revision = filename, revision
        super().__init__(repo_id, f"{_display(repo_id, revision)}: no file {filename} on the Hub")


class UnknownLanguageError(HubError):
    """`--language` names a language the repo has no adapter for."""

    def __init__(self, repo_id: str, revision: str | None, language: str, available: list[str] | None):
        self.language, self.available = language, available
        if available is None:
            has = "see the repo's adapter.*.safetensors files"
        elif not available:
            has = "it has no language adapters (adapter.LANG.safetensors): --language is for MMS-style models"
        else:
            shown = ", ".join(available[:SHOWN_LANGUAGES])
            more = f" and {len(available) - SHOWN_LANGUAGES} more" if len(available) > SHOWN_LANGUAGES else ""
            has = f"it has {len(available)} language{'s' if len(available) != 1 else ''}: {shown}{more}"
        super().__init__(repo_id, f"{_display(repo_id, revision)}: no adapter for --language {language} "
                                  f"({ADAPTER.format(language=language)}); {has}")


class NoWeightsError(HubError):
    """A repo without weights the loader can read."""

    def __init__(self, repo_id: str, revision: str | None):
        self.revision = revision
        super().__init__(repo_id, f"{_display(repo_id, revision)} has no usable weights (model.safetensors, a "
                                  "sharded model.safetensors.index.json, or pytorch_model.bin)")


@dataclass(frozen=True)
class ModelSpec:
    """What a `--model` value names."""

    kind: Literal["path", "alias", "repo"]
    path: Path | None = None      # the local file or folder; for the `embedded` alias, the packaged file
    repo_id: str | None = None    # set for Hub aliases and repo ids
    revision: str | None = None   # None: the repo's default branch
    alias: str | None = None


def is_repo_id(text: str) -> bool:
    """Whether `text` is a well-formed `namespace/name` Hub repo id (without `@revision`)."""
    return (_REPO_ID.fullmatch(text) is not None and "--" not in text and ".." not in text
            and not text.endswith(".git"))


def parse_model_spec(spec: str) -> ModelSpec:
    """Classify a `--model` value: an existing path first, then an alias, then `namespace/name[@revision]`.

    A value that looks like a file (`./x`, `/x`, `~/x`, a model-file suffix) but does not exist is an error, not a
    Hub lookup: `runs/model.safetensors` is a missing file, although it is also a well-formed repo id.
    """
    path = Path(spec).expanduser()
    if spec and path.exists():
        return ModelSpec("path", path=path)
    if spec in MODELS:
        entry = MODELS[spec]
        if entry.repo_id is None:
            return ModelSpec("alias", path=EMBEDDED_MODEL, alias=spec)
        return ModelSpec("alias", repo_id=entry.repo_id, revision=entry.revision, alias=spec)
    looks_like_path = spec.startswith(("/", "./", "../", "~")) or spec.lower().endswith(_MODEL_SUFFIXES)
    repo_id, at, revision = spec.partition("@")
    if looks_like_path or not is_repo_id(repo_id) or (at and not revision):
        raise ModelSpecError(spec)
    return ModelSpec("repo", repo_id=repo_id, revision=revision or None)


def resolve(spec: str, *, language: str | None = None, progress: bool = True) -> Path:
    """A local path for a `--model` value: paths pass through, `embedded` is the packaged file, and Hub models are
    downloaded into the cache once (later calls only check the Hub for a newer commit, or nothing when offline).

    With `language`, a Hub model's adapter for it (`adapter.LANG.safetensors`, MMS) is fetched into the same
    snapshot folder; a repo without one is a one-line error listing the languages it has. For a local path the
    loader checks the language (io/checkpoint.py `load_model(..., language=)`).
    """
    if language is not None and not _LANGUAGE.fullmatch(language):
        raise ConfigError(f"--language {language!r}: a language code such as eng or fra (letters, digits, - and _)")
    parsed = parse_model_spec(spec)
    if parsed.repo_id is None:
        if not parsed.path.exists():
            raise ModelFileError(parsed.path, "the embedded model is not installed with this copy of w2v2")
        return parsed.path
    folder = download(parsed.repo_id, parsed.revision, progress=progress)
    if language is not None:
        _fetch_adapter(parsed.repo_id, parsed.revision, folder, language, progress)
    return folder


def _fetch_adapter(repo_id: str, revision: str | None, folder: Path, language: str, progress: bool) -> None:
    """Put `adapter.{language}.safetensors` beside the weights in the snapshot `folder`, from the same commit."""
    filename = ADAPTER.format(language=language)
    if (folder / filename).is_file():
        return
    files = _repo_files(_Hub.from_environment(), repo_id, folder)
    if files is not None and filename not in files:
        raise UnknownLanguageError(repo_id, revision, language, adapter_languages(files))
    try:
        download_file(repo_id, filename, folder.name, progress=progress)
    except RemoteFileNotFoundError:  # no cached listing said so beforehand (a cache from an older huggingface_hub)
        raise UnknownLanguageError(repo_id, revision, language, None) from None


def adapter_languages(files: Iterable[str]) -> list[str]:
    """The languages of the top-level `adapter.LANG.safetensors` files in a repo's (or folder's) file list."""
    return sorted(m.group(1) for f in files if (m := _ADAPTER_FILE.fullmatch(f)))


def cached(spec: str) -> Path | None:
    """The local path of a `--model` value if it can be had without the Hub: a path, the embedded model, or a Hub
    model whose files are all in the cache; None for a Hub model that is not (fully) cached. Never makes a request."""
    parsed = parse_model_spec(spec)
    if parsed.repo_id is None:
        return parsed.path if parsed.path.exists() else None
    try:
        return download(parsed.repo_id, parsed.revision, progress=False, cache_only=True)
    except HubUnreachableError:
        return None


def download(repo_id: str, revision: str | None = None, *, progress: bool = True, cache_only: bool = False) -> Path:
    """Fetch the files a wav2vec 2.0 model needs into huggingface_hub's cache; return its snapshot folder.

    Safetensors weights are preferred; `pytorch_model.bin` is fetched only when the repo's file list (from the Hub,
    or from the cache when offline) has no safetensors weights. Files already cached are not fetched again.
    Progress bars go to stderr (download_progress.py); `progress=False` silences them. `cache_only` acts as if
    HF_HUB_OFFLINE were set.
    """
    from .download_progress import DownloadProgress

    hub = _Hub.from_environment()
    if cache_only:
        hub, progress = replace(hub, offline=True), False
    with _hub_errors(hub, repo_id, revision), DownloadProgress(progress, _display(repo_id, revision)) as bars:
        return _download(hub, repo_id, revision, bars)


def _download(hub: _Hub, repo_id: str, revision: str | None, bars) -> Path:
    if revision and _COMMIT.fullmatch(revision):  # a branch or tag is looked up first, which fails at once
        _fail_fast_if_unreachable(hub, repo_id, revision, "config.json")
    folder = Path(_snapshot(hub, repo_id, revision, MODEL_FILES, bars))
    _check_config(folder)
    # Pinned to the commit the small files came from (the snapshot folder's name): no second look-up of the
    # revision, and weights from the same commit as the config even if the branch moves meanwhile.
    folder = Path(_snapshot(hub, repo_id, folder.name, (*SAFETENSORS_WEIGHTS, LANGUAGE_MODEL_FILES), bars))
    files = _repo_files(hub, repo_id, folder)
    if files is None:  # cached by an older huggingface_hub, and the Hub not reached: judge by what is on disk
        files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        if not _usable_weights(files):
            raise HubUnreachableError(repo_id, revision, offline=hub.offline)
    if _has_safetensors(files):
        return folder
    if PICKLE_WEIGHTS in files:
        return Path(_snapshot(hub, repo_id, folder.name, (PICKLE_WEIGHTS,), bars))
    raise NoWeightsError(repo_id, revision)


def _check_config(folder: Path) -> None:
    """Refuse a repo whose config.json this toolkit cannot load (Whisper, say) before its weights are fetched;
    the one-line error (ModelFileError, exit 4) names the file in the cache."""
    from .io.hf import check_config

    if (folder / "config.json").is_file():  # without one, the loader says what is missing once weights are in
        check_config(folder)


def download_file(repo_id: str, filename: str, revision: str | None = None, *, progress: bool = True) -> Path:
    """Fetch one file of a repo into the cache (an MMS adapter: `adapter.fra.safetensors`); return its path."""
    from huggingface_hub import hf_hub_download

    from .download_progress import DownloadProgress

    hub = _Hub.from_environment()
    with (_hub_errors(hub, repo_id, revision, filename=filename),
          DownloadProgress(progress, f"{repo_id}/{filename}") as bars):
        _fail_fast_if_unreachable(hub, repo_id, revision, filename)
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=hub.cache_dir,
                                    endpoint=hub.endpoint, local_files_only=hub.offline,
                                    tqdm_class=bars.tqdm_class()))


@dataclass(frozen=True)
class _Hub:
    """huggingface_hub's settings as the environment has them now (the library froze them at import)."""

    endpoint: str | None   # None: huggingface_hub's own (https://huggingface.co unless HF_ENDPOINT was set)
    cache_dir: str
    offline: bool

    @classmethod
    def from_environment(cls) -> _Hub:
        from huggingface_hub import constants

        env = os.environ
        cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
        if not cache and env.get("HF_HOME"):
            cache = os.path.join(env["HF_HOME"], "hub")
        cache = os.path.expandvars(os.path.expanduser(cache)) if cache else constants.HF_HUB_CACHE
        endpoint = env.get("HF_ENDPOINT", "").rstrip("/") or None
        flag = env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or ""
        offline = constants.is_offline_mode() or flag.upper() in {"1", "ON", "YES", "TRUE"}
        return cls(endpoint, cache, offline)


def _snapshot(hub: _Hub, repo_id: str, revision: str | None, patterns: Iterable[str], bars) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, revision=revision, cache_dir=hub.cache_dir, endpoint=hub.endpoint,
                             local_files_only=hub.offline, allow_patterns=list(patterns),
                             tqdm_class=bars.tqdm_class())


def _fail_fast_if_unreachable(hub: _Hub, repo_id: str, revision: str | None, filename: str) -> None:
    """Ask for the repo's info when `filename` is not cached, so that an unreachable Hub fails at once.

    huggingface_hub retries a refused connection for ~23 s (5 retries, 1-8 s apart) when it fetches a file's
    metadata or lists a commit's files without a cached copy, but not when it asks for a repo's info.
    """
    from huggingface_hub import HfApi, try_to_load_from_cache

    if hub.offline or isinstance(try_to_load_from_cache(repo_id, filename, cache_dir=hub.cache_dir,
                                                        revision=revision), str):
        return
    HfApi(endpoint=hub.endpoint).repo_info(repo_id, revision=revision)


def _repo_files(hub: _Hub, repo_id: str, snapshot: Path) -> set[str] | None:
    """The repo's file list at the snapshot's commit, from the listing `snapshot_download` caches (no request)."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        return {f.path for f in get_cached_repo_tree(repo_id, revision=snapshot.name, cache_dir=hub.cache_dir)}
    except CachedRepoTreeNotFoundError:  # a cache filled by an older huggingface_hub, then used offline
        return None


def _has_safetensors(files: set[str]) -> bool:
    return "model.safetensors" in files or "model.safetensors.index.json" in files


def _usable_weights(files: set[str]) -> bool:
    return _has_safetensors(files) or PICKLE_WEIGHTS in files


@contextmanager
def _hub_errors(hub: _Hub, repo_id: str, revision: str | None, *, filename: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub's and httpx's exceptions into this module's one-line errors."""
    import httpx2
    from huggingface_hub import errors

    try:
        yield
    except errors.HFValidationError as exc:  # a malformed repo id that did not come through parse_model_spec
        raise ModelSpecError(repo_id) from exc
    except errors.GatedRepoError as exc:  # before RepositoryNotFoundError, its base class
        raise RepoAccessError(repo_id, gated=True) from exc
    except errors.RepositoryNotFoundError as exc:
        raise RepoNotFoundError(repo_id) from exc
    except errors.RevisionNotFoundError as exc:
        raise RevisionNotFoundError(repo_id, revision or "main") from exc
    except errors.RemoteEntryNotFoundError as exc:
        if filename is None:  # a file the listing has but the Hub does not serve: its trouble, not the user's
            raise _unexpected(repo_id, revision, exc) from exc
        raise RemoteFileNotFoundError(repo_id, filename, revision) from exc
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled, httpx2.TransportError) as exc:
        # LocalEntryNotFoundError is huggingface_hub's "no network and not (fully) cached", offline or not.
        raise HubUnreachableError(repo_id, revision, filename=filename, offline=hub.offline) from exc
    except errors.HfHubHTTPError as exc:
        if exc.response.status_code in (401, 403):
            raise RepoAccessError(repo_id, gated=False) from exc
        raise _unexpected(repo_id, revision, exc) from exc


def _unexpected(repo_id: str, revision: str | None, exc) -> HubError:
    """A Hub answer with no better words here (a 5xx while a file streams, say), kept to one line."""
    return HubError(repo_id, f"{_display(repo_id, revision)}: the Hub answered HTTP {exc.response.status_code} to "
                             f"{exc.response.url}")


def _display(repo_id: str, revision: str | None) -> str:
    return f"{repo_id}@{revision}" if revision and revision != "main" else repo_id


def _download_name(repo_id: str, revision: str | None) -> str:
    """The shortest `w2v2 download` argument for a repo at a revision: its alias when the table has one."""
    for entry in MODELS.values():
        if entry.repo_id == repo_id and (revision or "main") == entry.revision:
            return entry.name
    return _display(repo_id, revision)
