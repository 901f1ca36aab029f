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

import importlib.util
import logging
import os
from dataclasses import dataclass, fields
from typing import ClassVar, Union

import torch

log = logging.getLogger("vscolormnet")
BACKEND_NAMES = ("torch", "ort", "trt", "auto")
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


class BackendError(ValueError):
    """A backend that cannot run here or a bad backend field; the message names the field."""


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


def cuda_problem(device_id: int) -> str | None:
    """Why PyTorch cannot use CUDA device ``device_id`` here, or None if it can."""
    if not torch.cuda.is_available():
        return "CUDA is not available to PyTorch (no NVIDIA GPU or driver, or a CPU-only torch)"
    count = torch.cuda.device_count()
    if device_id >= count:
        return f"device_id={device_id} but only {count} CUDA device(s) are visible"
    return None


def ort_cuda_problem() -> str | None:
    """Why ONNX Runtime cannot run on CUDA here, or None if it can."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed (pip install onnxruntime-gpu on GPU machines)"
    import onnxruntime as ort
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return ("the installed onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu *instead of* "
                "onnxruntime: pip uninstall onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu)")
    return None


@dataclass(frozen=True, kw_only=True)
class Torch:
    """PyTorch, eager (CPU or CUDA).

    device:     ``'cpu'`` or ``'cuda'``.
    device_id:  CUDA device index (ignored on the CPU).
    fp16:       half precision on CUDA (the CPU runs fp32; fp16 there is refused).
    """

    name: ClassVar[str] = "torch"
    needs_size: ClassVar[bool] = False
    device: str = "cpu"
    device_id: int = 0
    fp16: bool = False

    def check(self) -> None:
        """Raise ``BackendError`` if this backend cannot run here (cheap: loads nothing)."""
        if self.device not in ("cpu", "cuda"):
            raise BackendError(f"device must be 'cpu' or 'cuda' for backend 'torch', got {self.device!r}")
        _need_int(self.device_id, "device_id")
        _need_bool(self.fp16, "fp16")
        if self.device == "cuda" and (why := cuda_problem(self.device_id)):
            raise BackendError(f"device='cuda': {why}; use device='cpu'")
        if self.device == "cpu" and self.fp16:
            raise BackendError("fp16=True needs device='cuda' (PyTorch on the CPU runs fp32)")

    def cache_key(self) -> tuple:
        """What makes two torch backends different (the size is not: one model serves all sizes)."""
        return ("torch", self.device, self.device_id if self.device == "cuda" else 0, bool(self.fp16))

    def create(self, network, weights, padded_hw):
        """The runtime backend over an already loaded ``network`` (``ColorMNet``, CPU fp32)."""
        from .torch_backend import TorchBackend
        dev = torch.device("cuda", self.device_id) if self.device == "cuda" else torch.device("cpu")
        return TorchBackend(network, dev, self.fp16)


@dataclass(frozen=True, kw_only=True)
class ORT:
    """ONNX Runtime: six static-shape graphs per padded size, exported and checked on first use.

    device, device_id, fp16:  as for ``Torch``; ``'cuda'`` needs onnxruntime-gpu. fp16 runs the
                         mixed-precision graphs.
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
    graph_optimization: str = "all"
    num_threads: int | None = None
    spin_wait: bool = False
    onnx_dir: str | os.PathLike | None = None

    def check(self) -> None:  # noqa: D102 - as Torch.check
        if self.device not in ("cpu", "cuda"):
            raise BackendError(f"device must be 'cpu' or 'cuda' for backend 'ort', got {self.device!r}")
        _need_int(self.device_id, "device_id")
        _need_bool(self.fp16, "fp16")
        _need_bool(self.spin_wait, "spin_wait")
        _need_int(self.num_threads, "num_threads", low=1, allow_none=True)
        if self.graph_optimization not in OPTIMIZATION_LEVELS:
            raise BackendError(f"graph_optimization must be one of {', '.join(OPTIMIZATION_LEVELS)}, "
                               f"got {self.graph_optimization!r}")
        if self.onnx_dir is not None and not isinstance(self.onnx_dir, (str, os.PathLike)):
            raise BackendError(f"onnx_dir must be a folder path or None, got {self.onnx_dir!r}")
        if importlib.util.find_spec("onnxruntime") is None:
            raise BackendError("backend 'ort' needs onnxruntime: pip install onnxruntime (CPU) or "
                               "onnxruntime-gpu (CUDA), not both")
        if self.device == "cuda":
            for why in (ort_cuda_problem(), cuda_problem(self.device_id)):
                if why:
                    raise BackendError(f"backend 'ort' with device='cuda': {why}; use device='cpu'")

    def cache_key(self) -> tuple:  # noqa: D102
        return ("ort", self.device, self.device_id if self.device == "cuda" else 0, bool(self.fp16),
                self.graph_optimization, self.num_threads, bool(self.spin_wait), str(self.onnx_dir or ""))

    def create(self, network, weights, padded_hw):  # noqa: D102
        from .ort_backend import OrtBackend, OrtOptions
        options = OrtOptions(graph_optimization=self.graph_optimization, num_threads=self.num_threads,
                             spin_wait=self.spin_wait, onnx_dir=self.onnx_dir)
        return OrtBackend(weights, padded_hw, device=self.device, device_id=self.device_id, fp16=self.fp16,
                          options=options, net=network)


@dataclass(frozen=True, kw_only=True)
class TRT:
    """TensorRT: six engines per padded size, built from the checked ONNX graphs and cached.

    device_id:           CUDA device index.
    fp16:                build from the mixed-precision graphs.
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
    engine_dir: str | os.PathLike | None = None
    onnx_dir: str | os.PathLike | None = None
    workspace_mib: int | None = None
    optimization_level: int = 3
    timing_cache: bool = True

    def check(self) -> None:  # noqa: D102 - as Torch.check
        _need_int(self.device_id, "device_id")
        _need_bool(self.fp16, "fp16")
        _need_bool(self.timing_cache, "timing_cache")
        _need_int(self.workspace_mib, "workspace_mib", low=1, allow_none=True)
        if _need_int(self.optimization_level, "optimization_level") > 5:
            raise BackendError(f"optimization_level must be 0…5, got {self.optimization_level!r}")
        for name in ("engine_dir", "onnx_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise BackendError(f"{name} must be a folder path or None, got {value!r}")
        if importlib.util.find_spec("tensorrt") is None:
            raise BackendError("backend 'trt' needs TensorRT: pip install 'vscolormnet[trt]' on a machine with "
                               "an NVIDIA GPU; or use backend='ort' or 'torch'")
        if why := cuda_problem(self.device_id):
            raise BackendError(f"backend 'trt': {why}")

    def cache_key(self) -> tuple:  # noqa: D102
        return ("trt", self.device_id, bool(self.fp16), str(self.engine_dir or ""), str(self.onnx_dir or ""),
                self.workspace_mib, self.optimization_level, bool(self.timing_cache))

    def create(self, network, weights, padded_hw):  # noqa: D102
        from .trt_backend import TrtBackend, TrtOptions
        options = TrtOptions(engine_dir=self.engine_dir, onnx_dir=self.onnx_dir, workspace_mib=self.workspace_mib,
                             optimization_level=self.optimization_level, timing_cache=self.timing_cache)
        return TrtBackend(weights, padded_hw, device_id=self.device_id, fp16=self.fp16, options=options,
                          net=network)


@dataclass(frozen=True, kw_only=True)
class Auto:
    """The fastest backend that works here: TensorRT, ONNX Runtime on CUDA, PyTorch on CUDA, PyTorch on CPU.

    device:     ``'auto'`` (any), ``'cuda'`` (GPU candidates only) or ``'cpu'`` (PyTorch on the CPU).
    device_id, fp16:  passed to every candidate (fp16 is dropped, with a note, on the CPU).
    ort, trt:   settings for those candidates (``ORT(...)``, ``TRT(...)``); None = defaults.
    """

    name: ClassVar[str] = "auto"
    needs_size: ClassVar[bool] = True
    device: str = "auto"
    device_id: int = 0
    fp16: bool = False
    ort: ORT | None = None
    trt: TRT | None = None

    def candidates(self) -> tuple[list, list[tuple[str, str]]]:
        """``(usable specs in order, [(candidate, why skipped), ...])``, after each candidate's ``check()``."""
        from dataclasses import replace
        gpu = self.device in ("auto", "cuda")
        cpu = self.device in ("auto", "cpu")
        trt = replace(self.trt or TRT(), device_id=self.device_id, fp16=self.fp16)
        ort = replace(self.ort or ORT(), device="cuda", device_id=self.device_id, fp16=self.fp16)
        wanted = [("trt", trt, gpu), ("ort-cuda", ort, gpu),
                  ("torch-cuda", Torch(device="cuda", device_id=self.device_id, fp16=self.fp16), gpu),
                  ("torch-cpu", Torch(device="cpu"), cpu)]
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


def from_name(backend, *, device=None, device_id=None, fp16=None) -> BackendSpec:
    """A spec from ``Colorize``'s/the commands' ``backend`` (a name or a spec) and the three shared options.

    With a spec object, device/device_id/fp16 must be None (they belong inside the object).
    """
    given = {k: v for k, v in (("device", device), ("device_id", device_id), ("fp16", fp16)) if v is not None}
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
