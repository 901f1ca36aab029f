"""Where the project and its test data live (imported by conftest, tests and helpers)."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
PARITY_CASES = DATA / "parity"
CASES = sorted(p.name for p in PARITY_CASES.iterdir())
CACHE = Path(os.environ.get("VSCOLORMNET_TEST_CACHE", Path.home() / ".cache" / "vscolormnet-tests"))
