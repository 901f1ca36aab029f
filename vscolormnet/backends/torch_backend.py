"""PyTorch backend: the stage methods of ``ColorMNet`` on CPU or CUDA, fp32 or fp16."""
from __future__ import annotations

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
        self.model = model.to(self.device, self.dtype).eval()

    def _run(self, fn, *args):
        with torch.inference_mode():
            out = fn(*(a.to(self.dtype) for a in args))
        if isinstance(out, tuple):
            return tuple(o.float() for o in out)
        return out.float()

    def encode_key(self, image):  # noqa: D102
        return self._run(self.model.encode_key, image)

    def encode_value(self, image, f16, ab):  # noqa: D102
        return self._run(self.model.encode_value, image, f16, ab)

    def encode_value_deep(self, image, f16, ab, hidden):  # noqa: D102
        return self._run(self.model.encode_value_deep, image, f16, ab, hidden)

    def short_term_attention(self, key, prev_key, prev_value):  # noqa: D102
        return self._run(self.model.short_term_attention, key, prev_key, prev_value)

    def decode(self, f16, f8, f4, readout, hidden):  # noqa: D102
        return self._run(self.model.decode, f16, f8, f4, readout, hidden)

    def decode_update(self, f16, f8, f4, readout, hidden):  # noqa: D102
        return self._run(self.model.decode_update, f16, f8, f4, readout, hidden)

    def close(self) -> None:  # noqa: D102
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
