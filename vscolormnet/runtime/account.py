"""Device-memory account: the bytes of every tensor a clip's state holds, by owner.

Why: on a GPU the state of a long clip (live shot sessions, their snapshots, the encoded
references, cached results, key blocks) is what decides whether it fits, and none of it is
visible in ``torch.cuda.memory_allocated`` by owner. The account walks the objects that hold
tensors and counts each storage once, charged to the first owner that holds it (a snapshot that
shares its memory tensors with the live state costs only what it does not share), and counts
the whole storage of a view (a slice keeps its whole batch alive). Device-independent, so the
bounds are asserted on CPU.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch

from .memory import KeyValueStore, MemoryManager


class DeviceAccount:
    """Bytes by owner (``add``), each storage counted once."""

    def __init__(self):
        self.rows: dict[str, int] = {}
        self._seen: set[tuple[str, int]] = set()

    def add(self, owner: str, *objects) -> int:
        """Charge ``owner`` with the storages reachable from ``objects`` not counted yet; returns them."""
        total = sum(self._bytes(t) for obj in objects for t in tensors_in(obj))
        self.rows[owner] = self.rows.get(owner, 0) + total
        return total

    def _bytes(self, t: torch.Tensor) -> int:
        storage = t.untyped_storage()
        key = (str(t.device), storage.data_ptr())
        if key in self._seen or storage.nbytes() == 0:
            return 0
        self._seen.add(key)
        return storage.nbytes()

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def as_dict(self) -> dict:
        """``{"total_bytes": …, "owners": {owner: bytes}}`` (JSON-ready)."""
        return {"total_bytes": self.total, "owners": dict(self.rows)}


def tensors_in(obj, _depth: int = 0):
    """The tensors held by ``obj``: tensors, containers, dataclasses (``PropagationState``,
    ``StepResult``, ``Reference``, key blocks) and the memory stores. Anything else (a backend,
    a callable, a VapourSynth frame) is not followed: the account is of state, not of networks."""
    if _depth > 8 or obj is None:
        return
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from tensors_in(v, _depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            yield from tensors_in(v, _depth + 1)
    elif isinstance(obj, MemoryManager):
        yield from tensors_in((obj.work, obj.long, obj._joined, obj.last_confidence), _depth + 1)
    elif isinstance(obj, KeyValueStore) or (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        for f in dataclasses.fields(obj):
            yield from tensors_in(getattr(obj, f.name), _depth + 1)
