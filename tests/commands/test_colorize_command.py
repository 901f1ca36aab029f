"""``python -m vscolormnet colorize``: bad input is one line before any rendering; a failure or an
interrupt ends ffmpeg at once and leaves neither the output nor a temporary file; inputs are never
overwritten. ``Colorize`` is replaced by a trivial filter here (the network is not what is tested),
except in the one end-to-end run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs
from PIL import Image
from project_paths import ROOT

from vscolormnet.__main__ import main
from vscolormnet.vs.synthetic import colour_reference

core = vs.core
W, H = 64, 48
BIN = Path(sys.executable).parent


def make_video(path: Path, frames: int) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={W}x{H}:rate=24,hue=s=0", "-frames:v", str(frames),
                    "-pix_fmt", "yuv420p", "-c:v", "ffv1", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    return {"src": make_video(d / "src.mkv", 6), "long": make_video(d / "long.mkv", 400),
            "ref": Path(colour_reference(d / "ref.png", W, H))}


@pytest.fixture
def work(tmp_path, media):
    """A folder holding copies of the inputs (and a dummy checkpoint: the fake Colorize loads nothing)."""
    for name in ("src", "ref"):
        (tmp_path / media[name].name).write_bytes(media[name].read_bytes())
    (tmp_path / "w.pth").write_bytes(b"not used by the fake filter")
    return tmp_path


class FakeColorize:
    """Stands in for ``Colorize``: passes frames through, counting them; raises at ``fail_at``."""

    def __init__(self, fail_at=None, error=ValueError):
        self.calls, self.rendered, self.fail_at, self.error = 0, 0, fail_at, error

    def __call__(self, clip, ref, **kwargs):
        self.calls += 1

        def frame(n, f):
            if n == self.fail_at:
                raise self.error(f"boom at frame {n}")
            self.rendered += 1
            return f
        return core.std.ModifyFrame(clip, clip, frame)


@pytest.fixture
def fake(monkeypatch):
    f = FakeColorize()
    monkeypatch.setattr("vscolormnet.vs.filter.Colorize", f)
    return f


def colorize(work: Path, *extra, src="src.mkv", out="out.mkv"):
    return main(["colorize", str(work / src) if src else src, "--ref", str(work / "ref.png"), "-o",
                 str(out if os.path.isabs(str(out)) else work / out), "--weights", str(work / "w.pth"),
                 "--size", "native", "--codec-args", "-c:v ffv1", *extra])


def ffmpeg_children() -> list[int]:
    """Live ffmpeg processes whose parent is this process (read from /proc, no psutil)."""
    pids = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return [p for p in pids if _comm(p) == "ffmpeg"]


def _comm(pid: int) -> str:
    """The process's name, or "" once it has gone (a short-lived child may exit between listing and reading)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def leftovers(folder: Path, keep=("src.mkv", "ref.png", "w.pth")) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def one_line_error(err: str, prefix: str = "colorize: error: ") -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(prefix)]
    assert len(lines) == 1, err
    return lines[0][len(prefix):]


# ---- never write to an input --------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink_out", "symlink_in", "hardlink", "ref",
                                      "second_ref", "sbs_is_input", "sbs_is_output"])
def test_output_is_never_an_input(work, fake, capsys, spelling):
    (work / "x").mkdir()
    src_bytes = (work / "src.mkv").read_bytes()
    src, out, args = "src.mkv", "src.mkv", []
    if spelling == "dotdot":
        out = str(work / "x" / ".." / "src.mkv")
    elif spelling == "symlink_out":
        os.symlink(work / "src.mkv", work / "link.mkv")
        out = "link.mkv"
    elif spelling == "symlink_in":       # the input given through a link, -o the real file
        os.symlink(work / "src.mkv", work / "x" / "film.mkv")
        src = "x/film.mkv"
    elif spelling == "hardlink":
        os.link(work / "src.mkv", work / "x" / "hard.mkv")
        out = str(work / "x" / "hard.mkv")
    elif spelling == "ref":
        out = "ref.png"
    elif spelling == "second_ref":
        (work / "ref2.png").write_bytes((work / "ref.png").read_bytes())
        out, args = "ref2.png", ["--ref", str(work / "ref.png"), str(work / "ref2.png"), "--codec-args", "-c:v png"]
    elif spelling == "sbs_is_input":
        out, args = "new.mkv", ["--side-by-side", str(work / "ref.png")]
    elif spelling == "sbs_is_output":
        out, args = "new.png", ["--side-by-side", str(work / "new.png"), "--codec-args", "-c:v png -f image2"]
    assert colorize(work, *args, src=src, out=out) == 2
    assert "is the same file as" in one_line_error(capsys.readouterr().err)
    assert (work / "src.mkv").read_bytes() == src_bytes
    assert fake.calls == 0 and not (work / "new.mkv").exists() and not (work / "new.png").exists()


# ---- checked before any rendering ---------------------------------------------------------
BAD = [
    (["--codec-args", '-c:v "ffv1'], "--codec-args cannot be parsed"),
    (["--codec-args", "-i other.mkv"], "--codec-args must not contain -i"),
    (["--codec-args", "-c:v ffv1 other.mkv"], "'other.mkv' looks like an output file"),
    (["--codec-args", "-c:v no_such_encoder"], "Unknown encoder 'no_such_encoder'"),
    (["--codec-args", "-c:v ffv1 -g abc"], "Error setting option g to value abc"),
    (["--codec-args", "-c:v libx264 -pass 1"], "--codec-args must not contain -pass: two-pass encoding"),
    (["--codec-args", "-c:v libx264 -passlogfile /tmp/x"], "--codec-args must not contain -passlogfile"),
    (["--codec-args", "-c:v ffv1 -vstats_file stats.txt"], "--codec-args must not contain -vstats_file"),
    (["--codec-args", "-c:v ffv1 -report"], "--codec-args must not contain -report"),
    (["--codec-args", "-c:v ffv1 -progress prog.txt"], "--codec-args must not contain -progress"),
    (["--codec-args", "-c:v libx264 -x264-params crf=18:stats=/tmp/s.log"],
     "--codec-args -x264-params must not set stats=: it writes a file of its own"),
    (["--codec-args", "-c:v libx265 -x265-params csv=/tmp/f.csv"], "-x265-params must not set csv="),
    (["--side-by-side", "preview.jpg"], "--side-by-side must name a .png file"),
    (["--side-by-side", "missing/preview.png"], "missing/preview.png: folder"),
    (["--mem-every", "0"], "--mem-every must be a positive integer, got 0"),
    (["--min-mid-term-frames", "10"], "--min-mid-term-frames must be smaller than --max-mid-term-frames (10)"),
    (["--top-k", "-1"], "--top-k must be a positive integer"),
    (["--backend", "trt"], "--backend trt needs TensorRT"),
    (["--device", "cuda"], "--device cuda: CUDA is not available"),
    (["--fp16"], "--fp16 needs --device cuda"),
    (["--device-id", "-1"], "--device-id must be an integer"),
    (["--ref-frames", "0", "1"], "--ref-frames must give one frame number per --ref image (1), got 2"),
    (["--ref-frames", "6"], "--ref-frames must be within 0…5"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_flags_fail_before_rendering(work, fake, capsys, extra, message):
    if extra[0] in ("--device", "--fp16", "--device-id") or extra == ["--backend", "trt"]:
        import importlib.util

        import torch
        if extra[0] == "--device" and torch.cuda.is_available():
            pytest.skip("CUDA is available here")
        if extra[0] == "--backend" and importlib.util.find_spec("tensorrt") is not None:
            pytest.skip("TensorRT is installed here")
    rc = colorize(work, *[str(work / e) if e.endswith((".jpg", ".png")) else e for e in extra])
    assert rc == 2
    assert message in one_line_error(capsys.readouterr().err)
    assert fake.rendered == 0
    assert leftovers(work) == [], "nothing may be written by a rejected run"


def test_weights_folder_is_named_as_a_folder(work, fake, capsys):
    rc = main(["colorize", str(work / "src.mkv"), "--ref", str(work / "ref.png"), "-o", str(work / "out.mkv"),
               "--weights", str(work)])
    assert rc == 2
    assert one_line_error(capsys.readouterr().err) == (f"--weights: {work} is a folder, not a checkpoint file "
                                                       f"(e.g. {work / 'DINOv2FeatureV6_LocalAtten_s2_154000.pth'})")
    assert fake.calls == 0


def test_reference_folder_of_another_video_is_refused_naming_both(work, fake, capsys):
    import json
    refs = work / "refs"
    refs.mkdir()
    (refs / "refs.json").write_text(json.dumps({"cuts": [3], "num_frames": 400, "width": W, "height": H}))
    (refs / "ref_000001.png").write_bytes((work / "ref.png").read_bytes())
    args = ["colorize", str(work / "src.mkv"), "--ref", str(refs), "-o", str(work / "out.mkv"),
            "--weights", str(work / "w.pth"), "--codec-args", "-c:v ffv1"]
    assert main(args) == 2
    assert one_line_error(capsys.readouterr().err) == (
        f"--ref {refs} was extracted from a clip of 400 frames, INPUT_VIDEO has 6; was it made from another "
        "video or another edit? (--allow-ref-mismatch uses it anyway)")
    assert fake.calls == 0 and not (work / "out.mkv").exists()
    assert main([*args, "--allow-ref-mismatch"]) == 0 and fake.calls == 1


def test_full_disk_is_named_as_such(work, fake, monkeypatch, capsys, media):
    """A real ffmpeg stopped by the file size limit (SIGXFSZ, as on a full quota): one line naming it,
    no partial file left; the ENOSPC wording is recognised from ffmpeg's own message."""
    import resource

    import vscolormnet.media.encode as encode
    real = subprocess.Popen

    class LimitedPopen(real):
        def __init__(self, cmd, *a, **k):
            if "yuv4mpegpipe" in cmd:
                k["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))
            super().__init__(cmd, *a, **k)
    monkeypatch.setattr(encode.subprocess, "Popen", LimitedPopen)
    (work / "long.mkv").write_bytes(media["long"].read_bytes())
    assert colorize(work, src="long.mkv") == 1
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith(f"ffmpeg was stopped by the file size limit (SIGXFSZ, `ulimit -f`) writing {work / 'out.mkv'}")
    assert leftovers(work, keep=("src.mkv", "ref.png", "w.pth", "long.mkv")) == []
    full = encode.disk_full(1, "[matroska @ 0x1] Error writing trailer: No space left on device", work / "o.mkv")
    assert full.startswith(f"the disk holding {work} is full (") and "choose another -o" in full
    assert encode.disk_full(1, "Unknown encoder 'x'", work / "o.mkv") is None


@pytest.mark.parametrize("case,message", [
    ("missing_input", "INPUT_VIDEO {work}/nope.mkv does not exist"),
    ("vpy_input", "is a VapourSynth script; run it with vspipe"),
    ("not_a_video", "cannot be read as a video"),
    ("missing_ref", "--ref image {work}/nope.png does not exist"),
    ("gray_ref", "--ref image {work}/gray.png is grayscale; a reference must be in colour"),
    ("ref_folder_without_index", "--ref {work}/refs: reference folder"),
    ("missing_weights", "--weights: weights file {work}/nope.pth not found"),
    ("missing_out_dir", "-o {work}/missing/out.mkv: folder {work}/missing does not exist"),
    ("out_is_dir", "-o {work}/refs is a folder"),
    ("no_suffix", "-o {work}/out has no file extension"),
    ("unknown_suffix", "Unable to find a suitable output format"),
])
def test_bad_paths_fail_before_rendering(work, fake, capsys, case, message):
    (work / "refs").mkdir()
    Image.fromarray(np.full((H, W), 90, np.uint8)).save(work / "gray.png")
    (work / "script.vpy").write_text("")
    (work / "text.mkv").write_text("not a video")
    args = dict(src="src.mkv", out="out.mkv")
    ref, weights = work / "ref.png", work / "w.pth"
    if case == "missing_input":
        args["src"] = "nope.mkv"
    elif case == "vpy_input":
        args["src"] = "script.vpy"
    elif case == "not_a_video":
        args["src"] = "text.mkv"
    elif case == "missing_ref":
        ref = work / "nope.png"
    elif case == "gray_ref":
        ref = work / "gray.png"
    elif case == "ref_folder_without_index":
        ref = work / "refs"
    elif case == "missing_weights":
        weights = work / "nope.pth"
    elif case == "missing_out_dir":
        args["out"] = "missing/out.mkv"
    elif case == "out_is_dir":
        args["out"] = "refs"
    elif case == "no_suffix":
        args["out"] = "out"
    elif case == "unknown_suffix":
        args["out"] = "out.notaformat"
    rc = main(["colorize", str(work / args["src"]), "--ref", str(ref), "-o", str(work / args["out"]),
               "--weights", str(weights), "--codec-args", "-c:v ffv1"])
    assert rc == 2
    assert message.format(work=work) in one_line_error(capsys.readouterr().err)
    assert fake.rendered == 0
    assert leftovers(work, keep=("src.mkv", "ref.png", "w.pth", "refs", "gray.png", "script.vpy",
                                 "text.mkv")) == []


# ---- failures after ffmpeg started ----------------------------------------------------------
@pytest.mark.parametrize("error,user", [(ValueError, True), (TypeError, False)])
def test_frame_failure_ends_ffmpeg_and_leaves_nothing(work, monkeypatch, capsys, error, user):
    """The old code waited for ffmpeg with its stdin open: a frame error hung forever."""
    fake = FakeColorize(fail_at=3, error=error)
    monkeypatch.setattr("vscolormnet.vs.filter.Colorize", fake)
    t = time.monotonic()
    rc = colorize(work)
    assert time.monotonic() - t < 10
    err = capsys.readouterr().err
    assert rc == 1
    if user:
        assert "rendering failed at frame 3: ValueError: boom at frame 3" in one_line_error(err)
    else:      # a bug: its traceback is kept
        assert "Traceback" in err and "TypeError: boom at frame 3" in err
    assert ffmpeg_children() == []
    assert leftovers(work) == [], "neither the output nor a temporary file may remain"


def test_ffmpeg_failing_mid_stream_is_one_line(work, fake, monkeypatch, capsys):
    import vscolormnet.media.encode as encode
    real, calls = encode.ffmpeg_command, []

    def dies_after_a_while(output, codec_args, audio_from=None):
        calls.append(output)
        if len(calls) == 1:               # the one-frame check passes
            return real(output, codec_args, audio_from)
        return ["sh", "-c", f"head -c 20000 >/dev/null; : > '{output}'; echo 'No space left on device' >&2; exit 1"]
    monkeypatch.setattr(encode, "ffmpeg_command", dies_after_a_while)
    rc = colorize(work, "--no-audio")
    msg = one_line_error(capsys.readouterr().err)
    assert rc == 1 and msg.startswith(f"the disk holding {work} is full (") and "could not write" in msg
    assert leftovers(work) == []


DRIVER = """
import sys, time, types
import vapoursynth as vs

def slow(clip, ref, **kwargs):
    def frame(n, f):
        time.sleep(0.2)
        return f
    return vs.core.std.ModifyFrame(clip, clip, frame)
sys.modules["vscolormnet.vs.filter"] = types.SimpleNamespace(Colorize=slow)   # no network, no model import
from vscolormnet.__main__ import main
sys.argv = ["vscolormnet"] + sys.argv[1:]
sys.exit(main())      # as a program: exits at once after an interrupt
"""


def _children_of(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


@pytest.mark.slow      # a fresh interpreter imports torch: ~10 s on a small machine
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_ends_ffmpeg_promptly_and_leaves_nothing(work, media, sig, code):
    (work / "long.mkv").write_bytes(media["long"].read_bytes())
    driver = work / "driver.py"
    driver.write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    proc = subprocess.Popen([sys.executable, str(driver), "colorize", str(work / "long.mkv"), "--ref",
                             str(work / "ref.png"), "-o", str(work / "out.mkv"), "--weights", str(work / "w.pth"),
                             "--codec-args", "-c:v ffv1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)
    try:
        deadline, ffmpeg = time.monotonic() + 60, None
        while ffmpeg is None and time.monotonic() < deadline and proc.poll() is None:
            kids = [p for p in _children_of(proc.pid) if _comm(p) == "ffmpeg"]
            ffmpeg = kids[0] if kids else None
            time.sleep(0.05)
        assert ffmpeg is not None, proc.communicate()[1]
        time.sleep(1.0)                         # frames are flowing into ffmpeg
        assert list(work.glob(".out.*.mkv")), "ffmpeg writes to a temporary name"
        t = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
        assert time.monotonic() - t < 5, "the command must end promptly"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    assert out == ""
    assert "Traceback" not in err and ("interrupted" if code == 130 else "terminated") in err
    assert not Path(f"/proc/{ffmpeg}").exists() or "Z" in Path(f"/proc/{ffmpeg}/stat").read_text().split()[2]
    assert leftovers(work, keep=("src.mkv", "long.mkv", "ref.png", "w.pth", "driver.py")) == []


# ---- the real thing ---------------------------------------------------------------------------
@pytest.mark.slow
def test_end_to_end_with_the_network(work, parity_checkpoint, capsys):
    rc = main(["colorize", str(work / "src.mkv"), "--ref", str(work / "ref.png"), "-o", str(work / "out.mkv"),
               "--weights", str(parity_checkpoint), "--size", "native", "--codec-args", "-c:v ffv1",
               "--side-by-side", str(work / "side.png")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out == ""
    assert leftovers(work) == ["out.mkv", "side.png"]
    dec = core.bs.VideoSource(str(work / "out.mkv"), cachemode=0)
    assert (dec.num_frames, dec.width, dec.height) == (6, W, H)
    assert Image.open(work / "side.png").size == (3 * W, H)
    umask = os.umask(0)
    os.umask(umask)
    assert (work / "out.mkv").stat().st_mode & 0o777 == 0o666 & ~umask
