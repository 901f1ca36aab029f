"""The one table gpu_check prints: rows that pass or fail, and rows that say why they could not run.

Verdicts: ``PASS`` / ``FAIL`` (a target met or missed), ``ERROR`` (the row raised), and the marks of
rows that did not run here: ``CUDA-only`` (the row needs a GPU; run with ``--device cpu``), ``not
installed`` (TensorRT, onnxruntime-gpu, opencv on the image). Only PASS counts as a pass: a marked
row is never a pass and never hides a failure. Every row records the seconds it took (``data.s``),
the figure behind the GPU-time estimate.
"""
from __future__ import annotations

import logging
import time

PASS, FAIL, ERROR, CUDA_ONLY, NOT_INSTALLED = "PASS", "FAIL", "ERROR", "CUDA-only", "not installed"
MARKS = (CUDA_ONLY, NOT_INSTALLED)
log = logging.getLogger("gpu_check")


def error_text(e: BaseException) -> str:
    """``Type: first line of the message`` (at most 160 characters of it)."""
    first = (str(e).strip().splitlines() or [""])[0][:160]
    return f"{type(e).__name__}: {first}"


def verdict(ok: bool) -> str:
    return PASS if ok else FAIL


class Table:
    """The rows of the one table: (check, case, result, verdict, seconds) and the data behind each."""

    def __init__(self, t0: float | None = None):
        self.rows: list[dict] = []
        self.t0 = time.perf_counter() if t0 is None else t0       # from the start (imports included)

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.t0

    def add(self, check: str, case: str, result: str, verdict: str, seconds: float = 0.0, **data) -> None:
        if verdict not in (PASS, FAIL, ERROR, *MARKS):
            raise ValueError(f"unknown verdict {verdict!r}")
        self.rows.append({"check": check, "case": case, "result": result, "verdict": verdict,
                          "data": {**data, "s": round(seconds, 1)}})
        log.info("[%3.0f s] %s | %s | %s | %s (%.1f s)", self.elapsed_s(), check, case, result, verdict, seconds)

    def run(self, check: str, case: str, fn) -> None:
        """Add the row ``fn()`` returns as ``(result, verdict, data)``; an exception is an ERROR row."""
        t = time.perf_counter()
        try:
            result, v, data = fn()
        except Exception as e:  # noqa: BLE001 - one broken row must not hide the others
            result, v, data = error_text(e), ERROR, {}
        self.add(check, case, result, v, time.perf_counter() - t, **data)

    def section(self, check: str, fn) -> None:
        """Run ``fn`` (which adds rows); an exception outside its rows (an import, a set-up) is one ERROR row."""
        t = time.perf_counter()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - the rows after it and the table must still come
            self.add(check, "-", error_text(e), ERROR, time.perf_counter() - t)

    def format(self) -> str:
        head = ("check", "case", "result", "verdict", "s")
        cells = [head] + [(r["check"], r["case"], r["result"], r["verdict"], f"{r['data']['s']:.0f}")
                          for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
        lines = ["| " + " | ".join(c[i].ljust(widths[i]) for i in range(len(head))) + " |" for c in cells]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)

    def failed(self) -> bool:
        return any(r["verdict"] in (FAIL, ERROR) for r in self.rows)

    def counts(self) -> dict[str, int]:
        """Rows per verdict (``PASS``, ``FAIL``, ``ERROR``, ``CUDA-only``, ``not installed``)."""
        out: dict[str, int] = {}
        for r in self.rows:
            out[r["verdict"]] = out.get(r["verdict"], 0) + 1
        return out
