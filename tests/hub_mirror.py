"""A local Hugging Face Hub mirror for tests: the real `huggingface_hub` client talks to it through HF_ENDPOINT.

The Hub itself cannot be reached from CI, so this speaks the part of the Hub's HTTP API that `snapshot_download`
uses (repo info, the recursive tree, HEAD/GET on resolve URLs with Range) over real model folders. Repos can be
throttled (to watch progress and cancel mid-file), gated (401 GatedRepo) or missing (404 RepoNotFound).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf")


@dataclass
class MirrorRepo:
    folder: Path
    bytes_per_s: float | None = None  # throttle downloads (None: as fast as loopback goes)
    gated: bool = False
    files: dict[str, bytes] = field(default_factory=dict)
    sha: str = ""

    def load(self) -> MirrorRepo:
        self.files = {p.relative_to(self.folder).as_posix(): p.read_bytes()
                      for p in sorted(self.folder.rglob("*")) if p.is_file()}
        digest = hashlib.sha1()
        for name, data in self.files.items():
            digest.update(name.encode() + hashlib.sha1(data).digest())
        self.sha = digest.hexdigest()
        return self


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubMirror:
    """`with HubMirror({"org/name": MirrorRepo(folder)}) as url:` serves those repos on 127.0.0.1."""

    def __init__(self, repos: dict[str, MirrorRepo]) -> None:
        self.repos = {k: r.load() for k, r in repos.items()}
        self.requests: list[str] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_HEAD(self) -> None:
                mirror.handle(self, head=True)

            def do_GET(self) -> None:
                mirror.handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---- routing -------------------------------------------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append(f"{h.command} {path} {h.headers.get('Range', '')}".strip())
        if m := re.match(r"^/api/models/([^/]+/[^/]+)/revision/([^/]+)$", path):
            return self._api(h, m[1], lambda r: {"id": m[1], "modelId": m[1], "sha": r.sha, "private": False,
                                                  "gated": "auto" if r.gated else False,
                                                  "siblings": [{"rfilename": f} for f in r.files]})
        if m := re.match(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?$", path):
            return self._api(h, m[1], lambda r: [self._tree_entry(f, d) for f, d in r.files.items()])
        if m := re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path):
            return self._file(h, m[1], m[3], head)
        self._error(h, 404, "EntryNotFound", f"no route for {path}")

    def _repo(self, h: BaseHTTPRequestHandler, repo_id: str) -> MirrorRepo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            self._error(h, 404, "RepoNotFound", f"Repository {repo_id} not found")
        elif repo.gated:
            self._error(h, 401, "GatedRepo", f"Access to model {repo_id} is restricted")
            return None
        return repo

    def _api(self, h: BaseHTTPRequestHandler, repo_id: str, body) -> None:
        repo = self._repo(h, repo_id)
        if repo is not None:
            self._send(h, 200, json.dumps(body(repo)).encode(), {"Content-Type": "application/json"})

    @staticmethod
    def _tree_entry(name: str, data: bytes) -> dict:
        entry = {"type": "file", "path": name, "size": len(data), "oid": _git_oid(data)}
        if name.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def _file(self, h: BaseHTTPRequestHandler, repo_id: str, name: str, head: bool) -> None:
        repo = self._repo(h, repo_id)
        if repo is None:
            return
        data = repo.files.get(name)
        if data is None:
            return self._error(h, 404, "EntryNotFound", f"{name} not in {repo_id}")
        etag = hashlib.sha256(data).hexdigest() if name.endswith(LFS_SUFFIXES) else _git_oid(data)
        headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream",
                   "Accept-Ranges": "bytes"}
        start = 0
        if (rng := re.match(r"bytes=(\d+)-", h.headers.get("Range", ""))) and not head:
            start = int(rng[1])
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        if head:
            headers["Content-Length"] = str(len(data))
            return self._send(h, 200, b"", headers, head=True)
        self._send(h, 206 if start else 200, body, headers, throttle=repo.bytes_per_s)

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        self._send(h, status, json.dumps({"error": message}).encode(),
                   {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message})

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str], *, head: bool = False,
              throttle: float | None = None) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        if not head:
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if head:
            return
        chunk = 64 * 1024
        try:
            for i in range(0, len(body), chunk):
                h.wfile.write(body[i:i + chunk])
                if throttle:
                    time.sleep(chunk / throttle)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a cancelled download)
