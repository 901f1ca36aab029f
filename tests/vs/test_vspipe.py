"""Real vspipe → real ffmpeg: 8/10-bit YUV420, GRAY8 and RGB24 sources; the examples; request counts."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs
from project_paths import ROOT

from vscolormnet.vs.synthetic import colour_reference

core = vs.core
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.vspipe, pytest.mark.slow]
VSPIPE = str(BIN / "vspipe") if (BIN / "vspipe").exists() else shutil.which("vspipe")
W, H, N = 96, 64, 6

SCRIPT = """
import vapoursynth as vs
import vscolormnet as colormnet
core = vs.core
if "threads" in globals():
    core.num_threads = int(threads)
clip = core.bs.VideoSource(src, cachemode=0)
out = colormnet.Colorize(clip, ref, size="native", weights=weights,
                         key_batch=int(key_batch) if "key_batch" in globals() else None)
if out.format.color_family == vs.RGB:
    out = core.resize.Point(out, format=vs.YUV444P8, matrix_s="709")
out.set_output()
"""


def env():
    e = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    e["PATH"] = f"{BIN}:{e.get('PATH', '')}"
    return e


def make_source(path, pix_fmt, codec):
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={W}x{H}:rate=24:duration={N / 24}", "-vf", "hue=s=0",
                    "-pix_fmt", pix_fmt, "-c:v", codec, str(path)], check=True)
    return path


def vspipe_to_ffmpeg(script, out, args, requests=None):
    cmd = [VSPIPE, "-c", "y4m"] + sum((["-a", f"{k}={v}"] for k, v in args.items()), [])
    if requests:
        cmd += ["-r", str(requests)]
    vsp = subprocess.Popen(cmd + [str(script), "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    ff = subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "yuv4mpegpipe", "-i", "-", "-c:v", "ffv1", str(out)],
                        stdin=vsp.stdout, capture_output=True)
    vsp.stdout.close()
    err = vsp.stderr.read().decode()
    assert vsp.wait() == 0, err
    assert ff.returncode == 0, ff.stderr.decode()
    return err


def decode(path):
    return core.bs.VideoSource(str(path), cachemode=0)


# 8-bit 4:2:0 through vspipe is the key-batch test's and render.sh's; every format (GRAY in, YUV 4:4:4 out
# too) is test_filter's, in-process
@pytest.mark.parametrize("pix_fmt,codec", [("yuv420p10le", "ffv1"), ("rgb24", "png")])
def test_vspipe_ffmpeg_encode(tmp_path, parity_checkpoint, pix_fmt, codec):
    src = make_source(tmp_path / f"src_{pix_fmt}.mkv", pix_fmt, codec)
    script = tmp_path / "s.vpy"
    script.write_text(SCRIPT)
    out = tmp_path / "out.mkv"
    vspipe_to_ffmpeg(script, out, {"src": src, "ref": colour_reference(tmp_path / "r.png", W, H),
                                   "weights": parity_checkpoint})
    dec, source = decode(out), decode(src)
    assert (dec.num_frames, dec.width, dec.height) == (N, W, H)
    if pix_fmt != "rgb24":     # Y of the encode (lossless ffv1) is the source's Y, bit for bit
        for n in range(N):
            assert np.array_equal(np.asarray(dec.get_frame(n)[0]), np.asarray(source.get_frame(n)[0])), n
        assert dec.format.bits_per_sample == source.format.bits_per_sample
    chroma = np.asarray(dec.get_frame(N - 1)[1]).astype(int)
    assert np.ptp(chroma) > 0, "the output has colour"


def test_key_batch_with_one_thread_and_many_requests(tmp_path, parity_checkpoint):
    """key_batch=4: the block's input frames are asked of VapourSynth together, the next block's ahead.
    With one VapourSynth thread and ``-r 1`` this must not deadlock (a frame is never waited for on a
    future from inside the filter), and ``-r 8`` on 4 threads gives the same bytes: the request count
    does not change the output (the default key batch's threads and orders are test_filter's)."""
    src = make_source(tmp_path / "src.mkv", "yuv420p", "ffv1")
    script = tmp_path / "s.vpy"
    script.write_text(SCRIPT)
    args = {"src": src, "ref": colour_reference(tmp_path / "r.png", W, H), "weights": parity_checkpoint,
            "key_batch": 4}
    outs = []
    for r, threads in ((1, 1), (8, 4)):
        cmd = [VSPIPE, "-c", "y4m", "-r", str(r)] + sum((["-a", f"{k}={v}"] for k, v in
                                                          {**args, "threads": threads}.items()), [])
        proc = subprocess.run(cmd + [str(script), "-"], capture_output=True, env=env(), timeout=600)
        assert proc.returncode == 0, proc.stderr.decode()
        outs.append(proc.stdout)
    assert outs[0].startswith(b"YUV4MPEG2 ") and outs[0] == outs[1]


EXAMPLES = [("single_reference.vpy", {}), ("multiple_references.vpy", {"frames": "0,4"}),
            ("scene_reset.vpy", {}), ("after_denoise.vpy", {})]


def _example_args(tmp_path, parity_checkpoint, example, extra) -> dict:
    args = {"src": str(make_source(tmp_path / "src.mp4", "yuv420p", "libx264")), "weights": str(parity_checkpoint),
            "size": "native", **extra}                                      # the smallest real run
    ref = colour_reference(tmp_path / "r.png", W, H)
    if example == "multiple_references.vpy":
        args["refs"] = f"{ref},{colour_reference(tmp_path / 'r2.png', W, H, seed=3)}"
    else:
        args["ref"] = ref
    return args


@pytest.mark.parametrize("example,extra", EXAMPLES[1:])
def test_examples_run_as_vspipe_runs_them(tmp_path, parity_checkpoint, example, extra):
    """The other examples evaluated the way vspipe does (``-a`` arguments as string globals, the
    output set by the script), in this process: the vspipe mechanics are test_render_sh_tags_the_stream's
    (the first example through examples/render.sh), and this saves a Python start-up (torch, timm: ~8 s)
    per example."""
    import runpy
    vs.clear_outputs()
    try:
        runpy.run_path(str(ROOT / "examples" / example), init_globals=_example_args(tmp_path, parity_checkpoint,
                                                                                   example, extra))
        out = vs.get_output(0)
        out = out.clip if hasattr(out, "clip") else out
        scale = 2 if example == "after_denoise.vpy" else 1
        assert (out.num_frames, out.width, out.height) == (N, W * scale, H * scale)
        frames = [out.get_frame(n) for n in range(N)]                  # every frame renders
        assert np.ptp(np.asarray(frames[-1][1])) > 0, "the output has colour"
    finally:
        vs.clear_outputs()


def test_colorize_command_end_to_end(tmp_path, parity_checkpoint, capfd):
    """``colorize`` with a lossy codec, --scene-reset and a side-by-side still: progress on stderr, nothing
    on fd 1 (in this process: the programs' own start is test_cli's)."""
    from vscolormnet.__main__ import main
    src = make_source(tmp_path / "src.mp4", "yuv420p", "libx264")
    out, png = tmp_path / "out.mp4", tmp_path / "side.png"
    capfd.readouterr()
    rc = main(["colorize", str(src), "--ref", colour_reference(tmp_path / "r.png", W, H), "-o", str(out),
               "--weights", str(parity_checkpoint), "--size", "native", "--scene-reset",
               "--codec-args", "-c:v libx264 -preset ultrafast -crf 20", "--side-by-side", str(png)])
    captured = capfd.readouterr()
    assert rc == 0, captured.err
    assert captured.out == ""
    assert "fps" in captured.err and "ETA" in captured.err
    dec = decode(out)
    assert (dec.num_frames, dec.width, dec.height) == (N, W, H)
    from PIL import Image
    assert Image.open(png).size[1] == H


def test_render_sh_tags_the_stream(tmp_path, parity_checkpoint):
    """examples/render.sh on the first example: vspipe (``-a`` arguments as the script's globals) → ffmpeg,
    every frame, tagged with the output's range, matrix, primaries and transfer."""
    import json
    src = tmp_path / "src.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate=24,hue=s=0",
                    "-frames:v", "3", "-pix_fmt", "yuv420p", "-color_range", "tv", "-colorspace", "bt709",
                    "-color_primaries", "bt709", "-color_trc", "bt709", "-c:v", "ffv1", str(src)], check=True)
    out = tmp_path / "out.mkv"
    proc = subprocess.run([str(ROOT / "examples" / "render.sh"), str(ROOT / "examples" / "single_reference.vpy"),
                           str(out), f"src={src}", f"ref={colour_reference(tmp_path / 'r.png', W, H)}",
                           f"weights={parity_checkpoint}", "size=native"],
                          capture_output=True, text=True, env={**env(), "PYTHON": sys.executable}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    dec = decode(out)                                   # vspipe's -a arguments reached the script; encoded whole
    assert (dec.num_frames, dec.width, dec.height) == (3, W, H)
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=color_range,color_space,color_primaries,color_transfer", "-of", "json", str(out)],
                           capture_output=True, text=True, check=True)
    got = json.loads(probe.stdout)["streams"][0]
    assert got == {"color_range": "tv", "color_space": "bt709", "color_primaries": "bt709",
                   "color_transfer": "bt709"}, got
