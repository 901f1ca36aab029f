"""Fetch the official ColorMNet checkpoint so that it checks itself.

``download_checkpoint()`` streams the file with urllib into ``<name>.partial`` next to its final
place and renames it only after every check passed:

1. the HTTP status (200, or 206 when resuming; anything else is an error naming the code),
2. the byte count against the announced size (``Content-Length`` / ``Content-Range``),
3. the SHA-256 against ``sha256=`` when one is pinned,
4. a strict load (``weights.read_state_dict``: ``weights_only``, all 667 keys, every shape,
   every value finite: a NaN/inf tensor would give silently black or grey output).

An interrupted or short transfer keeps its ``.partial`` file and the next call resumes it with
an HTTP ``Range`` request; a server that answers 200 instead of 206 makes the download restart
from byte 0. A complete file that fails check 3 or 4 is deleted. Nothing ever appears at the
final path unless it passed. The SHA-256 is logged and recorded in ``<name>.sha256``
(``sha256sum`` format), and ``NOTICE_NAME`` states the licence of the weights next to them;
both are written atomically (``util.files``). The arguments (``--sha256``, ``--url``,
``--timeout``, ``--dir`` writable) are checked before anything is fetched, and a lock file
keeps two downloads into one folder from appending to the same ``.partial``.

The weights are not ours: they are CC BY-NC-SA 4.0 (see ``NOTICE_TEXT``); nothing in this
package contains them or anything derived from them.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import math
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..util import files as fileutil
from ..util.errors import DownloadError  # noqa: F401  (defined with the other user errors)
from ..util.files import atomic_write_text, file_lock, file_sha256
from .checkpoint import (
    CHECKPOINT_NAME,
    CHECKPOINT_URL,
    ENV_WEIGHTS_DIR,
    CheckpointError,
    normalise_sha256,
    read_state_dict,
    record_sha256,
    weights_dir,
)

log = logging.getLogger("vscolormnet")

CHUNK = 1 << 20
USER_AGENT = "vscolormnet/0.1 (+python urllib)"
NOTICE_NAME = "NOTICE-weights.txt"
NOTICE_TEXT = f"""\
ColorMNet weights: licence notice
=================================

File: {CHECKPOINT_NAME}
Source: {CHECKPOINT_URL}

These weights were trained and published by the authors of ColorMNet:

    Yixin Yang, Jiangxin Dong, Jinhui Tang, Jinshan Pan.
    "ColorMNet: A Memory-based Deep Spatial-Temporal Feature Propagation Network
    for Video Colorization." European Conference on Computer Vision (ECCV), 2024.
    https://github.com/yyang181/colormnet

They are licensed under the Creative Commons Attribution-NonCommercial-ShareAlike 4.0
International licence (CC BY-NC-SA 4.0): https://creativecommons.org/licenses/by-nc-sa/4.0/

In short (the licence text is what binds):
  - Attribution: credit the ColorMNet authors (citation above), link the licence and say
    whether you made changes.
  - NonCommercial: you may not use the weights, or material made from them, for commercial
    purposes.
  - ShareAlike: if you remix, transform or build upon the weights (for example ONNX files or
    TensorRT engines built from them, or fine-tuned weights), you must distribute your
    contributions under the same licence.
  - No additional restrictions: you may not apply legal terms or technological measures that
    legally restrict others from doing anything the licence permits.

vscolormnet (the code that downloaded this file) is a separate work under its own licence;
it does not include or redistribute these weights.
"""
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)




@dataclass(frozen=True)
class DownloadResult:
    """What ``download_checkpoint`` produced. ``downloaded`` is False when the file was already there."""

    path: Path
    sha256: str
    size: int
    downloaded: bool


def check_url(url: str, param: str = "--url") -> str:
    """``url`` if it is an http(s) URL with a host; a ValueError naming ``param`` otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{param} must be an http:// or https:// URL, got {url!r}")
    return url


def check_timeout(timeout: float, param: str = "--timeout") -> float:
    """``timeout`` if it is a finite number of seconds > 0; a ValueError naming ``param`` otherwise."""
    if not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"{param} must be a number of seconds > 0, got {timeout}")
    return timeout


def target_folder(dest_dir: str | os.PathLike | None) -> Path:
    """The download folder, created if needed (mode 0700); a ValueError naming ``--dir`` (or the variable)
    if unusable, or if it is the default folder and not private (``util.files.make_private_dir``)."""
    default = not dest_dir and not os.environ.get(ENV_WEIGHTS_DIR)
    if dest_dir:
        folder, name = Path(dest_dir).expanduser(), "--dir"
    else:
        folder = weights_dir()
        name = "the weights folder" if default else f"${ENV_WEIGHTS_DIR}"
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{name} {folder} is not a folder")
    try:
        why = fileutil.make_private_dir(folder)
    except OSError as e:
        raise ValueError(f"{name} {folder} cannot be created: {e.strerror or e}") from None
    if why and default:
        raise ValueError(f"{name} {folder} is not yours alone: {why} (make it yours, or choose another with "
                         f"--dir or ${ENV_WEIGHTS_DIR})")
    if not fileutil.is_writable_dir(folder):
        raise ValueError(f"{name} {folder} is not writable (choose another with --dir or ${ENV_WEIGHTS_DIR})")
    return folder


def write_notice(folder: str | os.PathLike) -> Path:
    """Write the licence notice of the weights into ``folder``; returns its path."""
    path = Path(folder) / NOTICE_NAME
    if not path.is_file() or path.read_text(encoding="utf-8", errors="replace") != NOTICE_TEXT:
        atomic_write_text(path, NOTICE_TEXT)
    return path


class _Progress:
    """A progress bar on stderr: redrawn in place on a terminal, one line per 10 % otherwise."""

    def __init__(self, total: int | None, start: int = 0, stream=None, enabled: bool = True):
        self.total, self.start, self.done = total, start, start
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = self.last = time.monotonic()
        self.last_decile = -1

    def _line(self) -> str:
        mb = self.done / 1e6
        rate = (self.done - self.start) / 1e6 / max(time.monotonic() - self.t0, 1e-6)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            return f"download: [{bar:<30}] {frac * 100:5.1f}% {mb:7.1f}/{self.total / 1e6:.1f} MB {rate:6.1f} MB/s"
        return f"download: {mb:7.1f} MB {rate:6.1f} MB/s"

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if now - self.last >= 0.2:
                self.last = now
                self.stream.write("\r" + self._line())
                self.stream.flush()
        elif self.total:
            decile = int(10 * self.done / self.total)
            if decile != self.last_decile:
                self.last_decile = decile
                print(self._line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r" + self._line() + "\n")
            self.stream.flush()


def _count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def fetch(url: str, partial: Path, timeout: float, progress: bool) -> str:
    """Bring ``partial`` to the complete file (resuming it if present); return its SHA-256. Shared with the
    DDColor download (``ddcolor_download``): one transport, one set of resume and size rules.

    Raises DownloadError with one line on any HTTP, size or transfer error; the partial file is kept
    for a resume when the bytes it holds are good (an interrupted or short transfer).
    """
    offset = partial.stat().st_size if partial.is_file() else 0
    for _attempt in range(2):  # a second attempt only after a 416 on a stale partial
        try:
            resp = _open(url, offset, timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:
                m = re.match(r"^\s*bytes\s+\*/(\d+)\s*$", e.headers.get("Content-Range", "") or "")
                if m and int(m.group(1)) == offset:  # the partial file is already complete
                    log.info("download: %s is already complete (%d bytes)", partial.name, offset)
                    return file_sha256(partial)
                log.warning("download: the server cannot resume %s at byte %d (HTTP 416); starting again",
                            partial.name, offset)
                partial.unlink(missing_ok=True)
                offset = 0
                continue
            raise DownloadError(f"{url} answered HTTP {e.code} {e.reason}") from None
        except urllib.error.URLError as e:
            raise DownloadError(f"cannot reach {url}: {e.reason}") from None
        except (TimeoutError, OSError, http.client.HTTPException) as e:
            raise DownloadError(f"cannot reach {url}: {e}") from None
        break
    else:  # pragma: no cover - the loop always breaks or raises
        raise DownloadError(f"{url}: cannot resume the download")

    with resp:
        status = resp.status
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.strip().isdigit() else None
        if status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                raise DownloadError(f"{url} answered 206 with Content-Range "
                                 f"{resp.headers.get('Content-Range')!r} for a request from byte {offset}")
            total = int(m.group(3)) if m.group(3) != "*" else (offset + length if length is not None else None)
            mode = "ab"
            log.info("download: resuming %s at %.1f MB", partial.name, offset / 1e6)
        elif status == 200:
            if offset:
                log.warning("download: the server ignored the resume request (HTTP 200, not 206); "
                            "starting again from byte 0")
            offset = 0
            total = length
            mode = "wb"
        else:
            raise DownloadError(f"{url} answered HTTP {status} {resp.reason}; expected 200")
        if total is not None and length is not None and offset + length != total:
            raise DownloadError(f"{url}: Content-Length {length} does not match Content-Range total {total}")

        digest = hashlib.sha256()
        if offset:
            with open(partial, "rb") as f:
                while block := f.read(CHUNK):
                    digest.update(block)
        bar = _Progress(total, offset, enabled=progress)
        received = offset
        try:
            with open(partial, mode) as out:
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except (OSError, http.client.HTTPException) as e:
                        bar.close()
                        raise DownloadError(
                            f"download interrupted after {received:,} of {_count(total)} bytes "
                            f"({type(e).__name__}: {e}); "
                            f"the partial file {partial} is kept: run the same command again to resume"
                        ) from None
                    if not block:
                        break
                    out.write(block)
                    digest.update(block)
                    received += len(block)
                    bar.update(len(block))
                out.flush()
                os.fsync(out.fileno())
        except OSError as e:  # unwritable, disk full, quota: bytes already written are kept for a resume
            raise DownloadError(f"cannot write {partial}: {e.strerror or e}") from None
        finally:
            bar.close()
    if total is not None and received != total:
        raise DownloadError(f"download incomplete: received {received:,} bytes, the server announced {total:,}; "
                         f"the partial file {partial} is kept: run the same command again to resume")
    return digest.hexdigest()


def download_checkpoint(dest_dir: str | os.PathLike | None = None, *, url: str = CHECKPOINT_URL,
                        sha256: str | None = None, force: bool = False, timeout: float = 60.0,
                        progress: bool = True) -> DownloadResult:
    """Download, verify and install the checkpoint as ``dest_dir/CHECKPOINT_NAME``.

    dest_dir: target folder (default ``weights.weights_dir()``; created if needed).
    url:      where to fetch it (default the official release asset).
    sha256:   pinned hex digest; a mismatch deletes the download and raises ValueError.
    force:    download even when a valid file is already at the final path.
    timeout:  seconds without data before the transfer is abandoned (the partial is kept).
    Raises ValueError (one line) for a bad argument, before anything is fetched, and its subclass
    DownloadError for a failed transfer or a file that fails a check; nothing is left at the final path.
    """
    pin = normalise_sha256(sha256)
    check_url(url)
    check_timeout(timeout)
    folder = target_folder(dest_dir)
    final = folder / CHECKPOINT_NAME
    if final.exists() and not final.is_file():
        raise ValueError(f"{final} exists and is not a file: move it away first")
    with file_lock(folder / f".{CHECKPOINT_NAME}.lock"):
        return _download_locked(folder, final, url, pin, force, timeout, progress)


def _download_locked(folder: Path, final: Path, url: str, pin: str | None, force: bool, timeout: float,
                     progress: bool) -> DownloadResult:
    partial = final.with_name(final.name + ".partial")
    if final.is_file() and not force:
        digest = file_sha256(final)
        try:
            read_state_dict(final)
            ok = pin is None or digest == pin
        except CheckpointError as e:
            ok = False
            log.warning("download: the existing %s fails verification (%s); downloading it again", final, e)
        if ok:
            record_sha256(final, digest)
            write_notice(folder)
            return DownloadResult(final, digest, final.stat().st_size, downloaded=False)
        if pin is not None and digest != pin:
            log.warning("download: the existing %s has SHA-256 %s, not the pinned %s; downloading it again",
                        final, digest, pin)

    log.info("download: %s -> %s", url, final)
    digest = fetch(url, partial, timeout, progress)  # hashed while it streams in
    if pin is not None and digest != pin:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"SHA-256 mismatch: the download has {digest}, --sha256 pins {pin}; "
                         "the file was deleted (check the pin, or run again to download afresh)")
    try:
        tensors = len(read_state_dict(partial))
    except CheckpointError as e:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"the downloaded file is not a valid ColorMNet checkpoint and was deleted "
                         f"(run again to download afresh): {e}") from None
    size = partial.stat().st_size
    os.replace(partial, final)  # the .partial is the temporary name in the target folder
    record_sha256(final, digest)
    write_notice(folder)
    log.debug("download: %s verified (%d tensors, every shape right, all finite)", final, tensors)
    return DownloadResult(final, digest, size, downloaded=True)
