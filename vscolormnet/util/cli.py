"""``run_cli``: the one place where an outcome becomes an exit code and a one-line message.

Both entry points (``python -m vscolormnet`` and ``python -m vscolormnet.film``) run their work
through it, so the same mistake gives the same line and code everywhere: 0 done, 2 bad input
(``UserError``/``ValueError``, a missing file, a ``vs.Error`` about the input), 1 a failure after
work began (``CommandError``, other ``OSError``), 130 Ctrl-C, 143 SIGTERM (after cleanup). Any
other exception is a bug: it keeps its traceback.
"""
from __future__ import annotations

import contextlib
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable

from .errors import USER_ERROR_NAMES, CommandError, Terminated

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside the block SIGTERM raises ``Terminated`` (a KeyboardInterrupt), so cleanup runs as for Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _is_vs_error(e: BaseException) -> bool:
    return type(e).__name__ == "Error" and type(e).__module__ == "vapoursynth"


def error_summary(exc: BaseException) -> str:
    """The one meaningful line of a ``vs.Error`` raised inside a frame callback.

    VapourSynth wraps exceptions from Python filters in the full traceback text; the line that
    starts with our function name (``Colorize: …``) is what a user needs.
    """
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        for prefix in ("vapoursynth.Error: ", "Error: "):
            if ln.startswith(prefix):
                ln = ln[len(prefix):]
        if ln.startswith("Colorize:"):
            return ln
    return lines[-1] if lines else type(exc).__name__



def error_line(exc: BaseException) -> tuple[str, bool]:
    """``(one line, is a user error)`` for an exception; a ``vs.Error`` from a frame callback carries a
    traceback, whose last exception names the real type (a ``TypeError`` there is a bug)."""
    text = str(exc).strip()
    if type(exc).__name__ != "Error" or "Traceback" not in text:
        first = text.splitlines()[0] if text else type(exc).__name__
        return first, True
    line = error_summary(exc)
    if line.startswith("Colorize:"):
        return line, True
    m = re.match(r"^([\w.]+): ", line)
    name = m.group(1) if m else ""
    return line, name in USER_ERROR_NAMES or name.rsplit(".", 1)[-1] in USER_ERROR_NAMES


def _say(name: str, text: str) -> None:
    print(f"{name}: {text}", file=sys.stderr, flush=True)


def run_cli(name: str, work: Callable[[], int | None]) -> int:
    """Run ``work()`` with SIGTERM as an interrupt; return its exit code (see the module docstring).
    ``name`` starts every message (``colorize: error: ...``)."""
    try:
        with sigterm_as_interrupt():
            return int(work() or 0)
    except KeyboardInterrupt as e:
        code = EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED
        _say(name, "terminated" if code == EXIT_TERMINATED else "interrupted")
        return code
    except CommandError as e:
        _say(name, f"error: {e}")
        return EXIT_FAILED
    except Exception as e:
        if not isinstance(e, (ValueError, OSError)) and not _is_vs_error(e):
            raise
        line, user = error_line(e)
        if not user:             # a bug inside a frame callback: VapourSynth carries its traceback
            traceback.print_exc()
            _say(name, f"error: {line}")
            return EXIT_FAILED
        _say(name, f"error: {line}")
        usage = isinstance(e, (ValueError, FileNotFoundError)) or _is_vs_error(e)
        return EXIT_USAGE if usage else EXIT_FAILED
