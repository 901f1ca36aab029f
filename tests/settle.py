"""Waiting for ``shared.stats()`` to settle: an earlier test's node can outlive its test for a moment
(frames asked of it still being computed), and a baseline taken then is off by its leases."""
from __future__ import annotations

import gc
import time


def settled_stats(timeout: float = 30.0) -> dict:
    """``shared.stats()`` once it has not changed for two seconds (freed nodes collected)."""
    from vscolormnet.runtime import shared
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        gc.collect()
        now = shared.stats()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 2.0:
            break
        time.sleep(0.1)
    return last
