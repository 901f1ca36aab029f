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


def _threads_per_worker() -> int:
    """pytest-xdist: the cores shared among the workers (at most 2 each)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(2, (os.cpu_count() or 1) // workers))


if os.environ.get("PYTEST_XDIST_WORKER"):
    # Subprocesses (vspipe, commands) too: two workers' children at two OpenMP threads each on two cores
    # wait on each other at every parallel region (test_vspipe.py on -n 2: 173 s, 158 s with this).
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads_per_worker()))


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    import torch
    torch.set_num_threads(_threads_per_worker())


# pytest-xdist units (scripts/test.sh runs --dist loadgroup): the film files share the one-process render
# they compare with (``expected``, ~15 s) and Ray; every other file is its own unit.
XDIST_GROUPS = {"tests/film/test_film.py": "film", "tests/film/test_ray_cluster.py": "film"}
# Units that go first, in this order (xdist hands each worker two units at the start, then one whenever it
# runs short): the ONNX export (~50-70 s, once per run), so that the files needing the graphs find them in the
# shared cache instead of waiting on its lock with a core idle; then the longest unit (film, ~240 s) on the
# other worker, and behind it a short one (model/test_parity, ~40 s) rather than another long one.
FIRST = ("tests/backends/test_onnx_export.py", "tests/film/test_film.py", "tests/vs/test_vspipe.py",
         "tests/model/test_parity.py", "tests/film/test_ray_cluster.py")


@pytest.hookimpl(tryfirst=True)           # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
    """Longest first: files with tests of the tiers that run real networks (slow, vspipe, onnx) start
    before the quick files, so on two pytest-xdist workers the quick ones fill the gaps at the end
    instead of one long test running alone. A file's tests stay together on one worker (an
    ``xdist_group`` per file: its module fixtures are built once, not once per worker: the film
    module's two-worker run took 82 s on each worker); the order is the same on every worker, as
    xdist requires."""
    for item in items:
        path = item.nodeid.split("::")[0]
        if not any(True for _ in item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(XDIST_GROUPS.get(path, path)))

    def weight(item) -> int:
        path = item.nodeid.split("::")[0]
        if path in FIRST:
            return FIRST.index(path) - len(FIRST)
        return 0 if item.get_closest_marker("slow") or item.get_closest_marker("vspipe") else \
            1 if item.get_closest_marker("onnx") else 2
    by_file: dict[str, int] = {}
    for item in items:
        by_file[item.nodeid.split("::")[0]] = min(by_file.get(item.nodeid.split("::")[0], 2), weight(item))
    items.sort(key=lambda item: by_file[item.nodeid.split("::")[0]])
