"""The error vocabulary: what went wrong, said once, in the user's own spelling.

Two families, and the exit code each gets from ``util.cli.run_cli``:

- ``UserError`` (a ``ValueError``): what the user typed or passed cannot be used. It names the
  parameter as the user spells it (``ref``, ``--weights``), the value, and what is accepted, and
  is raised before expensive work wherever it can be checked. Exit 2; in ``Colorize`` a
  ``vs.Error`` starting ``Colorize:``.
- ``CommandError`` (a ``RuntimeError``): a failure after work began (ffmpeg failed, a frame
  failed, a download broke off). Exit 1; not a bug, so no traceback.

Ctrl-C is exit 130, SIGTERM (``Terminated``) 143. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input. ``param``/``value``/``accepted`` say what the user typed and what would work."""

    def __init__(self, message: str, *, param: str | None = None, value=None, accepted: str | None = None):
        super().__init__(message)
        self.param, self.value, self.accepted = param, value, accepted

    @classmethod
    def bad(cls, param: str, value, accepted: str, hint: str = "") -> "UserError":
        """``"<param> must be <accepted>, got <value>"`` (+ ``"; <hint>"``)."""
        text = f"{param} must be {accepted}, got {value!r}" + (f"; {hint}" if hint else "")
        return cls(text, param=param, value=value, accepted=accepted)


class BackendError(UserError):
    """A backend that cannot run here or a bad backend field; the message names the field."""


class CheckpointError(UserError):
    """A checkpoint file that cannot be used; the message names the file and what is wrong."""


class ReferenceError(UserError):  # noqa: A001 - the name users see; it never reaches builtins' meaning
    """A bad ``ref``/``ref_frames`` or reference folder; the message names the parameter."""


class PlanError(UserError):
    """Bad ``cuts``; the message names the parameter."""


class ImageError(UserError):
    """An image that cannot be used; the message names the file and why."""


class FormatError(UserError):
    """A clip or frame property that cannot be converted; the message says what is accepted."""


class DownloadError(UserError):
    """The transfer or its result failed (HTTP, network, size, hash, not a usable checkpoint); the
    ``download`` command reports it as a ``CommandError`` (a failure, exit 1)."""


class CommandError(RuntimeError):
    """A failure after work started (ffmpeg failed, a frame failed): one line, exit 1, not a bug."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every cleanup path (ffmpeg, temporary files, workers) runs."""


# Exception type names that are the user's mistake when they come back inside a vs.Error's traceback
# (a frame callback's exception is flattened into the text of a vapoursynth.Error).
USER_ERROR_NAMES = frozenset({
    "ValueError", "UserError", "CheckpointError", "ImageError", "BackendError", "FormatError", "ReferenceError",
    "PlanError", "Error", "vapoursynth.Error", "FileNotFoundError", "PermissionError", "IsADirectoryError",
    "NotADirectoryError", "OSError", "MemoryError", "OutOfMemoryError", "NonFiniteError"})
