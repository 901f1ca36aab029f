"""The shifted-window local attention equals a direct per-pixel 15×15 formulation; the eager
(window view) and export (225 slices) formulations agree; the body stays float32 under autocast."""
import pytest
import torch

from vscolormnet.model import local_attention as la
from vscolormnet.model.local_attention import LocalAttention


def direct_local_attention(module, q, k, v):
    """Slow reference: for every pixel, softmax over its in-frame 15×15 neighbours."""
    _, c, h, w = q.shape
    vv = v.reshape(1, -1, h, w)
    rel = module.relative_emb_k(q)[0]
    agg = torch.zeros_like(vv[0])
    for y in range(h):
        for x in range(w):
            logits, values = [], []
            for p in range(225):
                dy, dx = p // 15 - 7, p % 15 - 7
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w:
                    logits.append((q[0, :, y, x] / 8 * k[0, :, yy, xx]).sum() + rel[p, y, x])
                    values.append(vv[0, :, yy, xx])
            weights = torch.softmax(torch.stack(logits), 0)
            agg[:, y, x] = (weights[:, None] * torch.stack(values)).sum(0)
    out = module.dw_conv(agg[None])
    out = module.projection(out.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return out.reshape(v.shape)


def test_matches_direct_formulation():
    torch.manual_seed(0)
    module = LocalAttention(64, 1024).eval()
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.2)
    h, w = 9, 17  # window larger than the frame on one axis: masking matters
    q, k = torch.randn(1, 64, h, w), torch.randn(1, 64, h, w)
    v = torch.randn(1, 2, 512, h, w)
    with torch.no_grad():
        fast = module(q, k, v)
        slow = direct_local_attention(module, q, k, v)
    assert fast.shape == (1, 2, 512, h, w)
    torch.testing.assert_close(fast, slow, atol=2e-5, rtol=1e-4)


def test_memory_is_linear_in_window_not_quadratic_in_pixels():
    """Weights are B×225×h×w: no hw×hw tensor is formed."""
    module = LocalAttention(64, 1024).eval()
    q = torch.randn(1, 64, 35, 56)
    with torch.no_grad():
        weights = module.attention_weights(q, q)
    assert weights.shape == (1, 225, 35, 56)
    torch.testing.assert_close(weights.sum(1), torch.ones(1, 35, 56))


def _random_module(seed: int = 0, value_dim: int = 1024) -> LocalAttention:
    torch.manual_seed(seed)
    module = LocalAttention(64, value_dim).eval()
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return module


@pytest.mark.parametrize("cap,per_object", [(None, 512), (3 * 225 * 4 * 20, 16), (5 * 225 * 4 * 20 * 17, 16)])
def test_eager_equals_export_formulation(cap, per_object, monkeypatch):
    """The chunked window-view path equals the 225-slice export graph, also when the chunk cap
    forces row chunks (3 rows) or channel chunks (5 channels), and across frame sizes (mask cache)."""
    if cap is not None:
        monkeypatch.setattr(la, "CHUNK_BYTES_CPU", cap)
    module = _random_module(value_dim=2 * per_object)
    for h, w in [(17, 20), (9, 17), (17, 20)][:2 if cap is None else 3]:
        q, k = torch.randn(1, 64, h, w), torch.randn(1, 64, h, w)
        v = torch.randn(1, 2, per_object, h, w)
        with torch.no_grad():
            eager, export = module(q, k, v), module._export_forward(q, k, v)
            weights = module.attention_weights(q, k)
        torch.testing.assert_close(eager, export, atol=1e-5, rtol=0)
        torch.testing.assert_close(weights, module._export_weights(q, k), atol=1e-6, rtol=0)


@pytest.mark.slow          # a TorchScript trace of the module (~10 s)
def test_tracing_uses_the_export_formulation():
    """Under ``torch.jit.trace`` (as in ONNX export) the graph is the 225-slice one, op for op."""
    module = _random_module(value_dim=32)
    h, w = 5, 6
    q, k, v = torch.randn(1, 64, h, w), torch.randn(1, 64, h, w), torch.randn(1, 2, 16, h, w)
    with torch.no_grad():
        traced = torch.jit.trace(module, (q, k, v))
        assert torch.equal(traced(q, k, v), module._export_forward(q, k, v))
    slices = [n for n in traced.inlined_graph.nodes() if n.kind() == "aten::slice"]
    assert len(slices) >= 2 * 225


def test_attention_body_stays_float32_under_autocast():
    """bf16 inputs under CPU bf16 autocast: correlations, penalty, softmax and the weighted sum
    run in float32 (dw_conv receives float32); only dw_conv and the projection are bf16."""
    module = _random_module()
    h, w = 9, 11
    q, k = torch.randn(1, 64, h, w).bfloat16(), torch.randn(1, 64, h, w).bfloat16()
    v = torch.randn(1, 2, 512, h, w).bfloat16()
    seen = []
    hook = module.dw_conv.register_forward_pre_hook(lambda mod, args: seen.append(args[0].dtype))
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            weights = module.attention_weights(q, k)
            out = module(q, k, v)
    finally:
        hook.remove()
    assert weights.dtype == torch.float32 and seen == [torch.float32]
    assert out.dtype == torch.bfloat16
    with torch.no_grad():
        ref = module(q.float(), k.float(), v.float())
        ref_weights = module.attention_weights(q.float(), k.float())
    assert torch.equal(weights, ref_weights)
    assert ((out.float() - ref).norm() / ref.norm()).item() < 2e-2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cuda_eager_path_has_no_host_sync_and_matches_export():
    """On CUDA (64 MiB chunks, cached mask) the eager path neither synchronises nor copies from the
    host, and equals the export formulation (TF32 off)."""
    module = _random_module().cuda()
    h, w = 21, 35                                       # the 512 preset
    q, k = torch.randn(1, 64, h, w, device="cuda"), torch.randn(1, 64, h, w, device="cuda")
    v = torch.randn(1, 2, 512, h, w, device="cuda")
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        module(q, k, v)                                 # warm-up: mask cached
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            eager = module(q, k, v)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        export = module._export_forward(q, k, v)
    torch.testing.assert_close(eager, export, atol=1e-5, rtol=0)
