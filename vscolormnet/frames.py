"""Folders of frames in, folders of frames out: the official ``test.py`` workflow.

Frames are read at their native size; the network runs on the zero-padded frame; the
output keeps each frame's own L and takes the predicted ab (``OUT_DIR/<stem>.png``).
Every frame is checked (readable, one size) before the network loads, and every output file
(PNGs, ``save_ab``) is written atomically, so a failed or interrupted run leaves no torn file.
"""
from __future__ import annotations

import io
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import color
from .color import compose_rgb, lab_float32, network_ab, network_image
from .fileutil import atomic_write
from .images import ImageError, is_colour, list_images, read_rgb
from .backends import create_backend
from .backends.base import StageTimes
from .config import MemoryConfig
from .core import Propagator, Reference

log = logging.getLogger("vscolormnet")


def list_frames(folder: str | Path) -> list[Path]:
    """``*.png|*.jpg|…`` in ``folder``, sorted by name; hidden files skipped."""
    return list_images(folder, "frames folder")


def check_frames(frames: list[Path]) -> tuple[int, int]:
    """``(width, height)`` shared by all ``frames``, from the headers only (cheap); ``ImageError`` naming
    the first frame that cannot be opened or has another size."""
    size = None
    for p in frames:
        try:
            with Image.open(p) as im:
                s = im.size
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # PIL's corrupt-file errors
            raise ImageError(f"frame {p} cannot be read as an image: {e}") from None
        if size is None:
            size = s
        elif s != size:
            raise ImageError(f"frame {p} is {s[0]}x{s[1]}, expected {size[0]}x{size[1]} like the first frame "
                             f"{frames[0].name}; all frames must have one size")
    return size


def _png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class FramesResult:
    """What ``colorize_frames`` returns (ab' and memory sizes per frame)."""

    ab_pred: np.ndarray
    work_mem_size: np.ndarray
    long_mem_size: np.ndarray
    n_consolidations: np.ndarray
    n_obsolete_removals: np.ndarray
    seconds_per_frame: float
    confidence: np.ndarray | None = None     # memory-match confidence per frame (float64; 1.0 on references)


def colorize_frames(frames_dir, ref_image, weights, out_dir=None, *, first_frame_is_ref=False,
                    config: MemoryConfig = MemoryConfig(), backend="torch", device="cpu", device_id=0, fp16=False,
                    save_ab=None, progress=True, times: StageTimes | None = None) -> FramesResult:
    """Colourise ``frames_dir`` with one reference; write PNGs to ``out_dir`` when given.

    ``save_ab``: also write ab', memory sizes and frame names there (``.npz`` appended if missing).
    """
    config.validate()
    frames = list_frames(frames_dir)
    check_frames(frames)
    first = read_rgb(frames[0], "frame")
    h, w = first.shape[:2]
    ref_rgb = read_rgb(ref_image, "ref image")
    if not is_colour(ref_rgb):
        raise ImageError(f"ref image {ref_image} is grayscale; a reference must be in colour")
    be = create_backend(backend, weights=weights, device=device, device_id=device_id, fp16=fp16,
                        padded_hw=color.padded_size(h, w))
    try:
        result = _run(be, frames, first, ref_rgb, out_dir, first_frame_is_ref, config, progress, times)
    finally:
        be.close()
    if save_ab:
        path = Path(save_ab) if str(save_ab).endswith(".npz") else Path(f"{save_ab}.npz")
        atomic_write(path, lambda f: np.savez(
            f, ab_pred=result.ab_pred, work_mem_size=result.work_mem_size, long_mem_size=result.long_mem_size,
            n_consolidations=result.n_consolidations, n_obsolete_removals=result.n_obsolete_removals,
            confidence=result.confidence, frames=np.array([p.name for p in frames])))
    return result


def _run(be, frames: list[Path], first: np.ndarray, ref_rgb: np.ndarray, out_dir, first_frame_is_ref: bool,
         config: MemoryConfig, progress: bool, times: StageTimes | None) -> FramesResult:
    h, w = first.shape[:2]
    dev = be.device
    ref_rgb = color.resize_rgb_like_pil(ref_rgb, (w, h))
    ref_lab = lab_float32(ref_rgb, dev)
    if first_frame_is_ref:
        ref_L = lab_float32(first, dev)[0]
        reference = Reference(network_image(ref_L), network_ab(ref_lab[1:]), frame=0)
    else:
        reference = Reference(network_image(ref_lab[0]), network_ab(ref_lab[1:]), frame=None)
    times = times or StageTimes(sync_cuda=dev.type == "cuda")
    prop = Propagator(be, config, [reference], config.long_term_usage_for(len(frames)), times)
    state = prop.new_state()
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    n = len(frames)
    abs_, work, long_, cons, rem, conf = [], [], [], [], [], []
    t_start = time.perf_counter()
    t_after_first = None
    for i, path in enumerate(frames):
        rgb = first if i == 0 else read_rgb(path, "frame")
        if rgb.shape[:2] != (h, w):
            raise ImageError(f"frame {path} is {rgb.shape[1]}x{rgb.shape[0]}, expected {w}x{h} like the first frame")
        with times.measure("colour_conversion"):
            L = lab_float32(rgb, dev)[0]
            image = network_image(L)
        res = prop.step(state, image, end=(i == n - 1))
        ab = color.unpad(res.ab[0], h, w)
        abs_.append(ab.cpu().numpy())
        mem = state.memory
        work.append(mem.work.size)
        long_.append(mem.long.size)
        cons.append(mem.consolidations)
        rem.append(mem.obsolete_removals)
        conf.append(float(res.confidence))
        if out_dir is not None:
            with times.measure("colour_conversion"):
                out = compose_rgb(L, ab)
            atomic_write(Path(out_dir) / f"{path.stem}.png", _png_bytes(out))
        if i == 0:
            t_after_first = time.perf_counter()
        if progress:
            elapsed = time.perf_counter() - t_start
            print(f"\rcolorize-frames: {i + 1}/{n} frames, {elapsed / (i + 1):.2f} s/frame",
                  end="" if i + 1 < n else "\n", file=sys.stderr, flush=True)
    spf = ((time.perf_counter() - t_after_first) / (n - 1)) if n > 1 else float("nan")
    return FramesResult(np.stack(abs_).astype(np.float32), np.array(work, np.int64),
                        np.array(long_, np.int64), np.array(cons, np.int64), np.array(rem, np.int64), spf,
                        np.array(conf, np.float64))
