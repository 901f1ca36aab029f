"""Backend selection: ``torch`` | ``ort`` | ``trt`` | ``auto``."""
from __future__ import annotations

import logging

import torch

from ..weights import load_model, resolve_weights
from .base import Backend

log = logging.getLogger("vscolormnet")
BACKENDS = ("torch", "ort", "trt", "auto")


def create_backend(name: str = "torch", *, weights=None, device="cpu", fp16: bool = False,
                   padded_hw: tuple[int, int] | None = None, device_id: int = 0, **options) -> Backend:
    """Build the named backend for one padded inference size."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    path = resolve_weights(weights)
    if name == "torch":
        from .torch_backend import TorchBackend
        dev = torch.device(device) if device != "cuda" else torch.device("cuda", device_id)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' was asked for but CUDA is not available; use device='cpu'")
        return TorchBackend(load_model(path), dev, fp16)
    raise ValueError(f"backend {name!r} is not available in this build")
