"""download / verify against a local HTTP server on 127.0.0.1 (no internet).

Only four tests move a full 495 MB checkpoint (complete download, resume, a server that ignores
Range, a seeded copy holding NaN/inf); the failure cases serve a small file that is not a
checkpoint. Every bad argument is one ``download: error:`` line naming the flag, exit 2, and
is refused before any request is made; a failed transfer or fetched file is one line, exit 1.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vscolormnet.__main__ import main
from vscolormnet.util import files as fileutil
from vscolormnet.util.files import file_sha256
from vscolormnet.weights.checkpoint import CHECKPOINT_NAME, CheckpointError, sha256_record_path, verify_checkpoint
from vscolormnet.weights.download import NOTICE_NAME, download_checkpoint

from .test_checkpoint import INF_KEY, NAN_KEY, nan_inf_copy

SMALL = os.urandom(3 << 20)  # 3 MB that are not a checkpoint


class _Server:
    """Serves named routes; each route: (source bytes or Path, behaviour dict). Records the requests."""

    def __init__(self):
        self.routes: dict[str, tuple[bytes | Path, dict]] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep pytest output clean
                pass

            def do_GET(self):  # noqa: N802
                server.requests.append((self.path, self.headers.get("Range")))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404, "Not Found")
                    return
                src, how = route
                hit = server.hits.get(self.path, 0)
                server.hits[self.path] = hit + 1
                size = len(src) if isinstance(src, bytes) else src.stat().st_size
                start = 0
                rng = self.headers.get("Range")
                m = re.match(r"bytes=(\d+)-$", rng or "")
                if m and not how.get("ignore_range"):
                    start = int(m.group(1))
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                else:
                    self.send_response(200)
                length = size - start + how.get("length_delta", 0)
                self.send_header("Content-Length", str(length))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                cut = how.get("cut") if hit < how.get("cut_times", 10**9) else None
                stop = size if cut is None else min(size, start + cut)
                stop = min(stop, start + max(length, 0))
                try:
                    self._send(src, start, stop)
                    if cut is not None and how.get("reset"):
                        self.wfile.flush()
                        time.sleep(0.3)  # let the client read what was sent, then reset the connection
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        self.connection.close()
                    elif cut is not None and how.get("stall"):
                        self.wfile.flush()
                        time.sleep(how["stall"])
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send(self, src, start, stop):
                if isinstance(src, bytes):
                    self.wfile.write(src[start:stop])
                    return
                with open(src, "rb") as f:
                    f.seek(start)
                    left = stop - start
                    while left > 0:
                        block = f.read(min(1 << 20, left))
                        if not block:
                            break
                        self.wfile.write(block)
                        left -= len(block)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def add(self, path: str, src, **how) -> str:
        self.routes[path] = (src, how)
        return self.url(path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture(scope="module")
def nan_inf_checkpoint(parity_checkpoint) -> Path:  # noqa: D103
    return nan_inf_copy(parity_checkpoint)


@pytest.fixture(scope="module")
def parity_sha256(parity_checkpoint) -> str:
    return file_sha256(parity_checkpoint)


def _final(d: Path) -> Path:
    return d / CHECKPOINT_NAME


def _partial(d: Path) -> Path:
    return d / (CHECKPOINT_NAME + ".partial")


# ------------------------------------------------------------------ full transfers (3)
def test_complete_download_verifies_records_and_is_not_repeated(server, tmp_path, parity_checkpoint,
                                                                 parity_sha256, capsys):
    url = server.add("/v0.1/" + CHECKPOINT_NAME, parity_checkpoint)
    d = tmp_path / "w"
    rc = main(["download", "--dir", str(d), "--url", url, "--sha256", parity_sha256.upper(), "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert out == ""  # nothing on stdout
    final = _final(d)
    assert final.is_file() and not _partial(d).exists()
    assert file_sha256(final) == parity_sha256
    assert sha256_record_path(final).read_text() == f"{parity_sha256}  {CHECKPOINT_NAME}\n"
    notice = (d / NOTICE_NAME).read_text()
    for words in ("CC BY-NC-SA 4.0", "NonCommercial", "ShareAlike", "Yixin Yang", "ECCV", "2024"):
        assert words in notice
    assert parity_sha256 in err
    # outputs were renamed into place: no temporary or partial files are left behind
    assert sorted(p.name for p in d.iterdir()) == sorted(
        [f".{CHECKPOINT_NAME}.lock", CHECKPOINT_NAME, CHECKPOINT_NAME + ".sha256", NOTICE_NAME])

    # a second call finds the verified file and does not download again
    n = len(server.requests)
    res = download_checkpoint(d, url=url, progress=False)
    assert not res.downloaded and res.sha256 == parity_sha256 and len(server.requests) == n

    # verify: OK and matching the record; JSON only on request
    assert main(["verify", str(final)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and parity_sha256 in err and "matches the recorded hash" in err
    assert main(["verify", str(final), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sha256"] == parity_sha256 and data["matches_record"] is True and data["tensors"] == 667

    # the default path comes from $VSCOLORMNET_WEIGHTS_DIR
    os.environ["VSCOLORMNET_WEIGHTS_DIR"] = str(d)
    try:
        assert main(["verify"]) == 0
    finally:
        del os.environ["VSCOLORMNET_WEIGHTS_DIR"]
    capsys.readouterr()

    # a record that disagrees with the file is reported
    sha256_record_path(final).write_text("0" * 64 + f"  {CHECKPOINT_NAME}\n")
    with pytest.raises(ValueError, match="changed since it was downloaded"):
        verify_checkpoint(final)
    with pytest.raises(ValueError, match="--sha256 pins"):
        verify_checkpoint(final, sha256="1" * 64)


def test_resume_completes_an_interrupted_transfer(server, tmp_path, parity_checkpoint, parity_sha256):
    cut = 100 << 20
    url = server.add("/flaky.pth", parity_checkpoint, cut=cut, cut_times=1, reset=True)
    d = tmp_path / "w"
    with pytest.raises(ValueError, match="(interrupted|incomplete).*run the same command again to resume"):
        download_checkpoint(d, url=url, progress=False)
    assert not _final(d).exists()
    got = _partial(d).stat().st_size
    assert 0 < got <= cut
    res = download_checkpoint(d, url=url, progress=False)
    assert res.downloaded and res.sha256 == parity_sha256
    assert server.requests[-1] == ("/flaky.pth", f"bytes={got}-")  # resumed, not restarted
    assert file_sha256(_final(d)) == parity_sha256 and not _partial(d).exists()


def test_server_answering_200_to_a_range_request_restarts(server, tmp_path, parity_checkpoint, parity_sha256,
                                                          caplog):
    url = server.add("/norange.pth", parity_checkpoint, ignore_range=True)
    d = tmp_path / "w"
    d.mkdir()
    _partial(d).write_bytes(b"stale bytes from an older attempt" * 100)
    with caplog.at_level("WARNING", logger="vscolormnet"):
        res = download_checkpoint(d, url=url, progress=False)
    assert "starting again from byte 0" in caplog.text
    assert server.requests[-1][1] is not None  # it did ask for a range
    assert res.sha256 == parity_sha256 and file_sha256(_final(d)) == parity_sha256


# ------------------------------------------------------------------ failures (small files)
def test_404_is_a_clear_error_and_leaves_nothing(server, tmp_path, capsys):
    d = tmp_path / "w"
    _fails(capsys, ["download", "--dir", str(d), "--url", server.url("/nope.pth"), "--no-progress"], "HTTP 404", rc=1)
    assert not _final(d).exists() and not _partial(d).exists()


def test_truncated_body_leaves_no_final_file(server, tmp_path):
    url = server.add("/trunc.pth", SMALL, cut=1 << 20)
    d = tmp_path / "w"
    with pytest.raises(ValueError, match=r"incomplete: received 1,048,576 bytes, the server announced 3,145,728"):
        download_checkpoint(d, url=url, progress=False)
    assert not _final(d).exists()
    assert _partial(d).stat().st_size == 1 << 20  # kept for a resume


def test_wrong_content_length_larger_is_incomplete(server, tmp_path):
    url = server.add("/longer.pth", SMALL, length_delta=+1000)
    d = tmp_path / "w"
    with pytest.raises(ValueError, match="incomplete"):
        download_checkpoint(d, url=url, progress=False)
    assert not _final(d).exists()


def test_wrong_content_length_smaller_fails_verification_and_is_deleted(server, tmp_path):
    url = server.add("/shorter.pth", SMALL, length_delta=-1000)
    d = tmp_path / "w"
    with pytest.raises(ValueError, match="not a valid ColorMNet checkpoint and was deleted"):
        download_checkpoint(d, url=url, progress=False)
    assert not _final(d).exists() and not _partial(d).exists()


def test_invalid_file_is_refused(server, tmp_path, capsys):
    url = server.add("/garbage.pth", SMALL)
    d = tmp_path / "w"
    _fails(capsys, ["download", "--dir", str(d), "--url", url, "--no-progress"],
           "cannot be read (truncated, corrupt or not a torch file)", rc=1)
    assert not _final(d).exists() and not _partial(d).exists()


def test_interrupted_transfer_is_a_clear_error(server, tmp_path):
    url = server.add("/reset.pth", SMALL, cut=1 << 20, reset=True)
    d = tmp_path / "w"
    with pytest.raises(ValueError, match="(interrupted|incomplete).*resume"):
        download_checkpoint(d, url=url, progress=False)
    assert not _final(d).exists()


def test_stalled_transfer_times_out(server, tmp_path):
    url = server.add("/stall.pth", SMALL, cut=1 << 16, stall=3)
    d = tmp_path / "w"
    with pytest.raises(ValueError, match="interrupted.*timed out"):
        download_checkpoint(d, url=url, timeout=0.5, progress=False)
    assert not _final(d).exists()


def test_sha256_mismatch_is_refused(server, tmp_path, capsys):
    url = server.add("/pinned.pth", SMALL)
    d = tmp_path / "w"
    _fails(capsys, ["download", "--dir", str(d), "--url", url, "--sha256", "ab" * 32, "--no-progress"],
           "SHA-256 mismatch", "--sha256", hashlib.sha256(SMALL).hexdigest(), rc=1)
    assert not _final(d).exists() and not _partial(d).exists()


def test_nan_inf_download_is_refused_and_deleted(server, tmp_path, nan_inf_checkpoint, capsys):
    url = server.add("/nan.pth", nan_inf_checkpoint)
    d = tmp_path / "w"
    line = _fails(capsys, ["download", "--dir", str(d), "--url", url, "--no-progress"],
                  "not a valid ColorMNet checkpoint and was deleted", "NaN or infinite",
                  f"{NAN_KEY} (1 NaN)", f"{INF_KEY} (1 inf)", rc=1)
    assert "--dir" not in line
    assert not _final(d).exists() and not _partial(d).exists()


# ------------------------------------------------------------------ bad arguments: one line, no request
def _fails(capsys, argv, *needles, rc: int = 2) -> str:
    """Exit ``rc`` (2: bad argument, 1: failed transfer or fetched file) with one error line holding each needle."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == rc, err
    assert out == "" and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and lines[0].startswith(f"{argv[0]}: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_bad_arguments_are_refused_before_any_request(server, tmp_path, capsys, monkeypatch):
    url = server.add("/x.pth", SMALL)
    a_file = tmp_path / "a_file"
    a_file.write_bytes(b"x")
    dl = ["download", "--no-progress"]
    _fails(capsys, dl + ["--dir", str(tmp_path), "--sha256", "xyz", "--url", url],
           "--sha256", "64 hexadecimal digits", "'xyz'")
    _fails(capsys, dl + ["--dir", str(tmp_path), "--url", "ftp://example.org/x.pth"], "--url", "http")
    _fails(capsys, dl + ["--dir", str(tmp_path), "--url", "not a url"], "--url", "'not a url'")
    for t in ("0", "-3", "nan", "inf"):
        _fails(capsys, dl + ["--dir", str(tmp_path), "--url", url, "--timeout", t], "--timeout", "> 0")
    _fails(capsys, dl + ["--dir", str(a_file), "--url", url], "--dir", str(a_file), "is not a folder")
    _fails(capsys, dl + ["--dir", str(a_file / "sub"), "--url", url], "--dir", "cannot be created")
    monkeypatch.setattr(fileutil, "is_writable_dir", lambda path: False)
    _fails(capsys, dl + ["--dir", str(tmp_path / "ro"), "--url", url], "--dir", "is not writable")
    monkeypatch.setenv("VSCOLORMNET_WEIGHTS_DIR", str(tmp_path / "env"))
    _fails(capsys, dl + ["--url", url], "$VSCOLORMNET_WEIGHTS_DIR", "is not writable")
    assert server.requests == []


def test_verify_api_names_the_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(SMALL)
    with pytest.raises(CheckpointError, match="bad.pth"):
        verify_checkpoint(bad)
