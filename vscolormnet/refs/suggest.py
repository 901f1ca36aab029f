"""``refs suggest``: where to colour the next reference, from the per-frame memory-match confidence.

Propagates the clip from a reference folder (its shot plan and coloured references, any
backend) and reads ``ColorMNet_Confidence`` of every frame (see ``memory/similarity.py``
``match_confidence``). The lowest-confidence frames are suggested, at most ``per_shot`` per
shot and at least ``min_gap`` frames apart, lowest first: those are the frames where memory
holds least of what the frame shows (new objects, a turned head, a pan into new scenery).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

log = logging.getLogger("vscolormnet")


@dataclass
class Suggestion:
    """One suggested frame (the JSON keys of ``refs suggest --json``)."""

    frame: int
    timecode: str
    shot: int
    confidence: float


@dataclass
class SuggestResult:
    """Confidence of every frame, the plan and references used, and the suggestions (lowest first)."""

    confidence: np.ndarray
    cuts: list[int]
    reference_frames: list[int]
    suggestions: list[Suggestion]
    origins: dict[int, str] = field(default_factory=dict)   # reference frame → 'auto' | 'person' (refs auto)


def pick(confidence: np.ndarray, cuts: list[int], exclude: set[int], n: int, per_shot: int,
         min_gap: int) -> list[int]:
    """Frames of lowest confidence: ≤ ``per_shot`` per shot, ≥ ``min_gap`` apart, not in ``exclude``."""
    shot_of = np.searchsorted(np.asarray(cuts, dtype=np.int64), np.arange(len(confidence)), side="right")
    taken: list[int] = []
    per: dict[int, int] = {}
    for f in np.argsort(confidence, kind="stable"):
        f = int(f)
        s = int(shot_of[f])
        if f in exclude or per.get(s, 0) >= per_shot or any(abs(f - t) < min_gap for t in taken):
            continue
        taken.append(f)
        per[s] = per.get(s, 0) + 1
        if len(taken) >= n:
            break
    return taken


def suggest(video, refs_dir, *, n: int = 10, per_shot: int = 2, min_gap: int | None = None, weights=None,
            backend="torch", size="512", progress: bool = True, **colorize_kw) -> SuggestResult:
    """Run the propagation over ``video`` with the references of ``refs_dir`` and pick frames."""
    from ..media import vsformat
    from ..media.ref_folder import load_reference_folder
    from ..vs.filter import Colorize
    from ..vs.scenes import frame_duration, timecode
    clip = vsformat.open_video(video, "INPUT")
    folder = load_reference_folder(refs_dir)
    out = Colorize(clip, str(refs_dir), weights=weights, backend=backend, size=size, **colorize_kw)
    total = clip.num_frames
    conf = np.empty(total, np.float64)
    times = np.empty(total, np.float64)
    fps = Fraction(clip.fps.numerator, clip.fps.denominator) if clip.fps.numerator else None
    elapsed, t0 = Fraction(0), time.perf_counter()
    for i, frame in enumerate(out.frames(close=True)):
        conf[i] = frame.props["ColorMNet_Confidence"]
        times[i] = float(elapsed)
        elapsed += frame_duration(frame, fps)
        if progress and (i + 1 == total or (i + 1) % 25 == 0):
            rate = (i + 1) / max(time.perf_counter() - t0, 1e-9)
            print(f"refs suggest: {i + 1}/{total} frames, {rate:.2f} fps", file=sys.stderr, flush=True)
    ref_frames = [f for f, _ in folder.references]
    cuts = sorted(c for c in folder.cuts if 0 < c < total)
    gap = min_gap if min_gap is not None else max(1, int(round(float(fps or 24))))
    frames = pick(conf, cuts, set(ref_frames), n, per_shot, gap)
    shot_of = np.searchsorted(np.asarray(cuts, dtype=np.int64), frames, side="right")
    suggestions = [Suggestion(f, timecode(times[f]), int(s), float(conf[f])) for f, s in zip(frames, shot_of)]
    from .auto import reference_origins
    return SuggestResult(conf, cuts, ref_frames, suggestions, reference_origins(refs_dir, ref_frames))


def write_gray_frames(video, frames: list[int], folder) -> list[Path]:
    """Each suggested frame as a gray ``ref_<frame>.png`` in ``folder`` (atomically; existing files kept)."""
    from PIL import Image

    from ..media import vsformat
    from ..media.ref_folder import ref_name
    from ..util.files import atomic_write
    clip = vsformat.open_video(video, "INPUT")
    gray = vsformat.to_gray8(clip)
    written = []
    for f in frames:
        path = Path(folder) / ref_name(f, clip.num_frames)
        if path.exists():
            log.info("refs suggest: %s exists, kept as it is", path.name)
            continue
        g = vsformat.plane_array(gray.get_frame(f), 0)
        img = Image.fromarray(np.repeat(g[..., None], 3, axis=2), "RGB")
        atomic_write(path, lambda fh, im=img: im.save(fh, format="PNG"))
        written.append(path)
    return written


def format_table(res: SuggestResult) -> str:
    """The suggestions as an aligned text table (lowest confidence first)."""
    lines = [f"{'frame':>7}  {'timecode':<12}  {'shot':>4}  {'confidence':>10}"]
    lines += [f"{s.frame:>7}  {s.timecode:<12}  {s.shot:>4}  {s.confidence:>10.4f}" for s in res.suggestions]
    return "\n".join(lines)


def as_json(res: SuggestResult) -> list[dict]:
    """The suggestions as JSON-ready objects (keys: frame, timecode, shot, confidence)."""
    return [asdict(s) for s in res.suggestions]


def plot(res: SuggestResult, path: str | os.PathLike) -> Path:
    """Confidence per frame with shot boundaries (dashed), references (green: a person's, orange dash-dot:
    automatic, from ``refs auto``) and suggestions (red)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..util.files import atomic_write
    fig = Figure(figsize=(10, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(np.arange(len(res.confidence)), res.confidence, lw=1.2, color="#3465a4", label="confidence")
    for c in res.cuts:
        ax.axvline(c, color="0.5", ls="--", lw=0.8)
    styles = {"person": dict(color="#4e9a06", lw=1.5, ls="-"), "auto": dict(color="#f57900", lw=1.5, ls="-.")}
    for f in res.reference_frames:
        ax.axvline(f, **styles[res.origins.get(f, "person")])
    for origin, label in (("person", "reference (person)"), ("auto", "reference (automatic)")):
        if any(res.origins.get(f, "person") == origin for f in res.reference_frames):
            ax.plot([], [], label=label, **styles[origin])
    sx = [s.frame for s in res.suggestions]
    ax.scatter(sx, [res.confidence[f] for f in sx], color="#cc0000", zorder=3, label="suggested")
    ax.set_xlabel("frame (dashed: cuts; green: a person's references; orange: automatic ones)")
    ax.set_ylabel("memory-match confidence")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return atomic_write(path, lambda fh: fig.savefig(fh, format="png"))
