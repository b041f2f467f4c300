"""A stand-in Hugging Face Hub on 127.0.0.1 that serves model repos from local folders, for tests without network.

It answers the requests huggingface_hub 2.x makes for `snapshot_download` and `hf_hub_download`:

    GET  /api/models/{repo}[/revision/{rev}]         model info: id, sha (the commit), siblings
    GET  /api/models/{repo}/tree/{rev}[/{path}]      file listing (?recursive=true), LFS metadata for weights
    HEAD /{repo}/resolve/{rev}/{file}                X-Repo-Commit, ETag, Content-Length (no Xet headers, so
    GET  /{repo}/resolve/{rev}/{file}                huggingface_hub downloads over plain HTTP)

Errors carry the `X-Error-Code` huggingface_hub classifies them by (utils/_http.py `hf_raise_for_status`):
RepoNotFound (401 without a token, as the Hub answers so as not to reveal private repos; 404 with one),
RevisionNotFound and EntryNotFound (404), GatedRepo (401 without a token, 403 with one that has no access). As on
the Hub, a gated repo's info and listing are public; only its files need access.

A revision is a branch or tag name mapped to a folder, or a 40-hex key that is then that folder's commit. A
branch's commit is a hash of its folder's contents, so it is stable while the folder is, and any served commit
can be asked for by its hash too.

Usage:
    with serve({"facebook/wav2vec2-base-960h": {"main": folder, "v1": other}}, gated={"org/x": {"hf_ok"}}) as hub:
        os.environ["HF_ENDPOINT"] = hub.url
        ...
        assert hub.fetched() == ["config.json", ...]      # files sent by GET /resolve/, in request order
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

_COMMIT = re.compile(r"[0-9a-f]{40}")
_LFS_SUFFIXES = (".safetensors", ".bin", ".msgpack", ".h5", ".pt", ".ckpt", ".onnx")


@dataclass(frozen=True)
class Hit:
    """One request the server answered."""

    method: str
    kind: str              # "info", "tree", "resolve" or "other"
    repo: str | None
    revision: str | None
    filename: str | None   # the file asked for by /resolve/, or the folder a /tree/ listing starts at
    status: int
    token: str | None
    path: str              # as requested, percent-encoded, query included


@dataclass(frozen=True)
class _Blob:
    path: str
    data: bytes

    @property
    def git_oid(self) -> str:  # what git (and the Hub's `oid`) calls the file
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def is_lfs(self) -> bool:
        return self.path.endswith(_LFS_SUFFIXES)

    @property
    def etag(self) -> str:  # the Hub's ETag: the LFS sha256 for LFS files, the git blob id otherwise
        return self.sha256 if self.is_lfs else self.git_oid


class HubServer:
    """The server, its request log, and start/stop; a context manager. Use `serve` to make one."""

    def __init__(self, repos: Mapping[str, Mapping[str, Path]], gated: Mapping[str, Collection[str]] | Iterable[str]):
        self.repos = {repo: {rev: Path(folder) for rev, folder in revs.items()} for repo, revs in repos.items()}
        self.gated = {repo: set(tokens) for repo, tokens in gated.items()} if isinstance(gated, Mapping) \
            else {repo: set() for repo in gated}
        self.log: list[Hit] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- life cycle ------------------------------------------------------------------------------------------

    def start(self) -> HubServer:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="stand-in-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut down and free the port: later requests to `url` get "connection refused"."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what tests read -------------------------------------------------------------------------------------

    def hits(self, kind: str | None = None, method: str | None = None) -> list[Hit]:
        with self._lock:
            return [h for h in self.log if (kind is None or h.kind == kind) and (method is None or h.method == method)]

    def fetched(self, repo: str | None = None) -> list[str]:
        """Files whose bytes were sent (successful GET /resolve/), in request order."""
        return [h.filename for h in self.hits("resolve", "GET") if h.status == 200 and repo in (None, h.repo)]

    def clear(self) -> None:
        with self._lock:
            self.log.clear()

    # -- repo contents ---------------------------------------------------------------------------------------

    def commit(self, repo: str, revision: str) -> str | None:
        """The commit a revision names, or None when the repo has no such branch, tag or commit."""
        revisions = self.repos[repo]
        if revision in revisions:
            return revision if _COMMIT.fullmatch(revision) else _content_hash(revisions[revision])
        return revision if revision in {self.commit(repo, r) for r in revisions} else None

    def blobs(self, repo: str, commit: str) -> dict[str, _Blob]:
        folder = next(f for r, f in self.repos[repo].items() if self.commit(repo, r) == commit)
        return {p.relative_to(folder).as_posix(): _Blob(p.relative_to(folder).as_posix(), p.read_bytes())
                for p in sorted(folder.rglob("*")) if p.is_file()}

    def _record(self, hit: Hit) -> None:
        with self._lock:
            self.log.append(hit)


def serve(repos: Mapping[str, Mapping[str, Path]],
          gated: Mapping[str, Collection[str]] | Iterable[str] = ()) -> HubServer:
    """A stand-in Hub serving `repos` ({repo id: {revision: folder}}); `gated` repos' files need one of their
    tokens (a {repo: tokens} mapping, or repo ids that no token opens). Start it with `with` or `.start()`."""
    return HubServer(repos, gated)


def _content_hash(folder: Path) -> str:
    digest = hashlib.sha1()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.0"  # one request per connection: nothing pooled survives a `stop()`

    def log_message(self, format, *args):  # the request log replaces http.server's stderr lines
        pass

    def do_HEAD(self):
        self._dispatch(send_body=False)

    def do_GET(self):
        self._dispatch(send_body=True)

    # -- routing ---------------------------------------------------------------------------------------------

    def _dispatch(self, send_body: bool) -> None:
        url = urlsplit(self.path)
        parts = url.path.split("/")[1:]  # still percent-encoded: a revision like refs%2Fpr%2F1 stays one part
        auth = self.headers.get("authorization", "")
        self.token = auth.removeprefix("Bearer ").strip() or None
        self.send_body = send_body
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo = f"{unquote(parts[2])}/{unquote(parts[3])}"
            rest = parts[4:]
            if not rest or (rest[0] == "revision" and len(rest) == 2):
                return self._info(repo, unquote(rest[1]) if rest else "main")
            if rest[0] == "tree" and len(rest) >= 2:
                recursive = parse_qs(url.query).get("recursive", ["false"])[0].lower() == "true"
                return self._tree(repo, unquote(rest[1]), unquote("/".join(rest[2:])), recursive)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = f"{unquote(parts[0])}/{unquote(parts[1])}"
            return self._resolve(repo, unquote(parts[3]), unquote("/".join(parts[4:])))
        self._answer(Hit(self.command, "other", None, None, None, 404, self.token, self.path), {"error": "Not Found"})

    def _commit_or_error(self, kind: str, repo: str, revision: str, filename: str | None = None) -> str | None:
        """The commit, or None after answering the request with the Hub's error."""
        hit = Hit(self.command, kind, repo, revision, filename, 0, self.token, self.path)
        if repo not in self.hub.repos:
            status = 404 if self.token else 401
            self._answer(replace(hit, status=status), {"error": "Repository not found"}, error_code="RepoNotFound")
            return None
        commit = self.hub.commit(repo, revision)
        if commit is None:
            self._answer(replace(hit, status=404), {"error": f"Invalid rev id: {revision}"},
                         error_code="RevisionNotFound")
        return commit

    # -- endpoints -------------------------------------------------------------------------------------------

    def _info(self, repo: str, revision: str) -> None:
        commit = self._commit_or_error("info", repo, revision)
        if commit is None:
            return
        blobs = self.hub.blobs(repo, commit)
        self._answer(Hit(self.command, "info", repo, revision, None, 200, self.token, self.path), {
            "_id": commit[:24], "id": repo, "modelId": repo, "author": repo.split("/")[0], "sha": commit,
            "private": False, "gated": "manual" if repo in self.hub.gated else False, "disabled": False,
            "tags": ["wav2vec2"], "library_name": "transformers",
            "siblings": [{"rfilename": path} for path in blobs],
        })

    def _tree(self, repo: str, revision: str, base: str, recursive: bool) -> None:
        commit = self._commit_or_error("tree", repo, revision, base or None)
        if commit is None:
            return
        hit = Hit(self.command, "tree", repo, revision, base or None, 200, self.token, self.path)
        prefix = f"{base}/" if base else ""
        entries, folders = [], set()
        for path, blob in self.hub.blobs(repo, commit).items():
            if not path.startswith(prefix):
                continue
            parents = path[len(prefix):].split("/")[:-1]
            for depth in range(1, len(parents) + 1):
                folders.add(prefix + "/".join(parents[:depth]))
            if recursive or not parents:
                entry = {"type": "file", "oid": blob.git_oid, "size": len(blob.data), "path": path}
                if blob.is_lfs:
                    entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": 134}
                entries.append(entry)
        if base and not entries and not folders:
            self._answer(replace(hit, status=404), {"error": f"{base} does not exist"}, error_code="EntryNotFound",
                         commit=commit)
            return
        shown = sorted(f for f in folders if recursive or "/" not in f[len(prefix):])
        entries += [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}
                    for f in shown]
        self._answer(hit, sorted(entries, key=lambda e: e["path"]))

    def _resolve(self, repo: str, revision: str, filename: str) -> None:
        commit = self._commit_or_error("resolve", repo, revision, filename)
        if commit is None:
            return
        hit = Hit(self.command, "resolve", repo, revision, filename, 200, self.token, self.path)
        if repo in self.hub.gated and self.token not in self.hub.gated[repo]:
            status = 403 if self.token else 401
            self._answer(replace(hit, status=status), {"error": f"Access to model {repo} is restricted."},
                         error_code="GatedRepo", commit=commit)
            return
        blob = self.hub.blobs(repo, commit).get(filename)
        if blob is None:
            self._answer(replace(hit, status=404), {"error": "Entry not found"}, error_code="EntryNotFound",
                         commit=commit)
            return
        self.hub._record(hit)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(blob.data)))
        self.send_header("ETag", f'"{blob.etag}"')
        self.send_header("X-Repo-Commit", commit)
        self.send_header("Accept-Ranges", "none")
        self.end_headers()
        if self.send_body:
            self.wfile.write(blob.data)

    def _answer(self, hit: Hit, payload, *, error_code: str | None = None, commit: str | None = None) -> None:
        self.hub._record(hit)
        body = json.dumps(payload).encode()
        self.send_response(hit.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if error_code:
            self.send_header("X-Error-Code", error_code)
            self.send_header("X-Error-Message", payload["error"])
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.end_headers()
        if self.send_body:
            self.wfile.write(body)

