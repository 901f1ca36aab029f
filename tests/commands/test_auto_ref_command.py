"""``colorize --auto-ref``: the references go to ``OUT.refs/`` (kept, reused by a re-run), then exactly the ``--ref
<that folder>`` run: frame-exact on a lossless codec, in one process and with ``--workers``. Bad flags are one
line before any work."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from auto_ref_media import THREE_SHOTS, S, decoded, make_clip, tiny
from ddcolor_fixtures import ddcolor_checkpoints, ddcolor_colorizers  # noqa: F401

from vscolormnet.__main__ import main

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to make the test clip")
PREFIX = "colorize: error: "
AUTO = ("--auto-ref-weights", "--auto-ref", "--auto-ref-size")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("auto_cmd") / "three.mkv", THREE_SHOTS)


def _colorize(clip, out, ckpt, *extra) -> int:
    return main(["colorize", str(clip), "-o", str(out), "--weights", str(ckpt), "--size", "native",
                 "--codec-args", "-c:v ffv1", *map(str, extra)])


def test_bad_flags_are_one_line_before_any_work(clip, tmp_path, parity_checkpoint, capsys):
    out = tmp_path / "out.mkv"
    cases = [
        ([], r"--ref or --auto-ref is needed"),
        (["--ref", tmp_path, *tiny(*AUTO)], r"--ref and --auto-ref cannot be used together"),
        ([*tiny(*AUTO), "--ref-frames", "0"], r"--ref-frames cannot be used with --auto-ref"),
        (["--auto-ref", "ddcolor-huge"], r"--auto-ref must be one of ddcolor-large, ddcolor-tiny"),
        ([*tiny(*AUTO)[:4], "--auto-ref-size", "48"], r"--auto-ref-size must be a positive multiple of 32"),
        (["--auto-ref", "ddcolor-tiny", "--auto-ref-weights", tmp_path / "nope.pth"],
         r"--auto-ref-weights .*nope\.pth not found; run `python -m vscolormnet download ddcolor-tiny`"),
        ([*tiny(*AUTO), "--codec-args", '-c:v "ffv1'], r"--codec-args cannot be parsed"),
        ([*tiny(*AUTO), "--ray-address", "x"], r"--ray-address needs --workers N"),
    ]
    for extra, pattern in cases:
        capsys.readouterr()
        assert _colorize(clip, out, parity_checkpoint, *extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(PREFIX) and re.search(pattern, err[0]), (pattern, err)
    (tmp_path / "out.mkv.refs").write_text("a file where the folder goes")
    capsys.readouterr()
    assert _colorize(clip, out, parity_checkpoint, *tiny(*AUTO)) == 2
    assert re.search(r"--auto-ref folder .*out\.mkv\.refs exists and is not a folder", capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mkv.refs"], "nothing written"


@pytest.mark.slow
def test_auto_ref_equals_ref_of_its_folder(clip, tmp_path, parity_checkpoint, ddcolor_colorizers, capsys):  # noqa: F811
    from vscolormnet.runtime import shared
    ddcolor_colorizers("ddcolor-tiny", S)
    network = shared.acquire_network(parity_checkpoint)
    try:
        capsys.readouterr()
        assert _colorize(clip, tmp_path / "auto.mkv", parity_checkpoint, *tiny(*AUTO)) == 0
        err = capsys.readouterr().err
        folder = tmp_path / "auto.mkv.refs"
        assert f"references in {folder}" in err and "3 coloured" in err
        assert sorted(p.name for p in folder.iterdir()) == ["cuts.txt", "ref_000002.png", "ref_000007.png",
                                                            "ref_000013.png", "refs.csv", "refs.json"]
        assert _colorize(clip, tmp_path / "ref.mkv", parity_checkpoint, "--ref", folder) == 0
        assert decoded(tmp_path / "auto.mkv") == decoded(tmp_path / "ref.mkv")
        # a re-run reuses the kept folder (the never-overwrite rule): no forward, the same video
        capsys.readouterr()
        assert _colorize(clip, tmp_path / "auto.mkv", parity_checkpoint, *tiny(*AUTO)) == 0
        assert "0 coloured" in capsys.readouterr().err
        assert decoded(tmp_path / "auto.mkv") == decoded(tmp_path / "ref.mkv")
    finally:
        network.release()


@pytest.mark.slow
def test_auto_ref_with_workers(clip, tmp_path, parity_checkpoint, ddcolor_colorizers, capsys):  # noqa: F811
    pytest.importorskip("ray")
    ddcolor_colorizers("ddcolor-tiny", S)
    assert main(["colorize", str(clip), "-o", str(tmp_path / "film.mkv"), "--weights", str(parity_checkpoint),
                 "--size", "native", *tiny(*AUTO), "--workers", "1"]) == 0      # a local Ray runtime of its own
    folder = tmp_path / "film.mkv.refs"
    assert (folder / "refs.json").is_file() and len(list(folder.glob("ref_*.png"))) == 3
    # the one-process --ref run at the worker's one torch thread: here when this process has run torch on one
    # thread from its start (pytest-xdist on 2 cores: tests/conftest.py), else a fresh process (VapourSynth's
    # threads keep the torch thread count they first ran with: see film_media.single_process)
    import torch
    if torch.get_num_threads() == 1:
        assert _colorize(clip, tmp_path / "one.mkv", parity_checkpoint, "--ref", folder) == 0
    else:
        cmd = [sys.executable, "-m", "vscolormnet", "colorize", str(clip), "--ref", str(folder), "-o",
               str(tmp_path / "one.mkv"), "--size", "native", "--weights", str(parity_checkpoint), "--codec-args",
               "-c:v ffv1"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                              timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert decoded(tmp_path / "film.mkv") == decoded(tmp_path / "one.mkv")
