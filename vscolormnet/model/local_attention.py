"""Short-term local attention (ColorMNet's ``LocalGatedPropagation``) without the correlation extension.

Each query pixel attends to a 15×15 window (displacements −7…7) of the most recent memory
frame. Instead of the official dense ``hw×hw`` scatter, the window is walked over shifted
views of the zero-padded key and value maps, so memory is O(hw·225), never O(hw²).

Two formulations of the same maths:

* export (ONNX export or TorchScript tracing): 225 shifted slices, plain ops that TensorRT
  parses; its node names are what the fp16 graph tooling keys on, so it must not change.
* eager: one ``as_strided`` view ``B×C×15×15×h×w`` of the padded map (no copy) and a few
  multiply-and-reduce ops over channel/row chunks, each temporary at most ``_chunk_bytes``
  (64 MiB on GPUs: few large launches; 4 MiB on CPU: the temporary stays in cache). The
  attention body always runs in float32, also under autocast (an ``fp32_island`` of
  ``model/precision.py``: the 1e8 out-of-frame penalty and the 225-term softmax/sum are not safe
  in fp16/bf16); only ``dw_conv`` and the projection may run in reduced precision.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .precision import fp32_island, to_fp32

MAX_DIS = 7
WINDOW = 2 * MAX_DIS + 1          # 15
OFFSETS = WINDOW * WINDOW         # 225, index p = (dy+7)·15 + (dx+7)
MASK_PENALTY_FP32 = 1e8
CHUNK_BYTES_GPU = 64 << 20
CHUNK_BYTES_CPU = 4 << 20


def exporting() -> bool:
    """True while ONNX export or TorchScript tracing runs: the 225-slice graph is used then."""
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def _chunk_bytes(device: torch.device) -> int:
    return CHUNK_BYTES_CPU if device.type == "cpu" else CHUNK_BYTES_GPU


def _chunks(channels: int, h: int, w: int, batch: int, cap: int):
    """``(channel slice, row slice)`` pairs covering ``channels × h`` so that a float32
    ``batch×c×15×15×rows×w`` temporary stays within ``cap`` bytes (at least one channel-row)."""
    per_row = batch * OFFSETS * w * 4
    if per_row * h <= cap:
        step = max(1, cap // (per_row * h))
        for c0 in range(0, channels, step):
            yield slice(c0, min(c0 + step, channels)), slice(0, h)
    else:
        rows = max(1, cap // per_row)
        for c0 in range(channels):
            for y0 in range(0, h, rows):
                yield slice(c0, c0 + 1), slice(y0, min(y0 + rows, h))


def window_view(x: torch.Tensor) -> torch.Tensor:
    """``B×C×h×w`` → ``B×C×15×15×h×w`` view of the zero-padded map: ``[..., dy, dx, y, x]`` is
    ``x[..., y+dy−7, x+dx−7]`` (0 outside the frame). No copy beyond the padding."""
    b, c, h, w = x.shape
    padded = F.pad(x, (MAX_DIS, MAX_DIS, MAX_DIS, MAX_DIS))
    sb, sc, sy, sx = padded.stride()
    return padded.as_strided((b, c, WINDOW, WINDOW, h, w), (sb, sc, sy, sx, sy, sx))


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
        self._penalties: dict[tuple, torch.Tensor] = {}   # (h, w, device) → 1×225×h×w, eager path

    # ---- export formulation (225 slices; unchanged, TensorRT and the fp16 graphs rely on it) ----
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

    def _export_weights(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        h, w = q.shape[-2:]
        rel = self.relative_emb_k(q)
        qs = q / self.temperature
        corr = torch.cat([(qs * kw).sum(1, keepdim=True) for kw in self._windows(k)], 1)
        penalty = MASK_PENALTY_FP32 if q.dtype == torch.float32 else 1e4
        logits = corr + rel - penalty * self.outside_mask(h, w, q.device, q.dtype)
        return torch.softmax(logits, dim=1)

    def _export_forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, o, c, h, w = v.shape
        weights = self._export_weights(q, k)
        agg = None
        for p, vw in enumerate(self._windows(v.reshape(b, o * c, h, w))):
            term = weights[:, p:p + 1] * vw
            agg = term if agg is None else agg + term
        out = self.dw_conv(agg)
        out = self.projection(out.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return out.reshape(b, o, c, h, w)

    # ---- eager formulation (window views, chunked reductions, float32 body) ------------------
    def _penalty(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """``1×225×h×w`` float32 ``1e8 · outside_mask``, built once per frame size and device."""
        key = (h, w, device)
        pen = self._penalties.get(key)
        if pen is None:
            if len(self._penalties) >= 8:          # a long-lived network seeing many sizes
                self._penalties.clear()
            with torch.inference_mode(False):      # a normal tensor: usable in and outside inference mode
                pen = MASK_PENALTY_FP32 * self.outside_mask(h, w, device, torch.float32)
            self._penalties[key] = pen
        return pen

    def _eager_weights(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """float32 ``q, k: B×64×h×w`` → softmax over the window ``B×225×h×w`` (float32)."""
        b, c, h, w = q.shape
        conv = self.relative_emb_k
        rel = F.conv2d(q, conv.weight.float(), conv.bias.float())
        qs = (q / self.temperature)[:, :, None, None]                         # B×64×1×1×h×w
        kw = window_view(k)                                                   # B×64×15×15×h×w
        corr = torch.zeros(b, WINDOW, WINDOW, h, w, device=q.device, dtype=torch.float32)
        for cs, rs in _chunks(c, h, w, b, _chunk_bytes(q.device)):
            corr[..., rs, :] += (qs[:, cs, ..., rs, :] * kw[:, cs, ..., rs, :]).sum(1)
        logits = corr.view(b, OFFSETS, h, w) + rel - self._penalty(h, w, q.device)
        return torch.softmax(logits, dim=1)

    @staticmethod
    def _aggregate(weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``weights B×225×h×w``, ``v B×C×h×w`` (float32) → ``Σ_p weights_p · shift_p(v)``, ``B×C×h×w``."""
        b, c, h, w = v.shape
        wv = weights.view(b, 1, WINDOW, WINDOW, h, w)
        vw = window_view(v)
        out = torch.empty(b, c, h, w, device=v.device, dtype=torch.float32)
        for cs, rs in _chunks(c, h, w, b, _chunk_bytes(v.device)):
            out[:, cs, rs] = (wv[..., rs, :] * vw[:, cs, ..., rs, :]).flatten(2, 3).sum(2)
        return out

    def attention_weights(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Softmax over the window: ``B×225×h×w`` (float32 in eager mode)."""
        if exporting():
            return self._export_weights(q, k)
        with fp32_island(q.device):
            return self._eager_weights(to_fp32(q), to_fp32(k))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if exporting():
            return self._export_forward(q, k, v)
        b, o, c, h, w = v.shape
        with fp32_island(v.device):
            agg = self._aggregate(self._eager_weights(to_fp32(q), to_fp32(k)), to_fp32(v).reshape(b, o * c, h, w))
        # Under autocast the float32 weight keeps agg float32 here and the conv casts it itself;
        # a model converted to fp16 gets fp16.
        out = self.dw_conv(agg.to(self.dw_conv.conv.weight.dtype))
        out = self.projection(out.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return out.reshape(b, o, c, h, w)
