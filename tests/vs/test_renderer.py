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


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_compose_maps_the_gamut_at_the_smaller_size_off_the_cpu(device):
    """1920×1080 from 512×288 (padded 336×560): the output is 3×1080×1920 either way; off the CPU
    (``meta`` stands in for CUDA: shapes only) the bisection runs on 512×288 pixels, on the CPU on the clip's."""
    from types import SimpleNamespace

    from dispatch_counts import DispatchCounts

    from vscolormnet.runtime.geometry import inference_geometry
    from vscolormnet.vs.renderer import ClipRenderer
    g = inference_geometry(1920, 1080, "512")
    hp, wp = g.padded_hw
    fake = SimpleNamespace(geometry=g)
    fake._to_clip_size = lambda ab: ClipRenderer._to_clip_size(fake, ab)
    L = torch.full((1080, 1920), 50.0, device=device)
    ab = torch.zeros(1, 2, hp, wp, device=device)
    with DispatchCounts() as counts:
        out = ClipRenderer._compose(fake, L, ab)
    assert out.shape == (3, 1080, 1920) and out.dtype == torch.float32
    if device == "meta":
        assert counts.elements < 300e6, counts.elements          # the clip-size bisection writes ~1,300 M
