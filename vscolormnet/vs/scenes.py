"""Shot boundaries of a video, found by an existing detector, and video reading helpers.

Detector: ``scd.Detect`` of the VapourSynth plugin **vapoursynth-scenechange** (PyPI
``vapoursynth-scenechange==0.5.1``, LGPL-2.1, a 30 kB wheel that VapourSynth autoloads).
Why this one rather than the alternatives that were checked:

- It runs inside the same VapourSynth graph, on the same decoder (bestsource), as ``Colorize``,
  so the frame numbers of the cuts are exactly the frame numbers ``Colorize`` sees; a second
  decoder (OpenCV in PySceneDetect) may count frames differently on VFR or edited files.
- It writes the standard ``_SceneChangePrev``/``_SceneChangeNext`` frame properties that
  VapourSynth filters (vs-jetpack, TemporalSoften2) already use, so a user can also run it in
  a ``.vpy`` and get the same cuts.
- PySceneDetect 0.7.2 (downloadable) pulls in opencv-python (about 60 MB plus system GL
  libraries), click and tqdm; ``vapoursynth-scxvid`` (GPL-2.0, xvid first pass) needs
  YUV420P8 and strictly sequential access; ``vapoursynth-zscene`` only reads scene files made by
  other tools. VapourSynth R81 itself has no detector (``std.PlaneStats`` gives the
  differences, but not a tested decision rule).

``scd.Detect`` compares the mean absolute luma difference of a frame with its neighbours
against ``thresh`` (8-bit scale, default 15) and marks the first frame of a new shot with
``_SceneChangePrev = 1``. We then drop cuts that would make a shot shorter than
``min_shot_length`` frames (flashes, single glitched frames).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..media import vsformat

DETECTOR = "scd.Detect (vapoursynth-scenechange)"
DEFAULT_THRESHOLD = 15
DEFAULT_MIN_SHOT_LENGTH = 5
INSTALL_HINT = "pip install vapoursynth-scenechange==0.5.1 (it is in requirements.txt)"


def frame_duration(frame, fps: Fraction | None) -> Fraction:
    """Duration of one frame in seconds: ``_DurationNum/_DurationDen``, else 1/fps, else 0."""
    props = frame.props
    num, den = props.get("_DurationNum", 0), props.get("_DurationDen", 0)
    if num > 0 and den > 0:
        return Fraction(int(num), int(den))
    if fps:
        return 1 / fps
    return Fraction(0)


def timecode(seconds: float | Fraction) -> str:
    """``HH:MM:SS.mmm``."""
    ms = int(round(float(seconds) * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian of a gray frame: higher = sharper (less blur, more detail)."""
    from scipy import ndimage
    return float(ndimage.laplace(gray.astype(np.float32)).var())


def detector_clip(clip, threshold: float = DEFAULT_THRESHOLD):
    """GRAY8 luma of ``clip`` with ``_SceneChangePrev`` set by ``scd.Detect``."""
    if not 1 <= threshold <= 254:
        raise ValueError(f"--threshold must be within 1..254 (mean luma difference, 8-bit), got {threshold}")
    core = vsformat.core
    if not hasattr(core, "scd"):
        raise ValueError(f"the scene-change detector plugin (core.scd) is missing: {INSTALL_HINT}")
    return core.scd.Detect(vsformat.to_gray8(clip), thresh=int(round(threshold)))


def enforce_min_shot_length(cuts: list[int], num_frames: int, min_shot_length: int) -> list[int]:
    """Drop cuts that would leave a shot shorter than ``min_shot_length`` frames.

    Goes left to right: a cut closer than ``min_shot_length`` to the previous kept cut (or to
    frame 0) is dropped; a last shot that is too short is merged into the shot before it.
    """
    if min_shot_length < 1:
        raise ValueError(f"--min-shot-length must be >= 1 frame, got {min_shot_length}")
    kept: list[int] = []
    prev = 0
    for c in sorted(set(cuts)):
        if c <= 0 or c >= num_frames:
            continue
        if c - prev >= min_shot_length:
            kept.append(c)
            prev = c
    while kept and num_frames - kept[-1] < min_shot_length:
        kept.pop()
    return kept


@dataclass(frozen=True)
class Shot:
    """One shot: frames ``start .. start + length - 1``."""

    start: int
    length: int

    @property
    def end(self) -> int:
        """Last frame of the shot (inclusive)."""
        return self.start + self.length - 1


def shots_from_cuts(cuts: list[int], num_frames: int) -> list[Shot]:
    """Shots covering ``0 .. num_frames-1``, split at each cut (a cut = first frame of a shot)."""
    starts = [0] + [c for c in cuts if 0 < c < num_frames]
    ends = starts[1:] + [num_frames]
    return [Shot(s, e - s) for s, e in zip(starts, ends)]


@dataclass
class ScanResult:
    """One pass over a clip: raw detector cuts, per-frame sharpness and start times (seconds)."""

    raw_cuts: list[int]
    sharpness: np.ndarray
    times: list[Fraction]
    fps: Fraction | None


SHARPNESS_WIDTH = 640  # sharpness is measured on the luma scaled down to at most this width


def scan(clip, threshold: float = DEFAULT_THRESHOLD, progress=None, measure_sharpness: bool = True,
         detect: bool = True) -> ScanResult:
    """Run the detector over every frame in order; also measure sharpness and frame times.

    The detector sees the full-size luma; sharpness is measured on a copy scaled down to at most
    ``SHARPNESS_WIDTH`` pixels wide (frame properties survive the resize), which keeps a
    feature-length scan cheap. ``detect=False`` (the cuts are known): the same pass without the
    detector (``raw_cuts`` empty); ``scd.Detect`` only adds properties, so sharpness is the same.
    """
    det = detector_clip(clip, threshold) if detect else vsformat.to_gray8(clip)
    fps = Fraction(clip.fps.numerator, clip.fps.denominator) if clip.fps.numerator else None
    if det.width > SHARPNESS_WIDTH:
        h = max(2, round(det.height * SHARPNESS_WIDTH / det.width / 2) * 2)
        det = vsformat.core.resize.Bilinear(det, SHARPNESS_WIDTH, h)
    raw, sharp, times = [], np.zeros(det.num_frames, np.float64), []
    t = Fraction(0)
    for n, f in enumerate(det.frames()):
        if n > 0 and int(f.props.get("_SceneChangePrev", 0)):
            raw.append(n)
        if measure_sharpness:
            sharp[n] = sharpness(np.asarray(f[0]))
        times.append(t)
        t += frame_duration(f, fps)
        if progress is not None:
            progress(n + 1, det.num_frames)
    return ScanResult(raw, sharp, times, fps)


def pick_frame(shot: Shot, sharp: np.ndarray, how: str = "sharpest", tolerance: float = 0.02) -> int:
    """The representative frame of a shot.

    ``sharpest``: among frames whose sharpness is within ``tolerance`` of the shot's best,
    the one nearest the middle (stills and encoder noise then give the middle frame).
    ``middle``: the middle frame. ``first``: the first frame.
    """
    if how == "first":
        return shot.start
    mid = shot.start + (shot.length - 1) // 2
    if how == "middle":
        return mid
    if how != "sharpest":
        raise ValueError(f"--pick must be sharpest, middle or first, got {how!r}")
    s = sharp[shot.start:shot.start + shot.length]
    best = float(s.max())
    good = np.flatnonzero(s >= best * (1 - tolerance)) + shot.start
    return int(good[np.argmin(np.abs(good - mid))])
