"""Key run-ahead (``KeyAhead``) through ``ClipSession``: fixed blocks, any request order, failures, bounds,
CUDA side stream and late finite checks, and parity of the real network with ``key_batch=4``."""
from __future__ import annotations

import random
import threading

import pytest
import torch
from synthetic_backend import SyntheticBackend

from vscolormnet.runtime.config import MemoryConfig
from vscolormnet.runtime.propagator import NonFiniteError, Propagator, Reference
from vscolormnet.runtime.session import ClipSession
from vscolormnet.runtime.source import FrameList

from .clips import (
    CONFIG,
    CUTS,
    FRAMES,
    REFERENCES,
    FlakyBackend,
    Images,
    N,
    assert_same,
    check_order,
    counters,
    expected,
    make_propagator,
    make_session,
)


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
    return [prop.step(state, FRAMES[t], end=(t == N - 1), scene_change=t in cuts, keys=keys[t]) for t in range(N)]


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


def test_frame_source_is_asked_for_a_block_together():
    images = Images(CUTS)
    session, _ = make_session(images=images, key_batch=4)
    session.key_ahead.run_ahead = True
    check_batched(session, range(10), 4, CUTS)
    assert images.blocks == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]], \
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
    from vscolormnet.runtime.keyahead import MAX_KEY_BATCH
    make_session(key_batch=MAX_KEY_BATCH)
    for bad in (0, MAX_KEY_BATCH + 1, 10000):
        with pytest.raises(ValueError, match=rf"key_batch must be an integer from 1 to {MAX_KEY_BATCH}, got {bad}"):
            make_session(key_batch=bad)


def test_idle_sessions_drop_their_run_ahead_blocks_and_cached_results():
    """Of the live sessions, only the two latest and those asked for within ``idle`` requests keep key
    blocks and cached results; one busy in another thread keeps them too. What is dropped is recomputed
    bit-identically."""
    from collections import OrderedDict

    from vscolormnet.vs.renderer import drop_idle_caches
    sessions, last_use = OrderedDict(), {}
    for shot in range(4):
        sessions[shot], _ = batched_session(4, cuts=CUTS, cache_frames=2)
        check_batched(sessions[shot], [shot + 1], 4, CUTS)
        assert sessions[shot].key_ahead.holds_blocks() and sessions[shot].cache
        last_use[shot] = 10 * shot                    # requests 0, 10, 20, 30
    drop_idle_caches(sessions, last_use, now=30, idle=25)
    assert [s.key_ahead.holds_blocks() for s in sessions.values()] == [False, True, True, True]
    assert [bool(s.cache) for s in sessions.values()] == [False, True, True, True]
    busy = threading.Event()
    done = threading.Event()

    def hold():
        with sessions[1].lock:
            busy.set()
            done.wait(10)
    t = threading.Thread(target=hold)
    t.start()
    busy.wait(10)
    drop_idle_caches(sessions, last_use, now=100, idle=25)
    done.set()
    t.join(10)
    assert [s.key_ahead.holds_blocks() for s in sessions.values()] == [False, True, True, True]
    drop_idle_caches(sessions, last_use, now=100, idle=25)
    assert [s.key_ahead.holds_blocks() for s in sessions.values()] == [False, False, True, True]
    for shot, session in sessions.items():
        check_batched(session, [shot + 2, shot + 3, N - 1, shot + 7], 4, CUTS)


# ---- CUDA: keys on a side stream, finite flags read late (the defaults there) -----------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cuda_side_stream_and_late_checks():
    dev = torch.device("cuda")
    frames = [f.to(dev) for f in FRAMES]
    refs = [Reference(r.image.to(dev), r.ab.to(dev), r.frame) for r in REFERENCES]

    def cuda_session(backend=None, **kw):
        prop = Propagator(backend or SyntheticBackend(device=dev), CONFIG, refs, count_long_term_usage=True,
                          scene_reset=True)
        return ClipSession(prop, FrameList(N, lambda n: (frames[n], n in CUTS)), snapshot_interval=4, key_batch=4,
                           **kw)
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
    shuffled, stays within the parity bound of vscolormnet/weights/parity.py."""
    import json

    import numpy as np
    from PIL import Image
    from project_paths import PARITY_CASES

    from vscolormnet.backends import create_backend
    from vscolormnet.media import color
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
    session = ClipSession(prop, FrameList(len(frames), lambda n: (images[n], False)), key_batch=4)
    order = list(range(len(frames)))
    random.Random(0).shuffle(order)
    ab = {n: color.unpad(session.result(n).ab[0], h, w).numpy() for n in order}
    assert sorted(session.key_ahead.batches) == [(0, 4), (4, 8), (8, 12)]
    diff = np.abs(np.stack([ab[n] for n in range(len(frames))]) - np.load(d / "outputs.npz")["ab_pred"])
    assert diff.max() <= 1e-3 and diff.mean() <= 1e-5, (diff.max(), diff.mean())


def test_default_key_batch_runs_ahead_only_for_torch_on_cuda():
    """Graph backends take one frame per call on one stream: a block ahead would only queue there."""
    from vscolormnet.runtime.keyahead import default_key_batch
    assert default_key_batch("cuda") == default_key_batch("cuda:1", "torch") == 8
    assert default_key_batch("cuda", "ort") == default_key_batch("cuda", "trt") == 1
    assert default_key_batch("cpu") == default_key_batch("cpu", "ort") == 1
