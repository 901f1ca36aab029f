"""A sample clip from real photographs (scikit-image's astronaut), panned and turned gray,
plus its colour reference, so a new user can see the whole pipeline work.

    python -m vscolormnet.weights.sample OUT_DIR   → OUT_DIR/sample_gray.mp4, OUT_DIR/reference.png
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ..util.files import atomic_write, temp_path_beside


def make_sample(out_dir: str | Path, frames: int = 48, size=(320, 240)) -> tuple[Path, Path]:
    """Write the gray panning clip and the colour reference (the first frame, in colour)."""
    from skimage import data
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    photo = data.astronaut()                        # 512×512 RGB
    w, h = size
    crops = []
    for t in range(frames):
        x = int(round(t * (photo.shape[1] - w) / max(1, frames - 1)))
        y = int(round(0.5 * t * (photo.shape[0] - h) / max(1, frames - 1)))
        crops.append(photo[y:y + h, x:x + w])
    ref = out / "reference.png"
    png = io.BytesIO()
    Image.fromarray(crops[0]).save(png, format="PNG")
    atomic_write(ref, png.getvalue())
    video = out / "sample_gray.mp4"
    tmp = temp_path_beside(video)          # ffmpeg needs a path: write beside, rename when complete
    try:
        proc = subprocess.Popen(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray",
                                 "-s", f"{w}x{h}", "-r", "24", "-i", "-", "-pix_fmt", "yuv420p",
                                 "-c:v", "libx264", "-crf", "12", "-f", "mp4", str(tmp)],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        for c in crops:
            gray = np.asarray(Image.fromarray(c).convert("L"))
            proc.stdin.write(gray.tobytes())
        proc.stdin.close()
        if proc.wait() != 0:
            raise RuntimeError("ffmpeg failed to write the sample clip")
        os.replace(tmp, video)
    finally:
        tmp.unlink(missing_ok=True)
    return video, ref


if __name__ == "__main__":
    v, r = make_sample(sys.argv[1] if len(sys.argv) > 1 else "demo")
    print(f"sample: {v} and {r}", file=sys.stderr)
