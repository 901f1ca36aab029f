"""Memory frames, consolidation and obsolete removal against hand-computed schedules."""
from __future__ import annotations

import pytest
import torch
from synthetic_backend import SyntheticBackend, synthetic_frame

from vscolormnet.runtime.config import MemoryConfig
from vscolormnet.runtime.propagator import Propagator, Reference

HW = 49  # 112×112 padded → 7×7


def run(num_frames, first_frame_is_ref, config=MemoryConfig(), count_usage=False):
    ref_img = synthetic_frame(0) if first_frame_is_ref else synthetic_frame(-7)
    ref = Reference(ref_img, torch.zeros(1, 2, 112, 112) + 0.1, frame=0 if first_frame_is_ref else None)
    prop = Propagator(SyntheticBackend(), config, [ref], count_usage)
    state = prop.new_state()
    rows = []
    for t in range(num_frames):
        res = prop.step(state, synthetic_frame(t), end=(t == num_frames - 1))
        m = state.memory
        rows.append((res.is_memory_frame, m.work.size // HW, m.long.size, m.consolidations, m.obsolete_removals))
    return rows


def hand_schedule(num_frames, exemplar, mem_every=5, max_frames=10, min_frames=5, protos=128):
    """Integer bookkeeping written from the spec, independent of the implementation."""
    work = 1 if exemplar else 0   # the exemplar occupies the permanent slot before frame 0
    long = cons = 0
    out = []
    last_mem = 0
    for t in range(num_frames):
        end = t == num_frames - 1
        mem = (t == 0 or t - last_mem >= mem_every) and not end
        if mem:
            last_mem = t
            work += 1
            if work >= max_frames:
                work = min_frames
                long += protos
                cons += 1
        out.append((mem, work, long, cons, 0))
    return out


@pytest.mark.parametrize("exemplar", [False, True])
def test_schedule_matches_hand_computation(exemplar):
    n = 101
    assert run(n, first_frame_is_ref=not exemplar) == hand_schedule(n, exemplar)


def test_spec_table_default_mode():
    rows = run(72, first_frame_is_ref=True)
    assert [rows[t][1] for t in (0, 4, 5, 9, 40, 44)] == [1, 1, 2, 2, 9, 9]
    assert rows[44][2] == 0 and rows[45][1:3] == (5, 128)
    assert rows[50][1] == 6 and rows[70][1:3] == (5, 256)
    assert [t for t in range(1, 72) if rows[t][3] != rows[t - 1][3]] == [45, 70]
    assert not rows[71][0], "the last frame is never stored"


def test_exemplar_mode_is_one_frame_ahead():
    rows = run(42, first_frame_is_ref=False)
    assert rows[0][1] == 2
    assert [t for t in range(1, 42) if rows[t][3] != rows[t - 1][3]] == [40]


def test_obsolete_removal_schedule():
    cfg = MemoryConfig(max_long_term_elements=300)  # removal threshold 300 − 128 = 172
    rows = run(130, first_frame_is_ref=True, config=cfg, count_usage=True)
    consolidated = [t for t in range(1, 130) if rows[t][3] != rows[t - 1][3]]
    removed = [t for t in range(1, 130) if rows[t][4] != rows[t - 1][4]]
    assert consolidated == [45, 70, 95, 120]
    assert removed == [95, 120]  # long-term memory held 256 ≥ 172 elements before these
    assert all(r[2] <= 300 for r in rows)
    assert rows[95][2] <= 172 + 128


def test_removal_needs_usage_counting():
    with pytest.raises(RuntimeError, match="does not count usage"):
        run(100, first_frame_is_ref=True, config=MemoryConfig(max_long_term_elements=300), count_usage=False)


def test_long_term_usage_rule_follows_test_py():
    cfg = MemoryConfig()
    assert not cfg.long_term_usage_for(390) and cfg.long_term_usage_for(391)
