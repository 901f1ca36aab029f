"""Encode a VapourSynth clip with ffmpeg: y4m over a pipe, progress (fps, ETA) on stderr."""
from __future__ import annotations

import shlex
import subprocess
import sys
import time

import numpy as np
import vapoursynth as vs

Y4M_CHROMA = {(0, 0): "444", (1, 0): "422", (1, 1): "420"}
DEFAULT_CODEC_ARGS = "-c:v libx264 -crf 16 -preset medium"


def y4m_header(clip: vs.VideoNode) -> bytes:
    """The YUV4MPEG2 stream header for a YUV clip (8–16 bit)."""
    fmt = clip.format
    key = (fmt.subsampling_w, fmt.subsampling_h)
    if fmt.color_family != vs.YUV or key not in Y4M_CHROMA or fmt.sample_type != vs.INTEGER:
        raise ValueError(f"y4m needs integer YUV 4:4:4/4:2:2/4:2:0, got {fmt.name}")
    chroma = "C" + Y4M_CHROMA[key] + ("" if fmt.bits_per_sample == 8 else f"p{fmt.bits_per_sample}")
    return (f"YUV4MPEG2 W{clip.width} H{clip.height} F{clip.fps.numerator}:{clip.fps.denominator} "
            f"Ip A1:1 {chroma}\n").encode()


def for_y4m(clip: vs.VideoNode) -> vs.VideoNode:
    """Convert RGB/GRAY/float clips to a YUV integer format y4m can carry."""
    fmt = clip.format
    if fmt.color_family == vs.YUV and fmt.sample_type == vs.INTEGER and \
            (fmt.subsampling_w, fmt.subsampling_h) in Y4M_CHROMA:
        return clip
    bits = 8 if fmt.bits_per_sample <= 8 else 10 if fmt.bits_per_sample <= 10 else 16
    target = vs.core.query_video_format(vs.YUV, vs.INTEGER, bits, 0, 0)
    kwargs = {"matrix_s": "709"} if fmt.color_family == vs.RGB else {}
    return vs.core.resize.Bicubic(clip, format=target.id, **kwargs)


def encode(clip: vs.VideoNode, output: str, codec_args: str = DEFAULT_CODEC_ARGS,
           audio_from: str | None = None, progress: bool = True) -> None:
    """Pipe ``clip`` into ``ffmpeg ... output``; audio copied from ``audio_from`` when it has any."""
    clip = for_y4m(clip)
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "yuv4mpegpipe", "-i", "-"]
    if audio_from:
        cmd += ["-i", audio_from, "-map", "0:v", "-map", "1:a?", "-c:a", "copy"]
    cmd += shlex.split(codec_args) + [output]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=sys.stderr)
    total, start = clip.num_frames, time.perf_counter()
    try:
        proc.stdin.write(y4m_header(clip))
        for n, frame in enumerate(clip.frames(close=True)):
            proc.stdin.write(b"FRAME\n")
            for p in range(frame.format.num_planes):
                proc.stdin.write(np.ascontiguousarray(np.asarray(frame[p])).tobytes())
            if progress:
                done = n + 1
                elapsed = time.perf_counter() - start
                fps = done / elapsed if elapsed > 0 else 0.0
                eta = (total - done) / fps if fps > 0 else 0.0
                print(f"\rcolorize: {done}/{total} frames  {fps:.2f} fps  ETA {eta:.0f} s",
                      end="" if done < total else "\n", file=sys.stderr, flush=True)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    finally:
        rc = proc.wait()
    if rc != 0:
        raise RuntimeError(f"ffmpeg failed with exit code {rc}: {' '.join(cmd)}")
