"""One network per process: loaded checkpoints and runtime backends, shared and reference-counted.

Every ``Colorize`` node (and every command) asks here for the network of a weights file and
for a backend; equal requests share one object:

- networks are keyed by the SHA-256 of the weights file's *content* (two paths to the same
  file, or two copies of it, share one model);
- backends are keyed by that hash, the backend's ``cache_key()`` (kind, device, precision,
  options) and, for static-graph backends, the padded size.

``acquire_*`` returns a ``Lease``; ``Lease.release()`` (idempotent) drops one reference, and the
object is closed and forgotten when its last lease goes. A node releases its leases when the
node itself is freed (``weakref.finalize`` on its renderer), not when the core dies, so a
script with hundreds of per-shot ``Colorize`` calls holds one network at a time. All of it
is thread-safe: VapourSynth calls filters from several threads.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable

from ..backends.spec import Auto, BackendSpec
from ..util.files import file_sha256

log = logging.getLogger("vscolormnet")


class _Table:
    """Objects by key with reference counts; ``close(obj)`` runs when the count reaches zero.

    Loading (``make``: a checkpoint read, an ONNX export or a TensorRT build, minutes at a new size)
    runs outside the table's lock, under the key's own ``Event``: an equal request waits for it and
    shares the result, while requests for other keys (another node's size or precision, a stats
    call) go on. A failed load wakes its waiters, which try again themselves.
    """

    def __init__(self, name: str, close: Callable[[Any], None]):
        self.name = name
        self.close = close
        self.entries: dict[tuple, list] = {}     # key → [object, refcount]
        self.loading: dict[tuple, threading.Event] = {}   # key → set when its load ends (either way)
        self.lock = threading.RLock()             # guards the two dicts only; never held while loading

    def acquire(self, key: tuple, make: Callable[[], Any]) -> "Lease":
        while True:
            with self.lock:
                entry = self.entries.get(key)
                if entry is not None:
                    entry[1] += 1
                    return Lease(self, key, entry[0])
                done = self.loading.get(key)
                if done is None:
                    done = self.loading[key] = threading.Event()
                    break                          # this thread loads it
            done.wait()                            # another thread is loading it: share its result
        try:
            value = make()
        except BaseException:
            with self.lock:
                del self.loading[key]
            done.set()
            raise
        with self.lock:
            self.entries[key] = [value, 1]
            del self.loading[key]
        done.set()
        return Lease(self, key, value)

    def release(self, key: tuple) -> None:
        with self.lock:
            entry = self.entries.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del self.entries[key]
        # Closed outside the lock: closing may release other leases (and collect garbage, which may
        # run finalizers that release more), so holding a table lock here could invert lock order.
        try:
            self.close(entry[0])
        except Exception as e:  # noqa: BLE001 - closing must never raise into a finalizer
            log.warning("closing a shared %s failed: %s", self.name, e)
        entry.clear()
        _return_freed_memory()


def _return_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise: a network freed and loaded
    again would then add its size to the process's RSS each time)."""
    import gc
    gc.collect()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


class Lease:
    """One reference to a shared object (``.value``); ``release()`` gives it back (safe to call twice)."""

    def __init__(self, table: _Table, key: tuple, value):
        self._table, self._key, self.value = table, key, value
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        """Drop this reference; the object is closed when it was the last one."""
        with self._lock:
            if self._released:
                return
            self._released = True
            self.value = None
        self._table.release(self._key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


_networks = _Table("network", close=lambda net: None)


def _close_backend(backend) -> None:
    try:
        backend.close()
    finally:
        lease = getattr(backend, "network_lease", None)
        if lease is not None:
            lease.release()


_backends = _Table("backend", close=_close_backend)


def weights_identity(weights: str | Path) -> str:
    """The SHA-256 of the weights file (memoised on path, size and mtime)."""
    return file_sha256(weights)


def acquire_network(weights: str | Path) -> Lease:
    """The loaded, verified ``ColorMNet`` (CPU, fp32, eval) of ``weights``; raises ``CheckpointError``."""
    from ..weights.checkpoint import load_model
    key = (weights_identity(weights),)

    def load():
        log.info("loading network %s", weights)
        return load_model(weights)
    return _networks.acquire(key, load)


def _first_auto_candidate(spec: Auto, acquire: Callable[[BackendSpec], Lease]) -> Lease:
    """The lease of the first of ``spec``'s candidates that starts, logging the choice and what was skipped."""
    usable, skipped = spec.candidates()
    failures = []
    for candidate in usable:
        try:
            lease = acquire(candidate)
        except Exception as e:  # noqa: BLE001 - a candidate that fails to start is skipped, with the reason
            failures.append((candidate.name, f"failed to start: {e}"))
            continue
        reasons = "; ".join(f"{c}: {why}" for c, why in skipped + failures) or "nothing skipped"
        log.info("backend auto: using %s; skipped %s", lease.value.describe(), reasons)
        return lease
    raise RuntimeError("backend auto: no backend could be started: "
                       + "; ".join(f"{c}: {why}" for c, why in skipped + failures))


def acquire_backend(spec: BackendSpec, weights: str | Path, padded_hw: tuple[int, int] | None) -> Lease:
    """A runtime backend for ``spec`` (``Auto`` resolved here, logging its choice and what it skipped).

    ``padded_hw`` is required by static-graph backends and ignored by PyTorch.
    """
    if isinstance(spec, Auto):
        return _first_auto_candidate(spec, lambda candidate: acquire_backend(candidate, weights, padded_hw))
    if spec.needs_size and padded_hw is None:
        raise ValueError(f"backend {spec.name!r} runs static graphs and needs the padded size")
    size = tuple(padded_hw) if spec.needs_size else None
    key = (weights_identity(weights), spec.cache_key(), size)

    def make():
        net = acquire_network(weights)
        try:
            backend = spec.create(net.value, weights, size)
        except BaseException:
            net.release()
            raise
        backend.network_lease = net      # PyTorch backends run this very module: keep it while they live
        log.info("%s ready", backend.describe())
        return backend
    return _backends.acquire(key, make)


def acquire_ddcolor_network(weights: str | Path, model: str) -> Lease:
    """The loaded, verified ``DDColor`` (CPU, fp32, eval) of ``weights`` for ``model`` (a model name);
    keyed by model and weights content, beside the ColorMNet networks."""
    from ..model.ddcolor.names import resolve_model
    from ..weights.ddcolor_checkpoint import load_ddcolor
    name = resolve_model(model)

    def load():
        log.info("loading %s network %s", name, weights)
        return load_ddcolor(weights, name)
    return _networks.acquire(("ddcolor", name, weights_identity(weights)), load)


def acquire_ddcolor_backend(spec: BackendSpec, weights: str | Path, model: str, input_size: int) -> Lease:
    """A DDColor backend (``backends/ddcolor_backend.py``) for ``spec``, shared by every caller with the same
    weights, model and spec (and S, for the graph backends; one torch backend serves every size)."""
    from ..backends.ddcolor_backend import create_ddcolor_backend
    from ..model.ddcolor.names import resolve_model
    from ..weights.ddcolor_checkpoint import load_ddcolor
    if isinstance(spec, Auto):
        return _first_auto_candidate(spec, lambda c: acquire_ddcolor_backend(c, weights, model, input_size))
    name = resolve_model(model)
    key = ("ddcolor", name, weights_identity(weights), spec.cache_key(), input_size if spec.needs_size else None)

    def make():
        if not spec.needs_size:           # torch runs the shared network itself
            net = acquire_ddcolor_network(weights, name)
            try:
                backend = create_ddcolor_backend(spec, weights, name, input_size, net.value)
            except BaseException:
                net.release()
                raise
            backend.network_lease = net
        else:                             # graph backends need the network only to export a missing graph
            backend = create_ddcolor_backend(spec, weights, name, input_size, lambda: load_ddcolor(weights, name))
        log.info("%s %s ready", name, backend.describe())
        return backend
    return _backends.acquire(key, make)


def stats() -> dict[str, int]:
    """How many networks and backends are loaded, and how many leases hold them (for logs and checks)."""
    with _backends.lock, _networks.lock:            # short critical sections only: never waits on a load
        return {"networks": len(_networks.entries), "backends": len(_backends.entries),
                "network_leases": sum(e[1] for e in _networks.entries.values()),
                "backend_leases": sum(e[1] for e in _backends.entries.values())}
