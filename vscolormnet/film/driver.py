"""``run_film``: check, plan while Ray starts, skip verified segments, render the rest on Ray, join.

Order of work: the instant checks (``prepare.check_arguments``: flags and paths) and Ray's
presence; then the work folder (locked: one run at a time); then, side by side, Ray and the
workers starting (``ray_startup``) and, on a thread, the shot plan (``prepare.prepare``: the
reference folder, weights and INPUT, indexed once into the work folder, and the key of
everything that defines the output) and the resume check (every segment already there verified
by SHA-256). The shots are sent once both are done; at the end Ray shuts down while the segments
are joined. OUT appears only complete (temporary name, renamed); on any failure or Ctrl-C the
workers are stopped, Ray is shut down if we started it, temporary files are removed and
finished segments stay for the rerun. ``FilmResult.phases`` (and a table on stderr) say where
the time went.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from pathlib import Path

from .options import import_ray
from .phases import Phases
from .prepare import INDEX_PREFIX, check_arguments, prepare
from .schedule import FilmError, Shot, Workers, _Progress, check_resources, render_shots, start_ray
from .segments import SEGMENT_RE, join, manifest_path, remove_temporaries, segment_path, valid_manifest

__all__ = ["FilmError", "FilmResult", "run_film"]
LOCK_NAME = "film.lock"
CONCAT_NAME = "concat.txt"


@dataclasses.dataclass
class FilmResult:
    """What ``run_film`` did."""

    output: Path
    frames: int
    shots: int
    rendered: int        # shots rendered by this run
    skipped: int         # shots whose verified segment was already there
    retried: int         # shots redone after their worker died
    seconds: float
    work_dir: Path
    phases: dict = dataclasses.field(default_factory=dict)    # ``Phases.as_dict()``: where the time went


class _Background:
    """``fn(*args)`` on a daemon thread; ``result()`` waits for it and returns its value or raises its error."""

    def __init__(self, fn, *args):
        self._done = threading.Event()
        self._value, self._error = None, None

        def run():
            try:
                self._value = fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the caller by result()
                self._error = e
            finally:
                self._done.set()
        threading.Thread(target=run, name=f"film-{fn.__name__}", daemon=True).start()

    def result(self):
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value

    def settle(self) -> None:
        """Wait for it to end, whatever it gives (a failure elsewhere is being reported)."""
        self._done.wait()


def run_film(input, refs_dir, output, *, workers: int, ray_address: str | None = None,
             gpus_per_worker: float = 0.0, threads_per_worker: int = 1, work_dir=None, codec: str = "ffv1",
             size="512", weights=None, backend="torch", device: str | None = None, fp16=None,
             precision=None, tf32=None, memory=None, cuts=None, ref_scope: str | None = None,
             allow_ref_mismatch: bool = False, audio: bool = True, progress: bool = True,
             keep_work: bool = False, max_retries: int = 3, window: int | None = None) -> FilmResult:
    """Colourise a whole film on ``workers`` Ray actors, one lossless segment per shot, and join them.

    input:      a video file, or a ``.vpy`` whose output 0 is the (already cleaned-up) clip; every
                worker opens it itself, so on a cluster it must be at the same path everywhere.
    refs_dir:   a folder made by ``refs extract`` (its cuts are the shot plan, its coloured
                ``ref_<frame>.png`` the references).
    output:     the film (.mkv for ffv1); written under a temporary name and renamed when complete.
    work_dir:   segments + manifests (default ``.<output name>.work`` beside output); a rerun skips
                every shot whose segment is complete and verified. Removed after success unless
                ``keep_work``.
    cuts:       extra cuts (a list or a cuts.txt path) on top of the folder's, as in ``Colorize``.
    backend:    as in ``Colorize``: a name (with device/fp16/precision/tf32) or a spec object
                (``Torch(...)``, ``ORT(...)``, ``TRT(...)``, ``Auto(...)``), shipped to the workers as is.
    Other parameters are ``Colorize``'s. Raises ValueError before any work for bad arguments,
    ``FilmError`` (one line) for a failure after work began.
    """
    t0 = time.monotonic()
    phases = Phases()
    args = check_arguments(input, output, refs_dir=refs_dir, workers=workers, gpus=gpus_per_worker,
                           threads=threads_per_worker, max_retries=max_retries, codec=codec, ref_scope=ref_scope,
                           memory=memory, work_dir=work_dir, backend=backend, device=device, fp16=fp16,
                           precision=precision, tf32=tf32)
    if ray_address:
        from .schedule import ray_token_source
        ray_token_source()                  # before Ray is imported: it reads RAY_AUTH_MODE at import
    with phases.measure("ray_startup"):
        ray = import_ray()
    work = args["work"]
    with _locked(work):
        planned = _Background(_plan, args, phases, {
            "refs_dir": refs_dir, "codec": codec, "size": size, "weights": weights, "backend": backend,
            "device": device, "fp16": fp16, "precision": precision, "tf32": tf32, "gpus": gpus_per_worker,
            "memory": memory, "cuts": cuts, "ref_scope": ref_scope, "allow_ref_mismatch": allow_ref_mismatch})
        started, pool = False, None
        try:
            with phases.measure("ray_startup"):
                started = start_ray(ray, ray_address, workers * threads_per_worker)
                check_resources(ray, workers, threads_per_worker, gpus_per_worker)
                pool = Workers(ray, _worker_config(threads_per_worker, weights), workers, threads_per_worker,
                               gpus_per_worker)
            with phases.measure("plan_wait"):
                prep, shots, todo = planned.result()
            show = _Progress(progress, prep["num_frames"], len(shots),
                             sum(s.frames for s in shots if s not in todo), len(shots) - len(todo))
            if len(todo) < len(shots):
                show.say(f"resuming: {len(shots) - len(todo)} of {len(shots)} shots already rendered and verified "
                         f"in {work} (skipped)")
            pool.keep(min(workers, len(todo)))
            retried = _render(ray, pool, todo, prep, work, window=window or 2 * workers, max_retries=max_retries,
                              progress=show, phases=phases) if todo else 0
            pool.stop()
            segments = [segment_path(work, s.index) for s in shots]
            for s in shots:                       # still there and unchanged in size (hashes were checked)
                if valid_manifest(segments[s.index], key=prep["key"], shot=s.index, start=s.start, stop=s.stop,
                                  check_hash=False) is None:
                    raise FilmError(f"{s.describe()}: its segment in {work} is missing or changed; rerun to redo it")
        except BaseException as e:
            if pool is not None:
                pool.stop()
            if not isinstance(e, KeyboardInterrupt):
                planned.settle()              # it may still be writing INPUT's index into the work folder
            if started:
                _shutdown(ray, phases)
            raise
        stopping = _Background(_shutdown, ray, phases) if started else None    # while the segments are joined
        audio_from = str(prep["input"]) if audio and not prep["script"] else None
        try:
            with phases.measure("join"):
                join(segments, prep["output"], prep["num_frames"], audio_from, work / CONCAT_NAME)
        except RuntimeError as e:
            raise FilmError(str(e)) from None
        finally:
            if stopping is not None:
                stopping.settle()
        (work / CONCAT_NAME).unlink(missing_ok=True)
        if not keep_work:
            for p in segments:
                p.unlink(missing_ok=True)
                manifest_path(p).unlink(missing_ok=True)
            for p in work.glob(f"{INDEX_PREFIX}*.bsindex"):
                p.unlink(missing_ok=True)
    if not keep_work:
        with contextlib.suppress(OSError):
            work.rmdir()                     # only if nothing else is in it
    phases.finish()
    show.say(f"wrote {prep['output']} ({prep['num_frames']} frames, {len(shots)} shots, {len(todo)} rendered); "
             f"phases:\n{phases.table()}")
    return FilmResult(prep["output"], prep["num_frames"], len(shots), len(todo), len(shots) - len(todo), retried,
                      time.monotonic() - t0, work, phases.as_dict())


def _plan(args: dict, phases: Phases, kwargs: dict) -> tuple[dict, list[Shot], list[Shot]]:
    """The shot plan and the shots still to render (runs while Ray starts)."""
    with phases.measure("shot_plan"):
        prep = prepare(args, **kwargs)
    shots = [Shot(i, *prep["plan"].bounds(i)) for i in range(len(prep["plan"]))]
    with phases.measure("resume_check"):
        todo = _unfinished(args["work"], shots, prep["key"])
    phases.frames = sum(s.frames for s in todo)
    return prep, shots, todo


def _shutdown(ray, phases: Phases) -> None:
    with phases.measure("ray_shutdown"), contextlib.suppress(Exception):
        ray.shutdown()


def _worker_config(threads: int, weights) -> dict:
    from .worker import CRASH_ENV
    return {"threads": threads, "weights": None if weights is None else str(Path(weights).expanduser().resolve()),
            "crash": os.environ.get(CRASH_ENV)}


@contextlib.contextmanager
def _locked(work: Path):
    """The work folder, created and locked (a second run on it is refused); temporaries removed on exit.
    A folder this run created is removed again when the run fails before any segment was written."""
    import fcntl
    fresh = not work.exists()
    try:
        work.mkdir(parents=True, exist_ok=True)
        (work / LOCK_NAME).touch()
    except OSError as e:
        raise ValueError(f"--work-dir {work} cannot be used: {e.strerror or e}") from None
    with open(work / LOCK_NAME, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ValueError(f"--work-dir {work} is in use by another film run") from None
        failed = True
        try:
            yield work
            failed = False
        finally:
            remove_temporaries(work)
            with contextlib.suppress(OSError):
                (work / LOCK_NAME).unlink()
            if failed and fresh and not any(SEGMENT_RE.match(p.name) for p in work.iterdir()):
                for p in work.glob(f"{INDEX_PREFIX}*.bsindex"):
                    p.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    work.rmdir()


def _unfinished(work: Path, shots: list[Shot], key: str) -> list[Shot]:
    """Shots without a complete, verified segment (stale files of theirs and of other plans are removed)."""
    todo = []
    for s in shots:
        seg = segment_path(work, s.index)
        if valid_manifest(seg, key=key, shot=s.index, start=s.start, stop=s.stop) is None:
            todo.append(s)
            for p in (manifest_path(seg), seg):
                p.unlink(missing_ok=True)
    wanted = {segment_path(work, s.index).stem for s in shots}
    for p in work.iterdir():
        if SEGMENT_RE.match(p.name) and p.stem not in wanted:
            p.unlink(missing_ok=True)
    return todo


def _render(ray, pool: Workers, todo: list[Shot], prep: dict, work: Path, *, window: int, max_retries: int,
            progress: _Progress, phases: Phases) -> int:
    """Render ``todo`` on ``pool``'s actors (stopped on return, whatever happens); returns the retries."""
    def job_of(shot: Shot) -> dict:
        return {"shot": shot.index, "start": shot.start, "stop": shot.stop, "key": prep["key"], "clip": prep["worker"]}

    def check_done(shot: Shot, manifest: dict) -> None:
        seg = segment_path(work, shot.index)
        if not seg.is_file() or seg.stat().st_size != manifest.get("size"):
            raise FilmError(f"{shot.describe()} was written by {manifest.get('worker')} but its segment is not "
                            f"visible here: --work-dir {work} must be storage shared by every machine")
        phases.add_worker(str(manifest.get("worker")), manifest.get("times", {}))

    with phases.measure("render_wall"):
        return render_shots(ray, todo, job_of, pool, window=window, max_retries=max_retries, progress=progress,
                            check_done=check_done)
