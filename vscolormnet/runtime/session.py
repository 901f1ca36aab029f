"""``ClipSession``: one clip's sequential state behind a random-access interface.

VapourSynth may ask for frame n in any order and from any thread. The session keeps the
recurrent state of the last processed frame and answers ``result(n)`` so that the output
of frame n never depends on the request order:

- n ahead of the state: the frames in between are processed (and cached);
- n behind the state (a backward seek), or a known cut between the state and n: processing
  restarts from the nearest saved point at or before n: a scene-reset anchor (the state
  there is the initial state; cuts known up front, e.g. from a reference folder's index, are
  anchors from the start) or a snapshot taken every ``snapshot_interval`` frames.

A step that fails (an exception, NaN output, Ctrl-C) leaves no half-updated state behind:
the next request restarts from a saved point.

Off the recurrence's path: ``encode_key`` runs ahead in fixed blocks of ``key_batch`` frames
(``keyahead.KeyAhead``; 1 = off), and on CUDA the per-step finite check is read one step late
(``defer_checks``): step t+1 is enqueued before the host waits for step t's flags, and the last
frame's flags are read with its copy-out (``result(n, defer_check=True)``). A NaN found late
still leaves nothing poisoned: the state, the results and the snapshots that came after the bad
step are dropped before the error is raised.

Snapshot memory is bounded: when more than ``max_snapshots`` exist, the interval doubles and
every other snapshot is dropped. A backward seek therefore recomputes at most
``snapshot_interval`` frames (the current interval; ``recompute_bound``).
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import torch

from .keyahead import KeyAhead
from .propagator import NonFiniteError, PendingCheck, PropagationState, Propagator, StepResult
from .source import FrameSource

log = logging.getLogger("vscolormnet")


class ClipSession:
    """Random access to a recurrent per-frame computation over ``num_frames`` frames."""

    def __init__(self, propagator: Propagator, source: FrameSource, snapshot_interval: int = 10,
                 max_snapshots: int = 16, cache_frames: int = 32, start: int = 0, stop: int | None = None,
                 key_batch: int = 1):
        """``source`` gives the network inputs and scene-change marks of the clip's frames (the session
        owns it: nothing calls back into the caller). A session may serve only the frames
        ``start ≤ n < stop`` of the clip (one shot: ``start`` is a cut). Anchors, where the state is the
        initial one, are ``start``, the plan's known cuts, and every frame the propagator found to start a
        shot (``starts_shot``). ``key_batch``: see ``keyahead``."""
        if snapshot_interval < 1 or max_snapshots < 1:
            raise ValueError("snapshot_interval and max_snapshots must be positive")
        self.propagator = propagator
        self.source = source
        self.num_frames = source.num_frames
        self.snapshot_interval = snapshot_interval
        self.max_snapshots = max_snapshots
        self.cache_frames = cache_frames
        self.lock = threading.RLock()
        self.state: PropagationState | None = propagator.new_state(start)
        self.snapshots: dict[int, PropagationState] = {}
        self.start, self.stop = start, self.num_frames if stop is None else stop
        self.anchors: set[int] = {start} | {c for c in propagator.known_cuts if start < c < self.stop}
        self.cache: OrderedDict[int, StepResult] = OrderedDict()
        self.key_ahead = KeyAhead(propagator.backend, key_batch, self.start, self.stop, source.frames,
                                  anchors=self.anchors, times=propagator.times)
        self.defer_checks = torch.device(propagator.backend.device).type == "cuda"
        self._pending: list[tuple[int, PendingCheck]] = []     # steps of the current state whose flags are unread
        self._pending_snaps: set[int] = set()                  # snapshots taken from such steps
        self.frames_computed = 0               # diagnostics: total steps run
        self.restarts = 0

    def account(self, acc, owner: str) -> None:
        """Charge this session's tensors to ``acc`` (``account.DeviceAccount``): the live state first,
        so snapshots pay only for what they do not share with it."""
        with self.lock:
            acc.add(f"{owner}: state", self.state)
            acc.add(f"{owner}: snapshots", list(self.snapshots.values()))
            acc.add(f"{owner}: cached results", list(self.cache.values()))
            acc.add(f"{owner}: key blocks", list(self.key_ahead._blocks.values()))

    @property
    def recompute_bound(self) -> int:
        """Most frames a backward seek recomputes now (before the target frame itself)."""
        return self.snapshot_interval

    def result(self, n: int, defer_check: bool = False) -> StepResult:
        """The step result of frame ``n`` (``0 ≤ n < num_frames``).

        defer_check: the result's finite flags may still be unread (``res.check``, CUDA only): the
        caller reads them with its own copy-out (``res.check.raise_if_bad()``) instead of a wait here.
        """
        if not self.start <= n < self.stop:
            raise IndexError(f"frame {n} is outside this session's frames ({self.start}…{self.stop - 1})")
        with self.lock:
            self._settle(wait=False)           # flags already on the host: read them now (free)
            hit = self.cache.get(n)
            if hit is not None:
                self.cache.move_to_end(n)
                if not defer_check:
                    self._verify(upto=n)
                return hit
            if self.state is None or n < self.state.next_frame or self._restart_point(n) > self.state.next_frame:
                self._settle(wait=True)        # the old chain's results and snapshots stay only if finite
                self._restart_before(n)
            while True:
                t = self.state.next_frame
                res = self._step()
                if t == n:
                    if not defer_check:
                        self._verify()
                    return res

    def _restart_point(self, n: int) -> int:
        """The latest frame ≤ n with a saved state (anchor or snapshot)."""
        return max(max((f for f in self.snapshots if f <= n), default=0), max(f for f in self.anchors if f <= n))

    def _restart_before(self, n: int) -> None:
        snap = max((f for f in self.snapshots if f <= n), default=-1)
        anchor = max(f for f in self.anchors if f <= n)
        if anchor > snap:
            self.state = self.propagator.new_state(anchor)
        else:
            self.state = self.snapshots[snap].clone()
        self.restarts += 1

    def _step(self) -> StepResult:
        t = self.state.next_frame
        if t % self.snapshot_interval == 0 and t not in self.snapshots and t not in self.anchors:
            self._take_snapshot(t)
        image, scene_change, keys = self.key_ahead.get(t)
        try:
            res = self.propagator.step(self.state, image, end=(t == self.num_frames - 1), scene_change=scene_change,
                                       keys=keys, defer_check=self.defer_checks)
        except BaseException:
            self.state = None          # half-updated: the next request restarts from a saved point
            self._verify()             # a NaN in an earlier, unread step is the real cause
            raise
        if res.memory_reset:
            self.anchors.add(t)        # a restart at or after t starts from the initial state here
        self.frames_computed += 1
        self.cache[t] = res
        while len(self.cache) > self.cache_frames:
            self.cache.popitem(last=False)
        if res.check is not None:
            self._pending.append((t, res.check))
        self.key_ahead.ahead(t)        # the next block's keys, while the device works on this step
        self._verify(keep=1)           # the previous step's flags: read now, one step late
        return res

    def _verify(self, keep: int = 0, upto: int | None = None, wait: bool = True) -> None:
        """Read the pending finite flags in step order: all but the last ``keep``, only steps ``≤ upto``,
        and (``wait=False``) only flags already on the host. A bad step drops everything after it."""
        while len(self._pending) > keep:
            t, check = self._pending[0]
            if (upto is not None and t > upto) or not (wait or check.ready()):
                return
            try:
                check.raise_if_bad()
            except NonFiniteError:
                self._drop_from(t)
                raise
            self._pending.pop(0)
            self._pending_snaps = {f for f in self._pending_snaps if f > t + 1}    # f holds steps < f

    def _settle(self, wait: bool) -> None:
        """Between requests: a bad step found here was handed out with ``defer_check`` (its caller
        reports it) or never handed out; only its consequences are dropped."""
        try:
            self._verify(wait=wait)
        except NonFiniteError as e:
            log.debug("dropped the state after a non-finite step: %s", e)

    def _drop_from(self, bad: int) -> None:
        """Step ``bad`` was not finite: forget the state and everything computed from it."""
        self.state = None
        for t, _ in self._pending:
            if t >= bad:
                self.cache.pop(t, None)
        for f in self._pending_snaps:
            if f > bad:
                self.snapshots.pop(f, None)
        self._pending.clear()
        self._pending_snaps.clear()

    def _take_snapshot(self, t: int) -> None:
        self.snapshots[t] = self.state.clone()
        if self._pending:
            self._pending_snaps.add(t)
        while len(self.snapshots) > self.max_snapshots:
            self.snapshot_interval *= 2
            self.snapshots = {f: s for f, s in self.snapshots.items() if f % self.snapshot_interval == 0}

    def holds_caches(self) -> bool:
        """Whether run-ahead key blocks or cached results (device memory) are held."""
        return bool(self.cache) or self.key_ahead.holds_blocks()

    def drop_caches(self) -> None:
        """Drop the key blocks and cached results: pure caches, recomputed bit-identically when asked
        for again (the state and snapshots stay). Call with ``lock`` held."""
        self.cache.clear()
        self.key_ahead.clear()

    def snapshot_bytes(self) -> int:
        """Bytes referenced by snapshots (shared tensors counted once per snapshot: an upper bound)."""
        return sum(s.nbytes() for s in self.snapshots.values())

    def close(self) -> None:
        """Drop every tensor (the backend is shared and is not this session's to close)."""
        with self.lock:
            self.snapshots.clear()
            self.cache.clear()
            self.key_ahead.clear()
            self._pending.clear()
            self._pending_snaps.clear()
            self.state = None
