"""Where a film run's time goes: driver phases (wall clock) and worker phases (summed over workers).

Why both: the driver's phases are wall time, some of them side by side (the shot plan is read
while Ray starts; the join runs while Ray shuts down), while the workers' phases (start,
reference encoding, rendering, segment writes) run on every worker at once, so their sum says
how much work there was and their per-worker maximum how long it held the run.
The table goes to stderr at the end of a ``--workers`` run and into ``FilmResult.phases``.
"""
from __future__ import annotations

import contextlib
import threading
import time

# phase name → label, in the order of a run; driver phases first
DRIVER = {"ray_startup": "Ray start-up (import, runtime, actors sent)",
          "shot_plan": "shot plan (INPUT, refs, hashes; beside Ray)", "resume_check": "resume check (SHA-256)",
          "plan_wait": "waiting for the shot plan after Ray",
          "render_wall": "rendering (shots sent → last shot done)", "join": "join (beside Ray's shut-down)",
          "ray_shutdown": "Ray shut-down", "total": "total"}
WORKER = {"worker_start": "worker start (imports, INPUT, network)", "reference_encoding": "reference encoding",
          "render": "shot rendering", "segment_write": "segment write (finish, count, manifest)"}
ORDER = ("ray_startup", "shot_plan", "resume_check", "plan_wait", "worker_start", "reference_encoding", "render",
         "segment_write", "render_wall", "join", "ray_shutdown", "total")


class Phases:
    """Seconds per phase. ``driver``: wall time on the driver; ``workers``: per-worker sums and maxima."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.driver: dict[str, float] = {}
        self.workers: dict[str, dict[str, float]] = {}     # worker name → phase → seconds
        self.frames = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def measure(self, name: str):
        t = time.monotonic()
        try:
            yield
        finally:
            self.add(name, time.monotonic() - t)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.driver[name] = self.driver.get(name, 0.0) + seconds

    def add_worker(self, worker: str, times: dict) -> None:
        """Add a worker's ``{phase: seconds}`` (what ``ShotWorker.render`` returns under ``times``)."""
        with self._lock:
            mine = self.workers.setdefault(worker, {})
            for name, seconds in times.items():
                if name in WORKER:
                    mine[name] = mine.get(name, 0.0) + float(seconds)

    def finish(self) -> None:
        self.driver["total"] = time.monotonic() - self.t0

    def as_dict(self) -> dict:
        """``{"driver": {phase: s}, "workers": {phase: {"sum": s, "max": s}}, "frames": n}``, rounded to ms."""
        workers = {}
        for name in WORKER:
            values = [w.get(name, 0.0) for w in self.workers.values()]
            if any(values):
                workers[name] = {"sum": round(sum(values), 3), "max": round(max(values), 3)}
        return {"driver": {k: round(self.driver[k], 3) for k in DRIVER if k in self.driver},
                "workers": workers, "frames": self.frames, "worker_count": len(self.workers)}

    def table(self) -> str:
        """One compact table in the order of a run: driver phases (wall) and worker phases (sum over
        workers, slowest worker)."""
        d = self.as_dict()
        rows = [f"{'phase':<46}{'wall s':>9}{'workers Σ s':>13}{'max s':>8}"]
        for name in ORDER:
            if name in d["driver"]:
                rows.append(f"{DRIVER[name]:<46}{d['driver'][name]:>9.2f}")
            elif name in d["workers"]:
                w, label = d["workers"][name], WORKER[name]
                if name == "render" and self.frames:
                    label = f"{label} ({self.frames} frames, {w['sum'] / self.frames:.2f} s each)"
                rows.append(f"{label:<46}{'':>9}{w['sum']:>13.2f}{w['max']:>8.2f}")
        return "\n".join(rows)
