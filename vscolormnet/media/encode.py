"""Encode a VapourSynth clip with ffmpeg: y4m over a pipe, progress (fps, ETA) on stderr.

Why it is built this way: a film takes hours, so every failure must end cleanly and quickly.
ffmpeg writes to a temporary name beside the output (same extension, so it picks the same
muxer) that is renamed only after ffmpeg succeeded; frames are rendered in a worker thread so
the main thread notices Ctrl-C/SIGTERM at once instead of after the frames in flight; on any
failure ffmpeg's stdin is closed, it is terminated (then killed) and the temporary file removed.
``check_encoder`` encodes one blank frame with the real settings first, so a bad
``--codec-args`` or output extension fails in a second, before any rendering.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import vapoursynth as vs

from ..util.cli import error_line
from ..util.errors import CommandError
from ..util.files import temp_path_beside
from .colour_tags import ffmpeg_tags, y4m_range

Y4M_CHROMA = {(0, 0): "444", (1, 0): "422", (1, 1): "420"}
DEFAULT_CODEC_ARGS = "-c:v libx264 -crf 16 -preset medium"
# ffmpeg output options that take no value (so the word after them is not theirs)
NO_VALUE_OPTIONS = {"-an", "-vn", "-sn", "-dn", "-shortest", "-y", "-copyts", "-start_at_zero", "-bitexact",
                    "-nostdin", "-stats", "-nostats", "-hide_banner", "-copy_unknown", "-ignore_unknown"}
# Options that make ffmpeg write files of its own (two-pass logs, statistics, reports, SDP, attachments):
# they would land in the current folder or wherever the value points, outside the -o temp-and-rename.
SIDE_FILE_OPTIONS = {
    "-pass": "two-pass encoding needs the input twice and writes a log file; colorize renders once (use -crf)",
    "-passlogfile": "two-pass encoding needs the input twice and writes a log file; colorize renders once",
    "-vstats": "it writes a statistics file into the current folder", "-vstats_file": "it writes a statistics file",
    "-report": "it writes a log file into the current folder", "-progress": "it writes progress to a file or URL",
    "-sdp_file": "it writes an SDP file", "-dump_attachment": "it writes attachment files",
    "-stats_enc_pre": "it writes a statistics file", "-stats_enc_post": "it writes a statistics file",
    "-stats_mux_pre": "it writes a statistics file",
}
# Encoder parameter strings (x264/x265/SVT-AV1 "key=value:key=value") whose keys write side files.
PARAM_OPTIONS = ("-x264-params", "-x264opts", "-x265-params", "-svtav1-params")
SIDE_FILE_KEYS = ("stats", "pass", "csv", "analysis-save", "recon", "dump-reconstructed-frames", "stat-file")
STOP_TIMEOUT = 5.0            # seconds ffmpeg gets to exit after SIGTERM before SIGKILL
ABANDONED = threading.Event()  # set when frames were left rendering (the process should exit at once)


def y4m_header(clip: vs.VideoNode, props=None) -> bytes:
    """The YUV4MPEG2 stream header for a YUV clip (8–16 bit); ``props`` (frame 0's) add its range."""
    fmt = clip.format
    key = (fmt.subsampling_w, fmt.subsampling_h)
    if fmt.color_family != vs.YUV or key not in Y4M_CHROMA or fmt.sample_type != vs.INTEGER:
        raise ValueError(f"y4m needs integer YUV 4:4:4/4:2:2/4:2:0, got {fmt.name}")
    chroma = "C" + Y4M_CHROMA[key] + ("" if fmt.bits_per_sample == 8 else f"p{fmt.bits_per_sample}")
    return (f"YUV4MPEG2 W{clip.width} H{clip.height} F{clip.fps.numerator}:{clip.fps.denominator} "
            f"Ip A1:1 {chroma}{y4m_range(props or {})}\n").encode()


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


def parse_codec_args(text: str) -> list[str]:
    """``--codec-args`` as a list; refused if it does not parse or names an input or an output itself."""
    try:
        args = shlex.split(text)
    except ValueError as e:
        raise ValueError(f"--codec-args cannot be parsed ({e}): {text!r}") from None
    takes_value = None
    for tok in args:
        if tok.startswith("-") and len(tok) > 1 and not re.fullmatch(r"-[\d.]+", tok):
            if tok == "-i":
                raise ValueError("--codec-args must not contain -i: the input is INPUT_VIDEO "
                                 "(its audio is copied unless --no-audio)")
            if tok == "-n":
                raise ValueError("--codec-args must not contain -n: the output is written to a temporary "
                                 "name and renamed, so ffmpeg never overwrites -o itself")
            name = tok.split(":", 1)[0]                      # -pass:v 1 is -pass
            if name in SIDE_FILE_OPTIONS:
                raise ValueError(f"--codec-args must not contain {tok}: {SIDE_FILE_OPTIONS[name]}; only -o is written")
            takes_value = None if tok in NO_VALUE_OPTIONS else tok
        elif takes_value is not None:
            if takes_value.split(":", 1)[0] in PARAM_OPTIONS:
                keys = {kv.split("=", 1)[0].strip().lower() for kv in re.split(r"[:,]", tok)}
                bad = sorted(keys & set(SIDE_FILE_KEYS))
                if bad:
                    raise ValueError(f"--codec-args {takes_value} must not set {bad[0]}=: it writes a file of its "
                                     "own beside the output; only -o is written")
            takes_value = None
        else:
            raise ValueError(f"--codec-args must hold only ffmpeg output options (-option value ...); "
                             f"{tok!r} looks like an output file: the output is -o")
    return args


def ffmpeg_command(output: str | os.PathLike, codec_args: list[str], audio_from: str | None = None) -> list[str]:
    """``ffmpeg`` reading y4m on stdin (and audio from ``audio_from``), writing ``output``."""
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "yuv4mpegpipe", "-i", "-"]
    if audio_from:
        cmd += ["-i", str(audio_from), "-map", "0:v", "-map", "1:a?", "-c:a", "copy"]
    return cmd + list(codec_args) + [str(output)]


def output_like(clip: vs.VideoNode) -> vs.VideoNode:
    """A blank clip in the format ``Colorize(clip)`` returns (GRAY → YUV 4:4:4 of the same sample type),
    so the encoder can be checked before the network is loaded."""
    fmt = clip.format
    if fmt.color_family == vs.GRAY:
        yuv = vs.core.query_video_format(vs.YUV, fmt.sample_type, fmt.bits_per_sample, 0, 0)
        return vs.core.std.BlankClip(clip, format=yuv.id, length=1)
    return vs.core.std.BlankClip(clip, length=1)


def _frame_bytes(fmt: vs.VideoFormat, width: int, height: int) -> int:
    size = sum((width >> (fmt.subsampling_w if p else 0)) * (height >> (fmt.subsampling_h if p else 0))
               for p in range(fmt.num_planes))
    return size * fmt.bytes_per_sample


def disk_full(rc: int, text: str, output: str | os.PathLike) -> str | None:
    """The one line for an ffmpeg that stopped because the output could not grow, or None: the disk
    is full (ENOSPC, "No space left on device") or the file size limit was hit (SIGXFSZ, ``ulimit -f``)."""
    folder = Path(output).expanduser().resolve().parent
    if rc == -signal.SIGXFSZ or rc == 128 + signal.SIGXFSZ:
        return (f"ffmpeg was stopped by the file size limit (SIGXFSZ, `ulimit -f`) writing {output}; "
                "raise the limit or write to another file system (the partial file was removed)")
    if "No space left on device" in text or "ENOSPC" in text:
        free = ""
        with contextlib.suppress(OSError):
            free = f" ({shutil.disk_usage(folder).free / 2**20:.0f} MiB free now)"
        return (f"the disk holding {folder} is full{free}: ffmpeg could not write {output}; free space or "
                "choose another -o (the partial file was removed)")
    return None


def _ffmpeg_error(text: str, tmp: Path, output: Path) -> str:
    """ffmpeg's first error lines as one line, with the temporary name shown as the real output."""
    lines = []
    for ln in text.splitlines():
        ln = re.sub(r"^(\[[^\]]+ @ 0x[0-9a-f]+\] )+", "", ln.strip())
        if ln and ln not in lines:
            lines.append(ln)
    line = "; ".join(lines[:3])[:400] if lines else "no message"
    return line.replace(str(tmp), str(output)).replace(tmp.name, output.name)


def check_encoder(clip: vs.VideoNode, output: str | os.PathLike, codec_args: list[str],
                  audio_from: str | None = None, timeout: float = 60.0) -> None:
    """Encode one blank frame of ``Colorize(clip)``'s format with the real settings into a temporary file beside
    ``output`` (then removed): a bad extension, codec, option or folder fails here, before rendering."""
    if shutil.which("ffmpeg") is None:
        raise ValueError("ffmpeg was not found on PATH; install it (e.g. apt install ffmpeg)")
    output = Path(output)
    y4m = for_y4m(output_like(clip))
    data = y4m_header(y4m) + b"FRAME\n" + bytes(_frame_bytes(y4m.format, y4m.width, y4m.height))
    tmp = temp_path_beside(output)
    cmd = ffmpeg_command(tmp, codec_args + (["-t", "1"] if audio_from else []), audio_from)
    try:
        proc = subprocess.run(cmd, check=False, input=data, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ValueError(f"ffmpeg did not finish a one-frame test encode to -o {output} in {timeout:.0f} s "
                         f"(--codec-args {shlex.join(codec_args)!r})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    if proc.returncode != 0:
        why = _ffmpeg_error(proc.stderr.decode("utf-8", "replace"), tmp, output)
        raise ValueError(f"ffmpeg cannot write -o {output} with --codec-args {shlex.join(codec_args)!r}: {why}")


class _FramePump:
    """Renders y4m frame data in a daemon thread; iterating yields ``(n, bytes)`` in order.

    The main thread only waits on a queue (with a timeout), which a signal interrupts at once;
    a thread blocked inside VapourSynth would only notice Ctrl-C after the frames in flight.
    """

    def __init__(self, clip: vs.VideoNode, on_frame: Callable[[int, vs.VideoFrame], None] | None, depth: int = 4):
        self.clip, self.on_frame = clip, on_frame
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="vscolormnet-render", daemon=True)
        self.done = 0
        self.first_props: dict = {}

    def _put(self, item) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for n, frame in enumerate(self.clip.frames(close=True)):
                data = b"FRAME\n" + b"".join(np.ascontiguousarray(np.asarray(frame[p])).tobytes()
                                             for p in range(frame.format.num_planes))
                if n == 0:
                    self.first_props = dict(frame.props)        # tags the stream (``colour_tags``)
                if self.on_frame is not None:
                    self.on_frame(n, frame)
                if not self._put((n, data)):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which decides
            self._put(("error", e))
            return
        self._put(None)

    def __iter__(self):
        self.thread.start()
        while True:
            try:
                item = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None:
                return
            if item[0] == "error":
                raise item[1]
            self.done = item[0] + 1
            yield item

    def stop(self) -> None:
        """Let the thread end after its current frame; remember that frames may still be rendering."""
        if self.thread.is_alive():
            ABANDONED.set()
        self.stopping.set()


@contextlib.contextmanager
def _signals_deferred():
    """Ignore SIGINT/SIGTERM inside the block (cleanup after a failure, at most a few seconds)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _write_all(f, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[f.write(view):]


def stop_process(proc: subprocess.Popen | None) -> int | None:
    """End ``proc`` promptly: close its stdin (never blocks: unbuffered), SIGTERM, wait, SIGKILL."""
    if proc is None:
        return None
    if proc.stdin is not None:
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.close()
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
    return proc.returncode


def _umask_mode(path: Path) -> None:
    """Give the finished file the mode a plain ``open()`` would (``mkstemp`` creates it 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~umask)


def _progress(done: int, total: int, start: float) -> None:
    elapsed = time.perf_counter() - start
    fps = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / fps if fps > 0 else 0.0
    print(f"\rcolorize: {done}/{total} frames  {fps:.2f} fps  ETA {eta:.0f} s",
          end="" if done < total else "\n", file=sys.stderr, flush=True)


def encode(clip: vs.VideoNode, output: str | os.PathLike, codec_args: str | list[str] = DEFAULT_CODEC_ARGS,
           audio_from: str | None = None, progress: bool = True,
           on_frame: Callable[[int, vs.VideoFrame], None] | None = None) -> Path:
    """Pipe ``clip`` into ffmpeg and write ``output`` (audio copied from ``audio_from`` when it has any).

    ``output`` appears only complete: ffmpeg writes a temporary file beside it, renamed after
    success. ``on_frame(n, frame)`` sees every y4m frame (in the render thread). Raises
    ``CommandError`` (one line) when ffmpeg or a frame fails; KeyboardInterrupt passes through
    after the cleanup.
    """
    args = parse_codec_args(codec_args) if isinstance(codec_args, str) else list(codec_args)
    output = Path(output)
    clip = for_y4m(clip)
    pump = _FramePump(clip, on_frame)
    proc, tmp, ok = None, None, False
    with tempfile.TemporaryFile() as err:
        try:
            tmp = temp_path_beside(output)
            start = time.perf_counter()
            try:
                frames = iter(pump)
                first = next(frames, None)     # frame 0's props describe the stream: ffmpeg starts after it
                tags = ffmpeg_tags(pump.first_props, clip.format.color_family)
                proc = subprocess.Popen(ffmpeg_command(tmp, [*tags, *args], audio_from), stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=err, bufsize=0)
                _write_all(proc.stdin, y4m_header(clip, pump.first_props))
                for n, data in itertools.chain([first] if first else [], frames):
                    _write_all(proc.stdin, data)
                    if progress:
                        _progress(n + 1, clip.num_frames, start)
            except BrokenPipeError:
                pass                          # ffmpeg ended early: its exit code and message say why
            except vs.Error as e:
                line, user = error_line(e)
                if not user:
                    raise                     # a bug inside a filter: keep its traceback
                raise CommandError(f"rendering failed at frame {pump.done}: {line}") from None
            with contextlib.suppress(OSError):
                proc.stdin.close()
            rc = proc.wait()
            if rc != 0:
                err.seek(0)
                text = err.read().decode("utf-8", "replace")
                raise CommandError(disk_full(rc, text, output) or
                                   f"ffmpeg failed (exit code {rc}) writing {output}: {_ffmpeg_error(text, tmp, output)}")
            _umask_mode(tmp)
            os.replace(tmp, output)
            ok = True
        finally:
            pump.stop()
            if not ok:
                with _signals_deferred():     # a second Ctrl-C must not skip the cleanup
                    if progress and pump.done:
                        print(file=sys.stderr, flush=True)    # end the progress line before the message
                    stop_process(proc)
                    if tmp is not None:
                        with contextlib.suppress(OSError):
                            tmp.unlink()
    return output
