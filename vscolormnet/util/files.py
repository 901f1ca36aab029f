"""Small file utilities shared by download, refs, the ONNX cache, the engine cache and the checkpoint builder.

One home for: the SHA-256 of a file (memoised), atomic writes (temporary name in the same
folder, renamed only when complete), advisory locks, a writable-folder fallback, the user
cache folders, and a guard that keeps native libraries from printing to stdout (which may
carry frame data: ``vspipe … - | ffmpeg``).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Callable

log = logging.getLogger("vscolormnet")
_HASH_MEMO: dict[tuple, str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (memoised on path, size and mtime)."""
    st = os.stat(path)
    memo_key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if memo_key not in _HASH_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _HASH_MEMO[memo_key] = h.hexdigest()
    return _HASH_MEMO[memo_key]


def atomic_write(path: str | os.PathLike, data: bytes | bytearray | memoryview | Callable[[IO[bytes]], None]) -> Path:
    """Write ``data`` (bytes, or a function that writes to a binary file) to ``path`` atomically.

    The data goes to a temporary file in the same folder, is flushed to disk, and is renamed
    over ``path`` only when complete. On any exception (also KeyboardInterrupt) the temporary
    file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _plain_file_mode())      # mkstemp makes 0600; give what open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def is_writable_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` exists or can be created and a file can be created in it (works as root too)."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


def user_cache_dir(*parts: str) -> Path:
    """``platformdirs.user_cache_dir('vscolormnet')/parts…`` (e.g. ``~/.cache/vscolormnet/trt``)."""
    import platformdirs
    return Path(platformdirs.user_cache_dir("vscolormnet", appauthor=False), *parts)


def temp_cache_dir(*parts: str) -> Path:
    """A per-user folder under the system temp folder: ``$TMPDIR/vscolormnet-<uid>/parts…``."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir(), f"vscolormnet-{uid}", *parts)


def choose_writable_dir(preferred: str | os.PathLike | None, fallbacks: tuple[str | os.PathLike, ...],
                        what: str = "cache") -> Path:
    """The first writable folder of ``preferred, *fallbacks``; a warning names a skipped ``preferred``."""
    candidates = ([Path(preferred).expanduser()] if preferred else []) + [Path(p).expanduser() for p in fallbacks]
    for i, folder in enumerate(candidates):
        if is_writable_dir(folder):
            if i > 0 and preferred:
                log.warning("%s folder %s is not writable; using %s instead", what, candidates[0], folder)
            return folder
    raise ValueError(f"no writable {what} folder: tried {', '.join(map(str, candidates))}")


@contextlib.contextmanager
def file_lock(path: str | os.PathLike):
    """Exclusive advisory lock on ``path`` (created if needed); a no-op where ``fcntl`` is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class _StdoutGuard:
    """Points file descriptor 1 and ``sys.stdout`` at stderr while any thread is inside ``stdout_to_stderr``.

    Both are process-wide, so lock-protected and ref-counted: the first thread in saves them, the
    last one out restores them, whatever order overlapping threads leave in. Frame data other
    threads write to stdout meanwhile goes to stderr too, so keep the blocks short (an import, one call).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: int | None = None     # dup of the real fd 1 while _depth > 0 (None: no real fd 1)
        self._sys_stdout = None

    def enter(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._sys_stdout, sys.stdout = sys.stdout, sys.stderr
                self._saved = None
                try:
                    sys.__stdout__.flush()
                    saved = os.dup(1)
                except (OSError, ValueError, AttributeError):  # no real fd 1 (embedded interpreters)
                    pass
                else:
                    try:
                        os.dup2(2, 1)
                    except OSError:
                        os.close(saved)
                    else:
                        self._saved = saved
            self._depth += 1

    def exit(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth:
                return
            sys.stdout, self._sys_stdout = self._sys_stdout, None
            if self._saved is not None:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    sys.__stdout__.flush()
                os.dup2(self._saved, 1)
                os.close(self._saved)
                self._saved = None


_STDOUT_GUARD = _StdoutGuard()


@contextlib.contextmanager
def stdout_to_stderr():
    """Send what is written to stdout inside the block (``sys.stdout`` and file descriptor 1) to stderr:
    stdout may carry frame data (``vspipe … - | ffmpeg``). Only for short calls that really print
    (``import tensorrt``, ``onnxruntime.preload_dlls()``): both are process-wide, so what other threads
    write to stdout meanwhile lands on stderr too. Re-entrant and thread-safe."""
    _STDOUT_GUARD.enter()
    try:
        yield
    finally:
        _STDOUT_GUARD.exit()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``atomic_write`` for UTF-8 text."""
    return atomic_write(path, text.encode("utf-8"))


def temp_path_beside(path: str | os.PathLike, suffix: str = "") -> Path:
    """A fresh, unused temporary file name in ``path``'s folder (``.<name>.<random><suffix>``), for
    writers (ffmpeg, savez) that need a path rather than a file object; the caller renames it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _plain_file_mode())
    return Path(tmp)


def _plain_file_mode() -> int:
    """``0o666`` minus the process umask: the mode a plain ``open(path, "w")`` gives a new file.

    Read from ``/proc/self/status`` where it exists: ``os.umask`` can only be read by setting it,
    which would briefly give files other threads create (frames, segments) the wrong mode.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o666 & ~_UMASK_AT_IMPORT


def _read_umask_once() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _read_umask_once()    # fallback where /proc is missing; import runs single-threaded
