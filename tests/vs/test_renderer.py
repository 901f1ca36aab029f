"""The renderer's copy-out: the host tensor itself off CUDA; pinned, per call and not per thread on CUDA."""
from __future__ import annotations

import threading

import pytest
import torch


def test_copy_out_off_cuda_is_the_tensor_itself():
    from vscolormnet.vs.renderer import ClipRenderer
    rgb = torch.rand(3, 5, 7)
    out, conf = ClipRenderer._copy_out(None, rgb, torch.tensor(0.25))
    assert out is rgb and conf == 0.25


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cuda_copy_out_pinned_memory_is_not_per_thread():
    """16 threads, one copy-out each, one after the other: the pinned blocks are reused (caching host
    allocator), not kept per thread; the data arrives whole (the host waited for the copy)."""
    from vscolormnet.vs.renderer import ClipRenderer
    dev = torch.device("cuda")
    rgb = torch.rand(3, 270, 480, device=dev)
    want = rgb.cpu()
    outs, lock = [], threading.Lock()

    def one():
        with lock:
            out, conf = ClipRenderer._copy_out(None, rgb * 1, torch.tensor(0.5, device=dev))
            outs.append((torch.equal(out, want), conf, out.is_pinned()))
            del out
    ClipRenderer._copy_out(None, rgb, 0.5)
    before = torch.cuda.host_memory_stats().get("allocated_bytes.current", 0)
    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outs == [(True, 0.5, True)] * 16
    assert torch.cuda.host_memory_stats().get("allocated_bytes.current", 0) <= before + 2 * 4 * want.numel() + 4096
