"""The process-wide cache of networks and backends (``vscolormnet.runtime.shared``).

The table logic is tested with a fake network loader and a fake backend spec (the fakes stand
in for the network and the backend; the cache is what is under test); one test builds real
``Colorize`` nodes to check that a node's network goes with the node.
"""
from __future__ import annotations

import gc
import random
import shutil
import threading
import time
from dataclasses import dataclass
from typing import ClassVar

import pytest
from settle import settled_stats

import vscolormnet.weights.checkpoint
from vscolormnet.backends.base import Backend
from vscolormnet.runtime import shared

ZERO = {"networks": 0, "backends": 0, "network_leases": 0, "backend_leases": 0}


class FakeNetwork:
    def __init__(self, path):
        self.path = path


class FakeBackend(Backend):
    """Records close(); counts how many are alive at once."""

    name = "fake"
    lock = threading.Lock()
    live = 0
    max_live = 0
    created = 0
    closed = 0

    def __init__(self, network, tag):
        self.network, self.tag = network, tag
        self.close_calls = 0
        with FakeBackend.lock:
            FakeBackend.created += 1
            FakeBackend.live += 1
            FakeBackend.max_live = max(FakeBackend.max_live, FakeBackend.live)

    def close(self):
        self.close_calls += 1
        with FakeBackend.lock:
            FakeBackend.closed += 1
            FakeBackend.live -= 1


@dataclass(frozen=True, kw_only=True)
class FakeSpec:
    """Shaped like backends/spec.py's dataclasses: name, needs_size, check, cache_key, create."""

    name: ClassVar[str] = "fake"
    needs_size: ClassVar[bool] = False
    tag: str = "a"
    fail: bool = False

    def check(self) -> None:
        pass

    def cache_key(self) -> tuple:
        return ("fake", self.tag)

    def create(self, network, weights, padded_hw):
        if self.fail:
            raise RuntimeError("cannot start")
        return FakeBackend(network, self.tag)


@dataclass(frozen=True, kw_only=True)
class FakeSizedSpec(FakeSpec):
    needs_size: ClassVar[bool] = True

    def create(self, network, weights, padded_hw):
        backend = super().create(network, weights, padded_hw)
        backend.padded_hw = padded_hw
        return backend


@pytest.fixture()
def fake_loader(monkeypatch):
    """``load_model`` replaced by a recorder; yields the list of loads."""
    loads = []
    lock = threading.Lock()

    def load_model(path):
        with lock:
            loads.append(path)
        return FakeNetwork(path)
    monkeypatch.setattr(vscolormnet.weights.checkpoint, "load_model", load_model)
    # The fakes hold no memory: skip the full garbage collection + malloc_trim after each close.
    monkeypatch.setattr(shared, "_return_freed_memory", lambda: None, raising=False)
    FakeBackend.live = FakeBackend.max_live = FakeBackend.created = FakeBackend.closed = 0
    baseline = shared.stats()
    yield loads
    assert shared.stats() == baseline, "leases leaked"


@pytest.fixture()
def weights(tmp_path, request):
    """A small 'weights' file with content unique to the test (its hash is the cache key)."""
    path = tmp_path / "w" / "model.pth"
    path.parent.mkdir()
    path.write_bytes(f"fake weights for {request.node.nodeid}".encode())
    return path


def delta(before, after=None):
    after = after or shared.stats()
    return {k: after[k] - before[k] for k in after}


# ---- sharing --------------------------------------------------------------------------------
def test_same_content_shares_one_network(fake_loader, weights, tmp_path):
    copy = tmp_path / "elsewhere" / "copy.pth"
    copy.parent.mkdir()
    shutil.copy(weights, copy)
    other = tmp_path / "other.pth"
    other.write_bytes(b"different content")
    before = shared.stats()
    a = shared.acquire_network(weights)
    b = shared.acquire_network(str(weights))
    c = shared.acquire_network(copy)
    assert a.value is b.value is c.value
    assert len(fake_loader) == 1
    d = shared.acquire_network(other)
    assert d.value is not a.value and len(fake_loader) == 2
    assert delta(before) == {"networks": 2, "backends": 0, "network_leases": 4, "backend_leases": 0}
    for lease in (a, b, c, d):
        lease.release()


def test_equal_backends_share_one_object(fake_loader, weights, tmp_path):
    copy = tmp_path / "copy.pth"
    shutil.copy(weights, copy)
    before = shared.stats()
    a = shared.acquire_backend(FakeSpec(), weights, None)
    b = shared.acquire_backend(FakeSpec(), copy, (112, 224))      # size ignored: needs_size is False
    c = shared.acquire_backend(FakeSpec(tag="b"), weights, None)
    assert a.value is b.value and c.value is not a.value
    assert a.value.network is c.value.network, "two backends of one weights file share the network"
    assert FakeBackend.created == 2 and len(fake_loader) == 1
    # the network lease held by each backend counts: 2 backends → 2 network leases
    assert delta(before) == {"networks": 1, "backends": 2, "network_leases": 2, "backend_leases": 3}
    for lease in (a, b, c):
        lease.release()
    assert FakeBackend.closed == 2


def test_sized_backends_are_keyed_by_size(fake_loader, weights):
    a = shared.acquire_backend(FakeSizedSpec(), weights, (112, 224))
    b = shared.acquire_backend(FakeSizedSpec(), weights, [112, 224])
    c = shared.acquire_backend(FakeSizedSpec(), weights, (224, 224))
    assert a.value is b.value and c.value is not a.value
    assert a.value.padded_hw == (112, 224) and c.value.padded_hw == (224, 224)
    for lease in (a, b, c):
        lease.release()


def test_sized_backend_without_a_size_is_refused_clearly(fake_loader, weights):
    with pytest.raises(ValueError, match="needs the padded size"):
        shared.acquire_backend(FakeSizedSpec(), weights, None)


# ---- release --------------------------------------------------------------------------------
def test_release_is_idempotent_and_closes_on_the_last_lease(fake_loader, weights):
    before = shared.stats()
    a = shared.acquire_backend(FakeSpec(), weights, None)
    b = shared.acquire_backend(FakeSpec(), weights, None)
    backend = a.value
    a.release()
    a.release()                                   # a second release must not drop b's reference
    assert a.value is None
    assert backend.close_calls == 0 and b.value is backend
    assert delta(before) == {"networks": 1, "backends": 1, "network_leases": 1, "backend_leases": 1}
    with b:                                        # the context manager releases too
        pass
    b.release()
    assert backend.close_calls == 1
    assert delta(before) == {k: 0 for k in ZERO}, "the backend's network lease goes with it"
    # forgotten: the next request loads and creates afresh
    c = shared.acquire_backend(FakeSpec(), weights, None)
    assert c.value is not backend and len(fake_loader) == 2 and FakeBackend.created == 2
    c.release()


def test_network_outlives_its_backends_while_a_node_holds_it(fake_loader, weights):
    net = shared.acquire_network(weights)
    be = shared.acquire_backend(FakeSpec(), weights, None)
    assert be.value.network is net.value
    be.release()
    again = shared.acquire_backend(FakeSpec(), weights, None)
    assert again.value.network is net.value and len(fake_loader) == 1
    again.release()
    net.release()


def test_failed_create_leaves_nothing_behind(fake_loader, weights):
    before = shared.stats()
    with pytest.raises(RuntimeError, match="cannot start"):
        shared.acquire_backend(FakeSpec(fail=True), weights, None)
    assert delta(before) == {k: 0 for k in ZERO}


def test_closing_errors_do_not_escape(fake_loader, weights, caplog):
    lease = shared.acquire_backend(FakeSpec(), weights, None)
    backend = lease.value

    def broken_close():
        raise OSError("device lost")
    backend.close = broken_close
    lease.release()                               # a finalizer must never see the exception
    assert "device lost" in caplog.text
    backend.network_lease.release()               # (idempotent) see the next test


def test_a_failing_close_still_releases_the_network(fake_loader, weights):
    before = shared.stats()
    lease = shared.acquire_backend(FakeSpec(), weights, None)
    backend = lease.value

    def broken_close():
        raise OSError("device lost")
    backend.close = broken_close
    lease.release()
    leaked = delta(before)
    backend.network_lease.release()               # clean up for the other tests either way
    assert leaked == {k: 0 for k in ZERO}


# ---- threads --------------------------------------------------------------------------------
def test_threads_share_one_object_per_overlapping_period(fake_loader, weights):
    """8 threads acquire together, all hold, all release: one creation and one close per round."""
    rounds, n = 5, 8
    barrier = threading.Barrier(n)
    seen = [[None] * n for _ in range(rounds)]
    errors = []

    def worker(i):
        try:
            for r in range(rounds):
                barrier.wait(10)
                lease = shared.acquire_backend(FakeSpec(), weights, None)
                seen[r][i] = lease.value
                barrier.wait(10)                  # everyone holds a lease now
                lease.release()
                lease.release()
                barrier.wait(10)                  # everyone has released: closed before the next round
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    for r in range(rounds):
        assert len({id(v) for v in seen[r]}) == 1, f"round {r}: several objects"
    assert len({id(seen[r][0]) for r in range(rounds)}) == rounds
    assert FakeBackend.created == FakeBackend.closed == rounds and FakeBackend.max_live == 1
    assert len(fake_loader) == rounds


def test_threads_acquiring_and_releasing_at_random(fake_loader, weights):
    n, iterations = 8, 150
    errors = []

    def worker(seed):
        rng = random.Random(seed)
        held = []
        try:
            for _ in range(iterations):
                if held and rng.random() < 0.5:
                    held.pop(rng.randrange(len(held))).release()
                else:
                    kind = rng.random()
                    if kind < 0.4:
                        held.append(shared.acquire_network(weights))
                    else:
                        held.append(shared.acquire_backend(FakeSpec(tag=rng.choice("ab")), weights, None))
                    assert held[-1].value is not None
                if rng.random() < 0.05:
                    time.sleep(0.001)
            for lease in held:
                lease.release()
                lease.release()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert FakeBackend.created == FakeBackend.closed and FakeBackend.live == 0
    assert FakeBackend.max_live <= 2, "at most one live backend per key (two keys)"


def test_stats_during_a_backend_release_does_not_deadlock(weights, monkeypatch):
    # A private copy of the module, so that a deadlock only ever holds the copy's locks.
    import importlib.util
    spec = importlib.util.spec_from_file_location("vscolormnet.runtime._shared_probe", shared.__file__)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    probe._return_freed_memory = lambda: None
    monkeypatch.setattr(vscolormnet.weights.checkpoint, "load_model", FakeNetwork)
    closing, may_finish = threading.Event(), threading.Event()

    class SlowClose(FakeBackend):
        def close(self):
            closing.set()
            may_finish.wait(5)                    # stats() starts meanwhile
            super().close()

    @dataclass(frozen=True, kw_only=True)
    class SlowSpec(FakeSpec):
        def create(self, network, weights, padded_hw):
            return SlowClose(network, self.tag)

    lease = probe.acquire_backend(SlowSpec(), weights, None)
    releaser = threading.Thread(target=lease.release, daemon=True)
    releaser.start()
    assert closing.wait(5)
    reader = threading.Thread(target=probe.stats, daemon=True)
    reader.start()
    # Let close() go on once stats() holds the network lock (or after 1 s if it never takes it first).
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        if not probe._networks.lock.acquire(blocking=False):
            break
        probe._networks.lock.release()
        time.sleep(0.002)
    may_finish.set()
    releaser.join(1)
    reader.join(0.2)
    assert not releaser.is_alive() and not reader.is_alive(), "deadlock"


def test_a_long_load_blocks_only_its_own_key(fake_loader, weights):
    """An export or engine build at a new size (minutes) runs outside the table lock: other keys and stats()
    go on; an equal request waits and shares the result; a failed load wakes its waiters, who load again."""
    started, may_finish, attempts = threading.Event(), threading.Event(), []

    @dataclass(frozen=True, kw_only=True)
    class SlowSpec(FakeSpec):
        def create(self, network, weights, padded_hw):
            attempts.append(self.tag)
            started.set()
            assert may_finish.wait(10)
            if self.fail and len(attempts) == 1:
                raise RuntimeError("export failed")
            return FakeBackend(network, self.tag)

    for fail in (False, True):
        started.clear(), may_finish.clear(), attempts.clear()
        got, errors = [], []

        def acquire(spec):
            try:
                got.append(shared.acquire_backend(spec, weights, None))
            except RuntimeError as e:
                errors.append(str(e))
        slow = [threading.Thread(target=acquire, args=(SlowSpec(tag="slow", fail=fail),)) for _ in range(2)]
        slow[0].start()
        assert started.wait(10)
        slow[1].start()                                          # the same key: waits for the first
        others = []                                              # another key and stats(): not blocked
        side = threading.Thread(target=lambda: others.extend(
            [shared.acquire_backend(FakeSpec(tag="other"), weights, None), shared.stats()]), daemon=True)
        side.start()
        side.join(5)
        assert not side.is_alive(), "another key waited for the slow load"
        assert others[1]["backends"] >= 1 and attempts == ["slow"]
        others[0].release()
        may_finish.set()
        for t in slow:
            t.join(10)
        assert not any(t.is_alive() for t in slow)
        if fail:        # the first load failed: its caller sees the error, the waiter loaded it itself
            assert errors == ["export failed"] and attempts == ["slow", "slow"] and len(got) == 1
        else:
            assert not errors and attempts == ["slow"] and got[0].value is got[1].value
        for lease in got:
            lease.release()


# ---- real nodes (VapourSynth, the seeded checkpoint) ----------------------------------------
@pytest.mark.slow
def test_colorize_nodes_share_the_network_and_free_it_with_the_node(parity_checkpoint, tmp_path):
    vs = pytest.importorskip("vapoursynth")
    import vscolormnet as colormnet
    from vscolormnet.vs.synthetic import clip_in_format, colour_reference

    base = settled_stats()     # session fixtures (e.g. the shared DDColor colorizers) may hold their own leases

    def held():
        return {k: v - base[k] for k, v in shared.stats().items()}
    clip = clip_in_format(vs.YUV420P8, n=3, w=64, h=48)
    ref = colour_reference(tmp_path / "ref.png", w=64, h=48)

    def node():
        return colormnet.Colorize(clip, ref, size="native", weights=str(parity_checkpoint))

    a = node()
    assert held() == {"networks": 1, "backends": 0, "network_leases": 1, "backend_leases": 0}
    frame = a.get_frame(1)
    assert held() == {"networks": 1, "backends": 1, "network_leases": 2, "backend_leases": 1}
    b = node()
    frame_b = b.get_frame(0)
    # one network and one backend for both nodes
    assert held() == {"networks": 1, "backends": 1, "network_leases": 3, "backend_leases": 2}
    del b, frame_b
    gc.collect()
    assert held() == {"networks": 1, "backends": 1, "network_leases": 2, "backend_leases": 1}
    del a, frame
    gc.collect()
    assert held() == ZERO, "the network must be freed with the node, not when the core dies"
