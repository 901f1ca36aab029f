"""``extract_references(video, folder)``: one gray frame per shot, to colour by hand.

It finds the shots (``vs.scenes``: ``scd.Detect``), picks one representative frame per shot (the
sharpest, nearest the middle), and writes the reference folder described in ``media.ref_folder``.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..media import vsformat
from ..media.ref_folder import CUTS_TXT, INDEX_CSV, INDEX_JSON, INDEX_VERSION, REF_RE, ref_name
from ..util.files import atomic_write
from ..vs import scenes
from ..vs.auto_refs import ShotPicks, gray_frame, plan_and_pick

log = logging.getLogger("vscolormnet")


@dataclass
class ExtractResult:
    """What ``extract_references`` wrote."""

    folder: Path
    cuts: list[int]
    raw_cuts: list[int]
    shots: list[dict]
    num_frames: int
    index: dict = field(repr=False, default_factory=dict)


def _clear_previous(folder: Path, overwrite: bool) -> None:
    ours = [p for p in folder.iterdir() if REF_RE.match(p.name) or p.name in (INDEX_JSON, INDEX_CSV, CUTS_TXT)]
    if not ours:
        return
    if not overwrite:
        raise ValueError(f"-o {folder} already holds a reference folder ({len(ours)} files such as {ours[0].name}); "
                         "choose another folder or pass --overwrite (which deletes them, coloured ones too)")
    for p in ours:
        p.unlink()


def scan_reporter(enabled: bool):
    """A ``scenes.scan`` progress callback printing ``refs: scanned i/n frames`` at every tenth (or None)."""
    if not enabled:
        return None
    shown = [-1]

    def report(done: int, total: int) -> None:
        decile = 10 * done // total
        if decile != shown[0]:
            shown[0] = decile
            print(f"refs: scanned {done}/{total} frames", file=sys.stderr, flush=True)
    return report


def extract_references(video: str | os.PathLike, folder: str | os.PathLike, *,
                       threshold: float = scenes.DEFAULT_THRESHOLD,
                       min_shot_length: int = scenes.DEFAULT_MIN_SHOT_LENGTH,
                       pick: str = "sharpest", overwrite: bool = False,
                       progress: bool = True) -> ExtractResult:
    """Detect shots in ``video`` and write one gray reference per shot plus the index into ``folder``.

    video:           a video file that bestsource reads (no index is written next to it).
    folder:          output folder (created; refused if it already holds one unless ``overwrite``).
    threshold:       ``scd.Detect`` threshold, mean absolute luma difference on 8 bits, 1..254.
    min_shot_length: cuts that would make a shot shorter than this many frames are dropped.
    pick:            ``sharpest`` (default), ``middle`` or ``first`` frame of each shot.
    """
    if pick not in ("sharpest", "middle", "first"):
        raise ValueError(f"--pick must be sharpest, middle or first, got {pick!r}")
    if min_shot_length < 1:
        raise ValueError(f"--min-shot-length must be >= 1 frame, got {min_shot_length}")
    clip = vsformat.open_video(video, "INPUT_VIDEO")
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"-o {folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    _clear_previous(folder, overwrite)

    n = clip.num_frames
    picks = plan_and_pick(clip, threshold=threshold, min_shot_length=min_shot_length, pick=pick,
                          progress=scan_reporter(progress))
    gray = vsformat.to_gray8(clip)
    names = [ref_name(frame, n) for frame in picks.frames]
    for frame, name in zip(picks.frames, names):
        g = gray_frame(gray, frame)
        img = Image.fromarray(np.repeat(g[..., None], 3, axis=2), "RGB")
        atomic_write(folder / name, lambda fh, im=img: im.save(fh, format="PNG", optimize=False))
    detector = {"name": scenes.DETECTOR, "threshold": threshold, "min_shot_length": min_shot_length, "pick": pick}
    index = make_index(video, clip, picks, detector, shot_entries(picks, names))
    write_index(folder, index)
    return ExtractResult(folder, picks.cuts, picks.raw_cuts, index["shots"], n, index)


def shot_entries(picks: ShotPicks, files: list[str]) -> list[dict]:
    """The index's ``shots``: per shot its frames, its reference frame and time code, and ``files[i]``."""
    times = picks.scan.times
    return [{"shot": i, "start": shot.start, "length": shot.length, "end": shot.end,
             "start_timecode": scenes.timecode(times[shot.start]),
             "ref_frame": frame, "timecode": scenes.timecode(times[frame]),
             "seconds": round(float(times[frame]), 6), "file": file}
            for i, (shot, frame, file) in enumerate(zip(picks.shots(), picks.frames, files))]


def make_index(video, clip, picks: ShotPicks, detector: dict, shots: list[dict]) -> dict:
    """``refs.json`` of a folder made from ``video`` (``media.ref_folder`` describes the fields)."""
    fps = picks.scan.fps
    return {
        "version": INDEX_VERSION,
        "source": str(Path(video).expanduser().resolve()),
        "num_frames": clip.num_frames,
        "fps": f"{fps.numerator}/{fps.denominator}" if fps else None,
        "width": clip.width, "height": clip.height,
        "detector": detector,
        "cuts": picks.cuts,
        "raw_cuts": picks.raw_cuts,
        "shots": shots,
    }


CSV_COLUMNS = ("file", "frame", "timecode", "shot_start", "shot_length")


def write_index(folder: Path, index: dict, rows: list[dict] | None = None, columns=CSV_COLUMNS) -> None:
    """``refs.csv`` (``rows``, default one per shot), ``cuts.txt`` and ``refs.json``, each atomically; the
    JSON index last: its presence means the folder is complete."""
    if rows is None:
        rows = [{"file": s["file"], "frame": s["ref_frame"], "timecode": s["timecode"], "shot_start": s["start"],
                 "shot_length": s["length"]} for s in index["shots"]]
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(columns)
    for r in rows:
        w.writerow([r.get(c, "") for c in columns])
    atomic_write(folder / INDEX_CSV, text.getvalue().encode("utf-8"))
    atomic_write(folder / CUTS_TXT, "".join(f"{c}\n" for c in index["cuts"]).encode("utf-8"))
    atomic_write(folder / INDEX_JSON, (json.dumps(index, indent=2) + "\n").encode("utf-8"))
