"""The memory store and the similarity functions on small random tensors, against direct formulas."""
from __future__ import annotations

import math

import pytest
import torch

from vscolormnet.runtime.memory import KeyValueStore
from vscolormnet.runtime.memory import similarity as sim_fn

from .memory_tensors import HW, C, V, direct_similarity, flat, official_similarity, plain_topk_softmax, rand_frame


def test_store_add_shapes_and_fresh_counters():
    g = torch.Generator().manual_seed(0)
    store = KeyValueStore(count_usage=True)
    assert store.size == 0
    f1, f2 = flat(*rand_frame(g)), flat(*rand_frame(g))
    store.add(f1[0], f1[1], f1[2], f1[3])
    store.add(f2[0], f2[1], f2[2], f2[3])
    assert store.size == 2 * HW
    assert store.key.shape == (1, C, 2 * HW) and store.shrinkage.shape == (1, 1, 2 * HW)
    assert store.value.shape == (2, V, 2 * HW) and store.selection.shape == (1, C, 2 * HW)
    assert torch.equal(store.key, torch.cat([f1[0], f2[0]], -1))
    assert torch.equal(store.value, torch.cat([f1[2], f2[2]], -1))
    assert torch.equal(store.use_count, torch.zeros(1, 1, 2 * HW))
    assert torch.equal(store.life_count, torch.full((1, 1, 2 * HW), 1e-7))
    assert store.nbytes() == 4 * 2 * HW * (C + 1 + 2 * V + C + 2)

    plain = KeyValueStore(count_usage=False)
    plain.add(f1[0], f1[1], f1[2])                  # long-term memory: no selection
    assert plain.selection is None and plain.use_count is None and plain.life_count is None
    plain.update_usage(torch.ones(HW))              # a no-op without counting
    with pytest.raises(RuntimeError, match="does not count usage"):
        plain.usage()


def test_store_usage_counting():
    g = torch.Generator().manual_seed(1)
    store = KeyValueStore(count_usage=True)
    k, s, v, e = flat(*rand_frame(g))
    store.add(k, s, v, e)
    u1, u2 = torch.rand(HW, generator=g), torch.rand(HW, generator=g)
    store.update_usage(u1)
    store.update_usage(u2)
    assert torch.allclose(store.use_count.flatten(), u1 + u2)
    assert torch.allclose(store.life_count.flatten(), torch.full((HW,), 2 + 1e-7))
    assert torch.allclose(store.usage(), store.use_count / store.life_count)
    # elements added later start fresh; old ones keep their history
    store.add(k, s, v, e)
    assert torch.equal(store.use_count[0, 0, HW:], torch.zeros(HW))
    assert torch.allclose(store.use_count[0, 0, :HW], u1 + u2)


def test_store_remove_range_keep_and_sliced():
    g = torch.Generator().manual_seed(2)
    store = KeyValueStore(count_usage=True)
    frames = [flat(*rand_frame(g)) for _ in range(4)]
    for k, s, v, e in frames:
        store.add(k, s, v, e)
    store.update_usage(torch.rand(4 * HW, generator=g))
    use_before = store.use_count.clone()

    key, shrinkage, selection, usage, value = store.sliced(HW, 3 * HW)
    assert torch.equal(key, torch.cat([frames[1][0], frames[2][0]], -1))
    assert torch.equal(shrinkage, torch.cat([frames[1][1], frames[2][1]], -1))
    assert torch.equal(value, torch.cat([frames[1][2], frames[2][2]], -1))
    assert torch.equal(selection, torch.cat([frames[1][3], frames[2][3]], -1))
    assert torch.equal(usage, (store.use_count / store.life_count)[:, :, HW:3 * HW])

    store.remove_range(HW, 3 * HW)
    assert store.size == 2 * HW
    assert torch.equal(store.key, torch.cat([frames[0][0], frames[3][0]], -1))
    assert torch.equal(store.shrinkage, torch.cat([frames[0][1], frames[3][1]], -1))
    assert torch.equal(store.value, torch.cat([frames[0][2], frames[3][2]], -1))
    assert torch.equal(store.use_count, torch.cat([use_before[:, :, :HW], use_before[:, :, 3 * HW:]], -1))

    mask = torch.zeros(2 * HW, dtype=torch.bool)
    mask[1::2] = True
    kept_key = store.key[:, :, mask]
    store.keep(mask)
    assert store.size == HW and torch.equal(store.key, kept_key)
    assert store.life_count.shape == store.use_count.shape == (1, 1, HW)


def test_store_remove_obsolete_keeps_the_most_used():
    store = KeyValueStore(count_usage=True)
    n = 10
    g = torch.Generator().manual_seed(3)
    store.add(torch.randn(1, C, n, generator=g), 1 + torch.rand(1, 1, n, generator=g),
              torch.randn(2, V, n, generator=g))
    use = torch.tensor([5., 1., 9., 3., 7., 0., 8., 2., 6., 4.])
    store.use_count = use.view(1, 1, n).clone()
    store.life_count = torch.full((1, 1, n), 2.0)
    key = store.key.clone()
    store.remove_obsolete(6)
    assert store.size == 6
    survivors = use > 3                             # the 4 least used (0, 1, 2, 3) go
    assert torch.equal(store.key, key[:, :, survivors])
    assert torch.equal(store.use_count.flatten(), use[survivors])
    store.remove_obsolete(6)                        # at or below the limit: nothing happens
    assert store.size == 6
    # ties at the threshold evict more (as upstream)
    store.use_count = torch.tensor([1., 1., 1., 5., 6., 7.]).view(1, 1, 6)
    store.remove_obsolete(4)
    assert store.size == 3


def test_store_clone_is_independent():
    g = torch.Generator().manual_seed(4)
    store = KeyValueStore(count_usage=True)
    for _ in range(3):
        k, s, v, e = flat(*rand_frame(g))
        store.add(k, s, v, e)
    snap = store.clone()
    saved = {n: getattr(snap, n).clone() for n in ("key", "shrinkage", "selection", "value", "use_count",
                                                   "life_count")}
    store.update_usage(torch.rand(3 * HW, generator=g))   # in place on the original
    store.remove_range(0, HW)
    store.add(k, s, v, e)
    for name, t in saved.items():
        assert torch.equal(getattr(snap, name), t), name
    snap.update_usage(torch.ones(3 * HW))                 # and the other way round
    assert not torch.equal(snap.use_count, store.use_count)


# ---- similarity and softmax -----------------------------------------------------------------
@pytest.mark.parametrize("with_shrinkage", [True, False])
def test_similarity_matches_direct_formula(with_shrinkage):
    g = torch.Generator().manual_seed(5)
    n, m = 13, 7
    mk = torch.randn(1, C, n, generator=g, dtype=torch.float64)
    ms = 1 + torch.rand(1, 1, n, generator=g, dtype=torch.float64)
    qk = torch.randn(1, C, m, generator=g, dtype=torch.float64)
    qe = torch.rand(1, C, m, generator=g, dtype=torch.float64)
    got = sim_fn.similarity(mk, ms if with_shrinkage else None, qk, qe)
    want = direct_similarity(mk, ms if with_shrinkage else torch.ones_like(ms), qk, qe)
    assert got.shape == (1, n, m)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)
    assert (got <= 1e-12).all(), "S ≤ 0 (safe to exponentiate without the max)"


def test_similarity_without_selection_drops_the_query_norm():
    g = torch.Generator().manual_seed(6)
    mk = torch.randn(1, C, 9, generator=g, dtype=torch.float64)
    ms = 1 + torch.rand(1, 1, 9, generator=g, dtype=torch.float64)
    qk = torch.randn(1, C, 4, generator=g, dtype=torch.float64)
    # −(s_i/√C)·(‖k_i‖² − 2 k_i·q_j): the full distance minus the ‖q_j‖² term
    full = direct_similarity(mk, ms, qk, torch.ones_like(qk))
    q_sq = (qk ** 2).sum(1)[:, None, :] * ms.flatten(1)[:, :, None] / math.sqrt(C)
    assert torch.allclose(sim_fn.similarity(mk, ms, qk, None), full + q_sq, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("with_selection", [True, False])
def test_similarity_is_the_official_computation_bit_for_bit(with_selection):
    g = torch.Generator().manual_seed(7)
    k, s, _, _ = rand_frame(g, 4, 5)
    qk, _, _, qe = rand_frame(g, 3, 3)
    qe = qe.flatten(2) if with_selection else None
    got = sim_fn.similarity(k.flatten(2), s.flatten(2), qk.flatten(2), qe)
    assert torch.equal(got, official_similarity(k, s, qk, qe))


@pytest.mark.parametrize("k", [1, 5, 30])
def test_topk_softmax_matches_plain_implementation(k):
    g = torch.Generator().manual_seed(8)
    n, m = 20, 6
    sim = -torch.rand(1, n, m, generator=g, dtype=torch.float64) * 10
    want = plain_topk_softmax(sim, k)
    got = sim_fn.topk_softmax(sim.clone(), k)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    assert torch.allclose(got.sum(1), torch.ones(1, m, dtype=torch.float64))
    assert ((got > 0).sum(1) == min(k, n)).all()


def test_topk_softmax_works_in_place_and_full_softmax_matches():
    g = torch.Generator().manual_seed(9)
    sim = -torch.rand(1, 8, 3, generator=g) * 5
    full = sim_fn.softmax(sim)
    assert torch.allclose(full, torch.softmax(sim, dim=1))
    buf = sim.clone()
    out = sim_fn.topk_softmax(buf, 100)             # k ≥ N: an ordinary softmax
    assert out is buf
    assert torch.allclose(out, full, atol=1e-7)


# ---- the manager: readout and usage ---------------------------------------------------------
