"""The Ray actor: one process, one network, one ``Colorize`` node over the whole clip, many shots.

Why one node for the actor's lifetime: its network stays loaded and each reference is encoded
once (when the first shot that reads it starts: a worker encodes only its shots' references), so
a shot costs only its own frames. The node is built on the *whole* INPUT so frame numbers, cuts
and the long-term-memory rule are those of a single-process run; shot i is ``out[start:stop]``,
which the shot plan lets start at ``start`` without computing earlier shots. Snapshots are turned
off (every shot is rendered once, forwards), so a node that has served many shots holds only the
last few shots' current states (the renderer keeps 8).

Why the node is built by the first shot and not by ``__init__``: the actor is started while the
driver is still reading the shot plan, so its imports overlap that; the node needs the plan's
results (resolved paths, INPUT's index, the backend), which come with every job.

The class is plain Python: the driver wraps it with ``ray.remote`` at run time, so importing this
module needs no Ray.
"""
from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path

NO_SNAPSHOTS = 1 << 30        # snapshot_interval: a shot is rendered once, from its first frame
CRASH_ENV = "VSCOLORMNET_FILM_CRASH"   # test hook, "SHOT:FLAGFILE": a worker exits mid-shot, once


class ShotWorker:
    """Renders shots into segment files. ``cfg``: ``threads`` (torch and VapourSynth), ``weights`` (as the user
    gave them: loaded ahead when they resolve here) and the ``crash`` hook."""

    def __init__(self, cfg: dict):
        t0 = time.perf_counter()
        import torch
        torch.set_num_threads(cfg["threads"])
        import vapoursynth as vs

        from ..vs import filter  # noqa: F401 - imported now, while the driver reads the shot plan
        from . import segments  # noqa: F401
        vs.core.num_threads = cfg["threads"] + 1       # decoding overlaps the network a little
        self.network = self._preload(cfg.get("weights"))
        self.threads = cfg["threads"]
        self.clip_cfg: dict | None = None               # what the node was built from (the jobs' ``clip``)
        self.out = None
        self.current: tuple[int | None, int] = (None, 0)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        crash = cfg.get("crash")
        self.crash = (int(crash.split(":", 1)[0]), crash.split(":", 1)[1]) if crash else None
        self.start_seconds = time.perf_counter() - t0      # reported with the first shot

    @staticmethod
    def _preload(weights):
        """A lease on the network, loaded now; ``Colorize`` then shares it (networks are keyed by content).
        None when it fails here: the first shot's ``Colorize`` reports why, as one line."""
        from ..runtime import shared
        from ..weights.checkpoint import resolve_weights
        try:
            return shared.acquire_network(resolve_weights(weights).resolve())
        except Exception:  # noqa: BLE001 - reported by the first shot, where the error belongs
            return None

    def _build(self, cfg: dict) -> None:
        """The ``Colorize`` node over the whole INPUT (opened with the driver's index)."""
        from ..vs.filter import Colorize
        from .segments import storable
        from .source import open_input
        clip = open_input(cfg["input"], index=cfg["index"])
        out = Colorize(clip, cfg["refs_dir"], size=cfg["size"], weights=cfg["weights"], backend=cfg["backend"],
                       memory=cfg["memory"], cuts=cfg["cuts"],
                       ref_scope=cfg["ref_scope"], allow_ref_mismatch=cfg["allow_ref_mismatch"],
                       snapshot_interval=NO_SNAPSHOTS, max_snapshots=1)
        self.out, self.clip_cfg = storable(out), cfg

    def progress(self) -> tuple[int | None, int]:
        """``(shot, frames written)`` of the shot being rendered (called from another thread)."""
        return self.current

    def render(self, job: dict) -> dict:
        """Write shot ``job['shot']`` (frames ``start``..``stop-1``) and its manifest; returns the manifest
        plus ``times`` (seconds: worker start, reference encoding, rendering, segment write; ``phases``)."""
        from ..runtime.propagator import reference_encoding_seconds
        from ..util.files import temp_path_beside
        from .segments import encode_segment, manifest_path, segment_path, write_manifest
        times = {}
        if self.clip_cfg != job["clip"]:
            t = time.perf_counter()
            self._build(job["clip"])
            times["worker_start"] = time.perf_counter() - t
        if self.start_seconds is not None:
            times["worker_start"] = times.get("worker_start", 0.0) + self.start_seconds
            self.start_seconds = None
        cfg = self.clip_cfg
        shot, start, stop = job["shot"], job["start"], job["stop"]
        seg = segment_path(Path(cfg["work_dir"]), shot)
        for stale in (manifest_path(seg), seg):
            stale.unlink(missing_ok=True)
        tmp = temp_path_beside(seg)
        t0, refs0 = time.perf_counter(), reference_encoding_seconds()
        self.current = (shot, 0)
        last = [t0]

        def on_frame(k: int) -> None:
            last[0] = time.perf_counter()
            self.current = (shot, k)
            if self.crash and self.crash[0] == shot and k >= max(1, (stop - start) // 2):
                self._crash_once()
        try:
            encode_segment(self.out[start:stop], tmp, cfg["codec_args"], self.threads,
                           extra=cfg["colour_options"], on_frame=on_frame)
            os.replace(tmp, seg)
        finally:
            tmp.unlink(missing_ok=True)
            self.current = (None, 0)
        manifest = write_manifest(seg, key=job["key"], shot=shot, start=start, stop=stop,
                                  seconds=time.perf_counter() - t0, worker=self.name)
        refs = reference_encoding_seconds() - refs0
        times.update(reference_encoding=refs, render=last[0] - t0 - refs, segment_write=time.perf_counter() - last[0])
        return {**manifest, "times": times}

    def _crash_once(self) -> None:
        flag = self.crash[1]
        with contextlib.suppress(FileExistsError):
            os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            os._exit(17)
