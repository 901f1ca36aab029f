"""Synthetic VapourSynth clips and reference images (no media files): for the tests and ``scripts/gpu_check.py``."""
from __future__ import annotations

import numpy as np
import vapoursynth as vs
from PIL import Image


def gray_frames(n: int, w: int, h: int) -> list[np.ndarray]:
    """A moving pattern in [0, 1]: gradients plus a travelling disc."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for t in range(n):
        base = 0.5 + 0.3 * np.sin(x / 7 + t * 0.4) * np.cos(y / 9)
        disc = ((x - (10 + 3 * t) % w) ** 2 + (y - h / 2) ** 2) < (h / 5) ** 2
        frames.append(np.clip(base + 0.3 * disc, 0, 1).astype(np.float32))
    return frames


def rgbs_clip(frames: list[np.ndarray]) -> vs.VideoNode:
    """RGBS clip with R=G=B=frame."""
    h, w = frames[0].shape
    blank = vs.core.std.BlankClip(format=vs.RGBS, width=w, height=h, length=len(frames), fpsnum=24, fpsden=1)

    def fill(n, f):
        out = f.copy()
        for p in range(3):
            np.asarray(out[p])[...] = frames[n]
        return out
    return vs.core.std.ModifyFrame(blank, blank, fill)


def clip_in_format(fmt: int, n: int = 4, w: int = 96, h: int = 64) -> vs.VideoNode:
    """A gray-content clip in any format (YUV tagged BT.709 limited)."""
    rgb = rgbs_clip(gray_frames(n, w, h))
    f = vs.core.get_video_format(fmt)
    if f.color_family == vs.RGB:
        return vs.core.resize.Point(rgb, format=fmt)
    if f.color_family == vs.GRAY:
        return vs.core.resize.Point(vs.core.std.ShufflePlanes(rgb, 0, vs.GRAY), format=fmt)
    out = vs.core.resize.Bicubic(rgb, format=fmt, matrix_s="709", range_s="limited")
    return vs.core.std.SetFrameProps(out, _Matrix=1)


def colour_reference(path, w: int = 96, h: int = 64, seed: int = 0) -> str:
    """Write a colourful PNG reference and return its path."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 255 // w), (y * 255 // h), np.full_like(x, 128)], -1).astype(np.uint8)
    img = np.clip(img.astype(int) + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path)
    return str(path)


def planes(frame: vs.VideoFrame) -> list[np.ndarray]:
    """Copies of every plane."""
    return [np.array(frame[p]) for p in range(frame.format.num_planes)]
