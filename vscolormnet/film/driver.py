"""``run_film``: check everything, skip verified segments, render the rest on Ray, join, clean up.

Order of work, cheapest first: arguments and Ray's presence; the reference folder, weights and
INPUT (opened here too, for its length and format); the key of everything that defines the
output; the work folder (locked: one run at a time) and the segments already there, each
verified by SHA-256; only then Ray and the workers. OUT appears only complete (temporary name,
renamed); on any failure or Ctrl-C the workers are stopped, Ray is shut down if we started it,
temporary files are removed and finished segments stay for the rerun.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path

from .. import __version__
from ..util.files import file_sha256
from .options import CODECS, import_ray
from .schedule import FilmError, Shot, _Progress, check_resources, render_shots, start_ray
from .segments import SEGMENT_RE, film_key, join, manifest_path, remove_temporaries, segment_path, valid_manifest

__all__ = ["FilmError", "FilmResult", "run_film"]
LOCK_NAME = "film.lock"
CONCAT_NAME = "concat.txt"
KEY_VERSION = 1


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
    if ray_address:
        from .schedule import ray_token_source
        ray_token_source()                  # before Ray is imported: it reads RAY_AUTH_MODE at import
    ray = import_ray()
    _check_numbers(workers, gpus_per_worker, threads_per_worker, max_retries, codec)
    spec = _film_spec(backend, device, fp16, precision, tf32, gpus_per_worker)
    prep = _prepare(input, refs_dir, output, codec, size, weights, spec, memory, cuts, ref_scope, allow_ref_mismatch)
    work = Path(work_dir).expanduser() if work_dir else prep["output"].parent / f".{prep['output'].name}.work"
    shots = [Shot(i, *prep["plan"].bounds(i)) for i in range(len(prep["plan"]))]
    key = prep["key"]
    with _locked(work):
        remove_temporaries(work)
        todo = _unfinished(work, shots, key)
        show = _Progress(progress, prep["num_frames"], len(shots), sum(s.frames for s in shots if s not in todo),
                         len(shots) - len(todo))
        if len(todo) < len(shots):
            show.say(f"resuming: {len(shots) - len(todo)} of {len(shots)} shots already rendered and verified "
                     f"in {work} (skipped)")
        retried = 0
        if todo:
            retried = _render(ray, todo, prep, key, work, workers=workers, ray_address=ray_address,
                              gpus=gpus_per_worker, threads=threads_per_worker, window=window or 2 * workers,
                              max_retries=max_retries, progress=show)
        segments = [segment_path(work, s.index) for s in shots]
        for s in shots:                       # still there and unchanged in size (hashes were checked)
            seg = segment_path(work, s.index)
            if valid_manifest(seg, key=key, shot=s.index, start=s.start, stop=s.stop, check_hash=False) is None:
                raise FilmError(f"{s.describe()}: its segment in {work} is missing or changed; rerun to redo it")
        audio_from = str(prep["input"]) if audio and not prep["script"] else None
        try:
            join(segments, prep["output"], prep["num_frames"], audio_from, work / CONCAT_NAME)
        except RuntimeError as e:
            raise FilmError(str(e)) from None
        (work / CONCAT_NAME).unlink(missing_ok=True)
        if not keep_work:
            for p in segments:
                p.unlink(missing_ok=True)
                manifest_path(p).unlink(missing_ok=True)
    if not keep_work:
        with contextlib.suppress(OSError):
            work.rmdir()                     # only if nothing else is in it
    show.say(f"wrote {prep['output']} ({prep['num_frames']} frames, {len(shots)} shots, {len(todo)} rendered)")
    return FilmResult(prep["output"], prep["num_frames"], len(shots), len(todo), len(shots) - len(todo), retried,
                      time.monotonic() - t0, work)


def _check_numbers(workers, gpus, threads, max_retries, codec) -> None:
    def whole(v, flag, low):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{flag} must be a whole number ≥ {low}, got {v!r}")
    whole(workers, "--workers", 1)
    whole(threads, "--threads-per-worker", 1)
    whole(max_retries, "max_retries", 0)
    if isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or not gpus >= 0:
        raise ValueError(f"--gpus-per-worker must be a number ≥ 0, got {gpus!r}")
    if codec not in CODECS:
        raise ValueError(f"--segment-codec must be one of {', '.join(CODECS)}, got {codec!r}")


def _film_spec(backend, device, fp16, precision, tf32, gpus_per_worker: float):
    """The backend spec every worker runs (``Colorize``'s: a name plus options, or a spec object).

    It is built here but checked in the workers (``Colorize``): on a cluster the driver's machine
    may have no GPU, TensorRT or ONNX Runtime at all. A worker given a GPU uses it."""
    from ..backends.spec import from_name
    if isinstance(backend, str) and gpus_per_worker and device is None and backend.lower() in ("torch", "ort"):
        device = "cuda"
    spec = from_name(backend, device=device, fp16=fp16, precision=precision, tf32=tf32)
    if getattr(spec, "device", None) == "cuda" and not gpus_per_worker:
        raise ValueError("--device cuda with --workers needs --gpus-per-worker (Ray gives each worker its GPUs)")
    return spec


def _prepare(input, refs_dir, output, codec, size, weights, spec, memory, cuts, ref_scope,
             allow_ref_mismatch=False) -> dict:
    """Every check that needs no Ray, and the key of everything that defines the output."""
    from ..backends.spec import spec_fields
    from ..media import vsformat
    from ..media.ref_folder import INDEX_JSON, REF_RE, fit_problem, load_reference_folder
    from ..runtime.config import MemoryConfig
    from ..runtime.geometry import check_size
    from ..runtime.shots import PlanError, make_plan
    from ..weights.checkpoint import resolve_weights
    from .segments import colour_options, pix_fmt, stored_format
    from .source import input_identity, is_script, open_input

    src = Path(input).expanduser()
    if not src.is_file():
        raise ValueError(f"INPUT {src} " + ("is not a file" if src.exists() else "does not exist"))
    out = Path(output).expanduser()
    suffixes = CODECS[codec][1]
    if out.suffix.lower() not in suffixes:
        raise ValueError(f"-o must be a {'/'.join(suffixes)} file with --segment-codec {codec} (the segments are "
                         f"joined without re-encoding), got {out}")
    if out.is_dir() or not out.parent.is_dir() or not os.access(out.parent, os.W_OK | os.X_OK):
        raise ValueError(f"-o {out}: not a file name in an existing, writable folder")
    if out.exists() and os.path.samefile(out, src):
        raise ValueError(f"-o {out} is INPUT itself; choose another output name")
    size = check_size(size)
    if memory is not None:
        memory.validate()
    try:
        folder = load_reference_folder(refs_dir)
    except ValueError as e:
        raise ValueError(f"--ref {refs_dir}: {e}") from None
    try:
        weights_path = resolve_weights(weights).resolve()
    except ValueError as e:
        raise ValueError(f"--weights: {e}") from None
    clip = open_input(src)
    n = clip.num_frames
    why = fit_problem(folder, n, clip.width, clip.height, "INPUT")
    if why and not allow_ref_mismatch:
        raise ValueError(f"--ref {why} (--allow-ref-mismatch uses it anyway)")
    late = [f for f, _ in folder.references if f >= n]
    if late:
        raise ValueError(f"--ref {refs_dir} has references for frames beyond INPUT's {n} frames (first: {late[0]})")
    if ref_scope not in (None, "shot", "clip"):
        raise ValueError(f"--ref-scope must be shot or clip, got {ref_scope!r}")
    try:
        plan = make_plan(cuts, n, extra=frozenset(c for c in folder.cuts if 0 < c < n))
    except PlanError as e:
        raise ValueError(f"--cuts: {e}") from None
    if isinstance(cuts, (str, os.PathLike)):
        cuts = str(Path(cuts).expanduser().resolve())      # workers read it too
    stored = stored_format(clip.format)
    pix_fmt(stored)
    props = vsformat.first_props(clip)
    colours = colour_options(stored.color_family, vsformat.matrix_for(clip, props), vsformat.range_for(clip, props),
                             props)
    refs_root = Path(refs_dir).expanduser().resolve()
    refs = {p.name: file_sha256(p) for p in sorted(refs_root.iterdir())
            if p.is_file() and (p.name == INDEX_JSON or REF_RE.match(p.name))}
    params = {"version": KEY_VERSION, "vscolormnet": __version__, "input": input_identity(src, clip), "refs": refs,
              "weights": file_sha256(weights_path), "size": size, "backend": spec_fields(spec),
              "memory": dataclasses.asdict(memory or MemoryConfig()), "codec": codec,
              "codec_args": CODECS[codec][0], "cuts": list(plan.cuts), "ref_scope": ref_scope, "format": stored.name,
              "colour": colours}
    return {"input": src.resolve(), "output": out.resolve(), "script": is_script(src), "refs_dir": refs_root,
            "weights": weights_path, "size": size, "backend": spec, "memory": memory,
            "allow_ref_mismatch": allow_ref_mismatch, "cuts": cuts, "ref_scope": ref_scope, "plan": plan, "num_frames": n,
            "codec_args": CODECS[codec][0], "colours": colours, "key": film_key(params)}


@contextlib.contextmanager
def _locked(work: Path):
    """The work folder, created and locked (a second run on it is refused); temporaries removed on exit."""
    import fcntl
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
        try:
            yield work
        finally:
            remove_temporaries(work)
            with contextlib.suppress(OSError):
                (work / LOCK_NAME).unlink()


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


def _render(ray, todo: list[Shot], prep: dict, key: str, work: Path, *, workers: int, ray_address, gpus: float,
            threads: int, window: int, max_retries: int, progress: _Progress) -> int:
    """Start (or join) Ray, render ``todo``, and shut down what we started, whatever happens."""
    from .worker import CRASH_ENV
    cfg = {name: prep[name] for name in ("size", "backend", "memory", "cuts", "ref_scope", "codec_args",
                                         "allow_ref_mismatch")}
    cfg.update(input=str(prep["input"]), refs_dir=str(prep["refs_dir"]), weights=str(prep["weights"]),
               threads=threads, work_dir=str(work.resolve()), colour_options=prep["colours"],
               crash=os.environ.get(CRASH_ENV))

    def job_of(shot: Shot) -> dict:
        return {"shot": shot.index, "start": shot.start, "stop": shot.stop, "key": key}

    def check_done(shot: Shot, manifest: dict) -> None:
        seg = segment_path(work, shot.index)
        if not seg.is_file() or seg.stat().st_size != manifest.get("size"):
            raise FilmError(f"{shot.describe()} was written by {manifest.get('worker')} but its segment is not "
                            f"visible here: --work-dir {work} must be storage shared by every machine")

    started = start_ray(ray, ray_address, workers * threads)
    try:
        check_resources(ray, workers, threads, gpus)
        return render_shots(ray, todo, job_of, cfg, workers=workers, threads=threads, gpus=gpus, window=window,
                            max_retries=max_retries, progress=progress, check_done=check_done)
    finally:
        if started:
            with contextlib.suppress(Exception):
                ray.shutdown()
