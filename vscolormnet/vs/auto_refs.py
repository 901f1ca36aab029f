"""Automatic references: in every shot, the frame ``refs extract`` would pick, coloured by DDColor.

Shared by ``refs auto`` (which writes them into a reference folder) and ``Colorize(auto_ref=...)``
(which computes each shot's reference inside the first frame request that needs it). Both must
give the same frame and the same pixels, so the plan, the pick and the colouring live here, once:

- the plan: ``scenes.scan`` (detector + sharpness, the cuts of ``refs extract``: same threshold and
  minimum shot length), or given cuts (then only the sharpness pass, for the pick);
- the pick: ``scenes.pick_frame`` (the sharpest frame nearest the middle of the shot);
- the pixels: that frame's GRAY8 luma (what ``refs extract`` writes as a gray PNG), coloured by
  ``runtime.image_colorizer.colorize_image`` at S×S, its ab resized back with ``AUTO_AB_RESIZE``.

Why bilinear (``AUTO_AB_RESIZE``), not the official nearest: DDColor's ab is S×S (512²); nearest
stretches it into blocks (3.75 × 2.1 pixels at 1080p) whose edges the user sees when retouching the
PNG and which ColorMNet's resize to its inference size only partly smooths. Bilinear is what the
per-frame VapourSynth DDColor filter (HolyWu's vs-ddcolor) does; ``--ab-resize nearest`` remains.
"""
from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass

import numpy as np

from ..media import vsformat
from . import scenes

log = logging.getLogger("vscolormnet")
AUTO_AB_RESIZE = "bilinear"


@dataclass
class ShotPicks:
    """The shot plan of a clip and the reference frame of each shot.

    cuts:     first frame of every shot after the first (the plan: detected and kept, or given).
    raw_cuts: the detector's cuts before the minimum shot length (``[]`` when the cuts were given).
    frames:   the picked frame of each shot (``len(cuts) + 1`` of them, in order).
    scan:     the pass it came from (sharpness, frame times, fps).
    """

    cuts: list[int]
    raw_cuts: list[int]
    frames: list[int]
    scan: scenes.ScanResult

    @property
    def num_frames(self) -> int:
        return len(self.scan.times)

    def shots(self) -> list[scenes.Shot]:
        return scenes.shots_from_cuts(self.cuts, self.num_frames)


def plan_and_pick(clip, *, cuts: list[int] | None = None, threshold: float = scenes.DEFAULT_THRESHOLD,
                  min_shot_length: int = scenes.DEFAULT_MIN_SHOT_LENGTH, pick: str = "sharpest",
                  progress=None) -> ShotPicks:
    """One pass over ``clip``: its shots (detected as ``refs extract`` does, or ``cuts``) and their picks.

    cuts: known first frames of shots (0 and frames outside the clip must be removed by the caller);
    None: detect them (``scd.Detect`` at ``threshold``, then ``enforce_min_shot_length``).
    """
    n = clip.num_frames
    scan = scenes.scan(clip, threshold, progress, measure_sharpness=pick == "sharpest", detect=cuts is None)
    if cuts is None:
        plan = scenes.enforce_min_shot_length(scan.raw_cuts, n, min_shot_length)
        dropped = sorted(set(scan.raw_cuts) - set(plan))
        if dropped:
            log.info("refs: dropped %d detected cut(s) that would make shots shorter than %d frames: %s",
                     len(dropped), min_shot_length, ", ".join(map(str, dropped[:10])))
    else:
        plan = sorted({int(c) for c in cuts if 0 < c < n})
    frames = [scenes.pick_frame(shot, scan.sharpness, pick) for shot in scenes.shots_from_cuts(plan, n)]
    return ShotPicks(plan, list(scan.raw_cuts), frames, scan)


def gray_frame(gray8, frame: int) -> np.ndarray:
    """Frame ``frame`` of a GRAY8 clip (``vsformat.to_gray8``) as ``H×W`` uint8: the gray reference."""
    return vsformat.plane_array(gray8.get_frame(frame), 0)


def colour_frame(gray: np.ndarray, colorizer, ab_resize: str = AUTO_AB_RESIZE) -> np.ndarray:
    """``H×W`` uint8 gray → ``H×W×3`` uint8 RGB coloured by DDColor (``colorize-image`` of the gray PNG)."""
    from ..runtime.image_colorizer import colorize_image
    return colorize_image(np.repeat(gray[..., None], 3, axis=2), colorizer, ab_resize).rgb


def _close(holder: list) -> None:
    """Finalizer: close the colorizer if one was opened (never references the owner)."""
    while holder:
        holder.pop().close()


class AutoReferences:
    """``Colorize``'s automatic references, computed on first need and kept.

    ``picks()``: the plan and the picked frames, from one pass over the clip (run once, by the first
    frame request). ``image(shot, fit)``: that shot's reference, coloured once (concurrent requests for
    one shot wait for the first; other shots are not blocked while it is read), passed through ``fit``
    (the resize to the inference size) and cached at that size. The DDColor backend is opened for the
    first shot and given back when every shot has its reference, or when this object is freed.

    clip: the clip ``Colorize`` was given; colorizer_args: ``open_colorizer``'s arguments.
    """

    def __init__(self, clip, *, cuts: list[int] | None, model: str, weights, input_size: int,
                 backend_options: dict, ab_resize: str = AUTO_AB_RESIZE):
        self.clip, self.given_cuts = clip, cuts
        self.model, self.weights, self.input_size = model, weights, input_size
        self.backend_options, self.ab_resize = backend_options, ab_resize
        self._lock = threading.Lock()
        self._picks: ShotPicks | None = None
        self._images: dict[int, np.ndarray] = {}
        self._shot_locks: dict[int, threading.Lock] = {}
        self._colour_lock = threading.Lock()        # one DDColor forward at a time (memory, not correctness)
        self._colorizer: list = []                  # [Colorizer] once opened
        self._finalizer = weakref.finalize(self, _close, self._colorizer)

    def picks(self) -> ShotPicks:
        """The shot plan and the reference frame of every shot (the clip is read once, here)."""
        with self._lock:
            if self._picks is None:
                what = "the given cuts' shots" if self.given_cuts is not None else "shots"
                log.info("Colorize: auto_ref: reading %d frames for %s and their sharpest frames",
                         self.clip.num_frames, what)
                self._picks = plan_and_pick(self.clip, cuts=self.given_cuts)
                log.info("Colorize: auto_ref: %d shot(s), references at frames %s", len(self._picks.frames),
                         ", ".join(map(str, self._picks.frames[:12])) + (" …" if len(self._picks.frames) > 12
                                                                         else ""))
            return self._picks

    def colour(self, shot: int) -> np.ndarray:
        """Shot ``shot``'s reference at the clip size, ``H×W×3`` uint8 (not cached: ``image`` caches)."""
        frame = self.picks().frames[shot]
        gray = gray_frame(vsformat.to_gray8(self.clip), frame)
        with self._colour_lock:
            if not self._colorizer:
                from ..runtime.image_colorizer import open_colorizer
                self._colorizer.append(open_colorizer(self.model, self.weights, input_size=self.input_size,
                                                      **self.backend_options))
            return colour_frame(gray, self._colorizer[0], self.ab_resize)

    def image(self, shot: int, fit=None) -> np.ndarray:
        """Shot ``shot``'s reference passed through ``fit`` (None: as coloured), computed once and kept."""
        shots = len(self.picks().frames)
        with self._lock:
            cached = self._images.get(shot)
            if cached is not None:
                return cached
            lock = self._shot_locks.setdefault(shot, threading.Lock())
        with lock:
            with self._lock:
                cached = self._images.get(shot)
            if cached is None:
                rgb = self.colour(shot)
                cached = fit(rgb) if fit is not None else rgb
                with self._lock:
                    self._images[shot] = cached
                    done = len(self._images) == shots
                if done:            # every shot has its reference: DDColor is not needed any more
                    with self._colour_lock:
                        _close(self._colorizer)
            return cached

    def loader(self, shot: int, fit):
        """A function returning shot ``shot``'s reference through ``fit`` (a ``ReferenceSet`` image entry)."""
        return lambda: self.image(shot, fit)


class DeferredRenderer:
    """The renderer of a ``Colorize(auto_ref=...)`` node, built by the first frame request.

    The shot plan and the reference frames come from a pass over the clip (``AutoReferences.picks``),
    which must not run when the node is made (``vspipe --info`` or a script that only builds the graph
    would read the whole film): the first request runs it, then builds the ``ClipRenderer`` exactly as
    for a reference folder with those frames and cuts, each image a loader that colours the shot's
    frame when the propagator first encodes that reference.

    build(refs, plan, network_lease) → ClipRenderer; fit(image) → image at the inference size.
    """

    def __init__(self, auto: AutoReferences, build, fit, network_lease):
        self.auto, self._build, self._fit = auto, build, fit
        self._renderer = None
        self._lock = threading.Lock()
        self._pending = [network_lease]            # handed to the renderer; released here if never built
        self._finalizer = weakref.finalize(self, _close_leases, self._pending)

    def renderer(self):
        """The ``ClipRenderer`` (built on the first call; thread-safe)."""
        if self._renderer is None:
            with self._lock:
                if self._renderer is None:
                    from ..runtime.shots import make_plan
                    from .references import ReferenceSet
                    picks = self.auto.picks()
                    loaders = [self.auto.loader(i, self._fit) for i in range(len(picks.frames))]
                    refs = ReferenceSet(loaders, list(picks.frames), frozenset(picks.cuts), from_folder=True)
                    plan = make_plan(list(picks.cuts), picks.num_frames)
                    self._renderer = self._build(refs, plan, self._pending.pop())
        return self._renderer

    def render(self, n: int, f):
        """Output frame n (``ClipRenderer.render``); a failure of the plan's pass is a ``Colorize:`` error."""
        import vapoursynth as vs
        try:
            renderer = self.renderer()
        except vs.Error:
            raise
        except (ValueError, RuntimeError, OSError, MemoryError) as e:
            raise vs.Error(f"Colorize: auto_ref: {e}") from None
        return renderer.render(n, f)


def _close_leases(leases: list) -> None:
    while leases:
        leases.pop().release()
