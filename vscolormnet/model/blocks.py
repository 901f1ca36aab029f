"""Small building blocks shared by the value encoder and the decoder.

Follows XMem's group modules: tensors with an object axis ``B×O×C×H×W`` (here the two
"objects" are the a and b colour channels) go through convolutions that share weights
across objects by folding O into the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .precision import fp32_island


class GroupConv2d(nn.Conv2d):
    """Conv2d applied to every object of a ``B×O×C×H×W`` tensor with shared weights."""

    def forward(self, g: torch.Tensor) -> torch.Tensor:  # noqa: D102
        b, o = g.shape[:2]
        out = super().forward(g.flatten(0, 1))
        return out.view(b, o, *out.shape[1:])


def group_resize(g: torch.Tensor, scale: float, mode: str) -> torch.Tensor:
    """Resize a ``B×O×C×H×W`` tensor spatially: 'bilinear' up or exact 'area' (average) down."""
    b, o = g.shape[:2]
    x = g.flatten(0, 1)
    if mode == "area":
        k = int(round(1 / scale))
        x = F.avg_pool2d(x, k)
    else:
        x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    return x.view(b, o, *x.shape[1:])


class GroupResBlock(nn.Module):
    """``conv2(relu(conv1(relu(g)))) + skip`` without normalisation; 3×3 conv skip when widths differ."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.downsample = GroupConv2d(in_dim, out_dim, 3, padding=1) if in_dim != out_dim else None
        self.conv1 = GroupConv2d(in_dim, out_dim, 3, padding=1)
        self.conv2 = GroupConv2d(out_dim, out_dim, 3, padding=1)

    def forward(self, g: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.conv2(F.relu(self.conv1(F.relu(g))))
        skip = g if self.downsample is None else self.downsample(g)
        return out + skip


class ChannelGate(nn.Module):
    """CBAM channel attention: a shared MLP on global average and max pools."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Flatten(), nn.Linear(channels, channels // reduction), nn.ReLU(),
            nn.Linear(channels // reduction, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + mx)[:, :, None, None]


class _SpatialConv(nn.Module):
    """Holds the 7×7 conv under the key name ``spatial.conv`` of the checkpoint."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)


class SpatialGate(nn.Module):
    """CBAM spatial attention on the channel-wise [max, mean] map (max first)."""

    def __init__(self):
        super().__init__()
        self.spatial = _SpatialConv()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], 1)
        return x * torch.sigmoid(self.spatial.conv(pooled))


class CBAM(nn.Module):
    """Channel gate, then spatial gate."""

    def __init__(self, channels: int):
        super().__init__()
        self.ChannelGate = ChannelGate(channels)
        self.SpatialGate = SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.SpatialGate(self.ChannelGate(x))


class FeatureFusionBlock(nn.Module):
    """Fuse a per-frame feature ``x: B×Cx×h×w`` into every object of ``g: B×O×Cg×h×w``."""

    def __init__(self, x_in: int, g_in: int, g_mid: int, g_out: int):
        super().__init__()
        self.block1 = GroupResBlock(x_in + g_in, g_mid)
        self.attention = CBAM(g_mid)
        self.block2 = GroupResBlock(g_mid, g_out)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:  # noqa: D102
        b, o = g.shape[:2]
        g = torch.cat([x.unsqueeze(1).expand(-1, o, -1, -1, -1), g], 2)
        g = self.block1(g)
        r = self.attention(g.flatten(0, 1)).view(b, o, *g.shape[2:])
        return self.block2(g + r)


def gated_update(values: torch.Tensor, h: torch.Tensor, hidden_dim: int) -> torch.Tensor:
    """ColorMNet's non-standard GRU: gates ``[forget | update | candidate]``, ``h' = f·h·(1−u) + u·n``."""
    forget = torch.sigmoid(values[:, :, :hidden_dim])
    update = torch.sigmoid(values[:, :, hidden_dim:2 * hidden_dim])
    candidate = torch.tanh(values[:, :, 2 * hidden_dim:])
    return forget * h * (1 - update) + update * candidate


class HiddenReinforcer(nn.Module):
    """Deep update of the hidden state from the value feature (memory frames)."""

    def __init__(self, g_dim: int, hidden_dim: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.transform = GroupConv2d(g_dim + hidden_dim, hidden_dim * 3, 3, padding=1)

    def forward(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return gated_update(self.transform(torch.cat([g, h], 2)), h, self.hidden_dim)


class HiddenUpdater(nn.Module):
    """Normal hidden update from the decoder's three scales (non-memory frames)."""

    def __init__(self, g_dims: tuple[int, int, int], mid_dim: int, hidden_dim: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.g16_conv = GroupConv2d(g_dims[0], mid_dim, 1)
        self.g8_conv = GroupConv2d(g_dims[1], mid_dim, 1)
        self.g4_conv = GroupConv2d(g_dims[2], mid_dim, 1)
        self.transform = GroupConv2d(mid_dim + hidden_dim, hidden_dim * 3, 3, padding=1)

    def forward(self, g16, g8, g4, h):  # noqa: D102
        m = (self.g16_conv(g16) + self.g8_conv(group_resize(g8, 0.5, "area"))
             + self.g4_conv(group_resize(g4, 0.25, "area")))
        return gated_update(self.transform(torch.cat([m, h], 2)), h, self.hidden_dim)


class UpsampleBlock(nn.Module):
    """Upsample ``g`` ×2 and add a 3×3-projected skip feature, then a GroupResBlock."""

    def __init__(self, skip_dim: int, g_up_dim: int, g_out_dim: int):
        super().__init__()
        self.skip_conv = nn.Conv2d(skip_dim, g_up_dim, 3, padding=1)
        self.out_conv = GroupResBlock(g_up_dim, g_out_dim)

    def forward(self, skip: torch.Tensor, g: torch.Tensor) -> torch.Tensor:  # noqa: D102
        skip = self.skip_conv(skip)
        g = group_resize(g, 2.0, "bilinear")
        return self.out_conv(skip.unsqueeze(1) + g)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW map ``B×C×H×W`` (eps 1e-6), as the fusion blocks use it.

    Computed in the official ``LayerNormFunction`` op order (mean, centred square mean,
    ``(x − μ) / sqrt(σ² + eps)``, then ``w·y + b``) so fp32 results are the official ones;
    ``F.layer_norm`` differs by ~1e-6. Statistics are taken in float32 for any input dtype
    (a float16 square overflows above 256); under autocast it is an fp32 island (float32
    out). The ONNX export swaps this ``forward`` for ``F.layer_norm`` (one LayerNormalization
    node, kept fp32 in fp16 graphs).
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    @fp32_island
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        xf = x.float()
        mu = xf.mean(1, keepdim=True)
        var = (xf - mu).pow(2).mean(1, keepdim=True)
        y = (xf - mu) / (var + self.eps).sqrt()
        y = self.weight.float()[:, None, None] * y + self.bias.float()[:, None, None]
        return y.to(x.dtype)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (same parameters and names) that stays float32 under autocast (DINOv2's norms)."""

    forward = fp32_island(nn.LayerNorm.forward)
