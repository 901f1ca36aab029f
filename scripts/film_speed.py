"""Film-run speed on this machine: 2 workers against 1, and what a resumed run costs. JSON on stdout.

    .venv/bin/python scripts/film_speed.py [--speed] [--resume] [--single] [--weights CKPT] [--keep DIR]

--speed:  a 4-shot clip (320×240, native size, 12 frames a shot), ``--workers 1`` then ``--workers 2``
          (1 thread each), each run a fresh driver process that starts its own Ray; prints both runs'
          phase tables (``FilmResult.phases``), the wall-time ratio and whether the frames are equal
          (``--single`` also renders it with the one-process ``colorize`` at 1 thread and compares).
--resume: 6 shots of 8 frames at 160×120, 2 workers: a full run; a run interrupted with SIGINT once
          the finished segments hold ≥ 60% of the frames (``--kill-at time``: after 60% of the full
          run's wall time, whatever is finished then); the rerun that resumes it. Ratio = resumed / full
          (wall time of the driver process).
Without --speed/--resume both are run. Progress and the runs' own tables go to stderr. The clip is
real photographs (scikit-image), panned a little each frame, gray, FFV1; every shot has a coloured
reference of its middle frame in a reference folder like ``refs extract`` makes. Weights: the seeded
random checkpoint of the tests (same size and cost as the real network) unless --weights is given.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
RUN = """
import json, sys
from vscolormnet.film import run_film
kw = json.loads(sys.argv[1])
r = run_film(**kw)
print(json.dumps({"seconds": r.seconds, "rendered": r.rendered, "skipped": r.skipped,
                  "phases": getattr(r, "phases", {})}))
"""


def log(msg: str) -> None:
    print(f"film_speed: {msg}", file=sys.stderr, flush=True)


def make_clip(folder: Path, shots: int, frames: int, width: int, height: int) -> tuple[Path, Path]:
    """``clip.mkv`` (gray FFV1, 24 fps) and ``refs/`` (one coloured middle frame per shot, index with the cuts)."""
    import skimage.data
    folder.mkdir(parents=True, exist_ok=True)
    refs = folder / "refs"
    refs.mkdir(exist_ok=True)
    n = shots * frames
    for s in range(shots):
        img = Image.fromarray(getattr(skimage.data, PHOTOS[s % len(PHOTOS)])()).convert("RGB")
        big = img.resize((width + 2 * frames, height + frames), Image.Resampling.BICUBIC)
        for k in range(frames):                      # a slow pan: 2 px right, 1 px down a frame
            rgb = big.crop((2 * k, k, 2 * k + width, k + height))
            rgb.convert("L").save(folder / f"f{s * frames + k:04d}.png")
            if k == frames // 2:
                rgb.save(refs / f"ref_{s * frames + k:06d}.png")
    cuts = [s * frames for s in range(1, shots)]
    (refs / "refs.json").write_text(json.dumps({"version": 1, "num_frames": n, "cuts": cuts, "width": width,
                                                "height": height}))
    clip = folder / "clip.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-framerate", "24", "-i", str(folder / "f%04d.png"),
                    "-pix_fmt", "gray", "-c:v", "ffv1", str(clip)], check=True)
    for p in folder.glob("f*.png"):
        p.unlink()
    return clip, refs


def frames_digest(path: Path) -> str:
    """SHA-256 of every decoded frame's planes (what "bit-identical" compares)."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-"], check=True,
                         capture_output=True).stdout
    return hashlib.sha256(raw).hexdigest()


def film(clip: Path, refs: Path, out: Path, workers: int, weights: str, **extra) -> dict:
    """One film run in a fresh driver process; its result plus the process's wall time."""
    kw = {"input": str(clip), "refs_dir": str(refs), "output": str(out), "workers": workers, "size": "native",
          "weights": weights, "threads_per_worker": 1, "audio": False, "progress": False, **extra}
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", RUN, json.dumps(kw)], cwd=ROOT, stdout=subprocess.PIPE,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    result = json.loads(proc.stdout)
    result["process_seconds"] = round(time.monotonic() - t, 3)
    return result


def speed(d: Path, weights: str, single: bool) -> dict:
    clip, refs = make_clip(d / "speed", 4, 12, 320, 240)
    runs = {}
    for workers in (1, 2):
        log(f"speed: {workers} worker(s) ...")
        runs[workers] = film(clip, refs, d / f"w{workers}.mkv", workers, weights)
        log(f"speed: {workers} worker(s): {runs[workers]['process_seconds']:.1f} s")
    digests = {w: frames_digest(d / f"w{w}.mkv") for w in runs}
    out = {"clip": "4 shots x 12 frames, 320x240, native size, 1 thread per worker",
           "workers_1": runs[1], "workers_2": runs[2],
           "ratio": round(runs[1]["process_seconds"] / runs[2]["process_seconds"], 3),
           "identical_1_2": digests[1] == digests[2]}
    walls = [r.get("phases", {}).get("driver", {}).get("render_wall") for r in (runs[1], runs[2])]
    if all(walls):
        out["render_ratio"] = round(walls[0] / walls[1], 3)
    if single:
        log("speed: one process (colorize, 1 thread) ...")
        one = d / "single.mkv"
        subprocess.run([sys.executable, "-m", "vscolormnet", "colorize", str(clip), "--ref", str(refs), "-o", str(one),
                        "--size", "native", "--weights", weights, "--codec-args", "-c:v ffv1", "--no-audio"],
                       cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        out["identical_single"] = frames_digest(one) == digests[1]
    return out


def resume(d: Path, weights: str, kill_at: str) -> dict:
    clip, refs = make_clip(d / "resume", 6, 8, 160, 120)
    log("resume: full run (2 workers) ...")
    full = film(clip, refs, d / "full.mkv", 2, weights)
    out, work = d / "resumed.mkv", d / "resumed.work"
    kw = {"input": str(clip), "refs_dir": str(refs), "output": str(out), "workers": 2, "size": "native",
          "weights": weights, "threads_per_worker": 1, "audio": False, "progress": False, "work_dir": str(work),
          "keep_work": True}
    log("resume: interrupted run ...")
    t = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", RUN, json.dumps(kw)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    while proc.poll() is None:
        done = sum(json.loads(p.read_text())["frames"] for p in work.glob("seg_*.json")) if work.is_dir() else 0
        if (done >= 0.6 * 48) if kill_at == "frames" else (time.monotonic() - t >= 0.6 * full["process_seconds"]):
            break
        time.sleep(0.05)
    killed_at, seen = time.monotonic() - t, done
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=300)
    done = sum(json.loads(p.read_text())["frames"] for p in work.glob("seg_*.json"))
    log(f"resume: SIGINT after {killed_at:.1f} s with {seen}/48 frames in finished segments (exit {rc}, "
        f"{done}/48 then); resuming ...")
    resumed = film(clip, refs, out, 2, weights, work_dir=str(work))
    return {"clip": "6 shots x 8 frames, 160x120, native size, 2 workers x 1 thread", "kill_at": kill_at, "full": full,
            "interrupted_after_s": round(killed_at, 3), "frames_done_at_sigint": seen, "interrupted_exit": rc,
            "frames_done_when_interrupted": done, "resumed": resumed,
            "ratio": round(resumed["process_seconds"] / full["process_seconds"], 3),
            "identical": frames_digest(out) == frames_digest(d / "full.mkv")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speed", action="store_true", help="2 workers against 1 (4 shots, 320x240)")
    p.add_argument("--resume", action="store_true", help="a resumed run against a full one (6 shots, 160x120)")
    p.add_argument("--single", action="store_true", help="also compare with a one-process colorize (slow)")
    p.add_argument("--kill-at", choices=("frames", "time"), default="frames",
                   help="interrupt at 60%% of the frames in finished segments (default) or of the full run's time")
    p.add_argument("--weights", default=None, help="checkpoint (default: the tests' seeded random one)")
    p.add_argument("--keep", default=None, metavar="DIR", help="work in DIR and keep it (default: a temp folder)")
    args = p.parse_args(argv)
    # The interrupted driver must see SIGINT as a user's Ctrl-C, also when this script runs in the background
    # of a non-interactive shell, which starts it ignoring SIGINT (and its children would inherit that).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    both = not (args.speed or args.resume)
    weights = args.weights
    if weights is None:
        cache = Path(os.environ.get("VSCOLORMNET_TEST_CACHE", Path.home() / ".cache" / "vscolormnet-tests"))
        weights = str(cache / "colormnet_random_seed0.pth")
        if not Path(weights).is_file():
            sys.path.insert(0, str(ROOT))
            from vscolormnet.weights.seeded import build
            build(weights, seed=0)
    with tempfile.TemporaryDirectory(prefix="film_speed.") as tmp:
        d = Path(args.keep) if args.keep else Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        report = {"cpu_count": os.cpu_count(), "load_average": os.getloadavg()}
        if args.speed or both:
            report["speed"] = speed(d, weights, args.single)
        if args.resume or both:
            report["resume"] = resume(d, weights, args.kill_at)
        report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
