"""PyTorch backend: the stage methods of ``ColorMNet`` on CPU or CUDA, fp32 or fp16."""
from __future__ import annotations

import copy

import torch

from ..model import ColorMNet
from .base import Backend


class TorchBackend(Backend):
    """Runs the stages eagerly; fp16 casts the weights and inputs, outputs come back as float32."""

    name = "torch"

    def __init__(self, model: ColorMNet, device: str | torch.device = "cpu", fp16: bool = False):
        self.device = torch.device(device)
        self.fp16 = bool(fp16)
        self.dtype = torch.float16 if self.fp16 else torch.float32
        if self.device.type != "cpu" or self.fp16:
            model = copy.deepcopy(model)     # the shared CPU fp32 network stays as it is
        self.model = model.to(self.device, self.dtype).eval()

    def _run(self, stage: str, *inputs):
        with torch.inference_mode():
            out = getattr(self.model, stage)(*(a.to(self.device, self.dtype) for a in inputs))
        if isinstance(out, tuple):
            return tuple(o.float() for o in out)
        return out.float()

    def close(self) -> None:  # noqa: D102
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
