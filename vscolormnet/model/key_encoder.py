"""Key encoder: ResNet50 stages + DINOv2 features fused at 1/16, 1/8 and 1/4 (ColorMNet's PVGFE).

Key names follow the official ``KeyEncoder_DINOv2_v6``: ``conv1``, ``bn1``, ``res2``,
``layer2``, ``layer3``, ``network2.{backbone,conv3,bn3}`` and ``fuse1..3``. The ResNet50
stages and the DINOv2 blocks are timm's (``resnet.py``, ``dinov2.py``); the stem, the
DINO head, the fusion blocks and the key projection are our own (ColorMNet-specific, timm
has no counterpart), written in the official op order. Under autocast the cross-channel
attention core and the key projection are fp32 islands (``precision.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import LayerNorm2d
from .dinov2 import EMBED_DIM, DinoV2Small
from .precision import fp32_island
from .resnet import Bottleneck, resnet_stages

DINO_LAYERS = (8, 9, 10, 11)
DINO_DIM = EMBED_DIM * len(DINO_LAYERS)  # 1536


class DinoFeatures(nn.Module):
    """DINOv2 last-four-block maps → 1×1 conv + BN + ReLU → resized to 1/16: ``B×1536×Hp/16×Wp/16``."""

    def __init__(self):
        super().__init__()
        self.backbone = DinoV2Small()
        self.conv3 = nn.Conv2d(DINO_DIM, DINO_DIM, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(DINO_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        feats = torch.cat(self.backbone.intermediate_maps(x, DINO_LAYERS), 1)
        feats = F.relu(self.bn3(self.conv3(feats)))
        return F.interpolate(feats, size=(x.shape[2] // 16, x.shape[3] // 16), mode="bilinear",
                             align_corners=False)


class CrossChannelAttention(nn.Module):
    """Transposed (channel) attention: Q from the DINO side, K/V from the ResNet side, 8 heads."""

    def __init__(self, dim: int, heads: int = 8):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.to_q = nn.Conv2d(dim, dim * 2, 1)
        self.to_q_dw = nn.Conv2d(dim * 2, dim * 2, 3, padding=1, groups=dim * 2)
        self.to_k = nn.Conv2d(dim, dim * 2, 1)
        self.to_k_dw = nn.Conv2d(dim * 2, dim * 2, 3, padding=1, groups=dim * 2)
        self.to_v = nn.Conv2d(dim, dim * 2, 1)
        self.to_v_dw = nn.Conv2d(dim * 2, dim * 2, 3, padding=1, groups=dim * 2)
        self.to_out = nn.Sequential(nn.Conv2d(dim * 2, dim, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # noqa: D102
        b, _, h, w = x.shape
        q = self.to_q_dw(self.to_q(x)).reshape(b, self.heads, -1, h * w)
        k = self.to_k_dw(self.to_k(y)).reshape(b, self.heads, -1, h * w)
        v = self.to_v_dw(self.to_v(y)).reshape(b, self.heads, -1, h * w)
        return self.to_out(self.core(q, k, v).reshape(b, -1, h, w))

    @fp32_island
    def core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``q, k, v: B×heads×C'×hw`` → ``softmax(q̂·k̂ᵀ·T)·v`` (q̂, k̂ L2-normalised over hw); fp32 island."""
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return attn @ v


class Fuse(nn.Module):
    """One fusion scale: residual on the projected DINO feature, ResNet feature as K and V."""

    def __init__(self, out_dim: int):
        super().__init__()
        self.encode_enc = nn.Conv2d(DINO_DIM, out_dim, 3, padding=1)
        self.norm1 = LayerNorm2d(out_dim)
        self.norm2 = LayerNorm2d(out_dim)
        self.crossattn = CrossChannelAttention(out_dim)
        self.norm3 = LayerNorm2d(out_dim)

    def forward(self, dino: torch.Tensor, resnet: torch.Tensor) -> torch.Tensor:  # noqa: D102
        e = self.encode_enc(dino)
        out = self.crossattn(self.norm1(e), self.norm2(resnet)) + e
        return F.relu(self.norm3(out))


class KeyEncoder(nn.Module):
    """``B×3×Hp×Wp`` (normalised L ×3) → ``f16 B×1024×h×w, f8 B×512×2h×2w, f4 B×256×4h×4w``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.res2, self.layer2, self.layer3 = resnet_stages(Bottleneck, (3, 4, 6))   # timm ResNet50 stages 1-3
        self.network2 = DinoFeatures()
        self.fuse1 = Fuse(1024)
        self.fuse2 = Fuse(512)
        self.fuse3 = Fuse(256)

    def forward(self, f: torch.Tensor):  # noqa: D102
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(f))), 3, stride=2, padding=1)
        f4 = self.res2(x)
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        dino = self.network2(f)
        g16 = self.fuse1(dino, f16)
        g8 = self.fuse2(F.interpolate(dino, scale_factor=2, mode="bilinear", align_corners=False), f8)
        g4 = self.fuse3(F.interpolate(dino, scale_factor=4, mode="bilinear", align_corners=False), f4)
        return g16, g8, g4


class KeyProjection(nn.Module):
    """``f16`` → key ``B×64×h×w``, shrinkage ``d²+1`` ``B×1×h×w``, selection ``σ(e)`` ``B×64×h×w``."""

    def __init__(self, in_dim: int = 1024, key_dim: int = 64):
        super().__init__()
        self.key_proj = nn.Conv2d(in_dim, key_dim, 3, padding=1)
        self.d_proj = nn.Conv2d(in_dim, 1, 3, padding=1)
        self.e_proj = nn.Conv2d(in_dim, key_dim, 3, padding=1)

    @fp32_island
    def forward(self, f16: torch.Tensor):  # noqa: D102 - fp32 island: the memory similarity's inputs
        return self.key_proj(f16), self.d_proj(f16) ** 2 + 1, torch.sigmoid(self.e_proj(f16))
