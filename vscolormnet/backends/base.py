"""The runtime side of a backend: the six stage calls, written once.

Every backend implements ``_run(stage, *inputs)`` for the stage names of ``stages.STAGES``;
the six named methods here only forward to it, so the model, ONNX Runtime and TensorRT all
serve the same contract (names and shapes in ``vscolormnet/stages.py``). Tensors crossing it
are float32 torch tensors on ``backend.device``; a backend may compute in fp16 inside.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext

import torch

from ..model.stages import STAGES  # noqa: F401  (re-exported)


class StageTimes:
    """Accumulated wall time per named stage (synchronising CUDA when asked to); thread-safe, so
    helper threads (``frames``' reader and writer) add to the same table as the network's.

    device: the CUDA device to synchronise (None: the current one, which is device 0 in a thread
    that never chose one). ``Propagator`` sets it to its backend's, so a backend on ``cuda:1`` is
    not timed by waiting for device 0.
    """

    def __init__(self, sync_cuda: bool = False, device: torch.device | None = None):
        self.total = defaultdict(float)
        self.calls = defaultdict(int)
        self.sync_cuda = sync_cuda
        self.device = device
        self.enabled = False
        self._lock = threading.Lock()

    def _sync(self) -> None:
        if self.sync_cuda:
            torch.cuda.synchronize(self.device)

    @contextmanager
    def measure(self, name: str, sync: bool = True):
        """Time the enclosed block under ``name`` (no-op unless enabled). ``sync=False``: never wait for
        the GPU (host-side work in a helper thread, which must not stall on the network's kernels)."""
        if not self.enabled:
            yield
            return
        if sync:
            self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if sync:
                self._sync()
            elapsed = time.perf_counter() - t0
            with self._lock:
                self.total[name] += elapsed
                self.calls[name] += 1


class Backend:
    """One loaded network for one device and precision (and, for graph backends, one padded size).

    Shared by every ``Colorize`` node with the same weights and settings (``shared.py``), so
    ``_run`` must be safe to call from several threads at once.
    """

    name = "base"
    device = torch.device("cpu")
    precision = "fp32"                          # 'fp32' | 'fp16' | 'bf16': what the network computes in
    padded_hw: tuple[int, int] | None = None     # graph backends: the one size they run

    @property
    def fp16(self) -> bool:
        """True when the network runs in half precision (fp16)."""
        return self.precision == "fp16"

    @fp16.setter
    def fp16(self, value: bool) -> None:
        self.precision = "fp16" if value else "fp32"

    def math_mode(self):
        """A context held around a whole ``Propagator.step`` for process-wide math settings the host code
        between the stages must share (torch CUDA: the TF32 mode); nothing for the others."""
        return nullcontext()

    def _run(self, stage: str, *inputs: torch.Tensor):  # pragma: no cover - interface
        """Run ``stage`` on ``inputs`` (in ``stages.INPUTS[stage]`` order); one tensor or a tuple."""
        raise NotImplementedError

    def encode_key(self, image):
        """image 1×3×Hp×Wp → key, shrinkage, selection, f16, f8, f4."""
        return self._run("encode_key", image)

    def encode_key_batch(self, images):
        """images N×3×Hp×Wp → the six ``encode_key`` outputs with a leading N (frame i's at index i).

        Graph backends run batch-1 graphs, one frame after the other; the torch backend runs one
        batched call. Callers keep the batch composition fixed per frame (``keyahead``), so a
        frame's result never depends on the request order.
        """
        outs = [self.encode_key(images[i:i + 1]) for i in range(images.shape[0])]
        return tuple(torch.cat(parts, 0) for parts in zip(*outs))

    def encode_value(self, image, f16, ab):
        """→ value 1×2×512×h×w."""
        return self._run("encode_value", image, f16, ab)

    def encode_value_deep(self, image, f16, ab, hidden):
        """→ value, hidden (deep hidden-state update)."""
        return self._run("encode_value_deep", image, f16, ab, hidden)

    def short_term_attention(self, key, prev_key, prev_value):
        """→ attention readout 1×2×512×h×w."""
        return self._run("short_term_attention", key, prev_key, prev_value)

    def decode(self, f16, f8, f4, readout, hidden):
        """→ ab' 1×2×Hp×Wp."""
        return self._run("decode", f16, f8, f4, readout, hidden)

    def decode_update(self, f16, f8, f4, readout, hidden):
        """→ ab', hidden."""
        return self._run("decode_update", f16, f8, f4, readout, hidden)

    def describe(self) -> str:
        """One line for logs."""
        size = f", {self.padded_hw[1]}x{self.padded_hw[0]}" if self.padded_hw else ""
        return f"{self.name} on {self.device} ({self.precision}{size})"

    def close(self) -> None:
        """Release device resources."""
