"""VapourSynth format plumbing, in one leaf module: ``_Matrix``/``_Range``, RGBS and RGB24
conversion, frame ↔ tensor, and back to a clip's own format.

Nothing here knows about the network; ``Colorize``, the renderer, ``refs`` and the commands
all convert through these functions, so a clip is read the same way everywhere.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import vapoursynth as vs

core = vs.core

MATRIX_NAMES = {1: "709", 5: "470bg", 6: "170m", 7: "240m", 9: "2020ncl", 10: "2020cl"}
MATRIX_IDS = {v: k for k, v in MATRIX_NAMES.items()}
_MATRIX_ALIASES = {"bt709": 1, "709": 1, "bt470bg": 5, "470bg": 5, "601": 6, "bt601": 6, "170m": 6,
                   "smpte170m": 6, "240m": 7, "smpte240m": 7, "2020ncl": 9, "bt2020nc": 9, "2020cl": 10,
                   "bt2020c": 10, "unspec": 2, "unspecified": 2}
_RANGE_ALIASES = {"full": 0, "pc": 0, "jpeg": 0, "limited": 1, "tv": 1, "mpeg": 1}


class FormatError(ValueError):
    """A clip or frame property that cannot be converted; the message says what is accepted."""


def first_props(clip: vs.VideoNode) -> dict:
    """Frame properties of frame 0 (where ``_Matrix``/``_Range`` are read for the whole clip)."""
    return dict(clip.get_frame(0).props)


def _prop_int(props: dict, name: str, aliases: dict[str, int]) -> int | None:
    """An integer frame property that a script may have set as an int, a numeric string or a name."""
    value = props.get(name)
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text.lstrip("-").isdigit():
            return int(text)
        if text in aliases:
            return aliases[text]
    raise FormatError(f"frame property {name} must be an integer (or one of {', '.join(sorted(aliases))}), "
                      f"got {value!r}")


def matrix_for(clip: vs.VideoNode, props: dict) -> str:
    """The clip's ``_Matrix`` as a resize name; unspecified → BT.601 (170m) up to 1024×576, BT.709 above."""
    m = _prop_int(props, "_Matrix", _MATRIX_ALIASES)
    if m in MATRIX_NAMES:
        return MATRIX_NAMES[m]
    return "170m" if clip.width <= 1024 and clip.height <= 576 else "709"


def range_for(clip: vs.VideoNode, props: dict) -> str:
    """``_Range`` as a resize name: YUV defaults to limited, GRAY and RGB to full."""
    r = _prop_int(props, "_Range", _RANGE_ALIASES)
    if r is None:
        r = _prop_int(props, "_ColorRange", _RANGE_ALIASES)
    if r is None:
        return "limited" if clip.format.color_family == vs.YUV else "full"
    return "full" if r == int(vs.RANGE_FULL) else "limited"


def to_rgbs(clip: vs.VideoNode, matrix: str, rng: str) -> vs.VideoNode:
    """Any GRAY/YUV/RGB clip → RGBS (full range, [0, 1])."""
    family = clip.format.color_family
    if family == vs.GRAY:
        g = core.resize.Point(clip, format=vs.GRAYS, range_in_s=rng, range_s="full")
        return core.std.ShufflePlanes(g, [0, 0, 0], vs.RGB)
    if family == vs.YUV:
        return core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s=matrix, range_in_s=rng)
    return core.resize.Point(clip, format=vs.RGBS)


def clip_to_rgbs(clip: vs.VideoNode) -> vs.VideoNode:
    """``to_rgbs`` with the clip's own matrix and range (read from frame 0)."""
    props = first_props(clip)
    return to_rgbs(clip, matrix_for(clip, props), range_for(clip, props))


def frame_to_tensor(frame: vs.VideoFrame, device=None) -> torch.Tensor:
    """RGBS frame → ``3×H×W`` float32 tensor on ``device`` (default CPU; a copy).

    CUDA: the planes go into pinned memory and up without blocking the host (the caching host
    allocator keeps the buffer until the copy is done).
    """
    device = torch.device(device if device is not None else "cpu")
    if device.type != "cuda":
        rgb = torch.from_numpy(np.stack([np.asarray(frame[p]) for p in range(3)]).astype(np.float32))
        return rgb if device.type == "cpu" else rgb.to(device)
    host = torch.empty((3, frame.height, frame.width), dtype=torch.float32, pin_memory=True)
    planes = host.numpy()
    for p in range(3):
        np.copyto(planes[p], np.asarray(frame[p]), casting="same_kind")
    return host.to(device, non_blocking=True)


def tensor_to_frame(rgb: torch.Tensor | np.ndarray, template: vs.VideoFrame) -> vs.VideoFrame:
    """``3×H×W`` float32 RGB → a copy of the RGBS ``template`` frame holding it (pass host data: a
    device tensor is copied with a wait)."""
    out = template.copy()
    data = rgb.detach().cpu().numpy() if isinstance(rgb, torch.Tensor) else rgb
    for p in range(3):
        np.asarray(out[p])[...] = data[p]
    return out


def to_clip_format(clip: vs.VideoNode, out_rgb: vs.VideoNode, matrix: str, rng: str) -> vs.VideoNode:
    """RGBS → the input's format; Y copied from the input for GRAY/YUV (GRAY → YUV 4:4:4)."""
    fmt = clip.format
    if fmt.color_family == vs.RGB:
        return core.resize.Point(out_rgb, format=fmt.id, dither_type="none") if fmt.id != vs.RGBS else out_rgb
    if fmt.color_family == vs.YUV:
        yuv = core.resize.Bicubic(out_rgb, format=fmt.id, matrix_s=matrix, range_s=rng, dither_type="none")
        return core.std.CopyFrameProps(core.std.ShufflePlanes([clip, yuv], [0, 1, 2], vs.YUV), yuv)
    yuv_fmt = core.query_video_format(vs.YUV, fmt.sample_type, fmt.bits_per_sample, 0, 0)
    yuv = core.resize.Bicubic(out_rgb, format=yuv_fmt.id, matrix_s=matrix, range_s=rng, dither_type="none")
    out = core.std.CopyFrameProps(core.std.ShufflePlanes([clip, yuv], [0, 1, 2], vs.YUV), yuv)
    return core.std.SetFrameProps(out, _Matrix=MATRIX_IDS[matrix],
                                  _Range=int(vs.RANGE_FULL if rng == "full" else vs.RANGE_LIMITED))


def to_rgb24(clip: vs.VideoNode) -> vs.VideoNode:
    """Any clip → RGB24 (full range). YUV uses the clip's matrix, with Colorize's default when unspecified."""
    fam = clip.format.color_family
    if fam == vs.RGB:
        return clip if clip.format.id == vs.RGB24 else core.resize.Point(clip, format=vs.RGB24)
    if fam == vs.GRAY:
        g = to_gray8(clip)
        return core.std.ShufflePlanes([g, g, g], [0, 0, 0], vs.RGB)
    props = first_props(clip)
    return core.resize.Bicubic(clip, format=vs.RGB24, matrix_in_s=matrix_for(clip, props),
                               range_in_s=range_for(clip, props))


def to_gray8(clip: vs.VideoNode) -> vs.VideoNode:
    """Any clip → GRAY8 full range luma (the Y plane for YUV, BT.709 luma for RGB)."""
    fam = clip.format.color_family
    if fam == vs.YUV:
        clip = core.std.ShufflePlanes(clip, 0, vs.GRAY)
        return core.resize.Point(clip, format=vs.GRAY8, range_s="full")
    if fam == vs.GRAY:
        return core.resize.Point(clip, format=vs.GRAY8, range_s="full")
    return core.resize.Point(clip, format=vs.GRAY8, matrix_s="709", range_s="full")


def plane_array(frame: vs.VideoFrame, plane: int = 0) -> np.ndarray:
    """A copy of one plane of a VapourSynth frame as an ``H×W`` numpy array."""
    return np.array(frame[plane], copy=True)


def rgb_array(frame: vs.VideoFrame) -> np.ndarray:
    """A copy of an RGB24 VapourSynth frame as an ``H×W×3`` uint8 array."""
    return np.stack([np.asarray(frame[p]) for p in range(3)], axis=-1)


def open_video(path: str | os.PathLike, param: str = "INPUT") -> vs.VideoNode:
    """Open a video file with bestsource without writing an index cache (``cachemode=0``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FormatError(f"{param} {path} is not a file" if path.exists() else f"{param} {path} does not exist")
    if not hasattr(core, "bs"):
        raise FormatError("the bestsource VapourSynth plugin (core.bs) is missing: pip install vapoursynth-bestsource")
    try:
        clip = core.bs.VideoSource(str(path), cachemode=0)
    except vs.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FormatError(f"{param} {path} cannot be read as a video: {first}") from None
    if clip.format is None or clip.width == 0 or clip.height == 0:
        raise FormatError(f"{param} {path} has a variable format or size, which is not supported")
    return clip


def error_summary(exc: BaseException) -> str:
    """The one meaningful line of a ``vs.Error`` raised inside a frame callback.

    VapourSynth wraps exceptions from Python filters in the full traceback text; the line that
    starts with our function name (``Colorize: …``) is what a user needs.
    """
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        for prefix in ("vapoursynth.Error: ", "Error: "):
            if ln.startswith(prefix):
                ln = ln[len(prefix):]
        if ln.startswith("Colorize:"):
            return ln
    return lines[-1] if lines else type(exc).__name__
