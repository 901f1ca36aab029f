"""The per-step NaN/inf check (``runtime.finite.FiniteCheck``): what it catches, and what it costs."""
from __future__ import annotations

import pytest
import torch
from dispatch_counts import DispatchCounts

from vscolormnet.runtime.finite import FiniteCheck, NonFiniteError

# The tensors of one frame step at 112×112 (encode_key's six, readout, attention, decode_update's two,
# encode_value_deep's two): shapes as the network makes them.
STEP = [("encode_key", [(1, 64, 7, 7), (1, 1, 7, 7), (1, 64, 7, 7), (1, 1024, 7, 7), (1, 512, 14, 14),
                        (1, 256, 28, 28)]),
        ("memory_readout", [(1, 512, 7, 7)]), ("short_term_attention", [(1, 512, 7, 7)]),
        ("decode_update", [(1, 2, 112, 112), (1, 64, 7, 7)]), ("encode_value_deep", [(1, 512, 7, 7), (1, 64, 7, 7)])]


def _check(dtype=torch.float32, poison=None) -> FiniteCheck:
    check = FiniteCheck()
    g = torch.Generator().manual_seed(0)
    for i, (stage, shapes) in enumerate(STEP):
        tensors = [torch.randn(s, generator=g).to(dtype) for s in shapes]
        if poison is not None and poison[0] == i:
            tensors[-1].view(-1)[-1] = poison[1]            # one element, the last one of the stage
        check.add(stage, *tensors)
    return check


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("stage", [0, 2, 4])
def test_one_bad_element_names_its_stage(bad, dtype, stage):
    with pytest.raises(NonFiniteError, match=rf"stage {STEP[stage][0]} produced NaN or inf values at frame 3\b"):
        _check(dtype, (stage, bad)).raise_if_bad("frame 3")


def test_large_finite_half_values_do_not_overflow_the_check():
    check = FiniteCheck()
    check.add("decode", torch.full((1, 1024, 64, 64), 65504.0, dtype=torch.float16))   # the largest fp16
    check.raise_if_bad("frame 0")


def test_all_finite_passes_and_an_empty_check_passes():
    _check().raise_if_bad("frame 0")
    FiniteCheck().raise_if_bad("frame 0")


def test_a_step_is_checked_in_a_handful_of_ops_not_several_per_tensor():
    """12 tensors of 5 stages: one multi-tensor norm, one stack, and ``isfinite`` of 12 numbers (four
    elementwise ops). It was 72 ops: ``isfinite`` (4) and ``all`` per tensor, a stack and an ``all``
    per stage, a final stack."""
    check = _check()
    with DispatchCounts() as counted:
        check.flags()
    assert counted.ops[:2] == ["_foreach_norm", "stack"] and len(counted.ops) <= 6, counted.ops
