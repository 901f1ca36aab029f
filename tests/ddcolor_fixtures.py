"""DDColor test data: the parity cases (``tests/data/ddcolor/cases``), the seeded checkpoints and shared colorizers.

The checkpoints are built by our own ``weights/seeded_ddcolor.py`` into the test cache (``CACHE``,
outside the repo; tiny ~220 MB, large ~912 MB) once and reused by later sessions. ``ddcolor_colorizers``
opens each (model, backend, S) once per session and keeps it: loading the large network and
exporting a graph are the slow steps, so every test file shares them (ONNX graphs go to one
session folder under pytest's base temp, removed at the end). Register the fixtures in a test
module with ``from ddcolor_fixtures import ddcolor_checkpoints, ddcolor_colorizers  # noqa: F401``.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from project_paths import CACHE, DATA

DDCOLOR_DATA = DATA / "ddcolor"
DDCOLOR_CASES = tuple(sorted(p.name for p in (DDCOLOR_DATA / "cases").iterdir()))
AB_MAX, AB_MEAN = 1e-2, 1e-3                     # Lab units, against the official fp32 run
RGB_LEVELS, RGB_FRACTION = 1, 1e-3               # at most 1 level off, on at most 0.1 % of the values
_OPEN: dict = {}


@dataclass(frozen=True)
class DDColorCase:
    """One case folder: ``config.json``, ``input.png`` and the official ``outputs.npz``."""

    name: str
    folder: Path
    config: dict

    @property
    def model(self) -> str:
        return f"ddcolor-{self.config['model']}"

    @property
    def input_size(self) -> int:
        return int(self.config["input_size"])

    def image(self) -> np.ndarray:
        """The input as the official code reads it (``cv2.imread``), RGB order."""
        from vscolormnet.media.images import read_rgb_like_opencv
        return read_rgb_like_opencv(self.folder / "input.png")

    def expected(self) -> dict[str, np.ndarray]:
        """``ab_net``, ``ab_full``, ``rgb`` (and ``l_orig`` where the case stores it)."""
        with np.load(self.folder / "outputs.npz") as z:
            return {k: z[k] for k in z.files}


def load_ddcolor_case(name: str) -> DDColorCase:  # noqa: D103
    folder = DDCOLOR_DATA / "cases" / name
    return DDColorCase(name, folder, json.loads((folder / "config.json").read_text()))


def parity_problems(case: DDColorCase, ab_net, ab_full, rgb, ab_max: float = AB_MAX) -> list[str]:
    """Every way a run misses the case's bounds (README of the cases); [] = parity."""
    want = case.expected()
    problems = []
    for name, got in (("ab_net", ab_net), ("ab_full", ab_full)):
        if got.shape != want[name].shape:
            problems.append(f"{case.name}: {name} shape {got.shape}, expected {want[name].shape}")
            continue
        d = np.abs(got.astype(np.float64) - want[name])
        if d.max() > ab_max or d.mean() > AB_MEAN:
            problems.append(f"{case.name}: {name} max |Δ| {d.max():.2e} (≤ {ab_max:g}), mean {d.mean():.2e} "
                            f"(≤ {AB_MEAN:g})")
    if rgb.shape != want["rgb"].shape:
        return problems + [f"{case.name}: rgb shape {rgb.shape}, expected {want['rgb'].shape}"]
    d = np.abs(rgb.astype(np.int16) - want["rgb"])
    if d.max() > RGB_LEVELS or (d > 0).mean() > RGB_FRACTION:
        problems.append(f"{case.name}: rgb max |Δ| {d.max()} levels, {(d > 0).mean():.3%} of values differ")
    return problems


def parity_figures(case: DDColorCase, ab_net, ab_full, rgb) -> str:
    """One line of measured figures (for ``-s`` runs and the report)."""
    want = case.expected()
    d = np.abs(rgb.astype(np.int16) - want["rgb"])
    return (f"{case.name}: ab_net max|Δ| {np.abs(ab_net - want['ab_net']).max():.2e}, ab_full max|Δ| "
            f"{np.abs(ab_full - want['ab_full']).max():.2e}, rgb {(d > 0).mean():.4%} differ (max {d.max()})")


def ddcolor_checkpoint_path(size: str) -> Path:
    """The seeded (seed 0) checkpoint of ``size`` in the test cache, built (and hash-checked) if missing."""
    from vscolormnet.util.files import file_lock
    from vscolormnet.weights.seeded_ddcolor import build
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"ddcolor_{size}_seed0.pth"
    with file_lock(CACHE / f".ddcolor_{size}.lock"):          # xdist workers: one builds, the others wait
        if not path.exists():
            build(path, size, seed=0)
    return path


@pytest.fixture(scope="session")
def ddcolor_checkpoints():
    """``get(size) -> Path``: the seeded checkpoints, built on first use."""
    return ddcolor_checkpoint_path


@pytest.fixture(scope="session")
def ddcolor_colorizers(tmp_path_factory):
    """``get(model, input_size, backend='torch', **options) -> Colorizer``, opened once per session (ORT graphs
    in a session folder); all are closed at the end."""
    from vscolormnet.runtime.image_colorizer import open_colorizer
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    base = tmp_path_factory.getbasetemp()
    onnx_dir = (base.parent if worker else base) / "ddcolor-onnx"    # xdist: one folder for the run (as graph_fixtures)

    def get(model: str, input_size: int, backend: str = "torch", **options):
        key = (model, input_size, backend, tuple(sorted(options.items())))
        if key not in _OPEN:
            extra = {"onnx_dir": str(onnx_dir)} if backend == "ort" else {}
            weights = ddcolor_checkpoint_path(model.removeprefix("ddcolor-"))
            _OPEN[key] = open_colorizer(model, weights, input_size=input_size, backend=backend,
                                        **{**extra, **options})
        return _OPEN[key]
    yield get
    while _OPEN:
        _OPEN.popitem()[1].close()
    if not worker:                   # another worker may still read it
        shutil.rmtree(onnx_dir, ignore_errors=True)
