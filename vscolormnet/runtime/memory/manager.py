"""``MemoryManager``: working / long-term / permanent memory policy (XMem's, generalised to
several permanent reference slots).

The first ``permanent`` elements of working memory are the references: never consolidated,
never evicted, kept across scene resets. With one reference this is exactly the official
behaviour (the slot ``[0, HW)``).
"""
from __future__ import annotations

import weakref

import torch

from ..config import MemoryConfig
from . import similarity as sim_fn
from .store import KeyValueStore

READOUT_CHUNK_BYTES = 256 << 20     # the largest readout temporary (one N×M block of the similarity)


class MemoryManager:
    """Readout, insertion, consolidation and eviction. Tensors stay on their device."""

    def __init__(self, config: MemoryConfig, count_long_term_usage: bool):
        self.config = config
        self.work = KeyValueStore(count_usage=config.enable_long_term)
        self.long = KeyValueStore(count_usage=count_long_term_usage)
        self.hw: int | None = None
        self.permanent_frames = 0
        self.consolidations = 0
        self.obsolete_removals = 0
        self.last_confidence: torch.Tensor | None = None   # of the last read (``similarity.match_confidence``)
        self._joined: tuple | None = None   # (weak refs to the six store tensors, (key, shrinkage, value))
        self.chunk_bytes = READOUT_CHUNK_BYTES

    # ---- policy thresholds (in elements) -------------------------------------------------
    @property
    def permanent(self) -> int:
        """Elements in the permanent reference slots."""
        return self.permanent_frames * (self.hw or 0)

    def _max_work(self) -> int:
        return (self.config.max_mid_term_frames - 1) * self.hw + self.permanent

    def _kept_recent(self) -> int:
        return (self.config.min_mid_term_frames - 1) * self.hw

    # ---- verbs ---------------------------------------------------------------------------
    def add_permanent(self, key, shrinkage, value, selection) -> None:
        """Store a reference (``key 1×64×h×w``, ``value 1×2×512×h×w``) in a permanent slot.

        Must happen before any non-permanent frame is added.
        """
        if self.work.size != self.permanent:
            raise RuntimeError("permanent references must be added before other frames")
        self._add(key, shrinkage, value, selection)
        self.permanent_frames += 1

    def add(self, key, shrinkage, value, selection) -> None:
        """Store a memory frame; consolidate when working memory is full."""
        self._add(key, shrinkage, value, selection)
        cfg = self.config
        if cfg.enable_long_term and self.work.size >= self._max_work():
            limit = cfg.max_long_term_elements - cfg.num_prototypes
            if self.long.size >= limit:
                self.long.remove_obsolete(limit)
                self.obsolete_removals += 1
            self._consolidate()

    def clear_non_permanent(self) -> None:
        """Scene reset: forget everything but the references."""
        self._joined = None
        self.work.remove_range(self.permanent, self.work.size)
        self.long = KeyValueStore(count_usage=self.long.count_usage)
        if self.work.count_usage and self.work.size:
            self.work.use_count.zero_()
            self.work.life_count.fill_(1e-7)

    def read(self, query_key: torch.Tensor, query_selection: torch.Tensor) -> torch.Tensor:
        """Top-k readout for ``query_key / query_selection 1×64×h×w`` → ``1×2×512×h×w``; counts usage.

        The ``N×M`` similarity (memory × query positions) and its temporaries are made for at most
        ``chunk_bytes`` each: the query positions are read in column blocks when the whole would be
        larger (``size='native'`` at 1080p: N up to ~83k, M = 8160, 2.2-2.6 GiB per temporary in one block).
        Each query's top-k is its own, so blocks change nothing but the summation order of the
        usage counts; below the limit (every preset size) it is one block, as upstream.
        """
        h, w = query_key.shape[-2:]
        qk = query_key.flatten(2)
        qe = query_selection.flatten(2) if query_selection is not None else None
        long_n = self.long.size
        key, shrinkage, value = self._readable()
        n, m = key.shape[-1], qk.shape[-1]
        step = max(1, min(m, self.chunk_bytes // max(1, n * key.element_size())))
        outs, bests, usage = [], [], None
        for start in range(0, m, step):
            cols = slice(start, min(m, start + step))
            sim = sim_fn.similarity(key, shrinkage, qk[:, :, cols], None if qe is None else qe[:, :, cols])
            affinity, best = sim_fn.topk_softmax_and_best(sim, self.config.top_k)
            bests.append(best)
            if self.config.enable_long_term:
                part = affinity.sum(dim=2)
                usage = part if usage is None else usage + part
            outs.append(sim_fn.readout(affinity, value))
            del sim, affinity
        best = bests[0] if len(bests) == 1 else torch.cat(bests, -1)
        self.last_confidence = sim_fn.match_confidence(best)
        if usage is not None:
            self.work.update_usage(usage[:, long_n:].flatten())
            if long_n > 0:
                self.long.update_usage(usage[:, :long_n].flatten())
        out = outs[0] if len(outs) == 1 else torch.cat(outs, -1)
        return out.view(1, *out.shape[:2], h, w)

    # ---- internals -----------------------------------------------------------------------
    def _readable(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """key ``1×64×N``, shrinkage ``1×1×N``, value ``2×512×N`` over long-term then working memory.

        The joined copy is kept until either store changes (every ``mem_every`` frames) instead
        of being concatenated on every read. Stores replace these tensors on every change and
        never write into them, so "unchanged" is "the same tensor objects" (weak references:
        the cache keeps no replaced tensor alive, and a dead one never matches).
        """
        if not (self.config.enable_long_term and self.long.size > 0):
            return self.work.key, self.work.shrinkage, self.work.value
        parts = (self.long.key, self.long.shrinkage, self.long.value,
                 self.work.key, self.work.shrinkage, self.work.value)
        joined = self._joined
        if joined is None or any(ref() is not t for ref, t in zip(joined[0], parts)):
            self._joined = None                      # free the stale copy before building the new one
            joined = self._joined = (tuple(weakref.ref(t) for t in parts),
                                     tuple(torch.cat(parts[i::3], -1) for i in range(3)))
        return joined[1]

    def _add(self, key, shrinkage, value, selection) -> None:
        self._joined = None
        if self.hw is None:
            self.hw = key.shape[-2] * key.shape[-1]
        sel = selection.flatten(2) if (selection is not None and self.config.enable_long_term) else None
        self.work.add(key.flatten(2), shrinkage.flatten(2), value[0].flatten(2), sel)

    def _consolidate(self) -> None:
        """Compress the oldest non-permanent frames into ``num_prototypes`` long-term elements."""
        start, end = self.permanent, self.work.size - self._kept_recent()
        key, shrinkage, selection, usage, value = self.work.sliced(start, end)
        _, idx = torch.topk(usage, k=self.config.num_prototypes, dim=-1, sorted=True)
        idx = idx.flatten()
        proto_key = key[:, :, idx]
        proto_sel = selection[:, :, idx] if selection is not None else None
        affinity = sim_fn.softmax(sim_fn.similarity(key, shrinkage, proto_key, proto_sel))
        proto_value = sim_fn.readout(affinity, value)
        proto_shrinkage = sim_fn.readout(affinity, shrinkage)
        self.work.remove_range(start, end)
        self.long.add(proto_key, proto_shrinkage, proto_value, None)
        self.consolidations += 1

    def clone(self) -> "MemoryManager":
        """Deep copy for snapshots."""
        copy = MemoryManager.__new__(MemoryManager)
        copy.__dict__.update(self.__dict__)
        copy.work = self.work.clone()
        copy.long = self.long.clone()
        copy._joined = None     # a snapshot holds the stores only (nbytes); rebuilt on its first read
        return copy

    def nbytes(self) -> int:
        """Bytes held by both stores."""
        return self.work.nbytes() + self.long.nbytes()
