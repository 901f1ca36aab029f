"""The device-memory account of a film's state (``runtime.account``), and its bounds.

A 300-shot film at the 512 preset's 1920×1080 geometry (512×288 padded to 560×336: 735 memory
elements a frame) through real ``Propagator``s and ``ClipSession``s on the synthetic backend (shapes as the
network's), with the renderer's rule of at most 8 live shot sessions (least recently used dropped).
"""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from synthetic_backend import SyntheticBackend

from vscolormnet.runtime.account import DeviceAccount, tensors_in
from vscolormnet.runtime.config import MemoryConfig
from vscolormnet.runtime.geometry import inference_geometry
from vscolormnet.runtime.propagator import Propagator, Reference
from vscolormnet.runtime.session import ClipSession
from vscolormnet.runtime.shots import ShotPlan

HP, WP = inference_geometry(1920, 1080, "512").padded_hw
MIB = 1 << 20


class _Frames:
    def __init__(self, num_frames: int):
        self.num_frames = num_frames

    def frames(self, ns):
        return [(_image(n), False) for n in ns]


def _image(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)
    return torch.rand(1, 3, HP, WP, generator=g) * 2 - 1


def _reference(frame: int) -> Reference:
    g = torch.Generator().manual_seed(10_000 + frame)
    return Reference(_image(frame), 0.3 * torch.tanh(torch.randn(1, 2, HP, WP, generator=g)), frame=frame)


def _loaded_reference(frame: int) -> Reference:
    """As ``Colorize`` makes them: converted when encoded, not kept."""
    def load():
        ref = _reference(frame)
        return ref.image, ref.ab
    return Reference(None, None, frame, load=load)


def film_account(num_refs: int, shots: int = 300, per_shot: int = 3, live: int = 8, reference_cache: int = 16) -> dict:
    """Render every frame in order, shot after shot, then account. References are frames of evenly
    spaced shots (``ref_scope='shot'``: a shot without one reads them all)."""
    n = shots * per_shot
    plan = ShotPlan(n, tuple(range(per_shot, n, per_shot)))
    step = shots // num_refs
    refs = [_loaded_reference(i * step * per_shot) for i in range(num_refs)]
    prop = Propagator(SyntheticBackend(), MemoryConfig(), refs, count_long_term_usage=False, plan=plan,
                      ref_scope="shot", lazy_references=True, reference_cache=reference_cache)
    source, sessions = _Frames(n), OrderedDict()
    for shot in range(shots):
        start, stop = plan.bounds(shot)
        sessions[shot] = session = ClipSession(prop, source, start=start, stop=stop)
        while len(sessions) > live:
            sessions.popitem(last=False)
        for t in range(start, stop):
            session.result(t)
    acc = DeviceAccount()
    prop.account(acc)
    for shot, session in sessions.items():
        session.account(acc, f"shot {shot}")
    return acc.as_dict()


def summary(account: dict) -> str:
    """One line: the total and each owner, the live sessions' rows summed by kind."""
    rows: dict[str, int] = {}
    for owner, size in account["owners"].items():
        kind = owner.split(": ", 1)[1] + " (8 shots)" if owner.startswith("shot ") else owner
        rows[kind] = rows.get(kind, 0) + size
    return f"total {account['total_bytes'] / MIB:.1f} MiB: " + ", ".join(f"{k} {v / MIB:.1f}" for k, v in rows.items())


def test_the_account_counts_a_shared_storage_once_and_a_view_as_its_whole_storage():
    big = torch.zeros(1000)
    acc = DeviceAccount()
    assert acc.add("a", big[:10], {"x": [big]}) == 4000
    assert acc.add("b", big) == 0 and acc.add("b", torch.zeros(5)) == 20
    assert acc.as_dict() == {"total_bytes": 4020, "owners": {"a": 4000, "b": 20}}
    assert list(tensors_in(lambda: big)) == []            # callables (loaders, backends) are not followed


@pytest.mark.slow
def test_film_state_is_bounded_whatever_the_number_of_references():
    """A reference per shot, 100 shots of 2 frames: encoded references are a cache of 16 (4.7 MiB
    each here) and loaded inputs are not kept, so the state stays what 16 references and 8 live
    shots take. (The note's figures: ``film_account(1)``, ``film_account(8)``, ``film_account(300)``;
    with 8 references and most shots having none of their own, each live session's memory holds
    its own copy of all 8, 26 MiB.)"""
    account = film_account(100, shots=100, per_shot=2)
    owners = account["owners"]
    print(f"\n100 references: {summary(account)}")
    assert owners["references (inputs)"] == 0
    assert owners["references (encoded)"] <= 16 * 4.7 * MIB
    assert account["total_bytes"] < 160 * MIB


def test_references_leave_the_cache_and_come_back_bit_identical():
    """``reference_cache=2`` over 6 shots with a reference each (made by loaders, as ``Colorize`` does):
    going back to shot 0 loads and encodes its reference again, and its frames come out the same."""
    per_shot, shots = 2, 6
    n = per_shot * shots
    plan = ShotPlan(n, tuple(range(per_shot, n, per_shot)))
    loads = []

    def loader(frame):
        def load():
            loads.append(frame)
            ref = _reference(frame)
            return ref.image, ref.ab
        return Reference(None, None, frame, load=load)
    prop = Propagator(SyntheticBackend(), MemoryConfig(), [loader(s * per_shot) for s in range(shots)],
                      count_long_term_usage=False, plan=plan, ref_scope="shot", lazy_references=True,
                      reference_cache=2)

    def render(shot):
        start, stop = plan.bounds(shot)
        session = ClipSession(prop, _Frames(n), start=start, stop=stop)
        return [session.result(t).ab for t in range(start, stop)]
    first = [render(s) for s in range(shots)]
    assert loads == [0, 2, 4, 6, 8, 10] and len(prop._bank) == 2 and len(prop._initial) == 2
    again = render(0)
    assert loads[-1] == 0 and all(torch.equal(a, b) for a, b in zip(again, first[0]))


def test_the_state_reading_every_reference_is_kept_not_rebuilt():
    """A shot without a reference of its own reads them all: its start state holds every reference
    already, so it stays cached whatever ``reference_cache`` is, and coming back to such a shot
    loads and encodes nothing (rebuilding it would encode every reference again)."""
    per_shot, shots = 2, 6
    n = per_shot * shots
    plan = ShotPlan(n, tuple(range(per_shot, n, per_shot)))
    loads = []

    def loader(frame):
        def load():
            loads.append(frame)
            ref = _reference(frame)
            return ref.image, ref.ab
        return Reference(None, None, frame, load=load)
    prop = Propagator(SyntheticBackend(), MemoryConfig(), [loader(s * per_shot) for s in range(shots - 1)],
                      count_long_term_usage=False, plan=plan, ref_scope="shot", lazy_references=True,
                      reference_cache=2)

    def render(shot):
        start, stop = plan.bounds(shot)
        session = ClipSession(prop, _Frames(n), start=start, stop=stop)
        return [session.result(t).ab for t in range(start, stop)]
    first = render(5)                                   # the last shot has no reference: all five are read
    assert sorted(loads) == [0, 2, 4, 6, 8]
    for shot in range(5):
        render(shot)
    before = len(loads)
    again = render(5)
    assert len(loads) == before and all(torch.equal(a, b) for a, b in zip(again, first))
