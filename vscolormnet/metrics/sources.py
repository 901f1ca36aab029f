"""What ``eval`` compares: prediction and ground truth as frame folders, clip folders or videos.

Everything that can be checked without decoding is checked when the clips are collected,
before any metric runs: the paths exist and are of the same kind, no folder is empty, and
both sides hold the same frames. Each failure is one ``ValueError`` line naming ``--pred`` or
``--gt`` as the user typed them. Frames are decoded lazily, one pair at a time, through
``images.read_rgb`` (image folders) or ``vsformat`` (videos).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..media.images import IMAGE_SUFFIXES, ImageError, list_images, read_rgb

log = logging.getLogger("vscolormnet")

FramePairs = Callable[[], Iterator[tuple[str, np.ndarray, np.ndarray]]]
ACCEPTED = "a folder of images, a folder of clip folders, or a video file"


@dataclass
class ClipSource:
    """A clip to evaluate: a name, its frame count, and a function yielding (frame name, pred, gt)."""

    name: str
    num_frames: int
    pairs: FramePairs


def _first(items, n: int = 5) -> str:
    items = list(items)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def _images(folder: Path) -> list[Path]:
    """The image files of ``folder`` (sorted, hidden skipped), or [] when it holds none."""
    try:
        return list_images(folder)
    except ImageError:
        return []


def match_frames(pred_dir: Path, gt_dir: Path) -> list[tuple[Path, Path]]:
    """Pair each ground-truth image with the prediction of the same name (or the only one of that stem).

    Both folders must hold the same frames: a frame on one side only is an error listing them.
    """
    gt_files, pred_files = _images(gt_dir), _images(pred_dir)
    if not gt_files:
        raise ValueError(f"--gt {gt_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if not pred_files:
        raise ValueError(f"--pred {pred_dir} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                         f"--gt {gt_dir} holds {len(gt_files)}")
    by_name = {p.name: p for p in pred_files}
    by_stem: dict[str, list[Path]] = {}
    for p in pred_files:
        by_stem.setdefault(p.stem, []).append(p)
    pairs, missing, used = [], [], set()
    for g in gt_files:
        p = by_name.get(g.name)
        if p is None and len(by_stem.get(g.stem, [])) == 1:
            p = by_stem[g.stem][0]
        if p is None or p in used:
            missing.append(g.name)
        else:
            pairs.append((p, g))
            used.add(p)
    extra = [p.name for p in pred_files if p not in used]
    if missing or extra:
        what = ([f"no prediction for {_first(missing)}"] if missing else []) + \
               ([f"no ground truth for {_first(extra)}"] if extra else [])
        raise ValueError(f"--pred {pred_dir} has {len(pred_files)} frames, --gt {gt_dir} has {len(gt_files)}, "
                         f"paired by file name or stem: {'; '.join(what)}")
    return pairs


def _folder_clip(name: str, pred_dir: Path, gt_dir: Path) -> ClipSource:
    pairs = match_frames(pred_dir, gt_dir)

    def gen():
        for p, g in pairs:
            yield g.name, read_rgb(p, "--pred frame"), read_rgb(g, "--gt frame")
    return ClipSource(name, len(pairs), gen)


def _video_clip(pred_path: Path, gt_path: Path) -> ClipSource:
    import vapoursynth as vs

    from ..media import vsformat
    pred = vsformat.to_rgb24(vsformat.open_video(pred_path, "--pred"))
    gt = vsformat.to_rgb24(vsformat.open_video(gt_path, "--gt"))
    if pred.num_frames != gt.num_frames:
        raise ValueError(f"--pred {pred_path} has {pred.num_frames} frames, --gt {gt_path} has {gt.num_frames} frames")
    if (pred.width, pred.height) != (gt.width, gt.height):
        raise ValueError(f"--pred {pred_path} is {pred.width}×{pred.height}, --gt {gt_path} is "
                         f"{gt.width}×{gt.height}")

    def frame(clip, n: int, flag: str, path: Path) -> np.ndarray:
        try:
            return vsformat.rgb_array(clip.get_frame(n))
        except vs.Error as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{flag} {path}: frame {n} cannot be decoded: {first}") from None

    def gen():
        for n in range(gt.num_frames):
            yield f"{n:06d}", frame(pred, n, "--pred", pred_path), frame(gt, n, "--gt", gt_path)
    return ClipSource(gt_path.stem, gt.num_frames, gen)


def _check_exists(flag: str, p: Path) -> None:
    if not p.exists():
        raise ValueError(f"{flag} {p} does not exist (expected {ACCEPTED})")
    if not (p.is_dir() or p.is_file()):
        raise ValueError(f"{flag} {p} is neither a folder nor a regular file (expected {ACCEPTED})")


def collect_clips(pred: str | os.PathLike, gt: str | os.PathLike) -> list[ClipSource]:
    """The clips to evaluate, with every check that needs no decoding done.

    Two video files → one clip (decoded with bestsource, to RGB24). Two folders of images →
    one clip (frames paired by file name). Two folders of sub-folders → one clip per
    ground-truth sub-folder, paired by sub-folder name (extra prediction clips are ignored).
    """
    pred, gt = Path(pred).expanduser(), Path(gt).expanduser()
    _check_exists("--pred", pred)
    _check_exists("--gt", gt)
    if pred.is_file() and gt.is_file():
        return [_video_clip(pred, gt)]
    if pred.is_file() != gt.is_file():
        kinds = {True: "a file", False: "a folder"}
        raise ValueError(f"--pred {pred} is {kinds[pred.is_file()]} and --gt {gt} is {kinds[gt.is_file()]}: "
                         "both must be folders or both video files")
    if _images(gt):
        return [_folder_clip(gt.name or "clip", pred, gt)]
    subs = sorted(d for d in gt.iterdir() if d.is_dir() and not d.name.startswith(".") and _images(d))
    if not subs:
        raise ValueError(f"--gt {gt} holds neither images ({', '.join(IMAGE_SUFFIXES)}) nor sub-folders of images")
    if _images(pred):
        raise ValueError(f"--pred {pred} holds images but --gt {gt} holds clip sub-folders: lay both out alike")
    missing = [d.name for d in subs if not (pred / d.name).is_dir()]
    if missing:
        raise ValueError(f"--pred {pred} has no sub-folder for {len(missing)} of the {len(subs)} clips of "
                         f"--gt {gt}: {_first(missing)}")
    extra = sorted(d.name for d in pred.iterdir() if d.is_dir() and not d.name.startswith(".")
                   and not (gt / d.name).is_dir())
    if extra:
        log.warning("eval: %d sub-folder(s) of --pred %s have no ground truth and are ignored: %s",
                    len(extra), pred, _first(extra))
    return [_folder_clip(d.name, pred / d.name, d) for d in subs]
