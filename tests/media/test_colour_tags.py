"""Colour tags: what the output frames say (range, matrix, primaries, transfer) is written into the stream,
so a player shows a full-range scan at full range and a BT.709 film with BT.709 colours."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import vapoursynth as vs

from vscolormnet.__main__ import main
from vscolormnet.media.colour_tags import ffmpeg_tags, y4m_range
from vscolormnet.vs.synthetic import colour_reference

W, H = 64, 48


def test_tags_from_frame_props():
    full, limited = int(vs.RANGE_FULL), int(vs.RANGE_LIMITED)
    assert ffmpeg_tags({"_Range": limited, "_Matrix": 1, "_Primaries": 1, "_Transfer": 1}, vs.YUV) == [
        "-color_range", "tv", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]
    assert ffmpeg_tags({"_Range": full, "_Matrix": 6}, vs.YUV) == ["-color_range", "pc", "-colorspace", "smpte170m"]
    assert ffmpeg_tags({"_Matrix": 2, "_Primaries": 2, "_Transfer": 2}, vs.YUV) == [], "unspecified: no tag"
    assert ffmpeg_tags({}, vs.RGB) == ["-color_range", "pc"]
    assert y4m_range({"_Range": full}) == " XCOLORRANGE=FULL" and y4m_range({}) == ""


def _video(path, *ffmpeg_args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate=24,hue=s=0",
                    "-frames:v", "4", *ffmpeg_args, "-c:v", "ffv1", str(path)], check=True)
    return path


def _stream(path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=pix_fmt,color_range,color_space,color_primaries,color_transfer", "-of", "json",
                          str(path)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["streams"][0]


def _luma(path) -> np.ndarray:
    from vscolormnet.media.vsformat import open_video
    return np.stack([np.asarray(f[0]) for f in open_video(path).frames(close=True)])


@pytest.mark.slow                       # the real network and ffmpeg, four times
@pytest.mark.parametrize("kind, args, want", [
    ("full-range gray scan", ["-pix_fmt", "gray", "-color_range", "pc"],
     {"color_range": "pc"}),
    ("limited BT.709 4:2:0", ["-pix_fmt", "yuv420p", "-color_range", "tv", "-colorspace", "bt709",
                              "-color_primaries", "bt709", "-color_trc", "bt709"],
     {"color_range": "tv", "color_space": "bt709", "color_primaries": "bt709", "color_transfer": "bt709"}),
])
@pytest.mark.parametrize("codec", [None, "-c:v ffv1"])
def test_colorize_keeps_the_colour_tags(tmp_path, parity_checkpoint, kind, args, want, codec):
    """Through the real filter and the real ffmpeg, default codec and --codec-args; Y stays bit-exact."""
    src = _video(tmp_path / "src.mkv", *args)
    ref = colour_reference(tmp_path / "ref.png", W, H)
    out = tmp_path / "out.mkv"
    argv = ["colorize", str(src), "--ref", ref, "-o", str(out), "--size", "native", "--weights",
            str(parity_checkpoint), "--no-audio"] + (["--codec-args", codec] if codec else [])
    assert main(argv) == 0
    got = _stream(out)
    assert {k: got.get(k) for k in want} == want, f"{kind}: {got}"
    if codec:
        np.testing.assert_array_equal(_luma(out), _luma(src))
