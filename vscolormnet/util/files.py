"""Small file utilities shared by download, refs, the ONNX cache, the engine cache and the checkpoint builder.

One home for: the SHA-256 of a file (memoised), atomic writes (temporary name in the same
folder, renamed only when complete), advisory locks, the user cache folders, the one rule that
decides whether a cache or weights folder is private to this user (``private_problem``; folders
we create are 0700) with a private, writable fallback, and a guard that keeps native libraries
from printing to stdout (which may carry frame data: ``vspipe … - | ffmpeg``).
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Callable

from .errors import UserError

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
    """A per-user folder under the system temp folder: ``$TMPDIR/vscolormnet-<uid>/parts…``.

    Anyone can create that name first, so it is only used after ``make_private_dir`` (as
    ``choose_writable_dir`` does), with a fresh ``mkdtemp`` folder when it is refused."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir(), f"vscolormnet-{uid}", *parts)


# ---- private folders: a cache is trusted only when nobody else can write into it -------------------
# Manifests are checksums stored beside the files they vouch for, so they prove nothing in a folder
# another user can write to (a planted graph comes with a matching manifest). Like ssh with key folders:
# a folder is used only if it is ours and not group/world-writable (the sticky bit is no excuse).

def _known_roots() -> list[Path]:
    """Shared parents of our default folders: everything we use below them is checked, component by component."""
    roots = [Path(tempfile.gettempdir())]
    try:
        import platformdirs
        roots += [Path(platformdirs.user_cache_dir()), Path(platformdirs.user_data_dir())]
    except ImportError:  # pragma: no cover - a dependency
        pass
    return roots


def _checked_components(path: Path, root: Path | None) -> list[Path]:
    """The components of ``path`` to check, top first: those below ``root`` (default: the temp folder or
    a platformdirs base holding ``path``, else ``path``'s parent) and every missing one (we create them)."""
    if root is None:
        root = next((r for r in _known_roots() if path != r and path.is_relative_to(r)), path.parent)
    chain = [*reversed(path.parents), path]
    return [c for c in chain if (c != root and c.is_relative_to(root)) or not os.path.lexists(c)]


def _folder_problem(folder: Path) -> str | None:
    """Why the existing ``folder`` could be written by someone else (or is no folder), or None."""
    if not hasattr(os, "geteuid"):  # pragma: no cover - Windows: no owners or modes to compare
        return None if folder.is_dir() else "is not a folder"
    me = os.geteuid()
    link = os.lstat(folder)
    if os.path.islink(folder) and link.st_uid != me:
        return f"is a link owned by uid {link.st_uid}, not by you (uid {me})"
    st = os.stat(folder)
    if not os.path.isdir(folder):
        return "is not a folder"
    if st.st_uid != me:
        return f"is owned by uid {st.st_uid}, not by you (uid {me})"
    if st.st_mode & 0o022:
        return f"is group- or world-writable (mode {st.st_mode & 0o7777:04o})"
    return None


def private_problem(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str | None:
    """The one rule for cache and weights folders: why ``path`` is not private to this user, or None.

    Private: every existing component below ``root`` (see ``_checked_components``), the folder itself
    included, is a folder owned by this user and not group/world-writable; a link must be ours too.
    Missing components are no problem here (``make_private_dir`` creates them 0700).
    The answer names the offending component: ``"/tmp/vscolormnet-0 is owned by uid 65534, …"``.
    """
    path = Path(path)
    for component in _checked_components(path, None if root is None else Path(root)):
        if os.path.lexists(component) and (why := _folder_problem(component)):
            return f"{component} {why}"
    return None


def make_private_dir(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str | None:
    """Create the missing components of ``path`` with mode 0700, then ``private_problem(path, root)``.

    Only folders created here are chmod-ed (the umask may have taken bits away); an existing folder
    is never changed, only judged. Raises OSError when a component cannot be created.
    """
    path = Path(path)
    for component in _checked_components(path, None if root is None else Path(root)):
        if not os.path.lexists(component):
            try:
                os.mkdir(component, 0o700)
            except FileExistsError:         # created meanwhile by someone: judged below like any other
                continue
            os.chmod(component, 0o700)
    return private_problem(path, root)


_SESSION_TEMP: dict[str, Path] = {}
_SESSION_LOCK = threading.Lock()


def _session_temp_dir() -> Path:
    """This process's own ``mkdtemp`` folder (0700, a name nobody can take first), removed at exit:
    where the temp cache goes when ``$TMPDIR/vscolormnet-<uid>`` is refused."""
    base = tempfile.gettempdir()
    with _SESSION_LOCK:
        if base not in _SESSION_TEMP or not _SESSION_TEMP[base].is_dir():
            uid = os.getuid() if hasattr(os, "getuid") else "user"
            folder = Path(tempfile.mkdtemp(prefix=f"vscolormnet-{uid}-", dir=base))
            atexit.register(shutil.rmtree, folder, True)
            _SESSION_TEMP[base] = folder
        return _SESSION_TEMP[base]


def _candidates(preferred, fallbacks):
    """``preferred, *fallbacks`` once each; right after the shared temp folder, this process's own one
    (made only if the loop gets that far)."""
    temp_base, seen = temp_cache_dir(), set()
    for folder in ([preferred] if preferred else []) + list(fallbacks):
        folder = Path(folder).expanduser()
        if folder in seen:
            continue
        seen.add(folder)
        yield folder
        if folder.is_relative_to(temp_base):
            yield _session_temp_dir() / folder.relative_to(temp_base)


def _unusable(folder: Path) -> tuple[str | None, bool]:
    """``(why not, refused)``: why ``folder`` cannot be the cache (None: it can) and whether it was
    refused as not private rather than not writable."""
    try:
        why = make_private_dir(folder)
    except OSError as e:
        return f"is not writable ({e.strerror or e})", False
    if why is not None:
        return why, True
    return (None, False) if is_writable_dir(folder) else ("is not writable", False)


def choose_writable_dir(preferred: str | os.PathLike | None, fallbacks: tuple[str | os.PathLike, ...],
                        what: str = "cache") -> Path:
    """The first of ``preferred, *fallbacks`` that is private (``make_private_dir``) and writable.

    A refused folder gets one warning naming it, why and the folder used instead; so does a
    ``preferred`` that is not writable. A refused ``temp_cache_dir`` is replaced by a fresh private
    temp folder for this process. None usable: a one-line ``UserError`` listing what was tried.
    """
    tried: list[tuple[Path, str, bool]] = []
    for folder in _candidates(preferred, fallbacks):
        why, refused = _unusable(folder)
        if why is None:
            for i, (other, other_why, other_refused) in enumerate(tried):
                if other_refused:
                    log.warning("refusing %s folder %s: %s; using %s instead", what, other, other_why, folder)
                elif i == 0 and preferred:
                    log.warning("%s folder %s is not writable; using %s instead", what, other, folder)
            return folder
        tried.append((folder, why, refused))
    raise UserError(f"no writable {what} folder that is yours alone: tried "
                    + "; ".join(f"{f} ({w})" for f, w, _ in tried), param=what)


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
