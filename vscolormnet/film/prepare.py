"""The checks and the shot plan of a film run, in two parts: instant ones, then the ones that read files.

Why two: ``check_arguments`` needs neither torch nor VapourSynth, so a wrong flag is refused at
once, before Ray is started; ``prepare`` (imports, INPUT opened and indexed, references loaded,
weights and references hashed) then runs on a thread of its own while Ray starts, and its
errors are the same one-line ``ValueError``s, raised when the driver waits for it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from .. import __version__
from ..util.files import file_sha256
from .options import CODECS
from .segments import film_key

KEY_VERSION = 1
INDEX_PREFIX = "input_"          # bestsource's index of INPUT in the work folder: input_<identity>.<track>.bsindex


def check_arguments(input, output, *, refs_dir, workers, gpus, threads, max_retries, codec, ref_scope, memory,
                    work_dir, backend, device, fp16, precision, tf32) -> dict:
    """What can be refused without reading INPUT, the references or the weights (nor importing torch, unless
    the caller did: a backend object): ``{"input", "output", "work"}`` (paths, not resolved)."""
    from ..media.ref_folder import read_index
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
    if ref_scope not in (None, "shot", "clip"):
        raise ValueError(f"--ref-scope must be shot or clip, got {ref_scope!r}")
    if memory is not None:
        memory.validate()
    try:
        read_index(refs_dir)
    except ValueError as e:
        raise ValueError(f"--ref {refs_dir}: {e}") from None
    if not isinstance(backend, str) or (device == "cuda" and not gpus):
        film_spec(backend, device, fp16, precision, tf32, gpus)
    work = Path(work_dir).expanduser() if work_dir else out.resolve().parent / f".{out.name}.work"
    return {"input": src, "output": out, "work": work}


def film_spec(backend, device, fp16, precision, tf32, gpus_per_worker: float):
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


def open_indexed(src: Path, work: Path):
    """INPUT opened, a video with bestsource's index kept in the work folder (``(clip, index prefix)``).

    Why: bestsource indexes by decoding the whole file. Indexed once here, and written under a
    temporary name then renamed, the index lets every worker (and a resumed run) open INPUT without
    decoding the film again; workers only open INPUT after this returned, so they never see a half
    index. It is named by INPUT's path, size and mtime, so a changed INPUT is indexed anew."""
    from .source import is_script, open_input
    if is_script(src):
        return open_input(src), None
    st = src.stat()
    ident = hashlib.sha256(json.dumps([str(src.resolve()), st.st_size, st.st_mtime_ns]).encode()).hexdigest()[:20]
    prefix = work / f"{INDEX_PREFIX}{ident}"
    for left in work.glob(f".{INDEX_PREFIX}*"):
        left.unlink(missing_ok=True)             # half an index of a run that was killed (the folder is locked)
    for old in work.glob(f"{INDEX_PREFIX}*.bsindex"):
        if not old.name.startswith(prefix.name + "."):
            old.unlink(missing_ok=True)          # another INPUT's (or this one before it changed)
    if list(work.glob(f"{prefix.name}.*.bsindex")):
        return open_input(src, index=prefix), prefix
    tmp = work / f".{prefix.name}.{os.getpid()}"
    try:
        clip = open_input(src, index=tmp)
        for made in work.glob(f"{tmp.name}.*.bsindex"):
            os.replace(made, work / (prefix.name + made.name[len(tmp.name):]))
    finally:
        for left in work.glob(f"{tmp.name}.*"):
            left.unlink(missing_ok=True)
    return clip, prefix


def prepare(args: dict, *, refs_dir, codec, size, weights, backend, device, fp16, precision, tf32, gpus, memory,
            cuts, ref_scope, allow_ref_mismatch) -> dict:
    """Every check that reads files, and the key of everything that defines the output (``args``:
    ``check_arguments``'s, the work folder made). Returns what the driver and the workers need."""
    from ..backends.spec import spec_fields
    from ..media import vsformat
    from ..media.ref_folder import INDEX_JSON, REF_RE, fit_problem, load_reference_folder
    from ..runtime.config import MemoryConfig
    from ..runtime.geometry import check_size
    from ..runtime.shots import PlanError, make_plan
    from ..weights.checkpoint import resolve_weights
    from .segments import colour_options, pix_fmt, stored_format
    from .source import input_identity, is_script

    src, out = args["input"], args["output"]
    spec = film_spec(backend, device, fp16, precision, tf32, gpus)
    size = check_size(size)
    try:
        folder = load_reference_folder(refs_dir)
    except ValueError as e:
        raise ValueError(f"--ref {refs_dir}: {e}") from None
    try:
        weights_path = resolve_weights(weights).resolve()
    except ValueError as e:
        raise ValueError(f"--weights: {e}") from None
    clip, index = open_indexed(src, args["work"])
    n = clip.num_frames
    why = fit_problem(folder, n, clip.width, clip.height, "INPUT")
    if why and not allow_ref_mismatch:
        raise ValueError(f"--ref {why} (--allow-ref-mismatch uses it anyway)")
    late = [f for f, _ in folder.references if f >= n]
    if late:
        raise ValueError(f"--ref {refs_dir} has references for frames beyond INPUT's {n} frames (first: {late[0]})")
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
    worker = {"input": str(src.resolve()), "index": str(index) if index else None, "refs_dir": str(refs_root),
              "weights": str(weights_path), "size": size, "backend": spec, "memory": memory, "cuts": cuts,
              "ref_scope": ref_scope, "allow_ref_mismatch": allow_ref_mismatch, "codec_args": CODECS[codec][0],
              "colour_options": colours, "work_dir": str(args["work"].resolve())}
    return {"input": src.resolve(), "output": out.resolve(), "script": is_script(src), "plan": plan, "num_frames": n,
            "key": film_key(params), "index": index, "worker": worker}
