"""Shared fixtures: the seeded parity checkpoint (built once into a cache outside the repo)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from ddcolor_fixtures import ddcolor_checkpoints, ddcolor_colorizers  # noqa: F401  (DDColor, built/opened once)
from graph_fixtures import onnx_graphs  # noqa: F401  (session-scoped ONNX export, shared by every file)
from project_paths import CACHE, DATA, PARITY_CASES, ROOT  # noqa: F401  (re-exported for helpers)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def parity_checkpoint() -> Path:
    """The seeded random checkpoint of the parity cases (seed 0), rebuilt by our own code."""
    from vscolormnet.weights.seeded import build
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / "colormnet_random_seed0.pth"
    if not path.exists():
        build(str(path), seed=0)
    return path


@pytest.fixture(scope="session", autouse=True)
def _sigint_reaches_subprocesses():
    """pytest-xdist workers ignore SIGINT (Ctrl-C is the controller's) and their children would inherit
    that: the tests that press Ctrl-C on a command must see it arrive as it does for a user."""
    import signal
    if os.environ.get("PYTEST_XDIST_WORKER") and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    import torch
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))     # pytest-xdist: share the cores
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // workers)))



def pytest_collection_modifyitems(config, items):
    """Longest first: files with tests of the tiers that run real networks (slow, vspipe, onnx) start
    before the quick files, so on two pytest-xdist workers the quick ones fill the gaps at the end
    instead of one long test running alone. A file's tests stay together (its module fixtures are
    built once); the order is the same on every worker, as xdist requires."""
    def weight(item) -> int:
        return 0 if item.get_closest_marker("slow") or item.get_closest_marker("vspipe") else \
            1 if item.get_closest_marker("onnx") else 2
    by_file: dict[str, int] = {}
    for item in items:
        by_file[item.nodeid.split("::")[0]] = min(by_file.get(item.nodeid.split("::")[0], 2), weight(item))
    items.sort(key=lambda item: by_file[item.nodeid.split("::")[0]])
