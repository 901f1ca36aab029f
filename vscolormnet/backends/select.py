"""Backend selection: ``torch`` | ``ort`` | ``trt`` | ``auto``.

``auto`` tries, in order, TensorRT (needs ``import tensorrt`` and CUDA), ONNX Runtime with
``CUDAExecutionProvider``, PyTorch on CUDA, and PyTorch on the CPU; it logs to stderr (logger
``vscolormnet``) which one it took and why each earlier one was skipped. With
``device='cpu'`` it only considers the CPU; with ``device='cuda'`` only the GPU candidates;
``device='auto'`` (or None) considers all.
"""
from __future__ import annotations

import importlib.util
import logging

import torch

from ..weights import load_model, resolve_weights
from .base import Backend

log = logging.getLogger("vscolormnet")
BACKENDS = ("torch", "ort", "trt", "auto")
AUTO_ORDER = ("trt", "ort-cuda", "torch-cuda", "torch-cpu")


def _torch_device(device, device_id: int) -> torch.device:
    if device is None or device == "auto":
        device = "cpu"
    dev = torch.device(device) if device != "cuda" else torch.device("cuda", device_id)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but CUDA is not available; use device='cpu'")
    return dev


def _need_padded(name: str, padded_hw):
    if padded_hw is None:
        raise ValueError(f"backend {name!r} runs static graphs and needs padded_hw=(Hp, Wp)")
    return padded_hw


def create_backend(name: str = "torch", *, weights=None, device="cpu", fp16: bool = False,
                   padded_hw: tuple[int, int] | None = None, device_id: int = 0, **options) -> Backend:
    """Build the named backend for one padded inference size.

    name:       ``torch``, ``ort``, ``trt`` or ``auto``.
    weights:    checkpoint path; None = the default downloaded checkpoint.
    device:     ``cpu`` or ``cuda`` (``auto`` also accepts ``'auto'``/None = any).
    fp16:       half precision (torch casts the model; ort/trt use the mixed-precision graphs).
    padded_hw:  ``(Hp, Wp)``; required by ort and trt (static graphs).
    options:    fields of ``OrtOptions`` (ort) or ``TrtOptions`` (trt); both sets for auto.
    """
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    path = resolve_weights(weights)
    if name == "auto":
        return _create_auto(path, device=device, fp16=fp16, padded_hw=padded_hw, device_id=device_id, **options)
    if name == "torch":
        if options:
            raise ValueError(f"backend 'torch' takes no options, got {', '.join(sorted(options))}")
        from .torch_backend import TorchBackend
        return TorchBackend(load_model(path), _torch_device(device, device_id), fp16)
    if name == "ort":
        from .ort_backend import OrtBackend, OrtOptions
        return OrtBackend(path, _need_padded(name, padded_hw), device=_torch_device(device, device_id),
                          device_id=device_id, fp16=fp16, options=OrtOptions(**options))
    from .trt_backend import TrtBackend, TrtOptions
    return TrtBackend(path, _need_padded(name, padded_hw), device_id=device_id, fp16=fp16,
                      options=TrtOptions(**options))


def _split_options(options: dict) -> tuple[dict, dict]:
    from dataclasses import fields

    from .ort_backend import OrtOptions
    from .trt_backend import TrtOptions
    ort_names = {f.name for f in fields(OrtOptions)}
    trt_names = {f.name for f in fields(TrtOptions)}
    unknown = set(options) - ort_names - trt_names
    if unknown:
        raise ValueError(f"unknown backend options: {', '.join(sorted(unknown))}")
    return ({k: v for k, v in options.items() if k in ort_names},
            {k: v for k, v in options.items() if k in trt_names})


def _create_auto(path, *, device, fp16, padded_hw, device_id, **options) -> Backend:
    if device not in (None, "auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda' for backend 'auto', got {device!r}")
    ort_options, trt_options = _split_options(options)
    want_gpu = device in (None, "auto", "cuda")
    want_cpu = device in (None, "auto", "cpu")
    skipped: list[tuple[str, str]] = []
    cuda_ok = torch.cuda.is_available()
    net = None

    def model():
        nonlocal net
        if net is None:
            net = load_model(path)
        return net

    for candidate in AUTO_ORDER:
        on_gpu = candidate != "torch-cpu"
        if on_gpu and not want_gpu:
            skipped.append((candidate, f"device={device!r} was asked for"))
            continue
        if not on_gpu and not want_cpu:
            skipped.append((candidate, f"device={device!r} was asked for"))
            continue
        try:
            if candidate == "trt":
                if importlib.util.find_spec("tensorrt") is None:
                    raise _Skip("tensorrt is not installed")
                if not cuda_ok:
                    raise _Skip("CUDA is not available")
                if padded_hw is None:
                    raise _Skip("no padded_hw given (static engines need the size)")
                from .trt_backend import TrtBackend, TrtOptions
                backend = TrtBackend(path, padded_hw, device_id=device_id, fp16=fp16, options=TrtOptions(**trt_options))
            elif candidate == "ort-cuda":
                from .ort_backend import OrtBackend, OrtOptions, cuda_provider_available
                if not cuda_provider_available():
                    raise _Skip("onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu is not installed)")
                if not cuda_ok:
                    raise _Skip("CUDA is not available")
                if padded_hw is None:
                    raise _Skip("no padded_hw given (static graphs need the size)")
                backend = OrtBackend(path, padded_hw, device="cuda", device_id=device_id, fp16=fp16,
                                     options=OrtOptions(**ort_options), net=model())
            elif candidate == "torch-cuda":
                if not cuda_ok:
                    raise _Skip("torch.cuda.is_available() is False")
                from .torch_backend import TorchBackend
                backend = TorchBackend(model(), torch.device("cuda", device_id), fp16)
            else:
                from .torch_backend import TorchBackend
                if fp16:
                    log.info("backend auto: fp16 is not used on the CPU; running fp32")
                backend = TorchBackend(model(), torch.device("cpu"), False)
        except _Skip as e:
            skipped.append((candidate, str(e)))
            continue
        except Exception as e:  # noqa: BLE001 - a candidate that fails to start is skipped, with the reason
            skipped.append((candidate, f"failed to start: {type(e).__name__}: {e}"))
            continue
        reasons = "; ".join(f"{c}: {why}" for c, why in skipped) or "nothing skipped"
        log.info("backend auto: using %s (%s); skipped %s", candidate, backend.describe(), reasons)
        return backend
    raise ValueError("backend auto: no backend could be started: "
                     + "; ".join(f"{c}: {why}" for c, why in skipped))


class _Skip(Exception):
    """A candidate that does not apply on this machine (not an error)."""
