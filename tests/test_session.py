"""ClipSession: order independence, seek cost, snapshots, anchors, failure recovery, threads.

Everything runs a real ``Propagator`` over ``SyntheticBackend`` (no network), with a memory
configuration small enough that working-memory consolidation, long-term usage counting and
obsolete removal all happen within the clip. The reference for every comparison is a plain
in-order ``Propagator.step`` loop; results must be bit-identical (``torch.equal``).
"""
from __future__ import annotations

import random
import threading

import pytest
import torch
from synthetic_backend import SyntheticBackend, synthetic_frame

from vscolormnet.backends.base import Backend
from vscolormnet.config import MemoryConfig
from vscolormnet.core import NonFiniteError, Propagator, Reference
from vscolormnet.session import ClipSession

N = 30
SIZE = 64                       # padded input 64×64 → 4×4 = 16 memory elements per frame
REF_FRAME = 17                  # a reference that is the colour version of clip frame 17
CUTS = (12, 22)                 # 12 is also a snapshot frame at interval 4
CONFIG = MemoryConfig(mem_every=2, max_mid_term_frames=4, min_mid_term_frames=2, num_prototypes=8,
                      max_long_term_elements=30, top_k=30)
FRAMES = [synthetic_frame(t, SIZE) for t in range(N)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is several times faster than two (and deterministic anyway)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _ab(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.5 * torch.tanh(torch.randn(1, 2, SIZE, SIZE, generator=g))


REFERENCES = [Reference(synthetic_frame(-9, SIZE), _ab(1), frame=None),
              Reference(synthetic_frame(REF_FRAME, SIZE), _ab(2), frame=REF_FRAME)]


def make_propagator(backend: Backend | None = None) -> Propagator:
    return Propagator(backend or SyntheticBackend(), CONFIG, REFERENCES, count_long_term_usage=True)


def counters(res):
    return (res.is_memory_frame, res.is_reference_frame, res.memory_reset, res.work_frames, res.long_elements)


def plain_run(cuts=()):
    """The in-order reference: ``Propagator.step`` frame after frame."""
    prop = make_propagator()
    state = prop.new_state()
    return [prop.step(state, FRAMES[t], end=(t == N - 1), scene_reset=t in cuts) for t in range(N)]


_PLAIN: dict[tuple, list] = {}


def expected(cuts=()):
    cuts = tuple(cuts)
    if cuts not in _PLAIN:
        _PLAIN[cuts] = plain_run(cuts)
    return _PLAIN[cuts]


class Images:
    """``get_image`` for the session: frame n, cut flags, optional one-shot failures; counts calls."""

    def __init__(self, cuts=(), fail_at: dict | None = None):
        self.cuts = set(cuts)
        self.fail_at = dict(fail_at or {})
        self.calls = 0
        self.seen = set()

    def __call__(self, n):
        self.calls += 1
        self.seen.add(n)
        exc = self.fail_at.pop(n, None)
        if exc is not None:
            raise exc
        return FRAMES[n], n in self.cuts


def make_session(backend=None, cuts=(), images=None, **kw):
    kw.setdefault("snapshot_interval", 4)
    backend = backend or SyntheticBackend()
    session = ClipSession(make_propagator(backend), N, images or Images(cuts), **kw)
    return session, backend


def assert_same(res, want, n):
    assert torch.equal(res.ab, want.ab), f"frame {n}: ab differs"
    assert counters(res) == counters(want), f"frame {n}: counters differ"
    a, b = getattr(res, "confidence", None), getattr(want, "confidence", None)
    assert torch.equal(torch.as_tensor(a), torch.as_tensor(b)), f"frame {n}: confidence differs"


def check_order(session, order, cuts=()):
    want = expected(cuts)
    for n in order:
        assert_same(session.result(n), want[n], n)


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
        ClipSession(make_propagator(), N, Images(), snapshot_interval=0)


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
class FlakyBackend(Backend):
    """Delegates to SyntheticBackend; ``arm(stage, exc | 'nan')`` breaks the next call of that stage once."""

    name = "flaky"

    def __init__(self, device="cpu"):
        self.inner = SyntheticBackend(device=device)
        self.device = self.inner.device
        self.calls = self.inner.calls
        self.armed: dict[str, object] = {}

    def arm(self, stage, what):
        self.armed[stage] = what

    def _call(self, stage, *args, method=None):
        out = getattr(self.inner, method or stage)(*args)
        what = self.armed.pop(stage, None)
        if what is None:
            return out
        if what == "nan":
            if isinstance(out, tuple):
                return (torch.full_like(out[0], float("nan")),) + tuple(out[1:])
            return torch.full_like(out, float("nan"))
        raise what

    def encode_key(self, image):
        return self._call("encode_key", image)

    def encode_key_batch(self, images):        # armed as "encode_key": breaks the whole block
        return self._call("encode_key", images, method="encode_key_batch")

    def encode_value(self, image, f16, ab):
        return self._call("encode_value", image, f16, ab)

    def encode_value_deep(self, image, f16, ab, hidden):
        return self._call("encode_value_deep", image, f16, ab, hidden)

    def short_term_attention(self, key, prev_key, prev_value):
        return self._call("short_term_attention", key, prev_key, prev_value)

    def decode(self, f16, f8, f4, readout, hidden):
        return self._call("decode", f16, f8, f4, readout, hidden)

    def decode_update(self, f16, f8, f4, readout, hidden):
        return self._call("decode_update", f16, f8, f4, readout, hidden)


# (stage, frame where it runs): 8 is a memory frame and a snapshot frame (interval 4), 9 a normal
# frame, 12 a cut (segment start: plain decode + encode_value), 17 the reference frame.
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


# ---- keys ahead in fixed blocks (key_batch > 1) ---------------------------------------------
# SyntheticBackend.encode_key_batch gives a frame different bits in another batch (size or place),
# as real batched kernels may: any dependence of a block on the request order shows up as a diff.
def plain_batched(key_batch, cuts=(), splits=()):
    """The in-order reference for a key batch: ``Propagator.step`` fed with keys computed over the
    fixed blocks ``[k·B, (k+1)·B)``, also split at ``splits`` (anchors known up front)."""
    prop = make_propagator()
    edges = sorted({0, N, *range(0, N, key_batch), *splits})
    keys = {}
    for lo, hi in zip(edges, edges[1:]):
        outs = prop.backend.encode_key_batch(torch.cat(FRAMES[lo:hi]))
        keys.update({lo + i: tuple(o[i:i + 1] for o in outs) for i in range(hi - lo)})
    state = prop.new_state()
    return [prop.step(state, FRAMES[t], end=(t == N - 1), scene_reset=t in cuts, keys=keys[t]) for t in range(N)]


_PLAIN_BATCHED: dict[tuple, list] = {}


def expected_batched(key_batch, cuts=(), splits=()):
    k = (key_batch, tuple(cuts), tuple(splits))
    if k not in _PLAIN_BATCHED:
        _PLAIN_BATCHED[k] = plain_batched(key_batch, cuts, splits)
    return _PLAIN_BATCHED[k]


def batched_session(key_batch, run_ahead=True, defer=True, **kw):
    """A session with keys ahead; ``run_ahead``/``defer``: the CUDA behaviour (next block enqueued after
    each step, finite flags read one step late), forced on CPU."""
    session, backend = make_session(key_batch=key_batch, **kw)
    session.key_ahead.run_ahead = run_ahead
    session.defer_checks = defer
    return session, backend


def check_batched(session, order, key_batch, cuts=(), splits=()):
    want = expected_batched(key_batch, cuts, splits)
    for n in order:
        assert_same(session.result(n), want[n], n)


def test_batched_keys_change_bits_so_these_tests_can_fail():
    plain, batched = expected(CUTS), expected_batched(4, CUTS)
    assert any(not torch.equal(a.ab, b.ab) for a, b in zip(plain, batched))
    assert [counters(r) for r in plain] == [counters(r) for r in batched]
    assert not torch.equal(expected_batched(3, CUTS)[5].ab, batched[5].ab)


def test_key_batch_one_is_todays_path():
    images = Images(CUTS)
    session, backend = make_session(images=images, key_batch=1, cache_frames=0)
    before = backend.calls["encode_key"]                 # the references'
    check_order(session, [7, 3, N - 1, 12], CUTS)
    assert backend.calls["encode_key_batch"] == 0 and not session.key_ahead.batches
    assert backend.calls["encode_key"] - before == images.calls == session.frames_computed


@pytest.mark.parametrize("key_batch,run_ahead,defer", [(3, False, False), (4, True, True), (4, False, True)])
def test_key_batch_any_order(key_batch, run_ahead, defer):
    session, _ = batched_session(key_batch, run_ahead, defer, cuts=CUTS)
    check_batched(session, range(N), key_batch, CUTS)
    session, _ = batched_session(key_batch, run_ahead, defer, cuts=CUTS, cache_frames=4)
    check_batched(session, reversed(range(N)), key_batch, CUTS)
    order = list(range(N))
    random.Random(key_batch).shuffle(order)
    session, _ = batched_session(key_batch, run_ahead, defer, cuts=CUTS, cache_frames=3)
    check_batched(session, order, key_batch, CUTS)
    rng = random.Random(11)
    session, _ = batched_session(key_batch, run_ahead, defer, cuts=CUTS, cache_frames=2, snapshot_interval=3)
    check_batched(session, [rng.randrange(N) for _ in range(40)], key_batch, CUTS)


def test_key_batch_threads():
    """Several threads, shuffled requests, all at once (``vspipe -r 8``): blocks stay fixed."""
    session, _ = batched_session(4, cuts=CUTS, cache_frames=3, snapshot_interval=3)
    results, errors = {}, []

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
    want = expected_batched(4, CUTS)
    for pairs in results.values():
        for n, res in pairs:
            assert_same(res, want[n], n)


def test_blocks_are_fixed_and_never_cross_the_session_or_an_anchor():
    """Frame t's block is a function of t and the bounds fixed up front, never of the request order."""
    shot = (CUTS[0], CUTS[1])                         # 12…21; with B=5: 12-14, 15-19, 20-21
    session, _ = batched_session(5, cuts=CUTS, start=shot[0], stop=shot[1], cache_frames=0)
    order = list(range(*shot))
    random.Random(3).shuffle(order)
    check_batched(session, order + order[::-1], 5, CUTS, splits=CUTS)
    assert set(session.key_ahead.batches) == {(12, 15), (15, 20), (20, 22)}
    # A whole-clip session with the cuts as anchors up front has the same blocks inside each shot.
    whole, _ = batched_session(5, cuts=CUTS, anchors=CUTS, cache_frames=0)
    check_batched(whole, order + [N - 1, 0, 25, 11], 5, CUTS, splits=CUTS)
    for lo, hi in whole.key_ahead.batches:
        assert not any(lo < c < hi for c in CUTS), f"block {lo}…{hi - 1} crosses a cut"
        assert (lo // 5) == ((hi - 1) // 5), "a block stays inside one aligned group of key_batch frames"


def test_get_images_fetches_a_block_together():
    images, blocks = Images(CUTS), []

    def get_images(ns):
        blocks.append(list(ns))
        return [images(n) for n in ns]
    session, _ = make_session(images=images, key_batch=4, get_images=get_images)
    session.key_ahead.run_ahead = True
    check_batched(session, range(10), 4, CUTS)
    assert blocks == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]], \
        "one request per block, the next block's after the first step of a block"


def test_key_ahead_memory_is_bounded():
    session, _ = batched_session(4, cache_frames=0, snapshot_interval=100)
    ahead = session.key_ahead
    want = expected_batched(4)
    per_frame = None
    for n in list(range(N)) + [3, 27, 14]:
        assert_same(session.result(n), want[n], n)
        assert len(ahead._blocks) <= 2, f"frame {n}: {sorted(ahead._blocks)}"
        if per_frame is None:
            image, _, keys = ahead._blocks[4].frames[4]            # the block ahead: 4 whole frames
            per_frame = sum(x.numel() * x.element_size() for x in (image, *keys))
        assert ahead.nbytes() <= 2 * 4 * per_frame
    ahead.clear()
    assert ahead.nbytes() == 0


@pytest.mark.parametrize("key_batch", [1, 4])
def test_late_nan_drops_the_state_results_and_snapshots_after_it(key_batch):
    """Flags read one step late: step 11 is bad, step 12 (and the snapshot before it) already exist.
    The error names frame 11 and nothing computed after it survives (FlakyBackend breaks once)."""
    backend = FlakyBackend()
    session, _ = batched_session(key_batch, backend=backend, cache_frames=8, snapshot_interval=4)
    want = expected_batched(key_batch) if key_batch > 1 else expected()
    for n in range(11):
        assert_same(session.result(n), want[n], n)
    backend.arm("decode_update", "nan")
    with pytest.raises(NonFiniteError, match=r"stage decode_update produced NaN or inf values at frame 11\b"):
        session.result(13)
    assert not backend.armed and session.state is None
    assert 11 not in session.cache and 12 not in session.cache and 12 not in session.snapshots
    for n in (12, 11, 13, 10, 20):
        assert_same(session.result(n), want[n], n)


def test_deferred_check_of_the_requested_frame():
    """``result(n, defer_check=True)``: the caller reads n's flags (with its copy-out); a bad n is dropped
    by the session before it serves anything else."""
    backend = FlakyBackend()
    session, _ = batched_session(1, backend=backend, cache_frames=8, snapshot_interval=4)
    check_order(session, range(11))
    backend.arm("decode_update", "nan")
    res = session.result(11, defer_check=True)
    with pytest.raises(NonFiniteError, match=r"at frame 11\b"):
        res.check.raise_if_bad()
    check_order(session, [12, 11, 5, 13])
    assert session.result(14, defer_check=True).check is not None
    check_order(session, [14, 15])


@pytest.mark.parametrize("what", ["get_image", "encode_key"])
def test_failed_block_leaves_session_usable(what):
    backend = FlakyBackend()
    images = Images(CUTS, fail_at={9: OSError("read error")} if what == "get_image" else {})
    session, _ = batched_session(4, run_ahead=False, backend=backend, images=images, cache_frames=2)
    check_batched(session, range(7), 4, CUTS)
    if what == "encode_key":
        backend.arm("encode_key", RuntimeError("boom"))
    with pytest.raises((OSError, RuntimeError)):
        session.result(9)
    check_batched(session, [9, 8, 10, 3, 21, 13], 4, CUTS)


@pytest.mark.parametrize("what", ["get_image", "encode_key"])
def test_failure_in_the_block_ahead_is_left_to_its_frames(what):
    """Run-ahead of frames 8…11 fails while frame 4 is served: frame 4 is not affected."""
    backend = FlakyBackend()
    images = Images(CUTS, fail_at={9: OSError("read error")} if what == "get_image" else {})
    session, _ = batched_session(4, backend=backend, images=images, cache_frames=2)
    check_batched(session, range(4), 4, CUTS)
    if what == "encode_key":
        backend.arm("encode_key", RuntimeError("boom"))
    check_batched(session, [4], 4, CUTS)
    assert not images.fail_at and not backend.armed, "the block ahead was tried"
    check_batched(session, [9, 8, 10, 3, 21, 13], 4, CUTS)


class CountingImages(Images):
    """``Images`` counting the reads of each frame; ``broken`` frames never read."""

    def __init__(self, cuts=(), broken=()):
        super().__init__(cuts)
        self.per: dict[int, int] = {}
        self.broken = set(broken)

    def __call__(self, n):
        self.per[n] = self.per.get(n, 0) + 1
        if n in self.broken:
            raise OSError("read error")
        return super().__call__(n)


def test_failed_run_ahead_is_remembered_and_logged_once(caplog):
    """Run-ahead of frames 8…11 fails (frame 9 unreadable): the later steps of block 4…7 do not try it
    again, one warning names the frames and the error, and the frames' own requests still try it."""
    images = CountingImages(CUTS, broken={9})
    session, _ = batched_session(4, images=images, cache_frames=2)
    with caplog.at_level("DEBUG", logger="vscolormnet"):
        check_batched(session, range(8), 4, CUTS)
    assert images.per.get(8) == 1 and images.per.get(9) == 1, images.per
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert "frames 8…11" in warnings[0].getMessage() and "OSError: read error" in warnings[0].getMessage()
    with pytest.raises(OSError):
        session.result(8)                            # its own request computes the block (and reports)
    assert images.per[8] == 2
    images.broken.clear()
    check_batched(session, [9, 8, 11, 12, 3], 4, CUTS)
    assert session.key_ahead._failed_lo is None


def test_batched_call_diagnostics_are_bounded():
    session, _ = batched_session(2, cache_frames=0, snapshot_interval=100)
    ahead = session.key_ahead
    for _ in range(6):
        for n in range(N):
            session.result(n)
        ahead.clear()
        session.cache.clear()
    assert ahead.batched_calls > 64 and len(ahead.batches) == 64
    assert ahead.batches[-1] == (N - 2, N)


def test_key_ahead_rejects_a_batch_over_the_bound():
    from vscolormnet.keyahead import MAX_KEY_BATCH
    make_session(key_batch=MAX_KEY_BATCH)
    for bad in (0, MAX_KEY_BATCH + 1, 10000):
        with pytest.raises(ValueError, match=rf"key_batch must be an integer from 1 to {MAX_KEY_BATCH}, got {bad}"):
            make_session(key_batch=bad)


def test_idle_sessions_drop_their_run_ahead_blocks():
    """Of the live sessions, only the two latest and those asked for within ``idle`` requests keep key
    blocks; one busy in another thread keeps them too. Dropped blocks are recomputed bit-identically."""
    from collections import OrderedDict

    from vscolormnet.renderer import drop_idle_run_ahead
    sessions, last_use = OrderedDict(), {}
    for shot in range(4):
        sessions[shot], _ = batched_session(4, cuts=CUTS, cache_frames=0)
        check_batched(sessions[shot], [shot + 1], 4, CUTS)
        assert sessions[shot].key_ahead.holds_blocks()
        last_use[shot] = 10 * shot                    # requests 0, 10, 20, 30
    drop_idle_run_ahead(sessions, last_use, now=30, idle=25)
    assert [s.key_ahead.holds_blocks() for s in sessions.values()] == [False, True, True, True]
    busy = threading.Event()
    done = threading.Event()

    def hold():
        with sessions[1].lock:
            busy.set()
            done.wait(10)
    t = threading.Thread(target=hold)
    t.start()
    busy.wait(10)
    drop_idle_run_ahead(sessions, last_use, now=100, idle=25)
    done.set()
    t.join(10)
    assert [s.key_ahead.holds_blocks() for s in sessions.values()] == [False, True, True, True]
    drop_idle_run_ahead(sessions, last_use, now=100, idle=25)
    assert [s.key_ahead.holds_blocks() for s in sessions.values()] == [False, False, True, True]
    for shot, session in sessions.items():
        check_batched(session, [shot + 2, shot + 3, N - 1, shot + 7], 4, CUTS)


def test_copy_out_off_cuda_is_the_tensor_itself():
    from vscolormnet.renderer import ClipRenderer
    rgb = torch.rand(3, 5, 7)
    out, conf = ClipRenderer._copy_out(None, rgb, torch.tensor(0.25))
    assert out is rgb and conf == 0.25


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cuda_copy_out_pinned_memory_is_not_per_thread():
    """16 threads, one copy-out each, one after the other: the pinned blocks are reused (caching host
    allocator), not kept per thread; the data arrives whole (the host waited for the copy)."""
    from vscolormnet.renderer import ClipRenderer
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


# ---- CUDA: keys on a side stream, finite flags read late (the defaults there) -----------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cuda_side_stream_and_late_checks():
    dev = torch.device("cuda")
    frames = [f.to(dev) for f in FRAMES]
    refs = [Reference(r.image.to(dev), r.ab.to(dev), r.frame) for r in REFERENCES]

    def cuda_session(backend=None, **kw):
        prop = Propagator(backend or SyntheticBackend(device=dev), CONFIG, refs, count_long_term_usage=True)
        return ClipSession(prop, N, lambda n: (frames[n], n in CUTS), snapshot_interval=4, key_batch=4, **kw)
    ordered = cuda_session()
    assert ordered.key_ahead.run_ahead and ordered.defer_checks, "the CUDA defaults"
    want = [ordered.result(n) for n in range(N)]
    assert ordered.key_ahead._side is not None and len(ordered.key_ahead.batches) == 8
    shuffled = cuda_session(cache_frames=3)
    results, errors = {}, []

    def worker(seed):
        order = list(range(N))
        random.Random(seed).shuffle(order)
        try:
            results[seed] = [(n, shuffled.result(n, defer_check=seed % 2 == 0)) for n in order]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for pairs in results.values():
        for n, res in pairs:
            if res.check is not None:
                res.check.raise_if_bad()
            assert_same(res, want[n], n)
    backend = FlakyBackend(dev)
    late = cuda_session(backend=backend, cache_frames=8)
    for n in range(11):
        assert_same(late.result(n), want[n], n)
    backend.arm("decode_update", "nan")
    with pytest.raises(NonFiniteError, match=r"at frame 11\b"):
        late.result(13)
    assert 12 not in late.snapshots and late.state is None
    for n in (12, 11, 13, 20):
        assert_same(late.result(n), want[n], n)


# ---- parity with the official code through a session with key_batch=4 (real network) -------
@pytest.mark.slow
def test_parity_through_a_session_with_key_batch(parity_checkpoint):
    """The ``not_first`` case (12 frames, exemplar mode) read through ``ClipSession(key_batch=4)``,
    shuffled, stays within the parity bound of tests/test_parity.py."""
    import json

    import numpy as np
    from PIL import Image

    from conftest import PARITY_CASES
    from vscolormnet import color
    from vscolormnet.backends import create_backend
    d = PARITY_CASES / "not_first"
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["first_frame_not_exemplar"]
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((d / "input" / cfg["video"]).glob("*.png"))]
    h, w = frames[0].shape[:2]
    backend = create_backend("torch", weights=str(parity_checkpoint))
    ref_lab = color.lab_float32(color.resize_rgb_like_pil(np.asarray(Image.open(d / cfg["ref"]).convert("RGB")),
                                                          (w, h)))
    config = MemoryConfig()
    prop = Propagator(backend, config, [Reference(color.network_image(ref_lab[0]), color.network_ab(ref_lab[1:]))],
                      config.long_term_usage_for(len(frames)))
    images = [color.network_image(color.lab_float32(f)[0]) for f in frames]
    session = ClipSession(prop, len(frames), lambda n: (images[n], False), key_batch=4)
    order = list(range(len(frames)))
    random.Random(0).shuffle(order)
    ab = {n: color.unpad(session.result(n).ab[0], h, w).numpy() for n in order}
    assert sorted(session.key_ahead.batches) == [(0, 4), (4, 8), (8, 12)]
    diff = np.abs(np.stack([ab[n] for n in range(len(frames))]) - np.load(d / "outputs.npz")["ab_pred"])
    assert diff.max() <= 1e-3 and diff.mean() <= 1e-5, (diff.max(), diff.mean())


def test_default_key_batch_runs_ahead_only_for_torch_on_cuda():
    """Graph backends take one frame per call on one stream: a block ahead would only queue there."""
    from vscolormnet.keyahead import default_key_batch
    assert default_key_batch("cuda") == default_key_batch("cuda:1", "torch") == 8
    assert default_key_batch("cuda", "ort") == default_key_batch("cuda", "trt") == 1
    assert default_key_batch("cpu") == default_key_batch("cpu", "ort") == 1
