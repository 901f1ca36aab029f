"""ClipSession: order independence, seek cost, snapshots, anchors, failure recovery, threads.

The clip and the in-order reference are in ``clips.py``; results must be bit-identical.
"""
from __future__ import annotations

import random
import threading

import pytest
import torch

from vscolormnet.runtime.propagator import NonFiniteError
from vscolormnet.runtime.session import ClipSession

from .clips import (
    CUTS,
    REF_FRAME,
    REFERENCES,
    FlakyBackend,
    Images,
    N,
    assert_same,
    check_order,
    expected,
    make_propagator,
    make_session,
)


# ---- the reference itself exercises the whole memory policy ---------------------------------
def test_reference_run_exercises_consolidation_removal_and_references():
    rows = expected()
    assert any(r.long_elements for r in rows), "long-term memory must be used"
    assert rows[REF_FRAME].is_reference_frame and torch.equal(rows[REF_FRAME].ab, REFERENCES[1].ab)
    assert len({r.long_elements for r in rows}) > 3
    cut_rows = expected(CUTS)
    assert [t for t in range(N) if cut_rows[t].memory_reset] == list(CUTS)
    assert cut_rows[CUTS[0]].long_elements == 0


# ---- order independence -------------------------------------------------------------------
@pytest.mark.parametrize("cuts", [(), CUTS], ids=["no-cuts", "cuts"])
def test_in_order_and_reversed(cuts):
    session, _ = make_session(cuts=cuts)
    check_order(session, range(N), cuts)
    session, _ = make_session(cuts=cuts, cache_frames=4)
    check_order(session, reversed(range(N)), cuts)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shuffled(seed):
    cuts = CUTS if seed % 2 else ()
    order = list(range(N))
    random.Random(seed).shuffle(order)
    session, _ = make_session(cuts=cuts, cache_frames=3)
    check_order(session, order, cuts)


@pytest.mark.parametrize("seed", [10])
def test_random_seeks_with_repeats(seed):
    rng = random.Random(seed)
    order = [rng.randrange(N) for _ in range(50)]
    session, _ = make_session(cuts=CUTS, cache_frames=2, snapshot_interval=3)
    check_order(session, order, CUTS)


def test_repeated_frame_without_cache():
    session, _ = make_session(cache_frames=0)
    want = expected()
    for n in (21, 21, 21, 5, 5, N - 1, N - 1, 0, 0):
        assert_same(session.result(n), want[n], n)
    # Asking twice in a row recomputes from a saved point, never from the (advanced) state.
    assert session.restarts >= 6


def test_cache_returns_without_stepping():
    session, backend = make_session(cache_frames=8)
    session.result(10)
    calls = backend.calls["encode_key"]
    for n in range(3, 11):
        session.result(n)
    assert backend.calls["encode_key"] == calls


def test_frame_outside_clip():
    session, _ = make_session()
    for n in (-1, N):
        with pytest.raises(IndexError):
            session.result(n)
    with pytest.raises(ValueError):
        ClipSession(make_propagator(), Images(), snapshot_interval=0)


# ---- seek cost and snapshots --------------------------------------------------------------
@pytest.mark.parametrize("cuts", [CUTS], ids=["cuts"])
def test_backward_seek_recomputes_at_most_the_bound(cuts):
    session, backend = make_session(cuts=cuts, cache_frames=0, snapshot_interval=5)
    check_order(session, range(N), cuts)
    assert session.recompute_bound == 5
    order = list(range(N))
    random.Random(4).shuffle(order)
    want = expected(cuts)
    for n in order:
        before = backend.calls["encode_key"]
        at = session.state.next_frame
        saved = max([s for s in session.snapshots if s <= n] + [a for a in session.anchors if a <= n])
        assert_same(session.result(n), want[n], n)
        steps = backend.calls["encode_key"] - before
        assert 1 <= steps <= session.recompute_bound, f"frame {n}: {steps} steps"
        # exactly the frames from the state (if it is at or before n with no saved point past it)
        # or else from the nearest saved point
        start = at if saved <= at <= n else saved
        assert steps == n - start + 1, f"frame {n}"


def test_snapshot_interval_doubles_and_count_stays_bounded():
    session, backend = make_session(cache_frames=0, snapshot_interval=1, max_snapshots=3)
    want = expected()
    intervals = []
    for n in range(N):
        assert_same(session.result(n), want[n], n)
        assert len(session.snapshots) <= 3
        assert all(f % session.snapshot_interval == 0 for f in session.snapshots)
        intervals.append(session.snapshot_interval)
    # 1,2,3 → 4: interval 2 {2,4} → 6 → 8: interval 4 {4,8} → 12 → 16: interval 8 {8,16} → 24
    assert sorted(set(intervals)) == [1, 2, 4, 8]
    assert [intervals.index(i) for i in (2, 4, 8)] == [4, 8, 16]
    assert sorted(session.snapshots) == [8, 16, 24]
    assert session.recompute_bound == 8
    assert session.snapshot_bytes() > 0
    for n in (29, 23, 17, 3, 15):
        before = backend.calls["encode_key"]
        assert_same(session.result(n), want[n], n)
        assert backend.calls["encode_key"] - before <= session.recompute_bound


def test_snapshots_never_taken_at_anchors():
    session, _ = make_session(cuts=CUTS, anchors=[CUTS[1]], snapshot_interval=2)
    check_order(session, range(N), CUTS)
    assert 0 not in session.snapshots and CUTS[1] not in session.snapshots
    assert set(session.anchors) == {0, *CUTS}


# ---- scene cuts and anchors ---------------------------------------------------------------
def test_discovered_cuts_become_anchors_and_restarts_use_them():
    session, backend = make_session(cuts=CUTS, cache_frames=0, snapshot_interval=8)
    check_order(session, range(N), CUTS)
    assert session.anchors == {0, *CUTS}
    before = backend.calls["encode_key"]
    assert_same(session.result(23), expected(CUTS)[23], 23)      # snapshot 16 < anchor 22: frames 22, 23
    assert backend.calls["encode_key"] - before == 2
    before = backend.calls["encode_key"]
    assert_same(session.result(13), expected(CUTS)[13], 13)      # from the anchor at 12 (snapshot 8 is older)
    assert backend.calls["encode_key"] - before == 2


def test_cut_ahead_of_state_restarts_at_the_anchor():
    """A known cut between the state and the target: restart there instead of stepping through."""
    session, backend = make_session(cuts=CUTS, cache_frames=0, snapshot_interval=100)
    check_order(session, range(N), CUTS)          # discovers the cuts
    session.result(3)                             # state now at 4
    before = backend.calls["encode_key"]
    assert_same(session.result(27), expected(CUTS)[27], 27)
    assert backend.calls["encode_key"] - before == 27 - CUTS[1] + 1


@pytest.mark.parametrize("target", [CUTS[1], 25, N - 1])
def test_anchors_given_up_front_compute_only_the_last_segment(target):
    images = Images(CUTS)
    session, backend = make_session(images=images, anchors=list(CUTS))
    before = backend.calls["encode_key"]
    assert_same(session.result(target), expected(CUTS)[target], target)
    assert backend.calls["encode_key"] - before == target - CUTS[1] + 1
    assert session.frames_computed == target - CUTS[1] + 1
    assert images.calls == target - CUTS[1] + 1
    # ...and every other frame afterwards, in any order, is still identical to the in-order run.
    order = list(range(N))
    random.Random(5).shuffle(order)
    check_order(session, order, CUTS)


def test_anchors_outside_the_clip_are_ignored():
    session, _ = make_session(anchors=[-3, 0, N, N + 5])
    assert session.anchors == {0}
    check_order(session, [5, 2, N - 1], ())


def test_anchor_alone_is_a_scene_reset_on_the_in_order_pass():
    images = Images(())                       # get_image never reports the cut; the anchor alone says so
    a, _ = make_session(images=images, anchors=[CUTS[1]])
    in_order = [a.result(n) for n in range(N)]
    b, _ = make_session(images=Images(()), anchors=[CUTS[1]])
    jumped = b.result(25)                     # computed from the anchor (initial state at 22)
    assert torch.equal(in_order[25].ab, jumped.ab)
    assert in_order[CUTS[1]].memory_reset
    assert_same(jumped, expected([CUTS[1]])[25], 25)


def test_session_serving_one_shot():
    """``start``/``stop``: a session for the frames of one shot equals the whole-clip run there."""
    images = Images(CUTS)
    session, _ = make_session(images=images, start=CUTS[0], stop=CUTS[1], cache_frames=0)
    for n in (CUTS[0] - 1, CUTS[1]):
        with pytest.raises(IndexError):
            session.result(n)
    order = list(range(CUTS[0], CUTS[1]))
    random.Random(6).shuffle(order)
    check_order(session, order, CUTS)
    assert min(images.seen) == CUTS[0] and max(images.seen) == CUTS[1] - 1, "only the shot's frames are read"
    assert session.anchors == {CUTS[0]}


# ---- failures leave the session usable ----------------------------------------------------
STAGE_FRAMES = [("encode_key", 9), ("short_term_attention", 9), ("decode_update", 9), ("decode", 8),
                ("encode_value_deep", 8), ("encode_value", 12), ("encode_value_deep", REF_FRAME)]


@pytest.mark.parametrize("stage,k,exc", [(s, k, RuntimeError("boom")) for s, k in STAGE_FRAMES]
                         + [("decode_update", 9, KeyboardInterrupt()), ("encode_value_deep", 8, KeyboardInterrupt())])
def test_failed_stage_leaves_session_usable(stage, k, exc):
    backend = FlakyBackend()
    session, _ = make_session(backend=backend, cuts=CUTS, cache_frames=2)
    check_order(session, range(k), CUTS)
    backend.arm(stage, exc)
    with pytest.raises(type(exc)):
        session.result(k)
    assert not backend.armed, f"{stage} did not run at frame {k}"
    check_order(session, [k, k + 1, k - 1, k + 6, 3, k], CUTS)


def test_failure_during_catch_up():
    """The failing frame lies between the state and the requested frame."""
    backend = FlakyBackend()
    session, _ = make_session(backend=backend, cuts=CUTS, cache_frames=0)
    check_order(session, range(4), CUTS)
    backend.arm("decode_update", RuntimeError("boom"))      # next normal frame: 5
    with pytest.raises(RuntimeError):
        session.result(15)
    check_order(session, [15, 4, 5, 6, N - 1, 14], CUTS)


@pytest.mark.parametrize("exc", [OSError("read error"), KeyboardInterrupt()], ids=["OSError", "Ctrl-C"])
@pytest.mark.parametrize("k", [8, CUTS[0]])
def test_failed_get_image_leaves_session_usable(k, exc):
    images = Images(CUTS, fail_at={k: exc})
    session, _ = make_session(images=images, cache_frames=2)
    check_order(session, range(k), CUTS)
    with pytest.raises(type(exc)):
        session.result(k + 2)
    check_order(session, [k, k + 2, k + 1, 1, k + 12], CUTS)
    assert session.anchors == {0} | {c for c in CUTS if c <= k + 12}


@pytest.mark.parametrize("defer", [False, True], ids=["immediate", "deferred"])
@pytest.mark.parametrize("stage,k", [("decode_update", 9), ("decode", 8), ("encode_key", 20),
                                     ("encode_value_deep", 21), ("short_term_attention", 23)])
def test_nan_raises_naming_stage_and_frame(stage, k, defer):
    backend = FlakyBackend()
    session, _ = make_session(backend=backend, cache_frames=2)
    session.defer_checks = defer            # deferred: the CUDA path, flags read one step late
    check_order(session, range(k), ())
    backend.arm(stage, "nan")
    with pytest.raises(NonFiniteError, match=rf"stage {stage} produced NaN or inf values at frame {k}\b"):
        session.result(k)
    check_order(session, [k, k + 1, k - 2, 0, k], ())


def test_nan_in_a_reference_is_refused_up_front():
    backend = FlakyBackend()
    backend.arm("encode_value", "nan")
    with pytest.raises(NonFiniteError, match=r"stage encode_value .* at reference 0"):
        make_propagator(backend)


def test_close_then_reuse():
    session, _ = make_session(cuts=CUTS)
    check_order(session, range(20), CUTS)
    session.close()
    assert not session.snapshots and not session.cache
    check_order(session, [27, 7, 19], CUTS)


# ---- threads ------------------------------------------------------------------------------
def test_threads_requesting_shuffled_frames():
    session, _ = make_session(cuts=CUTS, cache_frames=3, snapshot_interval=3)
    results: dict[int, list] = {}
    errors = []

    def worker(seed):
        order = list(range(N))
        random.Random(seed).shuffle(order)
        try:
            results[seed] = [(n, session.result(n)) for n in order]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == 4
    want = expected(CUTS)
    for pairs in results.values():
        for n, res in pairs:
            assert_same(res, want[n], n)
