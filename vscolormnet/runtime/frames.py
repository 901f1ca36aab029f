"""Folders of frames in, folders of frames out: the official ``test.py`` workflow.

Frames are read at their native size; the network runs on the zero-padded frame; the
output keeps each frame's own L and takes the predicted ab (``OUT_DIR/<stem>.png``).
Every frame is checked (readable, one size) before the network loads, and every output file
(PNGs, ``save_ab``) is written atomically, so a failed or interrupted run leaves no torn file.

Only the network step runs on the calling thread: a reader thread decodes and converts the next
frames, a writer thread composes and writes the finished ones (``_Pipeline``), so PNG and float64
colour work overlap the network instead of adding to it. Same arithmetic, same order: the files
are byte-identical to a serial run.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..backends import create_backend
from ..backends.base import StageTimes
from ..media import color
from ..media.color import compose_rgb, lab_float32, network_ab, network_image
from ..media.images import ImageError, is_colour, list_images, read_rgb
from ..util.files import atomic_write
from .config import MemoryConfig
from .propagator import Propagator, Reference

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
                    config: MemoryConfig = MemoryConfig(), backend="torch", device="cpu", device_id=0, fp16=None,
                    precision=None, tf32=None, save_ab=None, progress=True,
                    times: StageTimes | None = None) -> FramesResult:
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
                        precision=precision, tf32=tf32, padded_hw=color.padded_size(h, w))
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


# ---- the pipeline: a reader ahead of the network, a writer behind it -----------------------------
READ_AHEAD = 2           # frames decoded and converted ahead of the network (each ~3×Hp×Wp float32)
WRITE_BEHIND = 2         # finished frames waiting to be composed and written
HELPER_NICE = 10         # helper threads yield the CPU to the network's threads (Linux: per-thread nice)
_POLL_S = 0.1            # how often a blocked thread looks at the stop flag


class _Failed:
    """An exception raised in a helper thread, carried to the main thread."""

    def __init__(self, error: BaseException):
        self.error = error


class _Pipeline:
    """The reader and writer threads around the network step, and the one stop flag they share.

    The reader decodes frames in order and converts them to the network's input (``(L H×W,
    image 1×3×Hp×Wp)`` per frame, or a ``_Failed`` in the frame's place); the writer composes
    and writes the PNGs in order. Both queues are bounded, so memory stays at a few frames. A
    failure anywhere sets the stop flag: the other threads stop at their next item (a file being
    written is finished or removed by ``atomic_write``, never left torn) and the main thread
    raises the failure.
    """

    def __init__(self, frames: list[Path], first: np.ndarray, dev, out_dir, times: StageTimes):
        self.frames, self.first, self.dev, self.out_dir, self.times = frames, first, dev, out_dir, times
        self.stop = threading.Event()
        self.inputs: queue.Queue = queue.Queue(READ_AHEAD)
        self.outputs: queue.Queue = queue.Queue(WRITE_BEHIND)
        self.write_error: BaseException | None = None
        self._main = threading.get_ident()                 # the thread that runs the network
        self.threads = [threading.Thread(target=self._read, name="vscolormnet-frames-reader", daemon=True)]
        if out_dir is not None:
            self.threads.append(threading.Thread(target=self._write, name="vscolormnet-frames-writer", daemon=True))

    def __enter__(self) -> "_Pipeline":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            if not issubclass(exc_type, KeyboardInterrupt):
                self._finish_writes()                     # frames computed before the failure still land
            self.stop.set()
        try:
            if exc_type is None and self.out_dir is not None:
                self._put(self.outputs, None)             # end of the clip: the writer finishes its queue
            self._join()
        except BaseException:                             # a write error, or Ctrl-C while the writer finishes
            self.stop.set()
            self._join()
            raise
        if exc_type is None and self.write_error is not None:
            raise self.write_error

    def _finish_writes(self) -> None:
        """Let the writer write what is queued (at most ``WRITE_BEHIND`` frames), then return.

        Called on a failure other than Ctrl-C, before the stop flag: a rerun then finds every frame
        before the failing one. A write error ends the wait (the caller then stops the pipeline and
        raises the original failure); Ctrl-C while it waits stops everything and is raised instead.
        """
        if self.out_dir is None or self.write_error is not None:
            return
        try:
            if self._put(self.outputs, None):
                self.threads[1].join()
        except KeyboardInterrupt:
            self.stop.set()
            self._join()
            raise
        except BaseException:
            pass

    def _join(self) -> None:
        for t in self.threads:
            t.join()

    # -- main thread ---------------------------------------------------------------------
    def next_input(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next frame's ``(L, image)``; raises the reader's error for this frame, or the writer's."""
        item = self._get(self.inputs)
        if isinstance(item, _Failed):
            raise item.error
        return item

    def write(self, path: Path, L: torch.Tensor, ab: torch.Tensor) -> None:
        """Queue ``out_dir/<stem>.png`` from L (``H×W``) and ab' (``2×H×W``); raises an earlier write's error."""
        self._put(self.outputs, (path, L, ab))

    # -- helper threads ------------------------------------------------------------------
    def _read(self) -> None:
        _lower_priority()
        h, w = self.first.shape[:2]
        try:
            for i, path in enumerate(self.frames):
                rgb = self.first if i == 0 else read_rgb(path, "frame")
                if rgb.shape[:2] != (h, w):
                    raise ImageError(f"frame {path} is {rgb.shape[1]}x{rgb.shape[0]}, expected {w}x{h} "
                                     "like the first frame")
                with self.times.measure("colour_conversion", sync=False):
                    L = lab_float32(rgb, self.dev)[0]
                    image = network_image(L)
                if not self._put(self.inputs, (L, image)):
                    return
        except BaseException as e:                          # the main thread raises it at this frame
            self._put(self.inputs, _Failed(e))

    def _write(self) -> None:
        _lower_priority()
        try:
            while (item := self._get(self.outputs)) is not None:
                path, L, ab = item
                with self.times.measure("colour_conversion", sync=False):
                    out = compose_rgb(L, ab)
                atomic_write(Path(self.out_dir) / f"{path.stem}.png", _png_bytes(out))
        except BaseException as e:
            self.write_error = e
            self.stop.set()

    # -- shared --------------------------------------------------------------------------
    def _put(self, q: queue.Queue, item) -> bool:
        """Put ``item`` unless the pipeline stops first (False); the main thread raises a write error."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                pass
        self._raise_if_main()
        return False

    def _get(self, q: queue.Queue):
        """The next item, or None once the pipeline stops (the main thread raises the write error)."""
        while not self.stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                pass
        self._raise_if_main()
        return None

    def _raise_if_main(self) -> None:
        if threading.get_ident() == self._main:
            raise self.write_error or RuntimeError("colorize-frames: the frame pipeline stopped")


def _lower_priority() -> None:
    """Give this helper thread a higher nice value, so that on few cores the network's threads win.

    Linux only: there ``setpriority(PRIO_PROCESS, tid)`` sets one thread's nice value (elsewhere the
    id would name a process). Threads the helper starts (its torch ops' OpenMP team) inherit it.
    """
    if HELPER_NICE and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HELPER_NICE)


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
    t_after_first, shown = None, 0
    try:
        with _Pipeline(frames, first, dev, out_dir, times) as pipe:
            for i, path in enumerate(frames):
                L, image = pipe.next_input()
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
                    pipe.write(path, L, ab)
                if i == 0:
                    t_after_first = time.perf_counter()
                if progress:
                    elapsed = time.perf_counter() - t_start
                    print(f"\rcolorize-frames: {i + 1}/{n} frames, {elapsed / (i + 1):.2f} s/frame",
                          end="" if i + 1 < n else "\n", file=sys.stderr, flush=True)
                    shown = i + 1
    except BaseException:
        if 0 < shown < n:
            print(file=sys.stderr, flush=True)         # end the progress line before the error message
        raise
    spf = ((time.perf_counter() - t_after_first) / (n - 1)) if n > 1 else float("nan")
    return FramesResult(np.stack(abs_).astype(np.float32), np.array(work, np.int64),
                        np.array(long_, np.int64), np.array(cons, np.int64), np.array(rem, np.int64), spf,
                        np.array(conf, np.float64))
