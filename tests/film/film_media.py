"""The film tests' clip and how they compare frames (shared by ``test_film`` and ``test_ray_cluster``).

The clip is four real photographs, 64×48 gray, two frames each (four shots); the reference folder
is made by hand like ``refs extract`` makes it, with shot 2's reference left gray (that shot then
reads every reference). Nothing here imports Ray.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

W, H, HOLD = 64, 48, 2
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
CUTS = [2, 4, 6]
N = HOLD * len(PHOTOS)


def _photo(name: str) -> np.ndarray:
    import skimage.data
    img = getattr(skimage.data, name)()
    return np.asarray(Image.fromarray(img).convert("RGB").resize((W, H), Image.Resampling.BICUBIC))


def make_media(d: Path) -> dict:
    """``clip.mkv`` (gray FFV1) and ``refs/`` in ``d``."""
    refs = d / "refs"
    refs.mkdir()
    for i, name in enumerate(PHOTOS):
        rgb = _photo(name)
        for k in range(HOLD):
            Image.fromarray(rgb).convert("L").save(d / f"f{i * HOLD + k:03d}.png")
        ref = rgb if i != 2 else np.repeat(np.asarray(Image.fromarray(rgb).convert("L"))[..., None], 3, 2)
        Image.fromarray(ref).save(refs / f"ref_{i * HOLD + 1:06d}.png")
    (refs / "refs.json").write_text(json.dumps({"version": 1, "num_frames": N, "cuts": CUTS, "width": W,
                                                "height": H}))
    clip = d / "clip.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-framerate", "24", "-i", str(d / "f%03d.png"),
                    "-pix_fmt", "gray", "-c:v", "ffv1", str(clip)], check=True, timeout=120)
    return {"clip": clip, "refs": refs, "dir": d}


def frames(path) -> list[np.ndarray]:
    """Every frame of a video file, planes stacked (``planes×H×W``)."""
    from vscolormnet.media.vsformat import open_video
    clip = open_video(path)
    return [np.stack([np.array(f[p]) for p in range(f.format.num_planes)]) for f in clip.frames(close=True)]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def single_process(media: dict, checkpoint, out: Path) -> list[np.ndarray]:
    """The single-process ``Colorize(clip, refs_dir)`` (the ``colorize`` command, ffv1) at the workers'
    one torch thread. A fresh process: VapourSynth's worker threads keep the torch thread count they
    first ran with, so setting it here would not reach a thread pool that earlier tests already used."""
    cmd = [sys.executable, "-m", "vscolormnet", "colorize", str(media["clip"]), "--ref", str(media["refs"]),
           "-o", str(out), "--size", "native", "--weights", str(checkpoint), "--codec-args", "-c:v ffv1",
           "--no-audio"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = frames(out)
    assert len(got) == N
    return got
