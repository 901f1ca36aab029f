"""INPUT for a film: a video file (bestsource) or a ``.vpy`` script, built the same way in every process.

The driver and every worker open INPUT themselves (a clip cannot travel between processes), so
frame n means the same frame everywhere. A script is run like vspipe runs it (``__name__ ==
"__vapoursynth__"``, output 0). ``input_identity`` is what a segment's manifest records to know
that it was rendered from this INPUT.
"""
from __future__ import annotations

import os
import runpy
from pathlib import Path

import vapoursynth as vs

from ..media import vsformat
from ..util.files import file_sha256

SCRIPT_SUFFIXES = (".vpy", ".py")


def is_script(path: str | os.PathLike) -> bool:
    """True for a VapourSynth script (``.vpy``/``.py``), False for a video file."""
    return Path(path).suffix.lower() in SCRIPT_SUFFIXES


def run_script(path: str | os.PathLike) -> vs.VideoNode:
    """Run a ``.vpy`` and return its output 0 (the outputs it set are cleared afterwards)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"INPUT {path} " + ("is not a file" if path.exists() else "does not exist"))
    vs.clear_outputs()
    try:
        runpy.run_path(str(path), run_name="__vapoursynth__")
        outputs = dict(vs.get_outputs())
    except Exception as e:  # noqa: BLE001 - the script's own error, whatever it is, as one line
        first = str(e).strip().splitlines()[-1] if str(e).strip() else ""
        raise ValueError(f"INPUT {path}: the script failed: {type(e).__name__}: {first}") from None
    finally:
        vs.clear_outputs()
    if 0 not in outputs:
        raise ValueError(f"INPUT {path} sets no output 0 (end it with clip.set_output())")
    clip = getattr(outputs[0], "clip", outputs[0])
    if not isinstance(clip, vs.VideoNode):
        raise ValueError(  # noqa: TRY004 - a user error: one line, exit 2
            f"INPUT {path}: output 0 is not a video clip ({type(clip).__name__})")
    return clip


def open_input(path: str | os.PathLike, index: str | os.PathLike | None = None) -> vs.VideoNode:
    """The clip to colourise: a script's output 0, or a video file opened with bestsource; with ``index``
    (a path prefix) bestsource reads its index from ``<index>.<track>.bsindex``, or makes and writes it
    there, instead of decoding the whole file to index it (``prepare.open_indexed``)."""
    if is_script(path):
        clip = run_script(path)
    elif index is None or not hasattr(vs.core, "bs"):
        clip = vsformat.open_video(path, "INPUT")
    else:
        try:
            clip = vs.core.bs.VideoSource(str(Path(path).expanduser()), cachemode=4, cachepath=str(index))
        except vs.Error as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"INPUT {path} cannot be read as a video: {first}") from None
    check_clip(clip, path)
    return clip


def check_clip(clip: vs.VideoNode, path) -> None:
    """A film needs a constant format, size and frame rate (segments are joined by frame count)."""
    if clip.format is None or clip.format.id == vs.NONE or clip.width == 0 or clip.height == 0:
        raise ValueError(f"INPUT {path} has a variable format or size, which a film cannot be cut into segments with")
    if clip.fps.numerator <= 0 or clip.fps.denominator <= 0:
        raise ValueError(f"INPUT {path} has a variable frame rate; give the script a constant one "
                         "(e.g. core.std.AssumeFPS(clip, fpsnum=24000, fpsden=1001))")
    if clip.num_frames < 1:
        raise ValueError(f"INPUT {path} has no frames")


def input_identity(path: str | os.PathLike, clip: vs.VideoNode) -> dict:
    """What identifies INPUT for resuming: a video by path, size and mtime; a script by its text; both
    by the clip's length, size, format and frame rate."""
    p = Path(path).expanduser().resolve()
    ident = {"path": str(p), "kind": "script" if is_script(p) else "video", "num_frames": clip.num_frames,
             "width": clip.width, "height": clip.height, "format": clip.format.name,
             "fps": f"{clip.fps.numerator}/{clip.fps.denominator}"}
    if ident["kind"] == "script":
        ident["sha256"] = file_sha256(p)
    else:
        st = p.stat()
        ident.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    return ident
