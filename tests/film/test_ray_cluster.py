"""``colorize --workers 2 --ray-address`` against a real ``ray start --head`` with token authentication.

Kept apart from ``test_film`` and from Ray in this process: the head is a process group of its own
(own port, temp dir and token, on the loopback address), the driver is a ``python -m vscolormnet
colorize`` subprocess, and this module never imports Ray, so neither shares anything with the
in-process Ray runtime of ``test_film`` (under xdist possibly in the same pytest process). Every
wait has a deadline; the head is stopped by killing its process group and the workers its raylet
started (they make process groups of their own). ``ray stop`` is never used: it stops every Ray
on the machine. The token is made the way ``ray get-auth-token --generate`` makes it (in a
temporary HOME, so the real ``~/.ray`` is never touched) and given to the head and the driver by
``RAY_AUTH_TOKEN_PATH``.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from project_paths import ROOT

from .film_media import frames, same

RAY = Path(sys.executable).parent / "ray"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg"),
              pytest.mark.skipif(importlib.util.find_spec("ray") is None or not RAY.is_file(), reason="needs Ray")]
HEAD_START = 180        # seconds for the head to come up (a loaded 2-core machine takes ~10 s)
RUN_LIMIT = 600         # seconds for one colorize run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict[str, str]:
    """This environment without any Ray setting (the in-process runtime of other tests sets RAY_AUTH_MODE)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


def _descendants(root: int) -> list[tuple[int, str]]:
    """``(pid, start time)`` of every process under ``root`` (Ray's workers leave its process group)."""
    parent, started = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parent[int(entry)], started[int(entry)] = int(fields[1]), fields[19]
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = [p for p, pp in parent.items() if pp == pid]
        found += [(k, started[k]) for k in kids]
        todo += kids
    return found


def _kill_tree(head: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the head's process group, SIGKILL what is left (the group and every process it started)."""
    tree = _descendants(head.pid)
    with_group = [(head.pid, None)] + tree
    try:
        os.killpg(head.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and head.poll() is None:
        time.sleep(0.1)
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid, started in with_group[1:]:
        try:                                    # still the same process (pid not reused), then kill it
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat[stat.rindex(")") + 2:].split()[19] == started:
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
    try:
        head.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A real head on 127.0.0.1 with token authentication: ``{"address", "env"}`` for its drivers."""
    d = tmp_path_factory.mktemp("ray_head")
    home = d / "home"
    home.mkdir()
    gen = subprocess.run([str(RAY), "get-auth-token", "--generate"], env=_env(HOME=str(home)), capture_output=True,
                         text=True, timeout=120, check=False)
    token = home / ".ray" / "auth_token"
    assert gen.returncode == 0 and token.is_file(), gen.stderr[-2000:]
    assert gen.stdout.strip() == token.read_text().strip()       # what it prints is what it keeps
    env = _env(RAY_AUTH_TOKEN_PATH=str(token))
    temp = Path(tempfile.mkdtemp(prefix="rayh", dir="/tmp"))     # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    log = open(d / "head.log", "w+b")  # noqa: SIM115 - read back while the head runs
    head = subprocess.Popen([str(RAY), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--temp-dir", str(temp), "--num-cpus", "2",
                             "--include-dashboard", "false", "--disable-usage-stats"],
                            env={**env, "RAY_AUTH_MODE": "token"}, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + HEAD_START
        while b"Ray runtime started" not in (d / "head.log").read_bytes():
            assert head.poll() is None, f"ray start exited {head.returncode}: {(d / 'head.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"the head did not start: {(d / 'head.log').read_text()[-2000:]}"
            time.sleep(0.2)
        yield {"address": f"127.0.0.1:{port}", "env": env}
    finally:
        _kill_tree(head)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _colorize(media, checkpoint, out: Path, address: str, env: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "vscolormnet", "colorize", str(media["clip"]), "--ref", str(media["refs"]),
           "-o", str(out), "--workers", "2", "--ray-address", address, "--size", "native",
           "--weights", str(checkpoint), "--no-audio"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_LIMIT, check=False)


def test_two_workers_on_a_real_head_equal_one_process(head, media, parity_checkpoint, expected, tmp_path):
    out = tmp_path / "out.mkv"
    proc = _colorize(media, parity_checkpoint, out, head["address"], head["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == ""
    assert "phases:" in proc.stderr and "Ray start-up" in proc.stderr
    assert same(frames(out), expected)


def test_a_wrong_token_is_one_line_naming_what_to_run(head, media, parity_checkpoint, tmp_path):
    out = tmp_path / "bad.mkv"
    # Ray's driver retries a refused GCS connection for 20 s (a head may still be starting); 2 here
    proc = _colorize(media, parity_checkpoint, out, head["address"], {**head["env"], "RAY_AUTH_TOKEN": "0" * 64,
                                                                      "RAY_gcs_server_port_wait_time_s": "2"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines, proc.stderr[-3000:]
    assert lines[-1].startswith(f"colorize: error: --ray-address {head['address']}: "), proc.stderr[-3000:]
    assert "the token from RAY_AUTH_TOKEN may not be the cluster's: run `ray get-auth-token`" in lines[-1]
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
