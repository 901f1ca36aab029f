"""A local stand-in for the Hugging Face hub on 127.0.0.1: the two endpoints the DDColor download uses.

``GET /api/models/<repo>[/revision/<rev>]`` answers ``model_info(files_metadata=True)``'s JSON in the
hub's shape (the fields huggingface_hub's ``ModelInfo`` parses: ``id``, ``sha``, ``siblings`` with
``rfilename``/``size``/``blobId``/``lfs``, ``cardData``, ``tags``); ``GET /<repo>/resolve/<rev>/<file>``
redirects (302, as the hub does to its CDN) to ``/cdn/<n>``, which serves the bytes with HTTP Range.
Each file can lie (``sha256=``/``size=`` in the JSON differ from the bytes) or break off once
(``cut=`` bytes, then the connection is closed). Every request is recorded.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def model_info_json(repo: str, files: dict[str, dict], licence: str | None = "apache-2.0") -> dict:
    """The hub's ``/api/models/<repo>?blobs=True`` answer for ``files`` ({name: {size, sha256} or {} for non-LFS})."""
    siblings = [{"rfilename": ".gitattributes", "size": 1519, "blobId": "a" * 40},
                {"rfilename": "README.md", "size": 720, "blobId": "b" * 40},
                {"rfilename": "config.json", "size": 258, "blobId": "c" * 40}]
    for name, meta in files.items():
        entry = {"rfilename": name, "size": meta.get("size", 0), "blobId": "d" * 40}
        if meta.get("sha256"):
            entry["lfs"] = {"size": meta["size"], "sha256": meta["sha256"], "pointerSize": 134}
        siblings.append(entry)
    card = {"license": licence, "tags": ["ddcolor"]} if licence else {"tags": ["ddcolor"]}
    return {"_id": "65b3c8f0", "id": repo, "modelId": repo, "author": repo.split("/")[0], "sha": COMMIT,
            "private": False, "gated": False, "disabled": False, "downloads": 5760, "likes": 0,
            "library_name": "pytorch", "lastModified": "2024-01-29T10:00:00.000Z",
            "tags": ["transformers", "pytorch", "ddcolor", "arxiv:2212.11613"] +
                    ([f"license:{licence}"] if licence else []),
            "cardData": card, "siblings": siblings, "createdAt": "2024-01-26T10:00:00.000Z"}


class FakeHub:
    """A threaded HTTP server; ``add(repo, filename, source, **lies)`` publishes one file."""

    def __init__(self):
        self.repos: dict[str, dict] = {}         # repo → {filename: (source, how)}
        self.blobs: list[tuple[bytes | Path, dict]] = []
        self.requests: list[tuple[str, str | None]] = []
        self.licence: str | None = "apache-2.0"
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                hub.requests.append((self.path, self.headers.get("Range")))
                path = urlsplit(self.path).path
                if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", path):
                    return self._info(m.group(1))
                if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                    return self._resolve(m.group(1), m.group(3))
                if m := re.fullmatch(r"/cdn/(\d+)", path):
                    return self._blob(*hub.blobs[int(m.group(1))])
                self._json(404, {"error": "Not found"})

            def _json(self, code, data):
                body = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _info(self, repo):
                if repo not in hub.repos:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "RepoNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                files = {}
                for name, (src, how) in hub.repos[repo].items():
                    files[name] = {"size": how.get("size", _size(src)),
                                   "sha256": how.get("sha256", _sha256(src)) if how.get("lfs", True) else None}
                self._json(200, model_info_json(repo, files, hub.licence))

            def _resolve(self, repo, filename):
                entry = hub.repos.get(repo, {}).get(filename)
                if entry is None:
                    return self._json(404, {"error": "Entry not found"})
                hub.blobs.append(entry)
                self.send_response(302)
                self.send_header("Location", f"/cdn/{len(hub.blobs) - 1}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _blob(self, src, how):
                size = _size(src)
                start = 0
                if m := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or ""):
                    start = int(m.group(1))
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(size - start))
                self.end_headers()
                stop = size
                if how.get("cut") and not how.get("cut_done"):
                    how["cut_done"] = True
                    stop = min(size, start + how["cut"])
                try:
                    with (open(src, "rb") if isinstance(src, Path) else _Bytes(src)) as f:
                        f.seek(start)
                        left = stop - start
                        while left > 0 and (block := f.read(min(1 << 20, left))):
                            self.wfile.write(block)
                            left -= len(block)
                    if stop < size:
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, repo: str, filename: str, src: bytes | Path, **how) -> None:
        """Publish ``src`` as ``repo/filename``; ``how``: sha256=/size= (what the JSON claims), lfs=False, cut=N."""
        self.repos.setdefault(repo, {})[filename] = (src, how)

    def blob_requests(self) -> list[str | None]:
        """The Range header of every byte request, in order (None: from the start)."""
        return [rng for path, rng in self.requests if path.startswith("/cdn/")]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Bytes:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def seek(self, pos):
        self.pos = pos

    def read(self, n):
        block = self.data[self.pos:self.pos + n]
        self.pos += len(block)
        return block


_SHA: dict[tuple, str] = {}


def _size(src) -> int:
    return len(src) if isinstance(src, bytes) else src.stat().st_size


def _sha256(src) -> str:
    if isinstance(src, bytes):
        return hashlib.sha256(src).hexdigest()
    key = (str(src), src.stat().st_size, src.stat().st_mtime_ns)
    if key not in _SHA:
        from vscolormnet.util.files import file_sha256
        _SHA[key] = file_sha256(src)
    return _SHA[key]
