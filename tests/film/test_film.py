"""A film across Ray workers (``vscolormnet.film``): bit-identical to one process, resumable, fault-tolerant.

One local Ray runtime (2 CPUs, no dashboard) serves the whole module; drivers run in this process
or as subprocesses that join it with ``--ray-address``. The clip and the single-process render
(``media``, ``expected``) are ``film_media``'s, made in ``conftest``.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest
from project_paths import ROOT

from .film_media import N, frames, same

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")]
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_address():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             object_store_memory=128 << 20)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _film(media, ckpt, out, workers, **kw):
    from vscolormnet.film import run_film
    return run_film(media["clip"], media["refs"], out, workers=workers, size="native", weights=str(ckpt), **kw)


@pytest.fixture(scope="module")
def film2(media, parity_checkpoint, ray_address, tmp_path_factory) -> dict:
    """A two-worker run in which the worker rendering shot 1 dies mid-shot (once), keeping its segments
    (the corruption test starts from them): a replacement redoes the shot; ``err`` is the driver's stderr."""
    import contextlib
    import io
    import os
    d = tmp_path_factory.mktemp("film2")
    flag = d / "crashed"
    os.environ["VSCOLORMNET_FILM_CRASH"] = f"1:{flag}"
    err = io.StringIO()
    try:
        t = time.monotonic()
        with contextlib.redirect_stderr(err):
            result = _film(media, parity_checkpoint, d / "out.mkv", 2, keep_work=True)
    finally:
        del os.environ["VSCOLORMNET_FILM_CRASH"]
    return {"dir": d, "out": d / "out.mkv", "result": result, "seconds": time.monotonic() - t,
            "crashed": flag.exists(), "err": err.getvalue()}


def test_one_and_two_workers_equal_one_process(media, parity_checkpoint, ray_address, expected, film2, tmp_path,
                                               capfd):
    assert same(frames(film2["out"]), expected)
    r = film2["result"]
    assert (r.frames, r.shots, r.rendered, r.skipped) == (N, 4, 4, 0) and r.retried >= 1   # the crash below
    driver, workers = r.phases["driver"], r.phases["workers"]     # the phase table's figures
    assert {"ray_startup", "shot_plan", "resume_check", "render_wall", "join", "total"} <= set(driver)
    assert r.phases["frames"] == N and r.phases["worker_count"] == 2
    assert all(workers[k]["sum"] > 0 for k in ("worker_start", "reference_encoding", "render", "segment_write"))
    assert driver["render_wall"] < driver["total"] and workers["render"]["max"] <= workers["render"]["sum"]
    # one worker, INPUT given as a .vpy script (run in the driver and in the worker)
    script = tmp_path / "clip.vpy"
    script.write_text("import vapoursynth as vs\n"
                      f"vs.core.bs.VideoSource({str(media['clip'])!r}, cachemode=0).set_output()\n")
    capfd.readouterr()
    out = tmp_path / "one.mkv"
    from vscolormnet import Torch
    r1 = _film(dict(media, clip=script), parity_checkpoint, out, 1, backend=Torch(device="cpu"))   # a spec object
    captured = capfd.readouterr()
    assert captured.out == ""                                  # nothing on stdout, progress on stderr
    assert f"{N}/{N} frames" in captured.err and "shots 4/4" in captured.err
    assert same(frames(out), expected) and r1.rendered == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.vpy", "one.mkv"]   # work folder, temporaries gone


def test_resume_after_the_driver_is_interrupted(media, parity_checkpoint, ray_address, expected, tmp_path):
    out, work = tmp_path / "out.mkv", tmp_path / "work"
    cmd = [sys.executable, "-m", "vscolormnet.film", str(media["clip"]), "--ref", str(media["refs"]), "-o", str(out),
           "--workers", "1", "--ray-address", ray_address, "--work-dir", str(work), "--size", "native",
           "--weights", str(parity_checkpoint)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(work.glob("seg_*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)              # Ctrl-C after the first segment is complete, the worker on the next
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()
    assert stdout == b""
    deadline = time.monotonic() + 30                           # its workers are gone: their CPUs are free
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert not [p for p in work.iterdir() if p.name.startswith(".")]     # no half-written segment left
    done = {p.name: p.stat().st_mtime_ns for p in [*work.glob("seg_*.json"), *work.glob("input_*.bsindex")]}
    assert 1 <= len([n for n in done if n.startswith("seg_")]) < 4
    assert len([n for n in done if n.startswith("input_")]) == 1, "INPUT's index is kept in the work folder"
    result = _film(media, parity_checkpoint, out, 1, work_dir=work, keep_work=True)   # one worker start, not two
    assert (result.skipped, result.rendered) == (len(done) - 1, 4 - len(done) + 1)
    assert all((work / name).stat().st_mtime_ns == t for name, t in done.items())   # not rewritten, not re-indexed
    assert same(frames(out), expected)


def test_a_worker_that_dies_mid_shot_is_replaced(film2, expected):
    """film2's run: the worker on shot 1 exits mid-shot; the shot is redone on a new worker, frames unchanged."""
    assert film2["crashed"] and film2["result"].retried >= 1
    assert "a worker died during shot 1 (frames 2–3); redoing it" in film2["err"]
    assert same(frames(film2["out"]), expected)


def test_a_corrupted_segment_is_redone(media, parity_checkpoint, ray_address, expected, film2, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(film2["dir"] / ".out.mkv.work", work)
    seg = work / "seg_00002.mkv"
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF                                 # same size, one byte changed
    seg.write_bytes(bytes(data))
    result = _film(media, parity_checkpoint, tmp_path / "out.mkv", 1, work_dir=work)
    assert (result.skipped, result.rendered) == (3, 1)
    assert same(frames(tmp_path / "out.mkv"), expected)
    assert not work.exists()                                       # emptied and removed after success


def test_arguments_are_checked_before_any_work(media, parity_checkpoint, tmp_path, monkeypatch):
    import argparse

    from vscolormnet.film import RAY_PIN, add_film_arguments, film_kwargs, run_film
    p = argparse.ArgumentParser()
    p.add_argument("input")
    p.add_argument("--ref", nargs="+")
    p.add_argument("-o", "--output")
    p.add_argument("--codec-args")
    add_film_arguments(p)
    assert film_kwargs(p.parse_args(["in.mkv", "--ref", "r.png", "-o", "o.mkv"])) is None
    with pytest.raises(ValueError, match="^--work-dir needs --workers N$"):
        film_kwargs(p.parse_args(["in.mkv", "--ref", "r", "-o", "o.mkv", "--work-dir", "w"]))
    with pytest.raises(ValueError, match="--codec-args cannot be used with --workers"):
        film_kwargs(p.parse_args([str(media["clip"]), "--ref", str(media["refs"]), "-o", "o.mkv", "--workers", "2",
                                  "--codec-args", "-c:v libx264"]))
    kw = film_kwargs(p.parse_args([str(media["clip"]), "--ref", str(media["refs"]), "-o", "o.mkv", "--workers", "3",
                                   "--gpus-per-worker", "0.5", "--segment-codec", "libx264"]))
    assert (kw["workers"], kw["gpus_per_worker"], kw["threads_per_worker"], kw["codec"]) == (3, 0.5, 1, "libx264")
    with pytest.raises(ValueError, match=r"-o must be a \.mkv/\.nut/\.avi file with --segment-codec ffv1"):
        run_film(media["clip"], media["refs"], tmp_path / "o.mp4", workers=1, weights=str(parity_checkpoint))
    with pytest.raises(ValueError, match="--device cuda with --workers needs --gpus-per-worker"):
        run_film(media["clip"], media["refs"], tmp_path / "o.mkv", workers=1, device="cuda")
    from vscolormnet import Torch
    with pytest.raises(ValueError, match="--device cuda with --workers needs --gpus-per-worker"):
        run_film(media["clip"], media["refs"], tmp_path / "o.mkv", workers=1, backend=Torch(device="cuda"))
    with pytest.raises(ValueError, match=r"give device inside the backend object \(Torch\(...\)\)"):
        run_film(media["clip"], media["refs"], tmp_path / "o.mkv", workers=1, backend=Torch(), device="cpu")
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ValueError, match=f"^--workers needs Ray: pip install '{RAY_PIN}'$"):
        run_film(media["clip"], media["refs"], tmp_path / "o.mkv", workers=1)
    assert not list(tmp_path.iterdir())



def test_the_driver_sends_the_token_ray_keeps(tmp_path, monkeypatch):
    """Token authentication: the token Ray keeps (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token) turns
    on RAY_AUTH_MODE=token for the driver; a refused connection is one line that says what to run."""
    import os

    from vscolormnet.film.schedule import _join, ray_token_source
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ray_token_source() is None and "RAY_AUTH_MODE" not in os.environ, "no token: no mode"
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("a" * 64)
    assert ray_token_source() == str(tmp_path / ".ray" / "auth_token") and os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="RAY_AUTH_TOKEN_PATH=.*missing is not a readable token file; run `ray get"):
        ray_token_source()
    monkeypatch.setenv("RAY_AUTH_TOKEN", "b" * 64)
    assert ray_token_source() == "RAY_AUTH_TOKEN"

    class Refusing:
        @staticmethod
        def init(**kwargs):
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379")
    with pytest.raises(ValueError) as e:
        _join(Refusing, "10.0.0.1:6379")
    assert str(e.value) == ("--ray-address 10.0.0.1:6379: Failed to connect to Ray cluster at 10.0.0.1:6379; the "
                            "token from RAY_AUTH_TOKEN may not be the cluster's: run `ray get-auth-token` on the head "
                            "node and give its token to this machine as RAY_AUTH_TOKEN or in ~/.ray/auth_token")
