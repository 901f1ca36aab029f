"""Reference folders: one gray frame per shot to colour by hand, read back as ``ref_frames``.

``extract_references(video, folder)`` finds the shots (``scenes``: ``scd.Detect``), picks one
representative frame per shot (the sharpest, nearest the middle), and writes into ``folder``:

- ``ref_<frame>.png``: the frame in gray (R = G = B, full size, 8-bit), ready to be coloured in
  any editor or image colorizer *in place* (keep the name: the number is the clip frame);
- ``refs.json``: the index (source, frame count, fps, size, detector settings, cuts, and per
  shot: start, length, reference frame, its time code and file);
- ``refs.csv``: the same per reference (file, frame, timecode, shot_start, shot_length);
- ``cuts.txt``: the first frame of every shot after the first, one per line.

``load_reference_folder(folder)`` reads it back: each ``ref_<frame>.<ext>`` that is now in
colour becomes a reference for clip frame ``<frame>``; gray ones are skipped with one note on
the ``vscolormnet`` logger; ``cuts`` are the scene resets.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import scenes, vsformat
from .images import GRAY_TOLERANCE, MIN_COLOUR_FRACTION, ImageError, is_colour, read_rgb  # noqa: F401

log = logging.getLogger("vscolormnet")

INDEX_JSON = "refs.json"
INDEX_CSV = "refs.csv"
CUTS_TXT = "cuts.txt"
REF_RE = re.compile(r"^ref_(\d+)\.(png|jpe?g|tiff?|webp|bmp)$", re.IGNORECASE)
INDEX_VERSION = 1


def ref_name(frame: int, num_frames: int) -> str:
    """``ref_000123.png``: zero-padded to at least 6 digits so names sort in frame order."""
    width = max(6, len(str(max(num_frames - 1, 0))))
    return f"ref_{frame:0{width}d}.png"


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


@dataclass
class ReferenceFolder:
    """A reference folder read back.

    references:   ``(frame, H×W×3 uint8 RGB)`` for every coloured ``ref_<frame>`` file, by frame.
    cuts:         first frame of every shot after the first (scene resets), from the index.
    gray_skipped: frames whose reference file is still gray (ignored).
    num_frames, width, height: of the video the folder was extracted from (index), or None.
    """

    references: list[tuple[int, np.ndarray]]
    cuts: list[int]
    gray_skipped: list[int]
    num_frames: int | None = None
    width: int | None = None
    height: int | None = None
    folder: Path | None = None


def read_index(folder: str | os.PathLike) -> dict:
    """The ``refs.json`` of a reference folder; ValueError if absent or unreadable."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"reference folder {folder} does not exist or is not a folder")
    path = folder / INDEX_JSON
    if not path.is_file():
        raise ValueError(f"reference folder {folder} has no {INDEX_JSON} index; make it with "
                         "`python -m vscolormnet refs extract VIDEO -o FOLDER`")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} cannot be read: {e}") from None
    if not isinstance(index, dict) or not isinstance(index.get("cuts"), list):
        raise ValueError(f"{path} is not a vscolormnet reference index (no 'cuts' list)")
    return index


def _first(items, n: int = 8) -> str:
    items = list(items)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def load_reference_folder(path: str | os.PathLike, *, tolerance: int = GRAY_TOLERANCE,
                          min_fraction: float = MIN_COLOUR_FRACTION) -> ReferenceFolder:
    """Read a folder made by ``refs extract`` after the user coloured some of its images.

    Every ``ref_<frame>.{png,jpg,jpeg,tif,tiff,webp,bmp}`` that is in colour (see ``is_colour``)
    is a reference for clip frame ``<frame>``, at the size it has in the file. Gray ones are
    skipped (one warning on the ``vscolormnet`` logger). If a frame has several files, the
    coloured one wins; two coloured files for one frame are an error.
    Raises ValueError if the folder has no index, a frame lies outside the indexed clip, or no
    reference is in colour.
    """
    folder = Path(path).expanduser()
    index = read_index(folder)
    try:
        cuts = sorted({int(c) for c in index["cuts"] if int(c) > 0})
    except (TypeError, ValueError):
        raise ValueError(f"{folder / INDEX_JSON}: 'cuts' must be a list of frame numbers") from None
    num_frames = index.get("num_frames")
    by_frame: dict[int, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        m = REF_RE.match(p.name)
        if m and p.is_file():
            by_frame.setdefault(int(m.group(1)), []).append(p)
    if not by_frame:
        raise ValueError(f"reference folder {folder} holds no ref_<frame>.png file")
    references, gray = [], []
    for frame in sorted(by_frame):
        if isinstance(num_frames, int) and frame >= num_frames:
            raise ValueError(f"{by_frame[frame][0]}: frame {frame} is beyond the clip the folder was "
                             f"extracted from ({num_frames} frames)")
        coloured = []
        for p in by_frame[frame]:
            try:
                rgb = read_rgb(p)
            except (OSError, ValueError) as e:
                raise ValueError(f"{p} cannot be read as an image: {e}") from None
            if is_colour(rgb, tolerance, min_fraction):
                coloured.append((p, rgb))
        if len(coloured) > 1:
            raise ValueError(f"frame {frame} has {len(coloured)} coloured references "
                             f"({', '.join(p.name for p, _ in coloured)}); keep one")
        if coloured:
            references.append((frame, coloured[0][1]))
        else:
            gray.append(frame)
    if gray:
        log.warning("refs: %d of %d references in %s are still gray and are ignored (frames %s)",
                    len(gray), len(by_frame), folder, _first(gray))
    if not references:
        raise ValueError(f"reference folder {folder} has no coloured reference: all {len(by_frame)} "
                         "ref_<frame> images are still gray; colour at least one in place (keep its name)")
    return ReferenceFolder(references, cuts, gray, num_frames if isinstance(num_frames, int) else None,
                           index.get("width"), index.get("height"), folder)
