"""The stage interface every backend implements.

All tensors crossing this interface are float32 torch tensors on ``backend.device``;
a backend may compute in fp16 inside. Shapes (``h = Hp/16``):

- ``encode_key(image 1×3×Hp×Wp)`` → key 1×64×h×w, shrinkage 1×1×h×w, selection 1×64×h×w,
  f16 1×1024×h×w, f8 1×512×2h×2w, f4 1×256×4h×4w
- ``encode_value(image, f16, ab 1×2×Hp×Wp)`` → value 1×2×512×h×w
- ``encode_value_deep(image, f16, ab, hidden 1×2×64×h×w)`` → value, hidden
- ``short_term_attention(key, prev_key, prev_value)`` → 1×2×512×h×w
- ``decode(f16, f8, f4, readout, hidden)`` → ab' 1×2×Hp×Wp
- ``decode_update(f16, f8, f4, readout, hidden)`` → ab', hidden
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import torch

STAGES = ("encode_key", "encode_value", "encode_value_deep", "short_term_attention", "decode",
          "decode_update")


class StageTimes:
    """Accumulated wall time per named stage (synchronising CUDA when asked to)."""

    def __init__(self, sync_cuda: bool = False):
        self.total = defaultdict(float)
        self.calls = defaultdict(int)
        self.sync_cuda = sync_cuda
        self.enabled = False

    @contextmanager
    def measure(self, name: str):
        """Time the enclosed block under ``name`` (no-op unless enabled)."""
        if not self.enabled:
            yield
            return
        if self.sync_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.sync_cuda:
                torch.cuda.synchronize()
            self.total[name] += time.perf_counter() - t0
            self.calls[name] += 1


class Backend:
    """Base class: subclasses implement the six stage methods for one padded size."""

    name = "base"
    device = torch.device("cpu")
    fp16 = False

    def encode_key(self, image):  # pragma: no cover - interface
        raise NotImplementedError

    def encode_value(self, image, f16, ab):  # pragma: no cover - interface
        raise NotImplementedError

    def encode_value_deep(self, image, f16, ab, hidden):  # pragma: no cover - interface
        raise NotImplementedError

    def short_term_attention(self, key, prev_key, prev_value):  # pragma: no cover - interface
        raise NotImplementedError

    def decode(self, f16, f8, f4, readout, hidden):  # pragma: no cover - interface
        raise NotImplementedError

    def decode_update(self, f16, f8, f4, readout, hidden):  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:
        """One line for logs."""
        return f"{self.name} on {self.device} ({'fp16' if self.fp16 else 'fp32'})"

    def close(self) -> None:
        """Release device resources."""


class GraphBackend(Backend):
    """A backend that runs one static graph per stage (ONNX Runtime, TensorRT).

    Subclasses set ``padded_hw`` and implement ``_run(stage, *inputs)``, returning one tensor or
    a tuple in the stage's output order.
    """

    padded_hw: tuple[int, int] = (0, 0)

    def _run(self, stage: str, *inputs):  # pragma: no cover - interface
        raise NotImplementedError

    def encode_key(self, image):  # noqa: D102
        return self._run("encode_key", image)

    def encode_value(self, image, f16, ab):  # noqa: D102
        return self._run("encode_value", image, f16, ab)

    def encode_value_deep(self, image, f16, ab, hidden):  # noqa: D102
        return self._run("encode_value_deep", image, f16, ab, hidden)

    def short_term_attention(self, key, prev_key, prev_value):  # noqa: D102
        return self._run("short_term_attention", key, prev_key, prev_value)

    def decode(self, f16, f8, f4, readout, hidden):  # noqa: D102
        return self._run("decode", f16, f8, f4, readout, hidden)

    def decode_update(self, f16, f8, f4, readout, hidden):  # noqa: D102
        return self._run("decode_update", f16, f8, f4, readout, hidden)

    def describe(self) -> str:  # noqa: D102
        hp, wp = self.padded_hw
        return f"{self.name} on {self.device} ({'fp16' if self.fp16 else 'fp32'}, {wp}x{hp})"
