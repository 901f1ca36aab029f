"""The shot plan: cuts known up front, per-shot sessions in parallel, shot-scoped references.

Runs a real ``Propagator``/``ClipSession`` over ``SyntheticBackend`` (no network); every
comparison is bit-for-bit against a single whole-clip session read in order.
"""
from __future__ import annotations

import threading

import pytest
import torch
from synthetic_backend import SyntheticBackend, synthetic_frame

from vscolormnet.runtime.config import MemoryConfig
from vscolormnet.runtime.propagator import Propagator, Reference
from vscolormnet.runtime.session import ClipSession
from vscolormnet.runtime.shots import PlanError, ShotPlan, make_plan
from vscolormnet.runtime.source import FrameList

SIZE = 64
SHOTS, SHOT_LEN = 10, 20
N = SHOTS * SHOT_LEN
CUTS = tuple(range(SHOT_LEN, N, SHOT_LEN))
CONFIG = MemoryConfig(mem_every=2, max_mid_term_frames=4, min_mid_term_frames=2, num_prototypes=8,
                      max_long_term_elements=30, top_k=30)
FRAMES = [synthetic_frame(t, SIZE) for t in range(N)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _ab(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.5 * torch.tanh(torch.randn(1, 2, SIZE, SIZE, generator=g))


class CountingBackend(SyntheticBackend):
    """Counts encode_key calls per thread-safe counter (one per processed frame after set-up)."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.frames = 0

    def encode_key(self, image):  # noqa: D102
        with self.lock:
            self.frames += 1
        return super().encode_key(image)


def get_image(n):
    return FRAMES[n], n in CUTS


def references(seeds=(1, 2, 3)):
    """An exemplar (global) and references inside shots 0 and 3 (frames 5 and 65)."""
    a, b, c = seeds
    return [Reference(synthetic_frame(-9, SIZE), _ab(a), frame=None),
            Reference(FRAMES[5], _ab(b), frame=5), Reference(FRAMES[65], _ab(c), frame=65)]


def propagator(ref_scope="shot", refs=None, backend=None):
    return Propagator(backend or CountingBackend(), CONFIG, refs or references(), count_long_term_usage=True,
                      plan=ShotPlan(N, CUTS), ref_scope=ref_scope)


def shot_sessions(prop):
    plan = prop.plan
    return [ClipSession(prop, FrameList(N, get_image), 4, 4, start=s, stop=e) for s, e in map(plan.bounds, range(len(plan)))]


def test_plan_and_cuts_file(tmp_path):
    plan = make_plan([40, 0, 20, 20], 60)
    assert plan.cuts == (20, 40) and len(plan) == 3
    assert [plan.shot_of(n) for n in (0, 19, 20, 59)] == [0, 0, 1, 2]
    assert plan.bounds(2) == (40, 60)
    f = tmp_path / "cuts.txt"
    f.write_text("# cuts\n20\n\n40  # the second\n")
    assert make_plan(str(f), 60).cuts == (20, 40)
    f.write_text("20\ntwenty\n")
    with pytest.raises(PlanError, match=r"line 2: expected a frame number, got 'twenty'"):
        make_plan(f, 60)
    with pytest.raises(PlanError, match=r"cuts must be frame numbers within 0…59, got 60"):
        make_plan([60], 60)
    with pytest.raises(PlanError, match="cuts must be None, a list of frame numbers or a cuts.txt path"):
        make_plan([1.5], 60)


def test_first_request_in_the_last_shot_costs_one_shot():
    """10 shots × 20 frames: frame 199 first costs what frame 19 costs (20 steps), not 200."""
    for target in (19, N - 1):
        prop = propagator()
        backend = prop.backend
        sessions = shot_sessions(prop)
        before = backend.frames
        sessions[prop.plan.shot_of(target)].result(target)
        assert backend.frames - before == SHOT_LEN


def test_shots_in_parallel_equal_one_sequential_session():
    whole_prop = propagator()
    whole = ClipSession(whole_prop, FrameList(N, get_image), 4, 4)       # the plan's cuts are its anchors
    expected = [whole.result(n) for n in range(N)]
    prop = propagator()
    sessions = shot_sessions(prop)
    results = [None] * N
    errors = []

    def work(shot_ids):
        try:
            for s in shot_ids:
                start, stop = prop.plan.bounds(s)
                for n in reversed(range(start, stop)):          # any order inside a shot
                    results[n] = sessions[s].result(n)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=work, args=(range(i, SHOTS, 4),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for n in range(N):
        assert torch.equal(results[n].ab, expected[n].ab), f"frame {n}"
        assert (results[n].work_frames, results[n].memory_reset) == (expected[n].work_frames, expected[n].memory_reset)


def test_shot_scope_reads_only_the_shots_own_references():
    prop = propagator("shot")
    assert prop.scope_at(0) == (0, 1), "shot 0: its own reference (frame 5) + the exemplar"
    assert prop.scope_at(65) == (0, 2), "shot 3: its own reference (frame 65) + the exemplar"
    assert prop.scope_at(120) == (0, 1, 2), "a shot without references reads all of them"
    assert propagator("clip").scope_at(65) == (0, 1, 2)
    # Behaviour: changing shot 3's reference leaves every frame of shot 0 unchanged...
    a = shot_sessions(propagator("shot", references((1, 2, 3))))
    b = shot_sessions(propagator("shot", references((1, 2, 99))))
    for n in range(0, SHOT_LEN):
        assert torch.equal(a[0].result(n).ab, b[0].result(n).ab)
    # ...but changes shot 3, and (clip scope) also shot 0.
    assert not torch.equal(a[3].result(70).ab, b[3].result(70).ab)
    c = shot_sessions(propagator("clip", references((1, 2, 3))))
    d = shot_sessions(propagator("clip", references((1, 2, 99))))
    assert not torch.equal(c[0].result(10).ab, d[0].result(10).ab)


def test_reference_frame_inside_its_shot_outputs_its_chroma():
    prop = propagator("shot")
    sessions = shot_sessions(prop)
    res = sessions[3].result(65)
    assert res.is_reference_frame and torch.equal(res.ab, prop.references[2].ab)
    assert sessions[3].result(60).memory_reset


def test_key_blocks_never_cross_a_shot_and_shots_equal_one_session():
    """key_batch=6 in per-shot sessions: every block (one ``FrameSource.frames`` request) lies inside one shot,
    aligned to multiples of 6, and every frame equals a whole-clip session with the cuts as anchors and
    the same key_batch, with shots served in parallel and each in reverse order."""
    requested = []

    class Recorded(FrameList):
        def frames(self, ns):
            requested.append(tuple(ns))
            return super().frames(ns)
    whole = ClipSession(propagator(), Recorded(N, get_image), 4, 4, key_batch=6)
    expected = [whole.result(n) for n in range(N)]
    assert requested and all(len(ns) > 1 for ns in requested)
    prop = propagator()
    plan = prop.plan
    sessions = [ClipSession(prop, Recorded(N, get_image), 4, 4, start=s, stop=e, key_batch=6)
                for s, e in map(plan.bounds, range(len(plan)))]
    for s in sessions:
        s.key_ahead.run_ahead = True                 # as on CUDA: the next block after each step
    requested.clear()
    results, errors = [None] * N, []

    def work(shot_ids):
        try:
            for s in shot_ids:
                start, stop = plan.bounds(s)
                for n in reversed(range(start, stop)):
                    results[n] = sessions[s].result(n)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=work, args=(range(i, SHOTS, 3),)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for ns in requested:
        assert plan.shot_of(ns[0]) == plan.shot_of(ns[-1]), f"block {ns} crosses a cut"
        assert ns[0] // 6 == ns[-1] // 6, f"block {ns} is not inside one aligned group of 6"
    for n in range(N):
        assert torch.equal(results[n].ab, expected[n].ab), f"frame {n}"
        assert torch.equal(torch.as_tensor(results[n].confidence), torch.as_tensor(expected[n].confidence)), n
    assert not torch.equal(expected[3].ab, ClipSession(propagator(), FrameList(N, get_image), 4, 4).result(3).ab), \
        "batched keys change bits on the synthetic backend, so a block change would show"


def test_lazy_references_encode_only_what_a_shot_reads_and_change_no_bit():
    """``lazy_references`` (what ``Colorize`` uses): a process rendering shot 3 alone encodes (and loads) only
    the exemplar and shot 3's own reference, and every frame equals the up-front propagator's."""
    loaded = []

    def lazy(ref, i):
        def load():
            loaded.append(i)
            return ref.image, ref.ab
        return Reference(None, None, ref.frame, load=load)
    eager = shot_sessions(propagator("shot"))
    backend = CountingBackend()
    prop = Propagator(backend, CONFIG, [lazy(r, i) for i, r in enumerate(references())], count_long_term_usage=True,
                      plan=ShotPlan(N, CUTS), ref_scope="shot", lazy_references=True)
    assert backend.frames == 0 and not loaded, "nothing encoded at construction"

    def session(shot):                          # as the renderer makes them: when a frame of the shot is asked
        start, stop = prop.plan.bounds(shot)
        return ClipSession(prop, FrameList(N, get_image), 4, 4, start=start, stop=stop)
    shot3 = session(3)
    for n in range(60, 80):
        assert torch.equal(shot3.result(n).ab, eager[3].result(n).ab), n
    assert sorted(loaded) == [0, 2] and backend.frames == SHOT_LEN + 2, "the exemplar and shot 3's reference, once"
    assert torch.equal(shot3.result(65).ab, references()[2].ab)      # its reference frame's chroma
    shot6 = session(6)
    for n in range(120, 125):                   # a shot without references of its own: every reference, once
        assert torch.equal(shot6.result(n).ab, eager[6].result(n).ab), n
    assert sorted(loaded) == [0, 1, 2] and backend.frames == SHOT_LEN + 3 + 5
