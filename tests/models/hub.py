"""A fake Hugging Face Hub on loopback, and a fake-but-well-formed hub cache on disk.

    with FakeHub({"acme/tiny": {"config.json": b"{}", "model.bin": b"..."}}) as hub:
        events = list(download("acme/tiny", folder=cache, hub=hub.url))

The hub speaks what `huggingface_hub.snapshot_download` asks for: model info
(`/api/models/{id}[/revision/{rev}]`, `?blobs=true` for sizes), the file tree
(`/api/models/{id}/tree/{rev}`), and `HEAD`/`GET /{id}/resolve/{rev}/{file}`. An unknown repo
answers 404 `X-Error-Code: RepoNotFound`, as the real Hub does.

`hold`: a file whose `GET` waits until `release` is set (or the hub closes), so a test can see
a download in the middle, deterministically. `requests` records `(method, path)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

SHA = "0123456789abcdef0123456789abcdef01234567"


def blob_id(content: bytes) -> str:
    """Git's blob id, which the Hub reports (and the cache names blobs by) for small files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class FakeHub:
    def __init__(self, repos: dict[str, dict[str, bytes]], *, hold: str | None = None) -> None:
        self.repos = repos
        self.hold = hold
        self.release = threading.Event()
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hub._answer(self, body=True)

            def do_HEAD(self) -> None:
                hub._answer(self, body=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> FakeHub:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _answer(self, request: BaseHTTPRequestHandler, *, body: bool) -> None:
        path = unquote(urlsplit(request.path).path)
        self.requests.append((request.command, path))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo = self.repos.get("/".join(parts[2:4]))
            if repo is None:
                return self._send(request, 404, b'{"error": "Repository not found"}', body=body)
            if parts[4:5] == ["tree"]:
                tree = [
                    {"type": "file", "path": name, "size": len(data), "oid": blob_id(data)}
                    for name, data in repo.items()
                ]
                return self._send(request, 200, json.dumps(tree).encode(), body=body)
            siblings = [
                {"rfilename": name, "size": len(data), "blobId": blob_id(data)}
                for name, data in repo.items()
            ]
            info = {"id": "/".join(parts[2:4]), "sha": SHA, "siblings": siblings}
            return self._send(request, 200, json.dumps(info).encode(), body=body)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self.repos.get("/".join(parts[:2]))
            name = "/".join(parts[4:])
            if repo is None or name not in repo:
                return self._send(request, 404, b"Entry not found", body=body)
            data = repo[name]
            headers = {"X-Repo-Commit": SHA, "ETag": f'"{blob_id(data)}"'}
            if body and name == self.hold:
                self.release.wait(timeout=30)
            return self._send(request, 200, data, body=body, headers=headers)
        self._send(request, 404, b"Not found", body=body)

    def _send(
        self,
        request: BaseHTTPRequestHandler,
        status: int,
        data: bytes,
        *,
        body: bool,
        headers: dict[str, str] | None = None,
    ) -> None:
        request.send_response(status)
        if status == 404:
            request.send_header("X-Error-Code", "RepoNotFound")
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if body:
            request.wfile.write(data)


def cache_model(
    cache: Path, repo_id: str, files: dict[str, bytes], *, commit: str = SHA, mtime: float = 0.0
) -> Path:
    """A model as huggingface_hub leaves it in the cache: blobs, `refs/main`, and a snapshot
    of symlinks to the blobs; `mtime` (if given) dates every blob. Returns the repo folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / blob_id(data)
        blob.write_bytes(data)
        if mtime:
            os.utime(blob, (mtime, mtime))
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return repo
