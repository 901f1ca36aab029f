"""``run_cli``: one mapping from outcome to exit code and one-line message, used by both entry points."""
from __future__ import annotations

import errno
import subprocess
import sys

import pytest
import vapoursynth as vs
from project_paths import ROOT

from vscolormnet.util.cli import run_cli
from vscolormnet.util.errors import (
    BackendError,
    CheckpointError,
    CommandError,
    DownloadError,
    FormatError,
    ImageError,
    PlanError,
    ReferenceError,
    Terminated,
    UserError,
)


def raising(exc):
    def work():
        raise exc
    return work


@pytest.mark.parametrize("exc, code, line", [
    (UserError("--size must be one of 384, 512, got 720"), 2, "demo: error: --size must be one of 384, 512, got 720"),
    (ValueError("--top-k must be a positive integer"), 2, "demo: error: --top-k must be a positive integer"),
    (FileNotFoundError(2, "No such file", "x.mkv"), 2, "demo: error: [Errno 2] No such file: 'x.mkv'"),
    (vs.Error("Colorize: ref must be a colour clip"), 2, "demo: error: Colorize: ref must be a colour clip"),
    (CommandError("ffmpeg failed (exit code 1)"), 1, "demo: error: ffmpeg failed (exit code 1)"),
    (OSError(errno.ENOSPC, "No space left on device"), 1, "demo: error: [Errno 28] No space left on device"),
    (KeyboardInterrupt(), 130, "demo: interrupted"),
    (Terminated(), 143, "demo: terminated"),
])
def test_exit_codes_and_one_line(capsys, exc, code, line):
    assert run_cli("demo", raising(exc)) == code
    assert capsys.readouterr().err.strip() == line


def test_success_and_bugs():
    assert run_cli("demo", lambda: None) == 0 and run_cli("demo", lambda: 3) == 3
    with pytest.raises(TypeError):                 # a bug keeps its traceback
        run_cli("demo", raising(TypeError("unsupported operand")))


def test_every_user_error_is_a_user_error_with_its_parameter():
    for cls in (BackendError, CheckpointError, ReferenceError, PlanError, ImageError, FormatError, DownloadError):
        assert issubclass(cls, UserError) and issubclass(cls, ValueError)
    e = UserError.bad("--size", "720", "one of 384, 512, 640, native")
    assert str(e) == "--size must be one of 384, 512, 640, native, got '720'"
    assert (e.param, e.value, e.accepted) == ("--size", "720", "one of 384, 512, 640, native")


@pytest.mark.slow                  # two fresh interpreters that import torch
@pytest.mark.parametrize("argv", [["-m", "vscolormnet", "colorize", "missing.mkv", "--ref", "r.png", "-o", "o.mkv"],
                                  ["-m", "vscolormnet.film", "missing.mkv", "--ref", "refs", "-o", "o.mkv",
                                   "--workers", "2"]])
def test_both_entry_points_answer_a_bad_input_the_same_way(tmp_path, argv):
    """``python -m vscolormnet`` and ``python -m vscolormnet.film``: exit 2, one line on stderr, stdout empty."""
    (tmp_path / "refs").mkdir()
    proc = subprocess.run([sys.executable, *argv], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("colorize: error: ") and "missing.mkv" in lines[0], proc.stderr
