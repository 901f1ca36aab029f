"""The shifted-window local attention equals a direct per-pixel 15×15 formulation."""
import torch

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
