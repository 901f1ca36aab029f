"""``bench instances``: process memory of many ``Colorize`` nodes (the shared network at work).

Two scenarios, each in its own process so that one's memory does not hide the other's:

- ``dropped``: N nodes created one after another, each asked for one frame and dropped; reports
  the RSS after the first and after the last (growth should stay small: one network per process,
  freed with its node).
- ``spliced``: one clip cut into N shots, one ``Colorize`` per shot, spliced and rendered whole
  (the natural script for a film), against one node over the same clip: peak RSS of each.
"""
from __future__ import annotations

import gc
import json
import subprocess
import sys


def _rss_mib(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _clip(n: int, width: int, height: int):
    import numpy as np
    import vapoursynth as vs

    from ..media.color import synthetic_rgb
    core = vs.core
    blank = core.std.BlankClip(format=vs.RGBS, width=width, height=height, length=n, fpsnum=24, fpsden=1)

    def fill(n, f):
        gray = synthetic_rgb(height, width, t=n).mean(-1).astype(np.float32) / 255
        out = f.copy()
        for p in range(3):
            np.asarray(out[p])[...] = gray
        return out
    rgb = core.std.ModifyFrame(blank, blank, fill)
    return core.std.SetFrameProps(core.resize.Bicubic(rgb, format=vs.YUV420P8, matrix_s="709"), _Matrix=1)


def _scenario(name: str, instances: int, frames: int, width: int, height: int, weights, size: str,
              ref: str) -> dict:
    import vapoursynth as vs

    from ..runtime import shared
    from ..vs.filter import Colorize
    core = vs.core
    core.num_threads = 1
    clip = _clip(instances * frames, width, height)
    kw = dict(weights=weights, size=size)
    out = {"scenario": name, "instances": instances, "frames_per_instance": frames, "width": width,
           "height": height, "size": size}
    if name == "dropped":
        rss = []
        for i in range(instances):
            node = Colorize(clip[i * frames:(i + 1) * frames], ref, **kw)
            node.get_frame(0)
            del node
            gc.collect()
            rss.append(round(_rss_mib(), 1))
        out.update(rss_after_each_mib=rss, growth_after_first_mib=round(rss[-1] - rss[0], 1),
                   loaded_after=shared.stats())
    elif name in ("spliced", "single"):
        if name == "single":
            node = Colorize(clip, ref, **kw)
        else:
            node = core.std.Splice([Colorize(clip[i * frames:(i + 1) * frames], ref, **kw)
                                    for i in range(instances)])
        for _ in node.frames(close=True):
            pass
        out.update(peak_rss_mib=round(_rss_mib("VmHWM"), 1), loaded=shared.stats())
    else:
        raise ValueError(f"unknown scenario {name!r}")
    return out


def run_all(*, instances: int, frames: int, width: int, height: int, weights, size: str, ref: str) -> list[dict]:
    """Each scenario in a fresh interpreter; returns their JSON results."""
    results = []
    for name in ("dropped", "single", "spliced"):
        code = ("import json, sys; from vscolormnet.commands.bench_instances import _scenario; "
                f"print(json.dumps(_scenario({name!r}, {instances}, {frames}, {width}, {height}, "
                f"{str(weights)!r}, {size!r}, {ref!r})))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"scenario {name} failed: {proc.stderr.strip().splitlines()[-1:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results
