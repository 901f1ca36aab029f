"""Shared fixtures: the seeded parity checkpoint (built once into a cache outside the repo)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from graph_fixtures import onnx_graphs  # noqa: F401  (session-scoped ONNX export, shared by every file)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
PARITY_CASES = DATA / "parity"
CACHE = Path(os.environ.get("VSCOLORMNET_TEST_CACHE", Path.home() / ".cache" / "vscolormnet-tests"))


@pytest.fixture(scope="session")
def parity_checkpoint() -> Path:
    """The seeded random checkpoint of the parity cases (seed 0), rebuilt by our own code."""
    from vscolormnet.random_checkpoint import build
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / "colormnet_random_seed0.pth"
    if not path.exists():
        build(str(path), seed=0)
    return path


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    import torch
    torch.set_num_threads(min(2, os.cpu_count() or 1))
