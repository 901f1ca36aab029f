"""Shots onto Ray actors: a bounded window in flight, dead workers replaced, one progress line.

Why this shape: a film is hours of work on machines that fail. At most ``window`` shots are
submitted at once (each actor runs its calls one after another; a second queued call keeps it
busy while the driver reacts), longest shots first so the last shot to finish is a short one.
An actor that dies (killed, out of memory, its node lost) fails the calls it held with
``RayActorError`` (or a lost-worker error); those shots go back to the front of the queue and the actor is replaced,
up to ``max_retries`` times per shot. An error *inside* a shot (a bad frame, ffmpeg) is not
retried: it would fail again. Progress is polled from the actors through a separate
concurrency group, so it moves within long shots.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

from ..util.errors import CommandError
from ..util.files import stdout_to_stderr
from .worker import ShotWorker

OBJECT_STORE_BYTES = 128 << 20     # shots return small dicts; keep the local object store small
STOP_WAIT = 10.0                   # seconds to wait for killed workers to be gone


class FilmError(CommandError):
    """A film run failed after work began (one line; completed segments are kept for a rerun)."""


@dataclass
class Shot:
    index: int
    start: int
    stop: int

    @property
    def frames(self) -> int:
        return self.stop - self.start

    def describe(self) -> str:
        return f"shot {self.index} (frames {self.start}–{self.stop - 1})"


TOKEN_HINT = ("run `ray get-auth-token` on the head node and give its token to this machine as RAY_AUTH_TOKEN "
              "or in ~/.ray/auth_token")


def ray_token_source() -> str | None:
    """Where this driver's Ray token comes from (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, or Ray's default
    ``~/.ray/auth_token``), or None. A Ray driver sends it only with ``RAY_AUTH_MODE=token``, which is set
    here when a token exists and the user chose no mode: a head started with token authentication then
    accepts the driver, as it accepts ``ray status`` on the same machine."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        source = "RAY_AUTH_TOKEN"
    elif os.environ.get("RAY_AUTH_TOKEN_PATH"):
        path = Path(os.environ["RAY_AUTH_TOKEN_PATH"]).expanduser()
        if not path.is_file() or not path.read_text(errors="replace").strip():
            raise ValueError(f"RAY_AUTH_TOKEN_PATH={path} is not a readable token file; {TOKEN_HINT}")
        source = f"RAY_AUTH_TOKEN_PATH ({path})"
    elif (Path.home() / ".ray" / "auth_token").is_file():
        source = str(Path.home() / ".ray" / "auth_token")
    else:
        return None
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    return source


def _join(ray, address: str) -> None:
    """``ray.init(address)``, with a refused connection as one line that says what to run. The token mode
    was set before Ray was imported (``driver.run_film``): Ray reads ``RAY_AUTH_MODE`` then."""
    token = ray_token_source()
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if token is None:
            raise ValueError(f"--ray-address {address}: {why}; if the cluster uses token authentication, "
                             f"{TOKEN_HINT}") from None
        raise ValueError(f"--ray-address {address}: {why}; the token from {token} may not be the cluster's: "
                         f"{TOKEN_HINT}") from None


def start_ray(ray, address: str | None, cpus_needed: int) -> bool:
    """Connect to ``address``, or start a local runtime; False if Ray was already initialised (by the
    caller, who then owns it). Ray's own messages go to stderr, never stdout."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    with stdout_to_stderr():
        if address:
            _join(ray, address)
        else:
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, cpus_needed), include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR, object_store_memory=OBJECT_STORE_BYTES)
    return True


def check_resources(ray, workers: int, threads: int, gpus: float) -> None:
    """Refuse a request the cluster can never place (its actors would wait forever)."""
    have = ray.cluster_resources()
    if workers * threads > have.get("CPU", 0):
        raise ValueError(f"--workers {workers} × --threads-per-worker {threads} needs {workers * threads} CPUs; "
                         f"the Ray cluster has {have.get('CPU', 0):g}")
    if gpus and workers * gpus > have.get("GPU", 0) + 1e-9:
        raise ValueError(f"--workers {workers} × --gpus-per-worker {gpus:g} needs {workers * gpus:g} GPUs; "
                         f"the Ray cluster has {have.get('GPU', 0):g}")


def _error_line(e: BaseException) -> str:
    """One meaningful line from a Ray error (the worker's exception, not Ray's wrapper)."""
    from ..util.cli import error_summary
    cause = getattr(e, "cause", None)
    if cause is not None and not isinstance(cause, type(e)):
        if type(cause).__name__ == "Error":       # vs.Error: its last "Colorize: ..." line
            return error_summary(cause)
        text = str(cause).strip()
        return f"{type(cause).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip() and not ln.strip().startswith("^")]
    line = lines[-1] if lines else type(e).__name__
    return line[:300]


class _Progress:
    """``colorize: F/N frames  x fps  ETA  shots s/S`` on stderr, rewritten in place at most once a second."""

    def __init__(self, enabled: bool, total_frames: int, total_shots: int, done_frames: int, done_shots: int):
        self.enabled, self.total, self.total_shots = enabled, total_frames, total_shots
        self.start_frames, self.done_frames, self.done_shots = done_frames, done_frames, done_shots
        self.t0 = time.monotonic()
        self.first: tuple[float, int] | None = None    # (time, frames) when the first rendered frame was seen
        self.last = 0.0
        self.shown = False

    def update(self, partial: int = 0, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < 1.0):
            return
        self.last = now
        done = min(self.done_frames + partial, self.total)
        if self.first is None and partial + self.done_frames > self.start_frames:
            self.first = (now, done)       # the rate counts from here: Ray and the workers have started
        if self.first and done > self.first[1]:
            fps = (done - self.first[1]) / (now - self.first[0])
        else:                              # nothing seen mid-shot yet: count from the start of the run
            fps = (done - self.start_frames) / max(now - self.t0, 1e-9)
        eta = f"{_clock((self.total - done) / fps)}" if fps > 0 else "?"
        print(f"\rcolorize: {done}/{self.total} frames  {fps:.2f} fps  ETA {eta}  "
              f"shots {self.done_shots}/{self.total_shots}   ", end="", file=sys.stderr, flush=True)
        self.shown = True

    def say(self, message: str) -> None:
        """A line of its own (the progress line is ended first)."""
        self.end()
        print(f"colorize: {message}", file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.shown:
            print(file=sys.stderr, flush=True)
            self.shown = False


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Workers:
    """The actors of a run: started as soon as Ray is up (their imports overlap the shot plan), replaced
    when one dies, all killed by ``stop``."""

    def __init__(self, ray, cfg: dict, count: int, threads: int, gpus: float):
        self.ray, self.cfg = ray, cfg
        self.actor_class = ray.remote(num_cpus=threads, num_gpus=gpus or 0, max_restarts=0, max_task_retries=0,
                                      concurrency_groups={"progress": 1})(ShotWorker)
        self.actors = [self.actor_class.remote(cfg) for _ in range(count)]
        self.everything = list(self.actors)

    def keep(self, count: int) -> None:
        """Stop all but the first ``count`` actors (fewer shots to render than workers)."""
        for actor in self.actors[count:]:
            with contextlib.suppress(Exception):
                self.ray.kill(actor, no_restart=True)
        del self.actors[count:]

    def replace(self, slot: int):
        self.ray.kill(self.actors[slot], no_restart=True)
        self.actors[slot] = self.actor_class.remote(self.cfg)
        self.everything.append(self.actors[slot])
        return self.actors[slot]

    def stop(self) -> None:
        for actor in self.everything:
            with contextlib.suppress(Exception):     # already dead or never started
                self.ray.kill(actor, no_restart=True)


def render_shots(ray, shots: list[Shot], job_of, workers: Workers, *, window: int, max_retries: int,
                 progress: _Progress, check_done) -> int:
    """Render ``shots`` on the ``workers``' actors; returns how many shots were redone after a worker died.

    ``job_of(shot)`` is the dict a worker's ``render`` takes; ``check_done(shot, manifest)`` runs on the
    driver for every finished shot (raises if the segment is not visible here). Actors are killed on
    return and on any exception (Ctrl-C included).
    """
    actors = workers.actors
    queue = deque(sorted(shots, key=lambda s: (-s.frames, s.index)))
    inflight: dict = {}                   # ref → (shot, slot, actor)
    polls: dict = {}                      # slot → (ref, actor)
    partial: dict = {}                    # slot → (shot index, frames written)
    attempts: Counter = Counter()
    retried = 0
    x = ray.exceptions
    lost = (x.RayActorError, x.WorkerCrashedError, x.OutOfMemoryError, x.NodeDiedError, x.ObjectLostError)
    try:
        while queue or inflight:
            while queue and len(inflight) < window:
                loads = Counter(slot for _, slot, _ in inflight.values())
                slot = min(range(len(actors)), key=lambda i: loads[i])
                shot = queue.popleft()
                inflight[actors[slot].render.remote(job_of(shot))] = (shot, slot, actors[slot])
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                shot, slot, actor = inflight.pop(ref)
                try:
                    manifest = ray.get(ref)
                except lost as e:                      # the worker (or its machine) is gone: redo elsewhere
                    if getattr(e, "actor_init_failed", False):
                        raise FilmError(f"a worker could not start: {_error_line(e)}") from None
                    attempts[shot.index] += 1
                    if attempts[shot.index] > max_retries:
                        raise FilmError(f"{shot.describe()}: its worker died {attempts[shot.index]} times "
                                        f"(last: {_error_line(e)}); giving up") from None
                    if actors[slot] is actor:          # first failure seen from this actor: replace it
                        workers.replace(slot)
                        polls.pop(slot, None)
                        partial.pop(slot, None)
                    queue.appendleft(shot)
                    retried += 1
                    progress.say(f"a worker died during {shot.describe()}; redoing it on a new worker "
                                 f"(retry {attempts[shot.index]}/{max_retries})")
                    continue
                except ray.exceptions.RayError as e:   # the shot itself failed (RayTaskError): it would again
                    raise FilmError(f"{shot.describe()}: {_error_line(e)}") from None
                check_done(shot, manifest)
                progress.done_frames += shot.frames
                progress.done_shots += 1
            running = {s.index for s, _, _ in inflight.values()}
            _poll(ray, actors, polls, partial, progress.enabled)
            progress.update(sum(k for i, k in partial.values() if i in running))
        progress.update(force=True)
        progress.end()
        return retried
    finally:
        progress.end()
        workers.stop()
        if inflight:                                 # their calls fail once the actors are gone: then no
            with contextlib.suppress(Exception):     # worker can still write into the work folder
                ray.wait(list(inflight), num_returns=len(inflight), timeout=STOP_WAIT)


def _poll(ray, actors, polls: dict, partial: dict, enabled: bool) -> None:
    """Collect answered progress polls and send new ones (never waits)."""
    if not enabled:
        return
    for slot, (ref, actor) in list(polls.items()):
        done, _ = ray.wait([ref], timeout=0)
        if not done:
            continue
        del polls[slot]
        try:
            shot, frames = ray.get(ref)
            partial[slot] = (shot, frames)
        except Exception:  # noqa: BLE001 - a dead actor's poll: its shot is handled by the main loop
            partial.pop(slot, None)
    for slot, actor in enumerate(actors):
        if slot not in polls:
            polls[slot] = (actor.progress.options(concurrency_group="progress").remote(), actor)
