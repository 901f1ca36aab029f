"""Readout in query blocks: the same result as one block, and no temporary over ``chunk_bytes``."""
from __future__ import annotations

import torch
from dispatch_counts import DispatchCounts

from vscolormnet.runtime.config import MemoryConfig
from vscolormnet.runtime.memory import MemoryManager

from .memory_tensors import rand_frame


def _filled(g: torch.Generator, frames: int, h: int, w: int, device="cpu") -> MemoryManager:
    config = MemoryConfig(mem_every=1, max_mid_term_frames=10, min_mid_term_frames=5, num_prototypes=16,
                          max_long_term_elements=10000, top_k=30)
    mm = MemoryManager(config, count_long_term_usage=True)
    for i in range(frames):
        key, shrinkage, value, selection = (t.to(device) for t in rand_frame(g, h, w))
        (mm.add_permanent if i == 0 else mm.add)(key, shrinkage, value, selection)
    return mm


def test_blocks_give_the_one_block_readout_usage_and_confidence():
    g = torch.Generator().manual_seed(5)
    whole = _filled(g, 12, 6, 9)                      # consolidated once: long-term memory is read too
    assert whole.long.size > 0
    blocked = whole.clone()
    blocked.chunk_bytes = whole.work.size * 4 * 7     # 7 query positions a block (of 54)
    qk, _, _, qe = rand_frame(g, 6, 9)
    blocked._readable()                               # the joined memory (a cache, not a temporary)
    with DispatchCounts() as seen:
        out_blocked = blocked.read(qk, qe)
    out_whole = whole.read(qk, qe)
    assert torch.allclose(out_blocked, out_whole, atol=1e-6, rtol=0)
    assert torch.allclose(blocked.work.use_count, whole.work.use_count, atol=1e-6)
    assert torch.allclose(blocked.long.use_count, whole.long.use_count, atol=1e-6)
    assert torch.allclose(blocked.last_confidence, whole.last_confidence, atol=1e-7)
    n = whole.work.size + whole.long.size
    assert seen.largest <= max(n * 4 * 7, out_whole.numel() * 4)


def test_native_1080p_readout_temporaries_stay_under_256_mib():
    """``size='native'`` at 1920×1080: 120×68 keys a frame, working memory at its largest (the
    reference and 8 frames: 73,440 elements) before a consolidation. Counted on the meta device
    (shapes only): 2.2 GiB temporaries in one block, ≤ 256 MiB in blocks."""
    g = torch.Generator().manual_seed(6)
    mm = _filled(g, 9, 68, 120, device="meta")
    mm._readable()
    qk, _, _, qe = (t.to("meta") for t in rand_frame(g, 68, 120))
    with DispatchCounts() as blocked:
        mm.read(qk, qe)
    mm.chunk_bytes = 1 << 62
    with DispatchCounts() as whole:
        mm.read(qk, qe)
    print(f"native 1080p readout, N={mm.work.size + mm.long.size}: largest temporary "
          f"{whole.largest / 2**20:.0f} MiB in one block, {blocked.largest / 2**20:.0f} MiB in blocks")
    assert blocked.largest <= 256 << 20 < 2 << 30 < whole.largest
