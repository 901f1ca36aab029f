"""``extract_references(video, folder)``: one gray frame per shot, to colour by hand.

It finds the shots (``vs.scenes``: ``scd.Detect``), picks one representative frame per shot (the
sharpest, nearest the middle), and writes the reference folder described in ``media.ref_folder``.
"""
from __future__ import annotations

import csv
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
from ..vs import scenes

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
    shown = [-1]

    def report(done: int, total: int) -> None:
        decile = 10 * done // total
        if progress and decile != shown[0]:
            shown[0] = decile
            print(f"refs: scanned {done}/{total} frames", file=sys.stderr, flush=True)

    scan = scenes.scan(clip, threshold, report, measure_sharpness=pick == "sharpest")
    cuts = scenes.enforce_min_shot_length(scan.raw_cuts, n, min_shot_length)
    dropped = sorted(set(scan.raw_cuts) - set(cuts))
    if dropped:
        log.info("refs: dropped %d detected cut(s) that would make shots shorter than %d frames: %s",
                 len(dropped), min_shot_length, ", ".join(map(str, dropped[:10])))
    gray = vsformat.to_gray8(clip)
    shots = []
    for i, shot in enumerate(scenes.shots_from_cuts(cuts, n)):
        frame = scenes.pick_frame(shot, scan.sharpness, pick)
        name = ref_name(frame, n)
        g = vsformat.plane_array(gray.get_frame(frame), 0)
        Image.fromarray(np.repeat(g[..., None], 3, axis=2), "RGB").save(folder / name, optimize=False)
        shots.append({"shot": i, "start": shot.start, "length": shot.length, "end": shot.end,
                      "start_timecode": scenes.timecode(scan.times[shot.start]),
                      "ref_frame": frame, "timecode": scenes.timecode(scan.times[frame]),
                      "seconds": round(float(scan.times[frame]), 6), "file": name})
    index = {
        "version": INDEX_VERSION,
        "source": str(Path(video).expanduser().resolve()),
        "num_frames": n,
        "fps": f"{scan.fps.numerator}/{scan.fps.denominator}" if scan.fps else None,
        "width": clip.width, "height": clip.height,
        "detector": {"name": scenes.DETECTOR, "threshold": threshold, "min_shot_length": min_shot_length,
                     "pick": pick},
        "cuts": cuts,
        "raw_cuts": scan.raw_cuts,
        "shots": shots,
    }
    tmp = folder / (INDEX_JSON + ".tmp")
    tmp.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    with open(folder / INDEX_CSV, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "frame", "timecode", "shot_start", "shot_length"])
        for s in shots:
            w.writerow([s["file"], s["ref_frame"], s["timecode"], s["start"], s["length"]])
    (folder / CUTS_TXT).write_text("".join(f"{c}\n" for c in cuts), encoding="utf-8")
    os.replace(tmp, folder / INDEX_JSON)  # the index last: its presence means the folder is complete
    return ExtractResult(folder, cuts, scan.raw_cuts, shots, n, index)
