"""A side-by-side PNG (gray input / reference / result) so a user sees what happened."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import vapoursynth as vs
from PIL import Image

from .vsformat import rgb_array, to_rgb24


def _rgb24(clip: vs.VideoNode, n: int) -> np.ndarray:
    return rgb_array(to_rgb24(clip).get_frame(n))


def side_by_side(source: vs.VideoNode, result: vs.VideoNode, ref, path: str, n: int | None = None) -> None:
    """Write ``path``: the source frame, the first reference (fitted to the frame height), the result."""
    n = source.num_frames // 2 if n is None else n
    gray, colour = _rgb24(source, n), _rgb24(result, n)
    h = gray.shape[0]
    first = ref[0] if isinstance(ref, (list, tuple)) else ref
    panels = [gray]
    if isinstance(first, (str, Path)) and Path(first).is_file():
        im = Image.open(first).convert("RGB")
        panels.append(np.asarray(im.resize((max(1, round(im.width * h / im.height)), h), Image.BILINEAR)))
    panels.append(colour)
    Image.fromarray(np.concatenate(panels, 1)).save(path)
