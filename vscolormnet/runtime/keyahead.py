"""``KeyAhead``: ``encode_key`` of upcoming frames, in fixed blocks, off the recurrence's path.

``encode_key`` (the heaviest stage) reads the frame alone, so it can run before the recurrent
step needs it, and for several frames in one batched call. Batched kernels need not give the
same bits as batch-1 ones, so the batch a frame belongs to is fixed: frame ``t`` is always
computed in the block

    ``[max(start, ⌊t/B⌋·B, a), min(stop, (⌊t/B⌋+1)·B, a'))``

(``start``/``stop``: the session's frames, i.e. one shot; ``a ≤ t < a'``: the anchors given up
front), a function of ``t`` and the session's fixed bounds only. A frame's keys, and so its
output, never depend on the request order, and a block never crosses a shot boundary.

With ``run_ahead`` (the default on CUDA) the next block (its input upload and conversion and
its keys) is enqueued on a side stream as soon as a frame of the current one has been stepped;
the main stream waits on its event only when it reads those frames. Tensors made on the side
stream and read on the main one are marked with ``record_stream``.

A run-ahead that fails (a frame that cannot be read, out of memory) is logged once and not
retried by the later steps of the block; the frames' own requests compute the block (and report).

Memory: at most two blocks per session, the one being read and the one ahead. Per frame at the
512 preset, 560×336 padded (×4/3 at 560×448), float32: f16 3.0 MB + f8 6.0 MB + f4 12.0 MB
(≈ 21 MB) + key and selection 0.4 MB + the input image 2.3 MB ≈ 24 MB, so about 380 MB for two
blocks of 8 on a GPU. The renderer keeps up to ``live_shots`` (8) sessions and drops the blocks
of those not among the two latest and not asked for in ``IDLE_REQUESTS`` requests
(``renderer.drop_idle_caches``); requests that keep more shots busy at once (random access
across shots) can still hold two blocks for each live session.
"""
from __future__ import annotations

import logging
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..backends.base import Backend, StageTimes

log = logging.getLogger("vscolormnet")
Fetch = Callable[[list[int]], list[tuple[torch.Tensor, bool]]]     # FrameSource.frames: [(image 1×3×Hp×Wp, scene_change)]
MAX_KEY_BATCH = 64      # more would ask VapourSynth for hundreds of frames at once and hold GBs of keys


def default_key_batch(device, backend_name: str = "torch") -> int:
    """8 for PyTorch on CUDA (batched ``encode_key`` on a side stream fills the GPU), else 1.

    CPU: batching does not pay (measured: a batch of 4 costs 1.71 s/frame vs 1.59 one by one).
    ONNX Runtime / TensorRT: their graphs take one frame, and every stage runs on the backend's one
    stream under one lock, so a block ahead would only queue behind the frame being computed.
    """
    return 8 if torch.device(device).type == "cuda" and backend_name == "torch" else 1


@dataclass
class _Block:
    """One block's frames: ``t → (image, scene_change, keys)``; ``event`` marks its keys as computed (side stream)."""

    frames: dict[int, tuple] = field(default_factory=dict)
    event: object = None


class KeyAhead:
    """The ``encode_key`` outputs of one session's frames, computed block by block (not thread-safe:
    owned by one ``ClipSession``, used under its lock)."""

    def __init__(self, backend: Backend, batch: int, start: int, stop: int, fetch: Fetch, anchors=(),
                 times: StageTimes | None = None, run_ahead: bool | None = None):
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_KEY_BATCH:
            raise ValueError(f"key_batch must be an integer from 1 to {MAX_KEY_BATCH}, got {batch!r}")
        self.backend = backend
        self.batch = batch
        self.start, self.stop = start, stop
        self.fetch = fetch
        self.anchors = tuple(sorted({int(a) for a in anchors if start < a < stop}))
        self.times = times or StageTimes()
        self.device = torch.device(backend.device)
        cuda = self.device.type == "cuda"
        self.run_ahead = batch > 1 and (cuda if run_ahead is None else bool(run_ahead))
        self._side = torch.cuda.Stream(self.device) if cuda and self.run_ahead else None
        self._blocks: dict[int, _Block] = {}           # first frame → block
        self._failed_lo: int | None = None             # first frame of a block whose run-ahead failed
        self.batches: deque[tuple[int, int]] = deque(maxlen=64)    # diagnostics: (first, stop) of the last calls
        self.batched_calls = 0                         # diagnostics: every batched call

    def bounds(self, t: int) -> tuple[int, int]:
        """The block ``[first, stop)`` holding frame ``t``."""
        b, i = t // self.batch, bisect_right(self.anchors, t)
        lo = max(self.start, b * self.batch, self.anchors[i - 1] if i else self.start)
        hi = min(self.stop, (b + 1) * self.batch, self.anchors[i] if i < len(self.anchors) else self.stop)
        return lo, hi

    def get(self, t: int) -> tuple[torch.Tensor, bool, tuple | None]:
        """Frame ``t``'s image, scene-change mark and six ``encode_key`` outputs (None with ``batch`` 1: the step
        computes them itself, exactly as without run-ahead)."""
        if self.batch == 1:
            (image, scene_change), = self.fetch([t])
            return image, scene_change, None
        lo, hi = self.bounds(t)
        self._keep(lo, hi)
        block = self._blocks.get(lo)
        if block is None or t not in block.frames:
            block = self._blocks[lo] = self._compute(lo, hi, side=False)
            if self._failed_lo == lo:
                self._failed_lo = None
        if block.event is not None:
            torch.cuda.current_stream(self.device).wait_event(block.event)
        image, scene_change, keys = block.frames.pop(t)
        if not block.frames:
            del self._blocks[lo]
        # key, shrinkage and selection stay in the state (memory, last key): copies, so that they
        # do not hold the whole block's batch tensors alive.
        keys = tuple(k.clone() for k in keys[:3]) + keys[3:]
        return image, scene_change, keys

    def ahead(self, t: int) -> None:
        """After frame ``t``'s step: enqueue the next block (side stream), if run-ahead is on.

        A failure here (a frame that cannot be read, out of memory) is logged once and the block is
        not tried again ahead: its frames' own requests compute it (``get``) and report the error.
        """
        if not self.run_ahead:
            return
        _, hi = self.bounds(t)
        if hi >= self.stop:
            return
        lo, hi = self.bounds(hi)
        if lo in self._blocks or lo == self._failed_lo:
            return
        try:
            self._blocks[lo] = self._compute(lo, hi, side=True)
        except Exception as e:  # noqa: BLE001 - reported by the frame's own request
            self._failed_lo = lo
            log.warning("key run-ahead of frames %d…%d failed (left to their own requests): %s: %s",
                        lo, hi - 1, type(e).__name__, " ".join(str(e).split()))

    def nbytes(self) -> int:
        """Bytes held by the blocks (images and keys; batch tensors counted once)."""
        seen, total = set(), 0
        for block in self._blocks.values():
            for image, _, keys in block.frames.values():
                for x in (image, *keys):
                    ptr = x.untyped_storage().data_ptr()
                    if ptr not in seen:
                        seen.add(ptr)
                        total += x.untyped_storage().nbytes()
        return total

    def clear(self) -> None:
        """Drop every block (pure caches: results never depend on them)."""
        self._blocks.clear()
        self._failed_lo = None

    def holds_blocks(self) -> bool:
        """Whether any block (and so device memory) is held."""
        return bool(self._blocks)

    # ---- internals -----------------------------------------------------------------------
    def _keep(self, lo: int, hi: int) -> None:
        """Keep only the block at ``lo`` and the one after it (bounded memory)."""
        keep = {lo, self.bounds(hi)[0] if hi < self.stop else lo}
        for first in [f for f in self._blocks if f not in keep]:
            del self._blocks[first]

    def _compute(self, lo: int, hi: int, side: bool) -> _Block:
        """Fetch frames ``lo…hi-1`` and encode them in one batch; ``side``: all of it on the side stream
        (input upload and conversion included, so it never waits for the main stream's steps)."""
        ns = list(range(lo, hi))
        stream = self._side if side else None
        event = None
        if stream is None:
            fetched = self.fetch(ns)
            outs = self._encode(fetched)
        else:
            main = torch.cuda.current_stream(self.device)
            with torch.cuda.stream(stream):
                fetched = self.fetch(ns)
                outs = self._encode(fetched)
                event = torch.cuda.Event()
                event.record(stream)
            for x in [image for image, _ in fetched] + list(outs):    # made on the side, read on main
                x.record_stream(main)
        self.batches.append((lo, hi))
        self.batched_calls += 1
        frames = {n: (image, scene_change, tuple(o[i:i + 1] for o in outs))
                  for i, (n, (image, scene_change)) in enumerate(zip(ns, fetched))}
        return _Block(frames, event)

    def _encode(self, fetched: list[tuple[torch.Tensor, bool]]) -> tuple:
        with self.times.measure("encode_key"):
            return self.backend.encode_key_batch(torch.cat([image for image, _ in fetched], 0))
