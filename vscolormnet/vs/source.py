"""``ClipFrameSource``: the ``FrameSource`` of one ``Colorize`` node, frames asked of VapourSynth ahead.

It turns frame n of the inference-size RGBS clip into the network's ``1×3×Hp×Wp`` input on the
backend's device and reports the frame's ``_SceneChangePrev`` mark as it is (whether that starts
a shot is ``Propagator.starts_shot``'s decision). A block's other frames, and the next block
inside the shot, are requested with ``get_frame_async`` while the calling thread waits for the
first, so VapourSynth decodes and resizes them in parallel with the network.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import torch
import vapoursynth as vs

from ..media import color, vsformat
from ..runtime.shots import ShotPlan
from ..runtime.source import Frame


class ClipFrameSource:
    """Frames of ``rgb_small`` (RGBS at the inference size) as network inputs on ``device`` (thread-safe).

    plan:      the shot plan; requests ahead never cross into the next shot (another session's).
    key_batch: frames per run-ahead block; bounds how many requests are kept.
    """

    def __init__(self, rgb_small: vs.VideoNode, device: torch.device, plan: ShotPlan, key_batch: int):
        self.rgb_small = rgb_small
        self.num_frames = rgb_small.num_frames
        self.device = device
        self.plan = plan
        self.key_batch = key_batch
        self._requested: OrderedDict[int, object] = OrderedDict()       # frame → get_frame_async future
        self._lock = threading.Lock()

    def frames(self, ns: list[int]) -> list[Frame]:
        """``[(image 1×3×Hp×Wp, the frame's _SceneChangePrev), ...]`` for the frames ``ns``."""
        ns = list(ns)
        stop = self.plan.bounds(self.plan.shot_of(ns[-1]))[1]
        self._request(ns[1:] + list(range(ns[-1] + 1, min(stop, ns[-1] + 1 + len(ns)))))
        out = []
        for n in ns:
            frame = self._frame(n)
            L = color.lab_from_unit_rgb(vsformat.frame_to_tensor(frame, self.device))[0]
            out.append((color.network_image(L), bool(frame.props.get("_SceneChangePrev", 0))))
        return out

    def _request(self, ns: list[int]) -> None:
        """Ask VapourSynth for frames now; ``_frame`` picks them up (bounded: oldest dropped)."""
        with self._lock:
            for n in ns:
                if n not in self._requested:
                    self._requested[n] = self.rgb_small.get_frame_async(n)
            while len(self._requested) > 4 * self.key_batch + 8:
                self._requested.popitem(last=False)

    def _frame(self, n: int) -> vs.VideoFrame:
        """Frame n: a finished request, else a synchronous one. Never a wait on a future: a synchronous
        ``get_frame`` frees this VapourSynth thread while it waits, so it cannot deadlock, even with
        ``core.num_threads = 1`` or ``vspipe -r 1``."""
        with self._lock:
            future = self._requested.pop(n, None)
        if future is not None and future.done() and future.exception() is None:
            return future.result()
        return self.rgb_small.get_frame(n)

    def clear(self) -> None:
        """Drop the outstanding requests (the node is being closed)."""
        with self._lock:
            self._requested.clear()
