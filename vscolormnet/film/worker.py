"""The Ray actor: one process, one network, one ``Colorize`` node over the whole clip, many shots.

Why one node for the actor's lifetime: its references are encoded once and its network stays
loaded, so a shot costs only its own frames. The node is built on the *whole* INPUT so frame
numbers, cuts and the long-term-memory rule are those of a single-process run; shot i is
``out[start:stop]``, which the shot plan lets start at ``start`` without computing earlier
shots. Snapshots are turned off (every shot is rendered once, forwards), so a node that has
served many shots holds only the last few shots' current states (the renderer keeps 8).

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
    """Renders shots into segment files. ``cfg``: what every shot shares (see ``driver._worker_config``)."""

    def __init__(self, cfg: dict):
        import torch
        torch.set_num_threads(cfg["threads"])
        import vapoursynth as vs

        from ..vs.filter import Colorize
        from .segments import storable
        from .source import open_input
        vs.core.num_threads = cfg["threads"] + 1       # decoding overlaps the network a little
        self.cfg = cfg
        clip = open_input(cfg["input"])
        out = Colorize(clip, cfg["refs_dir"], size=cfg["size"], weights=cfg["weights"], backend=cfg["backend"],
                       memory=cfg["memory"], cuts=cfg["cuts"],
                       ref_scope=cfg["ref_scope"], allow_ref_mismatch=cfg["allow_ref_mismatch"],
                       snapshot_interval=NO_SNAPSHOTS, max_snapshots=1)
        self.out = storable(out)
        self.current: tuple[int | None, int] = (None, 0)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        crash = cfg.get("crash")
        self.crash = (int(crash.split(":", 1)[0]), crash.split(":", 1)[1]) if crash else None

    def progress(self) -> tuple[int | None, int]:
        """``(shot, frames written)`` of the shot being rendered (called from another thread)."""
        return self.current

    def render(self, job: dict) -> dict:
        """Write shot ``job['shot']`` (frames ``start``..``stop-1``) and its manifest; returns the manifest."""
        from ..util.files import temp_path_beside
        from .segments import encode_segment, manifest_path, segment_path, write_manifest
        shot, start, stop = job["shot"], job["start"], job["stop"]
        seg = segment_path(Path(self.cfg["work_dir"]), shot)
        for stale in (manifest_path(seg), seg):
            stale.unlink(missing_ok=True)
        tmp = temp_path_beside(seg)
        t0 = time.perf_counter()
        self.current = (shot, 0)

        def on_frame(k: int) -> None:
            self.current = (shot, k)
            if self.crash and self.crash[0] == shot and k >= max(1, (stop - start) // 2):
                self._crash_once()
        try:
            encode_segment(self.out[start:stop], tmp, self.cfg["codec_args"], self.cfg["threads"],
                           extra=self.cfg["colour_options"], on_frame=on_frame)
            os.replace(tmp, seg)
        finally:
            tmp.unlink(missing_ok=True)
            self.current = (None, 0)
        return write_manifest(seg, key=job["key"], shot=shot, start=start, stop=stop,
                              seconds=time.perf_counter() - t0, worker=self.name)

    def _crash_once(self) -> None:
        flag = self.crash[1]
        with contextlib.suppress(FileExistsError):
            os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            os._exit(17)
