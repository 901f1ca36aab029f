"""Small random memory tensors and the direct formulas the memory layer is checked against."""
from __future__ import annotations

import math

import torch

C, V = 64, 512
H, W = 2, 3
HW = H * W


def rand_frame(g: torch.Generator, h: int = H, w: int = W):
    """(key 1×64×h×w, shrinkage 1×1×h×w ≥ 1, value 1×2×512×h×w, selection 1×64×h×w ∈ (0,1))."""
    key = 0.3 * torch.randn(1, C, h, w, generator=g)
    shrinkage = 1 + torch.rand(1, 1, h, w, generator=g)
    value = torch.randn(1, 2, V, h, w, generator=g)
    selection = torch.sigmoid(torch.randn(1, C, h, w, generator=g))
    return key, shrinkage, value, selection


def flat(key, shrinkage, value, selection):
    """As a store holds them: key 1×64×N, shrinkage 1×1×N, value 2×512×N, selection 1×64×N."""
    return key.flatten(2), shrinkage.flatten(2), value[0].flatten(2), selection.flatten(2)


# ---- reference formulas, written from the spec ----------------------------------------------
def direct_similarity(mk, ms, qk, qe):
    """S_ij = −(s_i/√C)·Σ_c e_jc (k_ic − q_jc)², element by element (no expansion)."""
    diff2 = (mk[:, :, :, None] - qk[:, :, None, :]) ** 2                      # 1×C×N×M
    s = -(diff2 * qe[:, :, None, :]).sum(1)                                   # 1×N×M
    return s * ms.flatten(1)[:, :, None] / math.sqrt(mk.shape[1])


def official_similarity(mk, ms, qk, qe):
    """The official get_similarity (memory_util.py), expanded form, op for op as in the spec §4.2."""
    ck = mk.shape[1]
    mk, qk = mk.flatten(2), qk.flatten(2)
    ms = ms.flatten(1).unsqueeze(2) if ms is not None else None
    qe = qe.flatten(2) if qe is not None else None
    if qe is not None:
        mk = mk.transpose(1, 2)
        a_sq = mk.pow(2) @ qe
        two_ab = 2 * (mk @ (qk * qe))
        b_sq = (qe * qk.pow(2)).sum(1, keepdim=True)
        similarity = -a_sq + two_ab - b_sq
    else:
        a_sq = mk.pow(2).sum(1).unsqueeze(2)
        two_ab = 2 * (mk.transpose(1, 2) @ qk)
        similarity = -a_sq + two_ab
    if ms is not None:
        return similarity * ms / math.sqrt(ck)
    return similarity / math.sqrt(ck)


def plain_topk_softmax(sim, k):
    """Per query column: softmax over its k largest entries (max-subtracted), zeros elsewhere."""
    out = torch.zeros_like(sim)
    n, m = sim.shape[1], sim.shape[2]
    for j in range(m):
        col = sim[0, :, j]
        order = sorted(range(n), key=lambda i: -col[i].item())[:min(k, n)]
        top = col[order]
        e = torch.exp(top - top.max())
        out[0, order, j] = e / e.sum()
    return out


# ---- KeyValueStore --------------------------------------------------------------------------
