"""``KeyValueStore``: holds memory tensors and usage counters; no policy."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KeyValueStore:
    """Memory elements along the last axis.

    key ``1×64×N``, shrinkage ``1×1×N``, selection ``1×64×N`` (None in long-term memory),
    value ``2×512×N``; with ``count_usage``, use_count / life_count ``1×1×N``.

    Only the usage counters are updated in place; every other tensor is replaced, never written
    into, when the store changes (``clone`` shares them; ``MemoryManager`` caches on identity).
    """

    count_usage: bool
    key: torch.Tensor | None = None
    shrinkage: torch.Tensor | None = None
    selection: torch.Tensor | None = None
    value: torch.Tensor | None = None
    use_count: torch.Tensor | None = None
    life_count: torch.Tensor | None = None

    @property
    def size(self) -> int:
        """Number of elements N."""
        return 0 if self.key is None else self.key.shape[-1]

    def add(self, key, shrinkage, value, selection=None) -> None:
        """Append elements; new ones start with use 0 and life 1e-7."""
        n = key.shape[-1]
        new_use = torch.zeros(1, 1, n, device=key.device, dtype=torch.float32)
        new_life = torch.zeros(1, 1, n, device=key.device, dtype=torch.float32) + 1e-7

        def cat(old, new):
            if new is None:
                return old
            return new if old is None else torch.cat([old, new], -1)

        self.key = cat(self.key, key)
        self.shrinkage = cat(self.shrinkage, shrinkage)
        self.selection = cat(self.selection, selection)
        self.value = cat(self.value, value)
        if self.count_usage:
            self.use_count = cat(self.use_count, new_use)
            self.life_count = cat(self.life_count, new_life)

    def update_usage(self, usage: torch.Tensor) -> None:
        """Add this readout's attention mass (``N``) to use_count; every element ages by 1."""
        if not self.count_usage:
            return
        self.use_count += usage.view_as(self.use_count)
        self.life_count += 1

    def usage(self) -> torch.Tensor:
        """Normalised usage ``use_count / life_count`` (``1×1×N``)."""
        if not self.count_usage:
            raise RuntimeError("this memory store does not count usage")
        return self.use_count / self.life_count

    def sliced(self, start: int, end: int):
        """``(key, shrinkage, selection, usage, value)`` of elements ``[start, end)``."""
        sl = slice(start, end)
        sel = self.selection[:, :, sl] if self.selection is not None else None
        return (self.key[:, :, sl], self.shrinkage[:, :, sl], sel, self.usage()[:, :, sl],
                self.value[:, :, sl])

    def remove_range(self, start: int, end: int) -> None:
        """Drop elements ``[start, end)``."""
        def cut(t):
            return None if t is None else torch.cat([t[:, :, :start], t[:, :, end:]], -1)
        self._apply(cut)

    def keep(self, survived: torch.Tensor) -> None:
        """Keep only elements where the boolean mask ``survived`` (``N``) is true."""
        self._apply(lambda t: None if t is None else t[:, :, survived])

    def remove_obsolete(self, max_size: int) -> None:
        """Evict the least-used elements so that at most about ``max_size`` remain (ties may evict more)."""
        usage = self.usage().flatten()
        if self.size <= max_size:
            return
        values, _ = torch.topk(usage, k=self.size - max_size, largest=False, sorted=True)
        self.keep(usage > values[-1])

    def _apply(self, fn) -> None:
        for name in ("key", "shrinkage", "selection", "value", "use_count", "life_count"):
            setattr(self, name, fn(getattr(self, name)))

    def clone(self) -> "KeyValueStore":
        """A snapshot. Only the usage counters are updated in place; every other tensor is
        replaced (never mutated) when the store changes, so it can be shared."""
        copy = KeyValueStore(self.count_usage, self.key, self.shrinkage, self.selection, self.value)
        copy.use_count = None if self.use_count is None else self.use_count.clone()
        copy.life_count = None if self.life_count is None else self.life_count.clone()
        return copy

    def nbytes(self) -> int:
        """Bytes held by the tensors."""
        total = 0
        for name in ("key", "shrinkage", "selection", "value", "use_count", "life_count"):
            t = getattr(self, name)
            total += 0 if t is None else t.numel() * t.element_size()
        return total
