"""Backends as data: one frozen keyword-only dataclass per backend, with ``check()`` and ``create()``.

``Colorize(..., backend=ORT(device="cuda", fp16=True))`` or ``backend="ort"``: a string is
turned into the matching dataclass by ``from_name``. ``check()`` is cheap (no weights, no
graphs) and runs when ``Colorize`` is called, so a missing package, missing CUDA or a missing
execution provider is a ``BackendError`` naming the field before any work starts;
``create(network, weights, padded_hw)`` builds the runtime ``Backend``. ``cache_key()`` says
which settings make two backends different (``shared.py`` shares equal ones); settings that
only change where files live are part of it too, since they may hold different graphs.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from typing import ClassVar, Union

import torch

from ..util.errors import BackendError  # noqa: F401  (defined with the other user errors)
from .availability import cuda_problem, ort_cuda_problem, ort_problem, trt_problem

log = logging.getLogger("vscolormnet")
BACKEND_NAMES = ("torch", "ort", "trt", "auto")
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")




def _need_int(value, name: str, low: int = 0, allow_none: bool = False):
    import numbers
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < low:
        extra = " or None" if allow_none else ""
        raise BackendError(f"{name} must be an integer ≥ {low}{extra}, got {value!r}")
    return int(value)


def _need_bool(value, name: str) -> bool:
    import numpy as np
    if not isinstance(value, (bool, np.bool_)):
        raise BackendError(f"{name} must be True or False, got {value!r}")
    return bool(value)


PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def _check_precision(spec, allowed: tuple[str, ...]) -> None:
    """``precision`` is one of ``PRECISIONS`` (or None) and agrees with ``fp16``; ``allowed`` on this backend."""
    _need_bool(spec.fp16, "fp16")
    _need_bool(spec.tf32, "tf32")
    p = spec.precision
    if p is not None and p not in PRECISIONS:
        raise BackendError(f"precision must be one of {', '.join(map(repr, PRECISIONS))} or None, got {p!r}")
    if spec.fp16 and p not in (None, "fp16"):
        raise BackendError(f"give fp16=True or precision={p!r}, not both")
    resolved = spec.resolved_precision()
    if resolved not in allowed:
        raise BackendError(f"precision={p or resolved!r} is not available for backend {spec.name!r} on "
                           f"{getattr(spec, 'device', 'cuda')!r} (it runs {', '.join(allowed)})")


BF16_MIN_CAPABILITY = (8, 0)     # Ampere: below it torch runs bf16 emulated, slower than fp16


def bf16_cuda_problem(device_id: int) -> str | None:
    """Why bf16 should not run on CUDA device ``device_id`` (compute capability below 8.0), or None."""
    major, minor = torch.cuda.get_device_capability(device_id)
    if (major, minor) >= BF16_MIN_CAPABILITY:
        return None
    return (f"precision='bf16' needs an NVIDIA GPU with compute capability 8.0 or newer (Ampere+); "
            f"this GPU is {major}.{minor}: use 'fp16'")


def _resolve(precision, fp16: bool, device: str) -> str:
    """A concrete precision: None follows ``fp16``; ``'auto'`` is fp16 on CUDA, bf16 on a CPU with native bf16."""
    if precision is None:
        return "fp16" if fp16 else "fp32"
    if precision == "auto":
        if device == "cuda":
            return "fp16"
        from ..util.cpuinfo import native_bf16
        return "bf16" if native_bf16() else "fp32"
    return precision


@dataclass(frozen=True, kw_only=True)
class Torch:
    """PyTorch, eager (CPU or CUDA).

    device:     ``'cpu'`` or ``'cuda'``.
    device_id:  CUDA device index (ignored on the CPU).
    fp16:       half precision on CUDA (same as ``precision='fp16'``; refused on the CPU).
    precision:  ``'fp32'`` (default, the parity reference), ``'fp16'`` (CUDA), ``'bf16'`` (a GPU
                with compute capability ≥ 8.0, below it emulated and refused; or a CPU, fast only
                with native bf16) or ``'auto'`` (fp16 on CUDA; bf16 on a CPU with native bf16,
                else fp32). Reduced precision keeps the key projection, the attention cores, every
                LayerNorm and the local-attention body in fp32.
    tf32:       allow TF32 for fp32 matmuls and convolutions on CUDA (faster, ~1e-3 relative
                error; off for parity checks). Process-wide in PyTorch: held around each step
                and restored when none is in flight.
    """

    name: ClassVar[str] = "torch"
    needs_size: ClassVar[bool] = False
    device: str = "cpu"
    device_id: int = 0
    fp16: bool = False
    precision: str | None = None
    tf32: bool = False

    def resolved_precision(self) -> str:
        """``'fp32'``, ``'fp16'`` or ``'bf16'`` (``precision``/``fp16`` resolved for this device)."""
        return _resolve(self.precision, bool(self.fp16), self.device)

    def check(self) -> None:
        """Raise ``BackendError`` if this backend cannot run here (cheap: loads nothing)."""
        if self.device not in ("cpu", "cuda"):
            raise BackendError(f"device must be 'cpu' or 'cuda' for backend 'torch', got {self.device!r}")
        _need_int(self.device_id, "device_id")
        if self.device == "cpu" and (self.fp16 is True or self.precision == "fp16"):
            given = "fp16=True" if self.fp16 is True else "precision='fp16'"
            raise BackendError(f"{given} needs device='cuda' (on the CPU use precision='bf16' or 'auto')")
        _check_precision(self, ("fp32", "fp16", "bf16") if self.device == "cuda" else ("fp32", "bf16"))
        if self.device == "cuda" and (why := cuda_problem(self.device_id)):
            raise BackendError(f"device='cuda': {why}; use device='cpu'")
        if self.device == "cuda" and self.resolved_precision() == "bf16" and (why := bf16_cuda_problem(self.device_id)):
            raise BackendError(why)

    def cache_key(self) -> tuple:
        """What makes two torch backends different (the size is not: one model serves all sizes)."""
        return ("torch", self.device, self.device_id if self.device == "cuda" else 0, self.resolved_precision(),
                bool(self.tf32))

    def create(self, network, weights, padded_hw):
        """The runtime backend over an already loaded ``network`` (``ColorMNet``, CPU fp32)."""
        from .torch_backend import TorchBackend
        return TorchBackend(self, network)


@dataclass(frozen=True, kw_only=True)
class ORT:
    """ONNX Runtime: six static-shape graphs per padded size, exported and checked on first use.

    device, device_id, fp16:  as for ``Torch``; ``'cuda'`` needs onnxruntime-gpu. fp16 runs the
                         mixed-precision graphs.
    precision:           ``'fp32'``, ``'fp16'`` or ``'auto'`` (fp16 on CUDA, fp32 on the CPU).
    tf32:                allow TF32 in the CUDA execution provider (off: exact fp32).
    graph_optimization:  ``'disable'``, ``'basic'``, ``'extended'`` or ``'all'``.
    num_threads:         intra-op threads (CPU); None = ``torch.get_num_threads()``.
    spin_wait:           let idle ORT threads spin between runs (CPU).
    onnx_dir:            ONNX cache folder; None = ``$VSCOLORMNET_ONNX_DIR`` or the user cache.
    """

    name: ClassVar[str] = "ort"
    needs_size: ClassVar[bool] = True
    device: str = "cpu"
    device_id: int = 0
    fp16: bool = False
    precision: str | None = None
    tf32: bool = False
    graph_optimization: str = "all"
    num_threads: int | None = None
    spin_wait: bool = False
    onnx_dir: str | os.PathLike | None = None

    def resolved_precision(self) -> str:  # noqa: D102 - as Torch
        p = _resolve(self.precision, bool(self.fp16), self.device)
        return "fp32" if (self.precision == "auto" and p == "bf16") else p

    def check(self) -> None:  # noqa: D102 - as Torch.check
        if self.device not in ("cpu", "cuda"):
            raise BackendError(f"device must be 'cpu' or 'cuda' for backend 'ort', got {self.device!r}")
        _need_int(self.device_id, "device_id")
        _check_precision(self, ("fp32", "fp16"))
        _need_bool(self.spin_wait, "spin_wait")
        _need_int(self.num_threads, "num_threads", low=1, allow_none=True)
        if self.graph_optimization not in OPTIMIZATION_LEVELS:
            raise BackendError(f"graph_optimization must be one of {', '.join(OPTIMIZATION_LEVELS)}, "
                               f"got {self.graph_optimization!r}")
        if self.onnx_dir is not None and not isinstance(self.onnx_dir, (str, os.PathLike)):
            raise BackendError(f"onnx_dir must be a folder path or None, got {self.onnx_dir!r}")
        if why := ort_problem(self.device):
            raise BackendError(why)
        if self.device == "cuda":
            for why in (ort_cuda_problem(), cuda_problem(self.device_id)):
                if why:
                    raise BackendError(f"backend 'ort' with device='cuda': {why}; use device='cpu'")

    def cache_key(self) -> tuple:  # noqa: D102
        return ("ort", self.device, self.device_id if self.device == "cuda" else 0, self.resolved_precision(),
                bool(self.tf32), self.graph_optimization, self.num_threads, bool(self.spin_wait),
                str(self.onnx_dir or ""))

    def create(self, network, weights, padded_hw):  # noqa: D102
        from .ort_backend import OrtBackend
        return OrtBackend(self, weights, padded_hw, net=network)


@dataclass(frozen=True, kw_only=True)
class TRT:
    """TensorRT: six engines per padded size, built from the checked ONNX graphs and cached.

    device_id:           CUDA device index.
    fp16:                build from the mixed-precision graphs.
    precision:           ``'fp32'``, ``'fp16'`` or ``'auto'`` (fp16).
    tf32:                let TensorRT use TF32 in fp32 layers (off: exact fp32).
    engine_dir:          engine cache folder; None = ``$VSCOLORMNET_ENGINE_DIR`` or the user cache.
    onnx_dir:            ONNX cache folder (as for ``ORT``).
    workspace_mib:       builder workspace limit in MiB; None = TensorRT's default.
    optimization_level:  builder optimisation level 0…5.
    timing_cache:        keep a timing cache beside the engines (faster rebuilds).
    """

    name: ClassVar[str] = "trt"
    needs_size: ClassVar[bool] = True
    device: ClassVar[str] = "cuda"
    device_id: int = 0
    fp16: bool = False
    precision: str | None = None
    tf32: bool = False
    engine_dir: str | os.PathLike | None = None
    onnx_dir: str | os.PathLike | None = None
    workspace_mib: int | None = None
    optimization_level: int = 3
    timing_cache: bool = True

    def resolved_precision(self) -> str:  # noqa: D102 - as Torch
        return _resolve(self.precision, bool(self.fp16), "cuda")

    def check(self) -> None:  # noqa: D102 - as Torch.check
        _need_int(self.device_id, "device_id")
        _check_precision(self, ("fp32", "fp16"))
        _need_bool(self.timing_cache, "timing_cache")
        _need_int(self.workspace_mib, "workspace_mib", low=1, allow_none=True)
        if _need_int(self.optimization_level, "optimization_level") > 5:
            raise BackendError(f"optimization_level must be 0…5, got {self.optimization_level!r}")
        for name in ("engine_dir", "onnx_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise BackendError(f"{name} must be a folder path or None, got {value!r}")
        if why := trt_problem():
            raise BackendError(why)
        if why := cuda_problem(self.device_id):
            raise BackendError(f"backend 'trt': {why}")

    def cache_key(self) -> tuple:  # noqa: D102
        return ("trt", self.device_id, self.resolved_precision(), bool(self.tf32), str(self.engine_dir or ""),
                str(self.onnx_dir or ""), self.workspace_mib, self.optimization_level, bool(self.timing_cache))

    def create(self, network, weights, padded_hw):  # noqa: D102
        from .trt_backend import TrtBackend
        return TrtBackend(self, weights, padded_hw, net=network)


@dataclass(frozen=True, kw_only=True)
class Auto:
    """The fastest backend that works here: TensorRT, ONNX Runtime on CUDA, PyTorch on CUDA, PyTorch on CPU.

    device:     ``'auto'`` (any), ``'cuda'`` (GPU candidates only) or ``'cpu'`` (PyTorch on the CPU).
    device_id, fp16, precision, tf32:  passed to every candidate (fp16 is dropped on the CPU,
                bf16 on ONNX Runtime and TensorRT: those candidates run fp16 on CUDA).
    ort, trt:   settings for those candidates (``ORT(...)``, ``TRT(...)``); None = defaults.
    """

    name: ClassVar[str] = "auto"
    needs_size: ClassVar[bool] = True
    device: str = "auto"
    device_id: int = 0
    fp16: bool = False
    precision: str | None = None
    tf32: bool = False
    ort: ORT | None = None
    trt: TRT | None = None

    def candidates(self) -> tuple[list, list[tuple[str, str]]]:
        """``(usable specs in order, [(candidate, why skipped), ...])``, after each candidate's ``check()``."""
        from dataclasses import replace
        gpu = self.device in ("auto", "cuda")
        cpu = self.device in ("auto", "cpu")
        gpu_precision = "fp16" if self.precision == "bf16" else self.precision
        common = dict(device_id=self.device_id, fp16=self.fp16, tf32=self.tf32)
        trt = replace(self.trt or TRT(), precision=gpu_precision, **common)
        ort = replace(self.ort or ORT(), device="cuda", precision=gpu_precision, **common)
        cpu_precision = self.precision if self.precision in ("auto", "bf16") else None
        wanted = [("trt", trt, gpu), ("ort-cuda", ort, gpu),
                  ("torch-cuda", Torch(device="cuda", precision=self.precision, **common), gpu),
                  ("torch-cpu", Torch(device="cpu", precision=cpu_precision), cpu)]
        usable, skipped = [], []
        for label, spec, allowed in wanted:
            if not allowed:
                skipped.append((label, f"device={self.device!r} was asked for"))
                continue
            try:
                spec.check()
            except BackendError as e:
                skipped.append((label, str(e)))
                continue
            usable.append(spec)
        return usable, skipped

    def check(self) -> None:  # noqa: D102 - as Torch.check
        if self.device not in ("auto", "cpu", "cuda"):
            raise BackendError(f"device must be 'auto', 'cpu' or 'cuda' for backend 'auto', got {self.device!r}")
        _need_int(self.device_id, "device_id")
        _need_bool(self.fp16, "fp16")
        _need_bool(self.tf32, "tf32")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise BackendError(f"precision must be one of {', '.join(map(repr, PRECISIONS))} or None, "
                               f"got {self.precision!r}")
        if self.ort is not None and not isinstance(self.ort, ORT):
            raise BackendError(f"ort must be an ORT(...) or None, got {self.ort!r}")
        if self.trt is not None and not isinstance(self.trt, TRT):
            raise BackendError(f"trt must be a TRT(...) or None, got {self.trt!r}")
        usable, skipped = self.candidates()
        if not usable:
            raise BackendError("backend 'auto': no backend can run here: "
                               + "; ".join(f"{c}: {why}" for c, why in skipped))

    def cache_key(self) -> tuple:  # noqa: D102 - resolved to a candidate before use
        raise TypeError("Auto is resolved to a concrete backend before it is cached")

    def create(self, network, weights, padded_hw):  # noqa: D102
        raise TypeError("Auto is resolved to a concrete backend before it is created")


BackendSpec = Union[Torch, ORT, TRT, Auto]
SPECS = {"torch": Torch, "ort": ORT, "trt": TRT, "auto": Auto}


def from_name(backend, *, device=None, device_id=None, fp16=None, precision=None, tf32=None) -> BackendSpec:
    """A spec from ``Colorize``'s/the commands' ``backend`` (a name or a spec) and the shared options.

    With a spec object, device/device_id/fp16/precision/tf32 must be None (they belong inside the object).
    """
    given = {k: v for k, v in (("device", device), ("device_id", device_id), ("fp16", fp16),
                               ("precision", precision), ("tf32", tf32)) if v is not None}
    if isinstance(backend, tuple(SPECS.values())):
        if given:
            raise BackendError(f"give {', '.join(given)} inside the backend object "
                               f"({type(backend).__name__}(...)), not beside it")
        return backend
    if not isinstance(backend, str) or backend.lower() not in SPECS:
        raise BackendError(f"backend must be one of {', '.join(repr(n) for n in BACKEND_NAMES)} or a backend "
                           f"object (Torch/ORT/TRT/Auto), got {backend!r}")
    cls = SPECS[backend.lower()]
    if cls is TRT and given.get("device", "cuda") != "cuda":
        raise BackendError(f"backend 'trt' runs on device='cuda' only, got device={given['device']!r}")
    if cls is TRT:
        given.pop("device", None)
    if cls is not Auto and given.get("device") == "auto":
        given["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in given.items() if k in known})


def spec_fields(spec: BackendSpec) -> dict:
    """The spec as plain JSON data (name + every field, nested specs too): what a film run's key records."""
    from dataclasses import asdict

    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v if v is None or isinstance(v, (bool, int, float, str)) else str(v)
    return {"name": spec.name, **plain(asdict(spec))}
