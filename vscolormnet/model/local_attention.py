"""Short-term local attention (ColorMNet's ``LocalGatedPropagation``) without the correlation extension.

Each query pixel attends to a 15×15 window (displacements −7…7) of the most recent memory
frame. Instead of the official dense ``hw×hw`` scatter, the window is walked as 225 shifted
views of the zero-padded key and value maps, so memory is O(hw·225) and the graph exports
to ONNX with plain slicing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_DIS = 7
WINDOW = 2 * MAX_DIS + 1          # 15
OFFSETS = WINDOW * WINDOW         # 225, index p = (dy+7)·15 + (dx+7)
MASK_PENALTY_FP32 = 1e8


class DepthwiseConv(nn.Module):
    """Depthwise 5×5 conv, no bias (key name ``dw_conv.conv``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 5, padding=2, groups=channels, bias=False)

    def forward(self, x):  # noqa: D102
        return self.conv(x)


class LocalAttention(nn.Module):
    """``q, k: B×64×h×w``, ``v: B×2×512×h×w`` → ``B×2×512×h×w`` (added to the memory readout)."""

    def __init__(self, key_dim: int = 64, value_dim: int = 1024):
        super().__init__()
        self.temperature = key_dim ** 0.5
        self.relative_emb_k = nn.Conv2d(key_dim, OFFSETS, 1)
        self.dw_conv = DepthwiseConv(value_dim)
        self.projection = nn.Linear(value_dim, value_dim)

    @staticmethod
    def _windows(x: torch.Tensor):
        """Yield the 225 shifted ``B×C×h×w`` views of ``x`` (zero outside the frame), p in order."""
        h, w = x.shape[-2:]
        padded = F.pad(x, (MAX_DIS, MAX_DIS, MAX_DIS, MAX_DIS))
        for dy in range(WINDOW):
            for dx in range(WINDOW):
                yield padded[:, :, dy:dy + h, dx:dx + w]

    @staticmethod
    def outside_mask(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
        """``1×225×h×w``: 1 where the displaced position falls outside the frame."""
        ones = torch.ones(1, 1, h, w, device=device, dtype=dtype)
        return 1 - torch.cat(list(LocalAttention._windows(ones)), 1)

    def attention_weights(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Softmax over the window: ``B×225×h×w``."""
        h, w = q.shape[-2:]
        rel = self.relative_emb_k(q)
        qs = q / self.temperature
        corr = torch.cat([(qs * kw).sum(1, keepdim=True) for kw in self._windows(k)], 1)
        penalty = MASK_PENALTY_FP32 if q.dtype == torch.float32 else 1e4
        logits = corr + rel - penalty * self.outside_mask(h, w, q.device, q.dtype)
        return torch.softmax(logits, dim=1)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # noqa: D102
        b, o, c, h, w = v.shape
        weights = self.attention_weights(q, k)
        agg = None
        for p, vw in enumerate(self._windows(v.reshape(b, o * c, h, w))):
            term = weights[:, p:p + 1] * vw
            agg = term if agg is None else agg + term
        out = self.dw_conv(agg)
        out = self.projection(out.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return out.reshape(b, o, c, h, w)
