"""The memory manager: readout, consolidation / obsolete removal at the spec's frames with the spec's
values, permanent slots, and snapshot independence (spec: colormnet-reference.md §4)."""
from __future__ import annotations

import pytest
import torch

from vscolormnet.runtime.config import MemoryConfig
from vscolormnet.runtime.memory import KeyValueStore, MemoryManager

from .memory_tensors import HW, H, V, W, direct_similarity, flat, plain_topk_softmax, rand_frame


def small_config(**kw):
    base = {"mem_every": 1, "max_mid_term_frames": 4, "min_mid_term_frames": 2, "num_prototypes": 5,
            "max_long_term_elements": 12, "top_k": 1000, "enable_long_term": True}
    base.update(kw)
    return MemoryConfig(**base)


def test_read_is_topk_readout_over_long_then_work_and_counts_usage():
    g = torch.Generator().manual_seed(10)
    mm = MemoryManager(small_config(top_k=7), count_long_term_usage=True)
    mm.add_permanent(*rand_frame(g)[:3], rand_frame(g)[3])
    for _ in range(3):                              # the third add consolidates: long-term memory engaged
        mm.add(*rand_frame(g))
    assert mm.long.size == 5 and mm.work.size == 2 * HW
    qk, _, _, qe = rand_frame(g)
    key = torch.cat([mm.long.key, mm.work.key], -1)
    shrink = torch.cat([mm.long.shrinkage, mm.work.shrinkage], -1)
    value = torch.cat([mm.long.value, mm.work.value], -1)
    aff = plain_topk_softmax(direct_similarity(key.double(), shrink.double(), qk.flatten(2).double(),
                                               qe.flatten(2).double()), 7)
    want = (value.double() @ aff).view(1, 2, V, H, W)
    use_long, use_work = mm.long.use_count.clone(), mm.work.use_count.clone()
    life_long, life_work = mm.long.life_count.clone(), mm.work.life_count.clone()
    out = mm.read(qk, qe)
    assert out.shape == (1, 2, V, H, W)
    assert torch.allclose(out.double(), want, atol=1e-4)
    usage = aff.sum(2).float()
    assert torch.allclose(mm.long.use_count.flatten(), use_long.flatten() + usage[0, :5], atol=1e-5)
    assert torch.allclose(mm.work.use_count.flatten(), use_work.flatten() + usage[0, 5:], atol=1e-5)
    assert torch.equal(mm.long.life_count, life_long + 1) and torch.equal(mm.work.life_count, life_work + 1)


def test_long_term_usage_not_counted_unless_asked():
    g = torch.Generator().manual_seed(11)
    mm = MemoryManager(small_config(), count_long_term_usage=False)
    mm.add_permanent(*rand_frame(g))
    for _ in range(3):
        mm.add(*rand_frame(g))
    assert mm.long.size > 0 and mm.long.use_count is None
    qk, _, _, qe = rand_frame(g)
    mm.read(qk, qe)
    assert mm.long.use_count is None and mm.work.use_count is not None
    assert mm.long.selection is None, "long-term memory stores no selection"


def test_without_long_term_memory_work_grows_and_nothing_is_counted():
    g = torch.Generator().manual_seed(12)
    mm = MemoryManager(small_config(enable_long_term=False), count_long_term_usage=False)
    mm.add_permanent(*rand_frame(g))
    for _ in range(8):
        mm.add(*rand_frame(g))
        mm.read(*[t for i, t in enumerate(rand_frame(g)) if i in (0, 3)])
    assert mm.work.size == 9 * HW and mm.long.size == 0 and mm.consolidations == 0
    assert mm.work.use_count is None and mm.work.selection is None


# ---- the manager: consolidation and obsolete removal ----------------------------------------
def expected_prototypes(key, shrinkage, selection, usage, value, num):
    """Spec §4.4 compress_features/consolidation, from the candidates' tensors."""
    _, idx = torch.topk(usage, k=num, dim=-1, sorted=True)
    idx = idx.flatten()
    pk, pe = key[:, :, idx], selection[:, :, idx]
    aff = torch.softmax(direct_similarity(key.double(), shrinkage.double(), pk.double(), pe.double()), dim=1)
    return pk, (shrinkage.double() @ aff).float(), (value.double() @ aff).float()


@pytest.mark.parametrize("permanent_frames", [1, 2])
def test_consolidation_and_removal_follow_the_spec(permanent_frames):
    cfg = small_config()                            # max 4 frames (1 ref slot), min 2, 5 protos, long ≤ 12
    g = torch.Generator().manual_seed(20 + permanent_frames)
    mm = MemoryManager(cfg, count_long_term_usage=True)
    perm = [rand_frame(g) for _ in range(permanent_frames)]
    for f in perm:
        mm.add_permanent(*f)
    P = permanent_frames * HW
    max_work = (cfg.max_mid_term_frames - 1) * HW + P          # the official 10·HW with one reference
    kept = (cfg.min_mid_term_frames - 1) * HW                 # the official 4·HW
    limit = cfg.max_long_term_elements - cfg.num_prototypes    # the official 10000 − 128
    consolidated_at, removed_at = [], []
    work_frames = permanent_frames
    for t in range(14):
        frame = rand_frame(g)
        before = mm.work.clone(), mm.long.clone()
        mm.add(*frame)
        # integer bookkeeping from the spec, independent of the implementation
        work_frames += 1
        if work_frames * HW >= max_work:
            removal = before[1].size >= limit
            consolidated_at.append(t)
            if removal:
                removed_at.append(t)
            # the candidates: every non-permanent element but the newest (min−1) frames
            work_now = KeyValueStore(True)
            work_now.__dict__.update(before[0].__dict__)
            k, s, v, e = flat(*frame)
            work_now.add(k, s, v, e)
            cand = work_now.sliced(P, work_now.size - kept)
            pk, ps, pv = expected_prototypes(*cand, cfg.num_prototypes)
            long_old = before[1]
            if removal:
                use = long_old.usage().flatten()
                threshold = torch.sort(use).values[long_old.size - limit - 1]
                survivors = use > threshold
                assert torch.equal(mm.long.key[:, :, :int(survivors.sum())], long_old.key[:, :, survivors])
                assert mm.long.size == int(survivors.sum()) + cfg.num_prototypes
            elif long_old.size:
                assert torch.equal(mm.long.key[:, :, :long_old.size], long_old.key)
            if not removal:
                assert mm.long.size == long_old.size + cfg.num_prototypes
            assert torch.equal(mm.long.key[:, :, -cfg.num_prototypes:], pk)
            assert torch.allclose(mm.long.shrinkage[:, :, -cfg.num_prototypes:], ps, atol=1e-5)
            assert torch.allclose(mm.long.value[:, :, -cfg.num_prototypes:], pv, atol=1e-5)
            # working memory: the permanent slots plus the newest (min−1) frames, untouched
            assert mm.work.size == P + kept
            assert torch.equal(mm.work.key, torch.cat([work_now.key[:, :, :P], work_now.key[:, :, -kept:]], -1))
            work_frames = cfg.min_mid_term_frames - 1 + permanent_frames
        assert mm.work.size == work_frames * HW
        assert mm.consolidations == len(consolidated_at) and mm.obsolete_removals == len(removed_at)
        # a read between frames, so that usage (and thus prototype choice and eviction) varies
        mm.read(frame[0] + 0.1 * torch.randn(frame[0].shape, generator=g), frame[3])
    # max_mid_term_frames − 1 = 3 non-permanent frames fill working memory, whatever the number of
    # permanent slots (one slot: the official 10 frames incl. the reference); then every max − min frames
    first = cfg.max_mid_term_frames - 2
    assert consolidated_at == list(range(first, 14, 2))
    # long-term: 5, 10, then ≥ 7 elements before each further consolidation: removal every time after
    assert removed_at == consolidated_at[2:]
    assert mm.long.size <= cfg.max_long_term_elements


def test_removal_without_long_term_usage_raises():
    g = torch.Generator().manual_seed(30)
    mm = MemoryManager(small_config(), count_long_term_usage=False)
    mm.add_permanent(*rand_frame(g))
    with pytest.raises(RuntimeError, match="does not count usage"):
        for _ in range(10):
            mm.add(*rand_frame(g))


# ---- permanent slots ------------------------------------------------------------------------
def test_permanent_slots_survive_consolidation_removal_and_resets():
    g = torch.Generator().manual_seed(40)
    mm = MemoryManager(small_config(), count_long_term_usage=True)
    refs = [rand_frame(g) for _ in range(2)]
    for f in refs:
        mm.add_permanent(*f)
    assert mm.permanent == 2 * HW and mm.permanent_frames == 2
    ref_key = torch.cat([flat(*f)[0] for f in refs], -1)
    ref_value = torch.cat([flat(*f)[2] for f in refs], -1)
    ref_sel = torch.cat([flat(*f)[3] for f in refs], -1)

    def check():
        assert torch.equal(mm.work.key[:, :, :2 * HW], ref_key)
        assert torch.equal(mm.work.value[:, :, :2 * HW], ref_value)
        assert torch.equal(mm.work.selection[:, :, :2 * HW], ref_sel)

    for _ in range(3):
        for _ in range(9):
            frame = rand_frame(g)
            mm.add(*frame)
            mm.read(frame[0], frame[3])
            check()
        assert mm.consolidations > 0
        mm.clear_non_permanent()
        check()
        assert mm.work.size == 2 * HW and mm.long.size == 0
        assert torch.equal(mm.work.use_count, torch.zeros(1, 1, 2 * HW))
        assert torch.equal(mm.work.life_count, torch.full((1, 1, 2 * HW), 1e-7))
        assert mm.long.count_usage, "the long-term store keeps its usage setting"
    assert mm.obsolete_removals > 0


def test_permanent_must_come_first():
    g = torch.Generator().manual_seed(41)
    mm = MemoryManager(small_config(), count_long_term_usage=False)
    mm.add_permanent(*rand_frame(g))
    mm.add(*rand_frame(g))
    with pytest.raises(RuntimeError, match="before other frames"):
        mm.add_permanent(*rand_frame(g))


# ---- snapshots ------------------------------------------------------------------------------
def _state(mm):
    out = {"sizes": (mm.work.size, mm.long.size, mm.consolidations, mm.obsolete_removals, mm.permanent_frames)}
    for store_name in ("work", "long"):
        store = getattr(mm, store_name)
        for name in ("key", "shrinkage", "selection", "value", "use_count", "life_count"):
            t = getattr(store, name)
            out[f"{store_name}.{name}"] = None if t is None else t.clone()
    return out


def _same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        if isinstance(a[name], torch.Tensor):
            assert torch.equal(a[name], b[name]), name
        else:
            assert a[name] == b[name], name


def test_clone_is_independent_of_later_changes():
    g = torch.Generator().manual_seed(50)
    mm = MemoryManager(small_config(), count_long_term_usage=True)
    mm.add_permanent(*rand_frame(g))
    for _ in range(6):
        frame = rand_frame(g)
        mm.add(*frame)
        mm.read(frame[0], frame[3])
    assert mm.long.size > 0
    snap = mm.clone()
    saved = _state(snap)
    # in-place usage updates, consolidation, removal, reset on the original
    for _ in range(7):
        frame = rand_frame(g)
        mm.read(frame[0], frame[3])
        mm.add(*frame)
    mm.clear_non_permanent()
    _same(_state(snap), saved)
    # and the other way round
    saved_orig = _state(mm)
    for _ in range(5):
        frame = rand_frame(g)
        snap.read(frame[0], frame[3])
        snap.add(*frame)
    _same(_state(mm), saved_orig)
    # the snapshot continues exactly like the original would have
    a, b = snap.clone(), snap.clone()
    frame = rand_frame(g)
    assert torch.equal(a.read(frame[0], frame[3]), b.read(frame[0], frame[3]))
    a.add(*frame)
    b.add(*frame)
    _same(_state(a), _state(b))


# ---- the joined long-term + working memory of reads ---------------------------------------
def _joined_now(mm):
    return tuple(torch.cat([getattr(mm.long, n), getattr(mm.work, n)], -1) for n in ("key", "shrinkage", "value"))


def test_reads_reuse_the_joined_memory_until_a_store_changes():
    g = torch.Generator().manual_seed(60)
    mm = MemoryManager(small_config(), count_long_term_usage=True)
    mm.add_permanent(*rand_frame(g))
    for _ in range(3):
        mm.add(*rand_frame(g))
    assert mm.long.size > 0
    qk, _, _, qe = rand_frame(g)
    fresh = mm.clone()                                   # no cache: joins anew
    out = mm.read(qk, qe)
    first = mm._readable()
    assert all(torch.equal(a, b) for a, b in zip(first, _joined_now(mm)))
    mm.read(qk, qe)
    assert all(a is b for a, b in zip(mm._readable(), first)), "unchanged stores: no new concatenation"
    assert torch.equal(out, fresh.read(qk, qe))
    mm.add(*rand_frame(g))
    second = mm._readable()
    assert second[0] is not first[0]
    assert all(torch.equal(a, b) for a, b in zip(second, _joined_now(mm)))
    mm.long.remove_range(0, 1)                           # a store changed behind the manager's back
    assert all(torch.equal(a, b) for a, b in zip(mm._readable(), _joined_now(mm)))


def test_cached_reads_are_bit_identical_to_joining_on_every_read():
    """A long run (consolidations, removals, a reset) with the cache and one that drops it before
    every read: every readout and all state agree bit for bit; snapshots taken along the way
    continue exactly like the original."""
    g = torch.Generator().manual_seed(61)
    cached = MemoryManager(small_config(), count_long_term_usage=True)
    plain = MemoryManager(small_config(), count_long_term_usage=True)
    ref = rand_frame(g)
    cached.add_permanent(*ref)
    plain.add_permanent(*ref)
    snaps = []
    for i in range(30):
        frame = rand_frame(g)
        plain._joined = None
        a, b = cached.read(frame[0], frame[3]), plain.read(frame[0], frame[3])
        assert torch.equal(a, b), f"read {i}"
        assert torch.equal(cached.last_confidence, plain.last_confidence)
        if i % 2 == 0:
            cached.add(*frame)
            plain.add(*frame)
        if i % 7 == 3:
            snaps.append((cached.clone(), _state(plain), frame))
        if i == 20:
            cached.clear_non_permanent()
            plain.clear_non_permanent()
        _same(_state(cached), _state(plain))
    assert cached.consolidations > 2 and cached.obsolete_removals > 0
    for snap, saved, frame in snaps:
        _same(_state(snap), saved)                       # later changes did not reach the snapshot
        fresh = snap.clone()
        snap.read(frame[0], frame[3])                    # builds the snapshot's own cache
        assert torch.equal(snap.read(frame[0], frame[3]), fresh.read(frame[0], frame[3]))
