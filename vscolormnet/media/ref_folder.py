"""Reference folders on disk: ``ref_<frame>.png`` files plus their index, read back as ``ref_frames``.

The folder format (written by ``refs.extract``):

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

import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


_REPORTED: set = set()
_REPORTED_LOCK = threading.Lock()


def _first_time(key) -> bool:
    """True the first time ``key`` is seen in this process (a folder is read by the command, then by
    ``Colorize``: its notes are printed once)."""
    with _REPORTED_LOCK:
        if key in _REPORTED:
            return False
        _REPORTED.add(key)
        return True


def fit_problem(folder: ReferenceFolder, num_frames: int, width: int, height: int, what: str = "the clip") -> str | None:
    """Why ``folder`` does not belong to a clip of ``num_frames`` frames of ``width``×``height``, or None.

    The index records the clip it was extracted from. Another frame count means another video or
    another edit (every reference and cut would land on the wrong frame); another size is accepted
    only as a uniform rescale (an upscaled or downscaled version of the same film), not a crop."""
    if folder.num_frames is not None and folder.num_frames != num_frames:
        return (f"{folder.folder} was extracted from a clip of {folder.num_frames} frames, {what} has "
                f"{num_frames}; was it made from another video or another edit?")
    if folder.width and folder.height:
        if abs(folder.width * height - folder.height * width) > 0.01 * folder.width * height:
            return (f"{folder.folder} was extracted from a {folder.width}x{folder.height} clip, {what} is "
                    f"{width}x{height} (another picture shape, not a rescale); was it made from another video?")
    late = [c for c in folder.cuts if c >= num_frames]
    if late:
        return f"{folder.folder / INDEX_JSON}: cuts must be frame numbers within 0…{num_frames - 1}, got {late[0]}"
    late = [f for f, _ in folder.references if f >= num_frames]
    if late:
        return (f"{folder.folder} has references for frames beyond the {num_frames} frames of {what} "
                f"(first: frame {late[0]}); was it extracted from another video?")
    return None


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
        cuts = sorted({int(c) for c in index["cuts"]})
    except (TypeError, ValueError):
        raise ValueError(f"{folder / INDEX_JSON}: 'cuts' must be a list of frame numbers") from None
    if cuts and cuts[0] < 0:
        raise ValueError(f"{folder / INDEX_JSON}: cuts must be frame numbers ≥ 0, got {cuts[0]}")
    cuts = [c for c in cuts if c > 0]           # frame 0 always starts a shot
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
    if gray and _first_time((str(folder.resolve()), tuple(gray))):
        log.warning("refs: %d of %d references in %s are still gray and are ignored (frames %s)",
                    len(gray), len(by_frame), folder, _first(gray))
    if not references:
        raise ValueError(f"reference folder {folder} has no coloured reference: all {len(by_frame)} "
                         "ref_<frame> images are still gray; colour at least one in place (keep its name)")
    return ReferenceFolder(references, cuts, gray, num_frames if isinstance(num_frames, int) else None,
                           index.get("width"), index.get("height"), folder)
