"""Reference loading for ``Colorize``: whatever the user passed as ``ref`` → images at the inference size.

Accepted: a colour VapourSynth clip (one frame per reference), an image path, a list of paths
or ``H×W×3`` uint8 arrays, or a folder made by ``refs extract`` (its coloured ``ref_<frame>``
files become references of those frames and its index gives the cuts). Every problem is a
``ReferenceError`` naming ``ref``/``ref_frames`` as the user spells them.
"""
from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import vapoursynth as vs

from ..media import color, vsformat
from ..media.images import ImageError, is_colour, read_rgb
from ..media.ref_folder import fit_problem
from ..runtime.geometry import Geometry
from ..util.errors import ReferenceError  # noqa: F401  (defined with the other user errors)

core = vs.core


@dataclass
class ReferenceSet:
    """What ``ref`` resolved to.

    images:  ``H×W×3`` RGB at the inference size (uint8 from files, float32 in [0, 1] from clips), or
             a function returning it (``auto_ref``: a shot's reference, coloured on first need).
    frames:  clip frame of each reference (an entry may be None: that reference is an exemplar,
             not a clip frame, and stays global under ``ref_scope='shot'``), or None when all are.
    cuts:    scene cuts known up front (a reference folder's index); empty otherwise.
    from_folder: True when ``ref`` was a reference folder (scene resets are then always on).
    """

    images: list[np.ndarray]
    frames: list[int | None] | None
    cuts: frozenset[int]
    from_folder: bool = False


def _is_path(x) -> bool:
    return isinstance(x, (str, os.PathLike))


def load_references(ref, ref_frames, clip: vs.VideoNode, geometry: Geometry,
                    allow_mismatch: bool = False) -> ReferenceSet:
    """Resolve ``ref`` and ``ref_frames`` for ``clip``; images resized to the inference size.
    ``allow_mismatch``: accept a reference folder extracted from another clip (``fit_problem``)."""
    frames = _check_ref_frames(ref_frames)
    cuts: frozenset[int] = frozenset()
    from_folder = _is_path(ref) and Path(ref).expanduser().is_dir()
    if from_folder:
        if frames is not None:
            raise ReferenceError("ref_frames must be None when ref is a reference folder "
                                 "(its ref_<frame> file names give the frames)")
        folder = _load_folder(ref)
        why = fit_problem(folder, clip.num_frames, clip.width, clip.height)
        if why and not allow_mismatch:
            raise ReferenceError(f"ref {why} (allow_ref_mismatch=True uses it anyway)", param="ref",
                                 value=str(ref), accepted="a reference folder extracted from this clip")
        late = [n for n, _ in folder.references if n >= clip.num_frames]
        if late:
            raise ReferenceError(f"ref folder {ref} has references for frames beyond the clip's "
                                 f"{clip.num_frames} frames (first: frame {late[0]})")
        images = [fit_to_inference(img, geometry) for _, img in folder.references]
        frames = [n for n, _ in folder.references]
        cuts = frozenset(c for c in folder.cuts if 0 < c < clip.num_frames)
    elif isinstance(ref, vs.VideoNode):
        images = _clip_images(ref, geometry)
    else:
        images = [fit_to_inference(img, geometry) for img in _file_images(ref)]
    if frames is not None:
        if len(frames) != len(images):
            raise ReferenceError(f"ref_frames must have one frame number per reference ({len(images)}), "
                                 f"got {len(frames)}")
        bad = [n for n in frames if n is not None and not 0 <= n < clip.num_frames]
        if bad:
            raise ReferenceError(f"ref_frames must be within 0…{clip.num_frames - 1}, got {bad[0]}")
        framed = [n for n in frames if n is not None]
        if len(set(framed)) != len(framed):
            raise ReferenceError(f"ref_frames must not repeat a frame, got {list(frames)}")
    return ReferenceSet(images, frames, cuts, from_folder)


def _check_ref_frames(ref_frames) -> list[int | None] | None:
    if ref_frames is None:
        return None
    if isinstance(ref_frames, numbers.Integral) and not isinstance(ref_frames, bool):
        ref_frames = [ref_frames]
    if isinstance(ref_frames, np.ndarray):
        ref_frames = ref_frames.tolist()
    if not isinstance(ref_frames, (list, tuple)) or not ref_frames or not all(
            n is None or (isinstance(n, numbers.Integral) and not isinstance(n, bool)) for n in ref_frames):
        raise ReferenceError(f"ref_frames must be None or a non-empty list of frame numbers (None for an "
                             f"exemplar), got {ref_frames!r}")
    if all(n is None for n in ref_frames):
        return None
    return [None if n is None else int(n) for n in ref_frames]


def _load_folder(ref):
    from ..media.ref_folder import load_reference_folder
    try:
        return load_reference_folder(ref)
    except ValueError as e:
        raise ReferenceError(f"ref folder: {e}") from None


def fit_to_inference(img: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Resize to the inference size like the official exemplar resize (PIL bilinear, aspect ignored)."""
    return color.resize_rgb_like_pil(img, (geometry.inf_width, geometry.inf_height))


def _file_images(ref) -> list[np.ndarray]:
    """Images from a path, an array, or a list of those (uint8 RGB, in colour)."""
    items = [ref] if _is_path(ref) or isinstance(ref, np.ndarray) else \
        list(ref) if isinstance(ref, (list, tuple)) else None
    if items is None:
        raise ReferenceError(f"ref must be a colour clip, an image path, a list of image paths or a reference "
                             f"folder, got {type(ref).__name__}")
    if not items:
        raise ReferenceError("ref is an empty list; give at least one colour reference")
    images = []
    for i, item in enumerate(items):
        if _is_path(item):
            try:
                rgb, name = read_rgb(Path(item).expanduser(), "ref image"), str(item)
            except ImageError as e:
                raise ReferenceError(str(e)) from None
        elif isinstance(item, np.ndarray):
            rgb, name = item, f"array {i}"
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
                raise ReferenceError(f"ref {name} must be a non-empty H×W×3 uint8 RGB array, "
                                     f"got shape {rgb.shape} {rgb.dtype}")
        else:
            raise ReferenceError(f"ref list items must be image paths or H×W×3 uint8 arrays; "
                                 f"item {i} is {type(item).__name__}")
        if not is_colour(rgb):
            raise ReferenceError(f"ref image {name} is grayscale; a reference must be in colour")
        images.append(np.ascontiguousarray(rgb))
    return images


def _clip_images(ref: vs.VideoNode, geometry: Geometry) -> list[np.ndarray]:
    """Every frame of a colour clip as float32 RGB in [0, 1] at the inference size."""
    if ref.format is None or ref.format.id == vs.NONE or ref.format.color_family not in (vs.RGB, vs.YUV):
        fmt = "a variable format" if ref.format is None or ref.format.id == vs.NONE else ref.format.name
        raise ReferenceError(f"ref must be a colour clip (RGB or YUV) or image paths, got {fmt}")
    if ref.width == 0 or ref.height == 0:
        raise ReferenceError("ref clip must have a constant size")
    try:
        rgb = vsformat.clip_to_rgbs(ref)
    except vsformat.FormatError as e:
        raise ReferenceError(f"ref clip: {e}") from None
    if (ref.width, ref.height) != (geometry.inf_width, geometry.inf_height):
        rgb = core.resize.Bicubic(rgb, geometry.inf_width, geometry.inf_height)
    images = []
    for i, f in enumerate(rgb.frames(close=True)):
        img = np.clip(vsformat.frame_to_tensor(f).permute(1, 2, 0).numpy(), 0, 1)
        if not is_colour((img * 255 + 0.5).astype(np.uint8)):
            raise ReferenceError(f"ref frame {i} is grayscale; a reference must be in colour")
        images.append(img)
    return images
