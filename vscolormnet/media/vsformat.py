"""VapourSynth format plumbing, in one leaf module: ``_Matrix``/``_Range``, RGBS and RGB24
conversion, frame ↔ tensor, and back to a clip's own format.

Nothing here knows about the network; ``Colorize``, the renderer, ``refs`` and the commands
all convert through these functions, so a clip is read the same way everywhere.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import vapoursynth as vs

from ..util.cli import error_summary  # noqa: F401  (Colorize's messages read it from here)
from ..util.errors import FormatError  # noqa: F401  (defined with the other user errors)

core = vs.core

MATRIX_NAMES = {1: "709", 5: "470bg", 6: "170m", 7: "240m", 9: "2020ncl", 10: "2020cl"}
MATRIX_IDS = {v: k for k, v in MATRIX_NAMES.items()}
_MATRIX_ALIASES = {"bt709": 1, "709": 1, "bt470bg": 5, "470bg": 5, "601": 6, "bt601": 6, "170m": 6,
                   "smpte170m": 6, "240m": 7, "smpte240m": 7, "2020ncl": 9, "bt2020nc": 9, "2020cl": 10,
                   "bt2020c": 10, "unspec": 2, "unspecified": 2}
# _Range is H.273's video_full_range_flag (1 = full, 0 = limited); the deprecated _ColorRange is the other
# way round (0 = full, 1 = limited). Names map to each property's own numbers.
_FULL_NAMES, _LIMITED_NAMES = ("full", "pc", "jpeg"), ("limited", "tv", "mpeg")
_RANGE_ALIASES = {**dict.fromkeys(_FULL_NAMES, int(vs.RANGE_FULL)), **dict.fromkeys(_LIMITED_NAMES, int(vs.RANGE_LIMITED))}
_COLOR_RANGE_ALIASES = {**dict.fromkeys(_FULL_NAMES, 0), **dict.fromkeys(_LIMITED_NAMES, 1)}
MATRIX_CODES = frozenset(int(m) for m in vs.MatrixCoefficients)      # 0…14 without the reserved 3 and 11




def first_props(clip: vs.VideoNode) -> dict:
    """Frame properties of frame 0 (where ``_Matrix``/``_Range`` are read for the whole clip)."""
    return dict(clip.get_frame(0).props)


def _prop_int(props: dict, name: str, aliases: dict[str, int]) -> int | None:
    """An integer frame property that a script may have set as an int, a numeric string or a name."""
    with warnings.catch_warnings():      # _ColorRange is read on purpose: old scripts still set it
        warnings.simplefilter("ignore", DeprecationWarning)
        value = props.get(name)
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in aliases:                 # names first: "709" is BT.709, not matrix code 709
            return aliases[text]
        if text.lstrip("-").isdigit():
            return int(text)
    raise FormatError(f"frame property {name} must be an integer (or one of {', '.join(sorted(aliases))}), "
                      f"got {value!r}")


def matrix_for(clip: vs.VideoNode, props: dict) -> str:
    """The clip's ``_Matrix`` as a resize name; unspecified → BT.601 (170m) up to 1024×576, BT.709 above."""
    m = _prop_int(props, "_Matrix", _MATRIX_ALIASES)
    if m in MATRIX_NAMES:
        return MATRIX_NAMES[m]
    return "170m" if clip.width <= 1024 and clip.height <= 576 else "709"


def prop_range(props) -> str | None:
    """``'full'``/``'limited'`` from ``_Range`` (1 full, 0 limited), else the deprecated ``_ColorRange`` (0 full,
    1 limited), numbers or names; None when neither is set."""
    r = _prop_int(props, "_Range", _RANGE_ALIASES)
    if r is not None:
        return "full" if r == int(vs.RANGE_FULL) else "limited"
    c = _prop_int(props, "_ColorRange", _COLOR_RANGE_ALIASES)
    if c is not None:
        return "full" if c == 0 else "limited"
    return None


def range_for(clip: vs.VideoNode, props: dict) -> str:
    """The clip's range as a resize name (``prop_range``): YUV defaults to limited, GRAY and RGB to full."""
    return prop_range(props) or ("limited" if clip.format.color_family == vs.YUV else "full")


def colour_prop_problem(family: int, props) -> str | None:
    """Why a frame's ``_Matrix``/``_Range``/``_ColorRange`` cannot be converted (zimg would fail on it), or None.

    Accepted: ``_Matrix`` any code VapourSynth knows (``MATRIX_CODES``), except RGB (0) on a YUV clip
    and a YUV matrix on an RGB clip (a GRAY clip's matrix is only used for its output); ``_Range``
    and ``_ColorRange`` 0 or 1 (or a range name). Strings that name no value raise ``FormatError``."""
    m = _prop_int(props, "_Matrix", _MATRIX_ALIASES)
    if m is not None:
        if m not in MATRIX_CODES:
            return (f"frame property _Matrix must be a matrix code VapourSynth knows "
                    f"({', '.join(map(str, sorted(MATRIX_CODES)))}), got {m}")
        if family == vs.YUV and m == 0:
            return "frame property _Matrix is 0 (RGB) on a YUV clip; set the clip's real matrix, e.g. _Matrix=1 (BT.709)"
        if family == vs.RGB and m not in (0, 2):
            return f"frame property _Matrix is {m} (a YUV matrix) on an RGB clip; set _Matrix=0"
    for name, aliases in (("_Range", _RANGE_ALIASES), ("_ColorRange", _COLOR_RANGE_ALIASES)):
        r = _prop_int(props, name, aliases)
        if r is not None and r not in (0, 1):
            full = int(vs.RANGE_FULL) if name == "_Range" else 0
            return f"frame property {name} must be {full} (full) or {1 - full} (limited), got {r}"
    return None


def checked_colour_props(clip: vs.VideoNode, function: str) -> vs.VideoNode:
    """``clip`` with every frame's colour properties checked as it is rendered: a bad one is a
    ``vs.Error`` starting ``<function>: frame <n>:`` instead of a resize error further down. Frames pass
    through untouched (no copy)."""
    family = clip.format.color_family

    def check(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        try:
            why = colour_prop_problem(family, f.props)
        except FormatError as e:
            why = str(e)
        if why:
            raise vs.Error(f"{function}: frame {n}: {why}")
        return f
    return core.std.ModifyFrame(clip, clip, check)


def to_rgbs(clip: vs.VideoNode, matrix: str, rng: str) -> vs.VideoNode:
    """Any GRAY/YUV/RGB clip → RGBS (full range, [0, 1])."""
    family = clip.format.color_family
    if family == vs.GRAY:
        g = core.resize.Point(clip, format=vs.GRAYS, range_in_s=rng, range_s="full")
        # An RGB frame must not keep a YUV _Matrix (e.g. a GRAY clip taken from YUV): resize refuses it.
        return core.std.SetFrameProps(core.std.ShufflePlanes(g, [0, 0, 0], vs.RGB), _Matrix=0)
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
