"""``refs auto --refine N``: more automatic references where the propagation's colour fades.

After one reference per shot is placed, the clip is propagated from the folder (``refs suggest``'s
pass: ``ColorMNet_Confidence`` per frame) and up to N references per shot are added by DDColor at
the frames of lowest confidence, with the rule:

- candidates are ranked as ``refs suggest`` ranks them (``suggest.pick``: lowest first, at most N
  per shot, at least ``min_gap`` frames apart, never a frame that already has a reference);
- a candidate is taken only where confidence is *clearly* low: below ``RATIO`` × the shot's own
  level next to its references (per reference, the best confidence within ``NEAR`` frames of it,
  where the propagation is at its best; the median over the shot's references: one side of a
  reference may already be past an unannounced cut); a shot whose references are all gray
  (ignored) is measured against the clip's median level. The ratio is relative because the confidence's
  scale depends on the weights and the picture; an unannounced shot change or a long drift falls
  far below it, the ordinary frame-to-frame variation of a shot does not, so a steady shot gets
  nothing (no flooding).

Each added reference records ``frame_confidence`` (its frame's confidence before) and
``confidence_before``/``confidence_after``: the mean confidence of the frames it now serves (the
frames of its shot nearer to it than to any other reference of the shot, references excluded),
before and after one re-run of the propagation with every addition in place.
"""
from __future__ import annotations

import logging
import sys

import numpy as np

log = logging.getLogger("vscolormnet")
RATIO = 0.8          # clearly low: below 80 % of the shot's confidence next to its references
NEAR = 2             # "next to its references": within this many frames


def shot_levels(conf: np.ndarray, cuts: list[int], ref_frames: list[int], near: int = NEAR) -> np.ndarray:
    """Per shot: over its references, the median of the best confidence of the non-reference frames within
    ``near`` frames of each (NaN for a shot with no such frame, then replaced by the median of the others)."""
    n = len(conf)
    starts = [0, *cuts]
    stops = [*cuts, n]
    refs = set(ref_frames)
    levels = np.full(len(starts), np.nan)
    for s, (a, b) in enumerate(zip(starts, stops)):
        best = []
        for r in (r for r in ref_frames if a <= r < b):
            around = [f for f in range(max(a, r - near), min(b, r + near + 1)) if f not in refs]
            if around:
                best.append(float(conf[around].max()))
        if best:
            levels[s] = float(np.median(best))
    if np.isnan(levels).all():
        return levels
    levels[np.isnan(levels)] = float(np.nanmedian(levels))
    return levels


def choose(conf: np.ndarray, cuts: list[int], ref_frames: list[int], per_shot: int, min_gap: int,
           ratio: float = RATIO, near: int = NEAR) -> list[int]:
    """The frames to add (lowest confidence first), by the rule of the module docstring."""
    from .suggest import pick
    levels = shot_levels(conf, cuts, ref_frames, near)
    if np.isnan(levels).all():
        return []
    shot_of = np.searchsorted(np.asarray(cuts, dtype=np.int64), np.arange(len(conf)), side="right")
    ranked = pick(conf, cuts, set(ref_frames), len(conf), per_shot, min_gap)
    return [f for f in ranked if conf[f] < ratio * levels[shot_of[f]]]


def served(frame: int, cuts: list[int], ref_frames: list[int], n: int) -> list[int]:
    """The non-reference frames of ``frame``'s shot nearer to ``frame`` than to the shot's other references."""
    starts, stops = [0, *cuts], [*cuts, n]
    s = int(np.searchsorted(np.asarray(cuts, dtype=np.int64), frame, side="right"))
    a, b = starts[s], stops[s]
    others = [r for r in ref_frames if a <= r < b and r != frame]
    refs = set(ref_frames)
    return [f for f in range(a, b) if f not in refs and all(abs(f - frame) < abs(f - r) for r in others)]


def _mean(conf: np.ndarray, frames: list[int]) -> float | None:
    return round(float(conf[frames].mean()), 6) if frames else None


def refine_references(video, folder, picks, records: dict[int, dict], placer, *, per_shot: int, weights, size: str,
                      backend_options: dict, progress: bool, write, min_gap: int | None = None) -> dict[int, dict]:
    """Add up to ``per_shot`` automatic references per shot (``placer`` colours them); returns the records.

    ``write(records)`` rewrites the index (called once the additions are on disk, before the re-run).
    """
    from ..weights.checkpoint import CheckpointError, resolve_weights
    from .suggest import suggest
    try:
        ckpt = str(resolve_weights(weights))
    except CheckpointError as e:
        raise CheckpointError(f"--colormnet-weights: {e}") from None
    fps = picks.scan.fps
    gap = min_gap if min_gap is not None else max(1, round(float(fps or 24)))
    options = dict(backend_options)
    backend = options.pop("backend", "torch")

    def propagate(what: str) -> tuple[np.ndarray, list[int]]:
        if progress:
            print(f"refs auto: refine: propagating the clip ({what})", file=sys.stderr, flush=True)
        res = suggest(video, folder, n=1, per_shot=1, min_gap=gap, weights=ckpt, backend=backend, size=size,
                      progress=progress, **options)
        return res.confidence, res.reference_frames

    before, ref_frames = propagate("before")
    added = choose(before, picks.cuts, ref_frames, per_shot, gap)
    if progress:
        print(f"refs auto: refine: {len(added)} reference(s) to add"
              + (f" at frames {', '.join(map(str, sorted(added)))}" if added else ""), file=sys.stderr, flush=True)
    if not added:
        return records
    for f in added:
        records[f] = placer.place(f, placer.restore(f), "refine")
    write(records)
    after, after_refs = propagate("after")
    n = len(before)
    for f in added:
        frames = served(f, picks.cuts, after_refs, n)
        records[f].update(frame_confidence=round(float(before[f]), 6), confidence_before=_mean(before, frames),
                          confidence_after=_mean(after, frames))
    return records
