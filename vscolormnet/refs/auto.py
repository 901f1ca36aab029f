"""``auto_references(video, folder, ...)``: a reference folder coloured by DDColor, one reference per shot.

The shots are those ``refs extract`` finds (same scan, threshold, minimum shot length), or given
cuts; each shot's reference is the very frame ``refs extract`` would pick, coloured by DDColor
(``vs.auto_refs``: the same frame and pixels ``Colorize(auto_ref=...)`` computes). The folder has
the format of ``refs extract`` (``ref_<frame>.png``, ``refs.json``, ``refs.csv``, ``cuts.txt``), so
the user can retouch any PNG in place and re-run; ``refs.json`` adds ``auto`` (how the references
were made) and ``references``: per reference file ``frame``, ``file``, ``origin`` (``auto`` or
``person``), and for automatic ones ``model``, ``input_size``, ``ab_resize``, ``weights_sha256``,
``added_by`` (``shot`` or ``refine``; ``refs.refine`` adds the confidence before/after) and the
``sha256`` of the PNG as written.

Re-running is safe: a reference file whose content still has the recorded automatic ``sha256`` is
ours, reused when model, S, ab_resize, weights and frame agree and recomputed otherwise (removed
when this run places none there). Any other reference file (edited, or put there by a person) is
``person``: never overwritten, never removed. One exception, because it holds nobody's colour: a
still-gray ``ref_<frame>`` that we did not write (``refs extract``'s placeholder) is replaced.
"""
from __future__ import annotations

import io
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..media import vsformat
from ..media.images import is_colour, read_rgb
from ..media.ref_folder import INDEX_JSON, REF_RE, ref_name
from ..util.errors import UserError
from ..util.files import atomic_write, file_sha256
from ..vs import scenes
from ..vs.auto_refs import AUTO_AB_RESIZE, colour_frame, gray_frame, plan_and_pick
from .extract import CSV_COLUMNS, make_index, scan_reporter, shot_entries, write_index

log = logging.getLogger("vscolormnet")
STASH = ".refs-auto-previous"         # previous refine references, set aside while the refinement decides again


@dataclass
class AutoResult:
    """What ``auto_references`` did: the plan, every reference's record, and the counts."""

    folder: Path
    num_frames: int
    cuts: list[int]
    shots: list[dict]
    references: list[dict]
    index: dict = field(repr=False, default_factory=dict)
    coloured: int = 0        # DDColor forwards run
    reused: int = 0          # automatic references kept as they were
    person: int = 0          # references a person made or edited (kept)


class LazyColorizer:
    """``open_colorizer`` on first use (a re-run that reuses every reference loads no network)."""

    def __init__(self, model: str, weights, input_size: int, backend_options: dict):
        self.args = (model, weights)
        self.kwargs = dict(input_size=input_size, **backend_options)
        self.colorizer = None

    def get(self):
        if self.colorizer is None:
            from ..runtime.image_colorizer import open_colorizer
            self.colorizer = open_colorizer(*self.args, **self.kwargs)
            log.info("refs auto: %s", self.colorizer.describe())
        return self.colorizer

    def close(self) -> None:
        if self.colorizer is not None:
            self.colorizer.close()
            self.colorizer = None


def _png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def previous_records(folder: Path, num_frames: int) -> dict[str, dict]:
    """``file → record`` of the folder's previous ``refs.json`` (``{}`` without one); a folder made from
    another clip is refused (its references would land on the wrong frames)."""
    path = folder / INDEX_JSON
    if not path.is_file():
        return {}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"-o {folder}: its {INDEX_JSON} cannot be read ({e}); choose another folder or remove it",
                        param="-o", value=str(folder)) from None
    if not isinstance(index, dict):
        raise UserError(f"-o {folder}: {INDEX_JSON} is not a reference index", param="-o", value=str(folder))
    if isinstance(index.get("num_frames"), int) and index["num_frames"] != num_frames:
        raise UserError(f"-o {folder} holds the references of a clip of {index['num_frames']} frames, INPUT has "
                        f"{num_frames}; choose another folder", param="-o", value=str(folder),
                        accepted="a new folder or one made from this clip")
    refs = index.get("references")
    return {r["file"]: r for r in refs if isinstance(r, dict) and isinstance(r.get("file"), str)} \
        if isinstance(refs, list) else {}


class Placer:
    """Puts an automatic reference at a frame, or keeps what a person put there (the re-run rules above)."""

    def __init__(self, folder: Path, clip, previous: dict[str, dict], key: dict, colorizer: LazyColorizer,
                 ab_resize: str, progress: bool):
        self.folder, self.n, self.previous, self.key = folder, clip.num_frames, previous, key
        self.gray8 = vsformat.to_gray8(clip)
        self.colorizer, self.ab_resize, self.progress = colorizer, ab_resize, progress
        self.coloured = self.reused = 0
        self.stash: Path | None = None

    def files(self) -> dict[int, list[Path]]:
        """Reference files in the folder, by frame."""
        by_frame: dict[int, list[Path]] = {}
        for p in sorted(self.folder.iterdir()):
            m = REF_RE.match(p.name)
            if m and p.is_file():
                by_frame.setdefault(int(m.group(1)), []).append(p)
        return by_frame

    def is_ours(self, path: Path) -> bool:
        """The file is an automatic reference as we wrote it (recorded, same content)."""
        rec = self.previous.get(path.name)
        return bool(rec) and rec.get("origin") == "auto" and rec.get("sha256") == file_sha256(path)

    def _say(self, text: str) -> None:
        if self.progress:
            print(f"refs auto: {text}", file=sys.stderr, flush=True)

    def person_record(self, frame: int, path: Path) -> dict:
        rgb = read_rgb(path, "reference")
        return {"frame": frame, "file": path.name, "origin": "person", "sha256": file_sha256(path),
                **({} if is_colour(rgb) else {"gray": True})}

    def place(self, frame: int, paths: list[Path], added_by: str) -> dict:
        """The record of the reference at ``frame`` (``paths``: the files already there for it)."""
        ours = [p for p in paths if self.is_ours(p)]
        theirs = [p for p in paths if p not in ours]
        coloured = [p for p in theirs if is_colour(read_rgb(p, "reference"))]
        if coloured:                          # a person's colour: kept; ours beside it would be a second one
            for p in ours:
                p.unlink()
            self._say(f"frame {frame}: kept {coloured[0].name} (made or edited by a person)")
            return self.person_record(frame, coloured[0])
        name = ref_name(frame, self.n)
        if ours:
            rec = self.previous[ours[0].name]
            same = all(rec.get(k) == v for k, v in self.key.items()) and rec.get("frame") == frame
            if same and ours[0].name == name:
                self.reused += 1
                self._say(f"frame {frame}: {name} reused (unedited, same model and size)")
                return {**rec, "added_by": added_by}
        rgb = colour_frame(gray_frame(self.gray8, frame), self.colorizer.get(), self.ab_resize)
        data = _png_bytes(rgb)
        for p in ours:
            if p.name != name:
                p.unlink()
        atomic_write(self.folder / name, data)
        self.coloured += 1
        rec = {"frame": frame, "file": name, "origin": "auto", **self.key, "sha256": file_sha256(self.folder / name),
               "added_by": added_by}
        if not is_colour(rgb):
            rec["gray"] = True
            log.warning("refs auto: the reference of frame %d came out gray (a dark or flat frame?); the propagation "
                        "ignores gray references: colour %s by hand or leave the shot to the others", frame, name)
        self._say(f"frame {frame}: {name} coloured")
        return rec

    # ---- previous refine references: set aside, restored if placed again, else removed ------------------
    def set_aside(self, paths: list[Path]) -> None:
        self.stash = self.folder / STASH
        shutil.rmtree(self.stash, ignore_errors=True)
        self.stash.mkdir()
        for p in paths:
            os.replace(p, self.stash / p.name)

    def restore(self, frame: int) -> list[Path]:
        """Put back the set-aside reference of ``frame`` (if any); returns the frame's files now."""
        if self.stash is not None:
            for p in self.stash.glob(f"ref_*{frame}.*"):
                m = REF_RE.match(p.name)
                if m and int(m.group(1)) == frame:
                    os.replace(p, self.folder / p.name)
        return self.files().get(frame, [])

    def drop_stash(self) -> None:
        if self.stash is not None:
            shutil.rmtree(self.stash, ignore_errors=True)
            self.stash = None


def reference_origins(folder, frames: list[int]) -> dict[int, str]:
    """``frame → 'auto' | 'person'`` for ``frames`` of a reference folder: automatic when ``refs auto`` recorded
    it and the file is still as written (an edited one is a person's), a person's otherwise."""
    folder = Path(folder).expanduser()
    try:
        refs = json.loads((folder / INDEX_JSON).read_text(encoding="utf-8")).get("references") or []
    except (OSError, ValueError, AttributeError):
        refs = []
    auto = {r.get("frame") for r in refs if isinstance(r, dict) and r.get("origin") == "auto"
            and (folder / str(r.get("file"))).is_file() and file_sha256(folder / str(r["file"])) == r.get("sha256")}
    return {f: "auto" if f in auto else "person" for f in frames}


def index_rows(references: list[dict], picks) -> list[dict]:
    """``refs.csv``: one row per reference (extract's columns plus ``origin``)."""
    shots = picks.shots()
    starts = [s.start for s in shots]
    rows = []
    for r in references:
        shot = shots[int(np.searchsorted(starts, r["frame"], side="right")) - 1]
        rows.append({"file": r["file"], "frame": r["frame"], "timecode": scenes.timecode(picks.scan.times[r["frame"]]),
                     "shot_start": shot.start, "shot_length": shot.length, "origin": r["origin"]})
    return rows


def auto_references(video: str | os.PathLike, folder: str | os.PathLike, *, model: str, weights,
                    cuts: list[int] | None = None, input_size: int = 512, backend_options: dict | None = None,
                    ab_resize: str = AUTO_AB_RESIZE, refine: int = 0, colormnet_weights=None, size: str = "512",
                    threshold: float = scenes.DEFAULT_THRESHOLD,
                    min_shot_length: int = scenes.DEFAULT_MIN_SHOT_LENGTH, progress: bool = True) -> AutoResult:
    """Write (or bring up to date) the automatic reference folder ``folder`` of ``video``.

    model/weights/input_size: the DDColor model, its checkpoint file and S (checked by the caller).
    cuts: the shot plan (first frames of shots, within the clip); None: detected as ``refs extract`` does.
    backend_options: ``backend``/``device``/``precision``/… for DDColor (and the refinement's ColorMNet).
    refine: add up to this many references per shot where the propagation's confidence is clearly low
    (``refs.refine``), with ColorMNet ``colormnet_weights`` (None: the downloaded default) at ``size``.
    """
    from ..model.ddcolor import resolve_model
    model = resolve_model(model)
    backend_options = dict(backend_options or {})
    clip = vsformat.open_video(video, "INPUT")
    n = clip.num_frames
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"-o {folder} exists and is not a folder", param="-o", value=str(folder), accepted="a folder")
    if cuts is not None:
        bad = [c for c in cuts if not 0 <= c < n]
        if bad:
            raise UserError(f"--cuts must be frame numbers within 0…{n - 1} (INPUT has {n} frames), got {bad[0]}",
                            param="--cuts", value=bad[0], accepted=f"frame numbers within 0…{n - 1}")
    folder.mkdir(parents=True, exist_ok=True)
    previous = previous_records(folder, n)
    picks = plan_and_pick(clip, cuts=cuts, threshold=threshold, min_shot_length=min_shot_length,
                          progress=scan_reporter(progress))
    key = {"model": model, "input_size": int(input_size), "ab_resize": ab_resize,
           "weights_sha256": file_sha256(weights)}
    colorizer = LazyColorizer(model, weights, input_size, backend_options)
    placer = Placer(folder, clip, previous, key, colorizer, ab_resize, progress)
    try:
        files = placer.files()
        records = {f: placer.place(f, files.get(f, []), "shot") for f in picks.frames}
        stale = []
        for frame, paths in sorted(files.items()):
            if frame in records:
                continue
            for p in paths:
                if placer.is_ours(p):
                    stale.append(p)
                else:
                    records.setdefault(frame, placer.person_record(frame, p))
        placer.set_aside([p for p in stale if placer.previous[p.name].get("added_by") == "refine" and refine > 0])
        for p in stale:
            if p.exists():
                p.unlink()
        detector = ({"name": scenes.DETECTOR, "threshold": threshold, "min_shot_length": min_shot_length,
                     "pick": "sharpest"} if cuts is None else {"name": "given cuts", "pick": "sharpest"})
        auto = {**{k: v for k, v in key.items()}, "weights": str(Path(weights).expanduser().resolve()),
                "refine": int(refine)}
        shot_files = [records[f]["file"] for f in picks.frames]

        def write(recs: dict[int, dict]) -> dict:
            index = make_index(video, clip, picks, detector, shot_entries(picks, shot_files))
            index["auto"] = auto
            index["references"] = [recs[f] for f in sorted(recs)]
            write_index(folder, index, index_rows(index["references"], picks), (*CSV_COLUMNS, "origin"))
            return index

        index = write(records)
        if refine > 0:
            from .refine import refine_references
            records = refine_references(video, folder, picks, records, placer, per_shot=refine,
                                        weights=colormnet_weights, size=size, backend_options=backend_options,
                                        progress=progress, write=write)
            index = write(records)
    finally:
        placer.drop_stash()
        colorizer.close()
    refs = index["references"]
    return AutoResult(folder, n, picks.cuts, index["shots"], refs, index, placer.coloured, placer.reused,
                      sum(r["origin"] == "person" for r in refs))
