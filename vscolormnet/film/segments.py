"""Segment files: one per shot, written through ffmpeg, proven complete by a manifest, joined by concat.

A segment appears under its final name only when ffmpeg succeeded and it holds exactly the
shot's frames; its manifest (frames, size, SHA-256, and the key of everything that defines the
output) is written atomically after it. A rerun trusts a segment only when the manifest's key
matches and the file's SHA-256 is recomputed and equal, so a stale, truncated or corrupted
segment is rendered again. Frames go to ffmpeg as raw planes (any YUV/RGB/GRAY integer format,
so a lossless codec stores exactly what ``Colorize`` returned).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import vapoursynth as vs

from ..media.encode import disk_full
from ..util.files import atomic_write_text, file_sha256, temp_path_beside

core = vs.core
MANIFEST_VERSION = 1
SEGMENT_RE = re.compile(r"^seg_\d{5,}\.(mkv|json)$")
TEMP_PREFIX = ".seg_"            # temporary names of segments and manifests (``util.files``: ``.<stem>.``)
FFMPEG = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
_SUBSAMPLING = {(1, 1): "420", (1, 0): "422", (0, 0): "444", (0, 1): "440", (2, 0): "411", (2, 2): "410"}


class SegmentError(RuntimeError):
    """ffmpeg failed or wrote another number of frames than it was given."""


def segment_path(work_dir: Path, shot: int) -> Path:
    return Path(work_dir) / f"seg_{shot:05d}.mkv"


def manifest_path(segment: Path) -> Path:
    return Path(segment).with_suffix(".json")


# ---- formats -----------------------------------------------------------------------------
def stored_format(fmt: vs.VideoFormat) -> vs.VideoFormat:
    """The format a segment stores for an INPUT of format ``fmt``: what ``Colorize`` returns (GRAY →
    YUV 4:4:4), with float samples as 16-bit integers (no lossless codec stores float)."""
    gray = fmt.color_family == vs.GRAY
    family = vs.YUV if gray else fmt.color_family
    ssw, ssh = (0, 0) if gray else (fmt.subsampling_w, fmt.subsampling_h)
    bits = 16 if fmt.sample_type == vs.FLOAT else fmt.bits_per_sample
    return core.query_video_format(family, vs.INTEGER, bits, ssw, ssh)


def storable(out: vs.VideoNode) -> vs.VideoNode:
    """``out`` in ``stored_format`` (a no-op for integer clips)."""
    fmt = out.format
    if fmt.sample_type == vs.INTEGER:
        return out
    target = core.query_video_format(fmt.color_family, vs.INTEGER, 16, fmt.subsampling_w, fmt.subsampling_h)
    return core.resize.Point(out, format=target.id, dither_type="none")


def pix_fmt(fmt: vs.VideoFormat) -> str:
    """ffmpeg's raw pixel format for an integer VapourSynth format (RGB is sent as G, B, R planes)."""
    depth = "" if fmt.bits_per_sample == 8 else f"{fmt.bits_per_sample}le"
    if fmt.sample_type != vs.INTEGER:
        raise ValueError(f"segments store integer samples, got {fmt.name}")
    if fmt.color_family == vs.GRAY:
        return "gray" + ("" if fmt.bits_per_sample == 8 else f"{fmt.bits_per_sample}le")
    if fmt.color_family == vs.RGB:
        return "gbrp" + depth
    key = (fmt.subsampling_w, fmt.subsampling_h)
    if key not in _SUBSAMPLING:
        raise ValueError(f"no ffmpeg pixel format for {fmt.name}")
    return f"yuv{_SUBSAMPLING[key]}p{depth}"


def colour_options(family: int, matrix: str, rng: str, props) -> list[str]:
    """ffmpeg tags of the film's output: ``Colorize`` writes with the INPUT's matrix and range (``matrix``,
    ``rng`` as ``vsformat`` resolves them) and keeps its primaries and transfer (from ``props``, frame 0's)."""
    from ..media.colour_tags import ffmpeg_tags
    from ..media.vsformat import MATRIX_IDS
    out = {"_Range": int(vs.RANGE_FULL if rng == "full" else vs.RANGE_LIMITED),
           "_Primaries": props.get("_Primaries"), "_Transfer": props.get("_Transfer")}
    if family == vs.YUV and matrix in MATRIX_IDS:
        out["_Matrix"] = MATRIX_IDS[matrix]
    elif family == vs.RGB:
        out["_Matrix"] = 0
    return ffmpeg_tags(out, family)


# ---- ffmpeg --------------------------------------------------------------------------------
def _first_lines(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    lines = [re.sub(r"^(\[[^\]]+ @ 0x[0-9a-f]+\] )+", "", ln.strip()) for ln in text.splitlines()]
    return "; ".join(dict.fromkeys(ln for ln in lines if ln))[:400] or "no message"


def _write_all(f, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[f.write(view):]


def count_frames(path: Path) -> int:
    """Video packets in ``path`` (one per frame for the codecs used here), by demuxing only."""
    cmd = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
           "stream=nb_read_packets", "-of", "csv=p=0", str(path)]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    try:
        return int(proc.stdout.decode().strip().splitlines()[0])
    except (ValueError, IndexError):
        raise SegmentError(f"ffprobe cannot count the frames of {path}: {_first_lines(proc.stderr)}") from None


def encode_segment(clip: vs.VideoNode, path: Path, codec_args: list[str], threads: int,
                   extra: list[str] = (), on_frame: Callable[[int], None] | None = None) -> None:
    """Render every frame of ``clip`` into ``path`` (Matroska) with ``codec_args``; checks the frame count."""
    fmt = clip.format
    planes = [1, 2, 0] if fmt.color_family == vs.RGB else list(range(fmt.num_planes))
    cmd = [*FFMPEG, "-f", "rawvideo", "-pix_fmt", pix_fmt(fmt), "-s", f"{clip.width}x{clip.height}",
           "-framerate", f"{clip.fps.numerator}/{clip.fps.denominator}", "-i", "-",
           *codec_args, "-threads", str(threads), *extra, "-f", "matroska", str(path)]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, bufsize=0)
        try:
            for n, frame in enumerate(clip.frames(close=True)):
                for p in planes:
                    _write_all(proc.stdin, np.ascontiguousarray(np.asarray(frame[p])).data)
                if on_frame is not None:
                    on_frame(n + 1)
            proc.stdin.close()
            rc = proc.wait()
        except BaseException:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            proc.kill()
            proc.wait()
            raise
        if rc != 0:
            err.seek(0)
            text = err.read()
            raise SegmentError(disk_full(rc, text.decode("utf-8", "replace"), path)
                               or f"ffmpeg failed (exit code {rc}) writing {path.name}: {_first_lines(text)}")
    got = count_frames(path)
    if got != clip.num_frames:
        raise SegmentError(f"{path.name} holds {got} frames, expected {clip.num_frames}")


def join(segments: list[Path], output: Path, total: int, audio_from: str | None, list_file: Path) -> None:
    """Concatenate ``segments`` into ``output`` without re-encoding (audio copied from ``audio_from`` when
    it has any); written to a temporary name beside ``output`` and renamed once it holds ``total`` frames."""
    def quoted(p: Path) -> str:
        return "file '" + str(p.resolve()).replace("'", "'\\''") + "'\n"
    atomic_write_text(list_file, "ffconcat version 1.0\n" + "".join(map(quoted, segments)))
    tmp = temp_path_beside(output)
    cmd = [*FFMPEG, "-f", "concat", "-safe", "0", "-i", str(list_file)]
    if audio_from:
        cmd += ["-i", str(audio_from), "-map", "0:v", "-map", "1:a?"]
    cmd += ["-c", "copy", "-strict", "-2", str(tmp)]       # -strict -2: e.g. FLAC audio into .mp4
    try:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            full = disk_full(proc.returncode, proc.stderr.decode("utf-8", "replace"), output)
            if full:
                raise SegmentError(full)
            why = _first_lines(proc.stderr).replace(str(tmp), str(output))
            raise SegmentError(f"ffmpeg failed (exit code {proc.returncode}) joining the segments into {output}: {why}")
        got = count_frames(tmp)
        if got != total:
            raise SegmentError(f"joining the segments gave {got} frames, expected {total}")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)       # mkstemp made it 0600; give it a plain file's mode
        os.replace(tmp, output)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


# ---- manifests and keys ------------------------------------------------------------------
def film_key(params: dict) -> str:
    """SHA-256 of the canonical JSON of everything that defines the output."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_manifest(segment: Path, *, key: str, shot: int, start: int, stop: int, seconds: float,
                   worker: str) -> dict:
    """Record a finished segment (after it was renamed into place)."""
    manifest = {"version": MANIFEST_VERSION, "key": key, "shot": shot, "start": start, "stop": stop,
                "frames": stop - start, "file": segment.name, "size": segment.stat().st_size,
                "sha256": file_sha256(segment), "seconds": round(seconds, 3), "worker": worker}
    atomic_write_text(manifest_path(segment), json.dumps(manifest, indent=1) + "\n")
    return manifest


def valid_manifest(segment: Path, *, key: str, shot: int, start: int, stop: int,
                   check_hash: bool = True) -> dict | None:
    """The manifest of a complete, matching segment (SHA-256 recomputed unless ``check_hash`` is False), else None."""
    try:
        manifest = json.loads(manifest_path(segment).read_text(encoding="utf-8"))
        expected = {"version": MANIFEST_VERSION, "key": key, "shot": shot, "start": start, "stop": stop,
                    "frames": stop - start, "file": segment.name}
        if any(manifest.get(k) != v for k, v in expected.items()):
            return None
        if segment.stat().st_size != manifest.get("size"):
            return None
        if check_hash and _sha256(segment) != manifest.get("sha256"):
            return None
        return manifest
    except (OSError, ValueError, AttributeError):
        return None


def _sha256(path: Path) -> str:
    """The file's SHA-256, read now (not memoised: a resumed segment is checked, not assumed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def remove_temporaries(work_dir: Path) -> None:
    """Delete half-written segments and manifests left by an interrupted or killed writer."""
    with contextlib.suppress(OSError):
        for p in Path(work_dir).iterdir():
            if p.name.startswith(TEMP_PREFIX):
                with contextlib.suppress(OSError):
                    p.unlink()
