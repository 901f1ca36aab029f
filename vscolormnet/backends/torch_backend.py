"""PyTorch backend: the stage methods of ``ColorMNet`` on CPU or CUDA, fp32 or fp16/bf16 through autocast.

Reduced precision is ``torch.autocast(device, dtype)`` around each stage call (on CUDA over a
copy whose conv/linear weights are already in that dtype: same results, fewer kernels); the
parts that are unsafe in 16 bits are fp32 islands inside the model (``model/precision.py``).
Stage outputs are float32 whatever runs inside.

TF32 (CUDA only) is process-wide in PyTorch: ``torch.backends.cuda.matmul.fp32_precision`` and
``torch.backends.cudnn.conv.fp32_precision`` (the current API; the legacy ``allow_tf32`` flags
are headed for deprecation, and cuDNN's defaults to *on*). ``Fp32Mode`` sets both for the
duration of each CUDA stage call ('ieee' with ``tf32=False``: exact fp32, 'tf32' with
``tf32=True``) and puts back what was there when no call is in flight. ``math_mode()`` holds the
same mode around a whole ``Propagator.step``, so the memory readout between the stages (torch
matmuls on the device) runs in the backend's mode too, not in whatever mode another thread's
stage call happens to hold. Calls that want the same mode run concurrently, and a thread that
holds a mode may enter it again (the stage calls inside a step); a call that wants the other mode
waits until those in flight finish (so two backends in one process that disagree serialise
against each other, never against themselves). While a call runs, code elsewhere in the process
sees our setting, and PyTorch's legacy getters (``allow_tf32``) may raise its "mix of the legacy
and new APIs" error.
"""
from __future__ import annotations

import contextlib
import copy
import threading
from typing import TYPE_CHECKING

import torch

from ..model import ColorMNet
from ..model.precision import cast_autocast_weights
from .base import Backend

if TYPE_CHECKING:
    from .spec import Torch

AUTOCAST_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


class Fp32Mode:
    """The process-wide CUDA fp32 math mode ('ieee' or 'tf32'), held while stage calls run."""

    def __init__(self):
        self._cond = threading.Condition()
        self._mode: str | None = None      # the mode set while calls are in flight
        self._active = 0
        self._waiting = {"ieee": 0, "tf32": 0}
        self._saved: tuple[str, str] | None = None
        self._held = threading.local()     # .mode: what this thread holds (None: nothing)

    @staticmethod
    def current() -> tuple[str, str]:
        """``(cuda matmul, cudnn conv)`` fp32 precision as PyTorch reports them now."""
        return torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision

    @staticmethod
    def _set(matmul: str, conv: str) -> None:
        torch.backends.cuda.matmul.fp32_precision = matmul
        torch.backends.cudnn.conv.fp32_precision = conv

    @contextlib.contextmanager
    def hold(self, tf32: bool):
        """Run the enclosed CUDA work with TF32 allowed (``tf32``) or exact fp32.

        Re-entrant in one thread for the same mode (it is already set: no wait, which could deadlock
        behind a waiting call of the other mode); the other mode inside it is a ``RuntimeError``.
        """
        mode = "tf32" if tf32 else "ieee"
        other = "ieee" if tf32 else "tf32"
        held = getattr(self._held, "mode", None)
        if held is not None:
            if held != mode:
                raise RuntimeError(f"fp32 math mode {mode!r} asked for inside {held!r} in the same thread")
            yield
            return
        with self._cond:
            self._waiting[mode] += 1
            # join calls in flight in our mode unless the other mode is waiting (it would starve)
            while self._active and (self._mode != mode or self._waiting[other]):
                self._cond.wait()
            self._waiting[mode] -= 1
            if not self._active:
                self._saved = self.current()
                self._set(mode, mode)
                self._mode = mode
            self._active += 1
        self._held.mode = mode
        try:
            yield
        finally:
            self._held.mode = None
            with self._cond:
                self._active -= 1
                if not self._active:
                    self._set(*self._saved)
                    self._mode = self._saved = None
                    self._cond.notify_all()


FP32_MODE = Fp32Mode()


class TorchBackend(Backend):
    """Runs the stages eagerly; outputs come back as float32 on the spec's device.

    spec: the ``Torch`` dataclass, already checked (``spec.check()``). Its resolved precision:
    'fp32' (the parity reference), 'fp16' (CUDA only) or 'bf16' (CUDA or CPU; on a CPU without
    native bf16 it is emulated and slower than fp32); tf32: allow TF32 for the fp32 matmuls and
    convolutions on CUDA (the fp32 path and the fp32 islands); ignored on the CPU.
    model: the loaded ``ColorMNet`` (CPU fp32, shared; copied only when moved or cast).
    cast_weights: keep the autocast-cast conv/linear weights in the reduced dtype (same results,
    no per-call weight casts: ~120 cast kernels per encode_key on CUDA); None = on CUDA, where the
    network is copied anyway. Off on the CPU by default: the backend shares the loaded fp32
    network there, and a cast copy would add half its size again.
    """

    name = "torch"

    def __init__(self, spec: "Torch", model: ColorMNet, *, cast_weights: bool | None = None):
        self.spec = spec
        self.device = torch.device("cuda", spec.device_id) if spec.device == "cuda" else torch.device("cpu")
        precision = spec.resolved_precision()
        self.precision = precision
        self.tf32 = bool(spec.tf32)
        self.autocast_dtype = AUTOCAST_DTYPES[precision]
        if cast_weights is None:
            cast_weights = self.device.type == "cuda"
        self.cast_weights = bool(cast_weights) and self.autocast_dtype is not None
        if self.device.type != "cpu" or self.cast_weights:
            model = copy.deepcopy(model)     # the shared CPU fp32 network stays as it is
        self.model = model.to(self.device).eval()
        if self.cast_weights:
            cast_autocast_weights(self.model, self.autocast_dtype)

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def math_mode(self):
        """CUDA: hold the backend's fp32 math mode (``Fp32Mode``); the CPU has no process-wide mode."""
        return FP32_MODE.hold(self.tf32) if self.device.type == "cuda" else contextlib.nullcontext()

    def _run(self, stage: str, *inputs):
        inputs = tuple(a.to(self.device, torch.float32) for a in inputs)
        with torch.inference_mode(), self.math_mode(), self._autocast():
            out = getattr(self.model, stage)(*inputs)
        if isinstance(out, tuple):
            return tuple(o.float() for o in out)
        return out.float()

    def encode_key_batch(self, images):
        """images N×3×Hp×Wp → the six ``encode_key`` outputs with a leading N, in one batched call.

        Equal to N single-frame calls up to kernel summation order (~1e-6 in fp32 on the CPU), so
        callers keep a frame's batch composition fixed (see ``Backend.encode_key_batch``).
        """
        return self._run("encode_key", images)

    def describe(self) -> str:  # noqa: D102
        extra = ", tf32" if self.tf32 and self.device.type == "cuda" else ""
        return f"{self.name} on {self.device} ({self.precision}{extra})"

    def close(self) -> None:  # noqa: D102
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
