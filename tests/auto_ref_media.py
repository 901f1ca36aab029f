"""Media for the automatic-reference tests: gray clips of real photographs (64×48, lossless FFV1), one
photograph per shot, and the tiny DDColor at S=64 (the seeded checkpoint of ``ddcolor_fixtures``)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 64, 48
S = 64                                                           # DDColor's input size in these tests
THREE_SHOTS = (("astronaut", 5), ("coffee", 6), ("chelsea", 5))  # cuts 5, 11 (minimum shot length 5)
THREE_CUTS = [5, 11]


def photo(name: str) -> np.ndarray:
    """A scikit-image photograph as 64×48 RGB."""
    import skimage.data
    return np.asarray(Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((W, H), Image.BICUBIC))


def make_clip(path: Path, shots) -> Path:
    """``shots``: ``(photograph, frames)`` pairs → a gray 24 fps FFV1 clip (yuv444p) at ``path``."""
    d = path.parent / f".{path.stem}-frames"
    d.mkdir(parents=True, exist_ok=True)
    n = 0
    for name, hold in shots:
        gray = Image.fromarray(photo(name)).convert("L").convert("RGB")
        for _ in range(hold):
            gray.save(d / f"f{n:03d}.png")
            n += 1
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-framerate", "24", "-i", str(d / "f%03d.png"),
                    "-c:v", "ffv1", "-pix_fmt", "yuv444p", str(path)], check=True)
    return path


def tiny(flag_weights: str = "--weights", flag_model: str = "--model", flag_size: str = "--input-size") -> list[str]:
    """The flags that select the tiny DDColor at S=64 (built into the test cache on first use)."""
    from ddcolor_fixtures import ddcolor_checkpoint_path
    return [flag_model, "ddcolor-tiny", flag_weights, str(ddcolor_checkpoint_path("tiny")), flag_size, str(S)]


def decoded(video: Path) -> bytes:
    """Every frame of ``video`` as raw yuv444p bytes (for frame-exact comparisons of lossless outputs)."""
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-f", "rawvideo", "-pix_fmt", "yuv444p", "-"],
                          check=True, capture_output=True).stdout
