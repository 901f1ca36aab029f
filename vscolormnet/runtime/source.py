"""``FrameSource``: where a session's frames come from, owned by the session.

A session asks its source for the network inputs of the frames it is about to process (one frame,
or a key run-ahead block at once) and gets, per frame, the ``1×3×Hp×Wp`` normalised L' image and
the frame's own *scene-change mark* (``_SceneChangePrev`` in VapourSynth): a raw fact, not a
decision. Whether a frame starts a shot is decided in one place only, ``Propagator.starts_shot``
(known cuts from the plan, marks only with ``scene_reset``).

The VapourSynth filter's source (``vs.source.ClipFrameSource``) asks VapourSynth for frames ahead;
``FrameList`` serves frames that are already in memory or cheap to make (bench, frame folders, tests).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

Frame = tuple[torch.Tensor, bool]      # (image 1×3×Hp×Wp, the frame marks a scene change)


class FrameSource(Protocol):
    """The frames of one clip, ``0 ≤ n < num_frames``; ``frames`` may be called from several threads."""

    num_frames: int

    def frames(self, ns: list[int]) -> list[Frame]:
        """``[(image, scene_change), ...]`` for the frames ``ns`` (ascending), in that order."""
        ...


class FrameList:
    """A ``FrameSource`` over a function ``frame(n) -> (image, scene_change)``."""

    def __init__(self, num_frames: int, frame: Callable[[int], Frame]):
        self.num_frames = int(num_frames)
        self._frame = frame

    def frames(self, ns: list[int]) -> list[Frame]:  # noqa: D102 - FrameSource.frames
        return [self._frame(n) for n in ns]
