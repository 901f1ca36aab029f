"""Pure functions for memory readout: anisotropic L2 similarity and (top-k) softmax.

Written op for op like the official ``memory_util`` so that usage statistics, and thus
every consolidation decision, come out bit-identical on the same device and dtype.
"""
from __future__ import annotations

import math

import torch


def similarity(mem_key: torch.Tensor, mem_shrinkage: torch.Tensor | None,
               query_key: torch.Tensor, query_selection: torch.Tensor | None) -> torch.Tensor:
    """``S_ij = −(s_i/√C)·Σ_c e_jc (k_ic − q_jc)²``.

    mem_key ``1×C×N``, mem_shrinkage ``1×1×N``, query_key / query_selection ``1×C×M`` → ``1×N×M``.
    """
    ck = mem_key.shape[1]
    mk = mem_key.transpose(1, 2)
    if query_selection is not None:
        a_sq = mk.pow(2) @ query_selection
        two_ab = 2 * (mk @ (query_key * query_selection))
        b_sq = (query_selection * query_key.pow(2)).sum(1, keepdim=True)
        sim = -a_sq + two_ab - b_sq
    else:
        a_sq = mk.pow(2).sum(2).unsqueeze(2)
        sim = -a_sq + 2 * (mk @ query_key)
    if mem_shrinkage is not None:
        return sim * mem_shrinkage.flatten(1).unsqueeze(2) / math.sqrt(ck)
    return sim / math.sqrt(ck)


def topk_softmax(sim: torch.Tensor, top_k: int) -> torch.Tensor:
    """Softmax over the memory axis keeping the ``top_k`` largest per query; others are 0.

    ``sim`` is ≤ 0, so the exponentials are taken without subtracting the max (as upstream).
    Modifies and returns ``sim``.
    """
    return topk_softmax_and_best(sim, top_k)[0]


def topk_softmax_and_best(sim: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``topk_softmax`` plus each query's best similarity ``1×M`` (the top-1 value, free: topk sorts)."""
    k = min(top_k, sim.shape[1])
    values, indices = torch.topk(sim, k=k, dim=1)
    best = values[:, 0].clone()
    x_exp = values.exp_()
    x_exp /= torch.sum(x_exp, dim=1, keepdim=True)
    return sim.zero_().scatter_(1, indices, x_exp), best


def match_confidence(best: torch.Tensor) -> torch.Tensor:
    """Frame confidence from the best similarity per query position (``1×M``, each ≤ 0): ``exp(mean)``.

    ``S = −(s/√C)·Σ e (k − q)²`` is a scaled squared distance, so the best value per position
    says how close the nearest memory element is; its mean over the frame, mapped by ``exp``,
    is 1 when every position has an exact match and falls towards 0 as the frame leaves what
    memory holds. A 0-d tensor on the device (no host sync here).
    """
    return torch.exp(best.mean())


def softmax(sim: torch.Tensor) -> torch.Tensor:
    """Max-subtracted softmax over the memory axis (dim 1)."""
    maxes = torch.max(sim, dim=1, keepdim=True)[0]
    x_exp = torch.exp(sim - maxes)
    return x_exp / torch.sum(x_exp, dim=1, keepdim=True)


def readout(affinity: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value O×C×N`` weighted by ``affinity 1×N×M`` → ``O×C×M``."""
    return value @ affinity
