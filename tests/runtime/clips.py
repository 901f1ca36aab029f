"""Shared clip for the session and key run-ahead tests: 30 synthetic frames, two cuts, two references.

Everything runs a real ``Propagator`` over ``SyntheticBackend`` (no network), with a memory
configuration small enough that working-memory consolidation, long-term usage counting and
obsolete removal all happen within the clip. The reference for every comparison is a plain
in-order ``Propagator.step`` loop; results must be bit-identical (``torch.equal``).
"""
from __future__ import annotations

import torch
from synthetic_backend import SyntheticBackend, synthetic_frame

from vscolormnet.backends.base import Backend
from vscolormnet.runtime.config import MemoryConfig
from vscolormnet.runtime.propagator import Propagator, Reference
from vscolormnet.runtime.session import ClipSession
from vscolormnet.runtime.shots import ShotPlan

N = 30
SIZE = 64                       # padded input 64×64 → 4×4 = 16 memory elements per frame
REF_FRAME = 17                  # a reference that is the colour version of clip frame 17
CUTS = (12, 22)                 # 12 is also a snapshot frame at interval 4
CONFIG = MemoryConfig(mem_every=2, max_mid_term_frames=4, min_mid_term_frames=2, num_prototypes=8,
                      max_long_term_elements=30, top_k=30)
FRAMES = [synthetic_frame(t, SIZE) for t in range(N)]


def _ab(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.5 * torch.tanh(torch.randn(1, 2, SIZE, SIZE, generator=g))


REFERENCES = [Reference(synthetic_frame(-9, SIZE), _ab(1), frame=None),
              Reference(synthetic_frame(REF_FRAME, SIZE), _ab(2), frame=REF_FRAME)]


def make_propagator(backend: Backend | None = None, anchors=()) -> Propagator:
    """Scene-change marks start shots (``scene_reset``); ``anchors``: cuts known up front (the plan)."""
    plan = ShotPlan(N, tuple(sorted({int(a) for a in anchors if 0 < a < N}))) if len(anchors) else None
    return Propagator(backend or SyntheticBackend(), CONFIG, REFERENCES, count_long_term_usage=True, plan=plan,
                      scene_reset=True)


def counters(res):
    return (res.is_memory_frame, res.is_reference_frame, res.memory_reset, res.work_frames, res.long_elements)


def plain_run(cuts=()):
    """The in-order reference: ``Propagator.step`` frame after frame."""
    prop = make_propagator()
    state = prop.new_state()
    return [prop.step(state, FRAMES[t], end=(t == N - 1), scene_change=t in cuts) for t in range(N)]


_PLAIN: dict[tuple, list] = {}


def expected(cuts=()):
    cuts = tuple(cuts)
    if cuts not in _PLAIN:
        _PLAIN[cuts] = plain_run(cuts)
    return _PLAIN[cuts]


class Images:
    """The session's ``FrameSource``: frame n, scene-change marks at ``cuts``, optional one-shot failures;
    counts calls (``calls``, ``seen``) and records every request (``blocks``)."""

    def __init__(self, cuts=(), fail_at: dict | None = None):
        self.num_frames = N
        self.cuts = set(cuts)
        self.fail_at = dict(fail_at or {})
        self.calls = 0
        self.seen = set()
        self.blocks: list[list[int]] = []

    def frames(self, ns):
        self.blocks.append(list(ns))
        return [self(n) for n in ns]

    def __call__(self, n):
        self.calls += 1
        self.seen.add(n)
        exc = self.fail_at.pop(n, None)
        if exc is not None:
            raise exc
        return FRAMES[n], n in self.cuts


def make_session(backend=None, cuts=(), images=None, anchors=(), **kw):
    """A session over ``Images(cuts)`` (marks) with ``anchors`` known up front."""
    kw.setdefault("snapshot_interval", 4)
    backend = backend or SyntheticBackend()
    session = ClipSession(make_propagator(backend, anchors), images or Images(cuts), **kw)
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
