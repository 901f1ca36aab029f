"""What each runtime needs on this machine, and the exact command that installs what is missing.

Cheap checks only (no weights, no sessions): ``spec.py`` calls them from ``check()`` so that a
missing package or device is a one-line error when ``Colorize`` is called.
"""
from __future__ import annotations

import importlib.util

import torch


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


def ort_problem() -> str | None:
    """Why ONNX Runtime cannot be imported here, or None."""
    if importlib.util.find_spec("onnxruntime") is None:
        return ("backend 'ort' needs onnxruntime: pip install onnxruntime (CPU) or "
                "onnxruntime-gpu (CUDA), not both")
    return None


def trt_problem() -> str | None:
    """Why TensorRT cannot be imported here, or None."""
    if importlib.util.find_spec("tensorrt") is None:
        return ("backend 'trt' needs TensorRT: pip install 'vscolormnet[trt]' on a machine with "
                "an NVIDIA GPU; or use backend='ort' or 'torch'")
    return None
