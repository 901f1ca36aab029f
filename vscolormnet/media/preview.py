"""A side-by-side PNG (gray input / reference / result) so a user sees what happened.

The result panel comes from a frame kept while encoding (``frame_clip``), not from a second
request: asking ``Colorize`` for the middle frame again after the last one would be a
backward seek that recomputes up to a snapshot interval of frames. Written atomically.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import vapoursynth as vs
from PIL import Image

from ..util.files import atomic_write
from .images import read_rgb
from .vsformat import rgb_array, to_rgb24


def frame_clip(frame: vs.VideoFrame, template: vs.VideoNode) -> vs.VideoNode:
    """A one-frame clip holding ``frame`` (format and size of ``template``, props of ``frame``)."""
    blank = vs.core.std.BlankClip(template, length=1)
    return vs.core.std.ModifyFrame(blank, blank, lambda n, f: frame)


def _rgb24(clip: vs.VideoNode, n: int) -> np.ndarray:
    return rgb_array(to_rgb24(clip).get_frame(n))


def side_by_side(source: vs.VideoNode, result: vs.VideoNode, ref, path: str | os.PathLike,
                 n: int | None = None, result_n: int | None = None) -> Path:
    """Write ``path`` (PNG): source frame ``n``, the first reference image (fitted to the frame height),
    and result frame ``result_n`` (default ``n``)."""
    n = source.num_frames // 2 if n is None else n
    gray = _rgb24(source, n)
    colour = _rgb24(result, n if result_n is None else result_n)
    h = gray.shape[0]
    first = ref[0] if isinstance(ref, (list, tuple)) else ref
    panels = [gray]
    if isinstance(first, (str, os.PathLike)) and Path(first).is_file():
        im = Image.fromarray(read_rgb(first, "--ref image"))
        panels.append(np.asarray(im.resize((max(1, round(im.width * h / im.height)), h), Image.BILINEAR)))
    panels.append(colour)
    buf = io.BytesIO()
    Image.fromarray(np.concatenate(panels, 1)).save(buf, format="PNG")
    return atomic_write(path, buf.getvalue())
