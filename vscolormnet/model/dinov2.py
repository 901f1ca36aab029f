"""DINOv2 ViT-S/14 (no registers, LayerScale), vendored so that nothing is fetched from torch.hub.

Follows facebookresearch/dinov2's ``DinoVisionTransformer`` (key names included). The only
entry point ColorMNet needs is ``intermediate_maps``: the normalised outputs of the last
four blocks as NCHW maps. The positional embedding is interpolated the way the official
hub code does it (bicubic, no antialias, ``scale_factor = (n + 0.1) / 37``), which is what
makes the features identical to the official model's.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PATCH = 14
EMBED_DIM = 384
DEPTH = 12
HEADS = 6
POS_GRID = 37          # 518 / 14: the grid the pos-embed was trained on
INTERPOLATE_OFFSET = 0.1


class PatchEmbed(nn.Module):
    """14×14 stride-14 conv, tokens in row-major order: ``B×3×H×W → B×(H/14·W/14)×384``."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(3, EMBED_DIM, PATCH, stride=PATCH)

    def forward(self, x):  # noqa: D102
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention (plain scaled dot product; no xformers)."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(EMBED_DIM, EMBED_DIM * 3)
        self.proj = nn.Linear(EMBED_DIM, EMBED_DIM)

    def forward(self, x):  # noqa: D102
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, HEADS, c // HEADS).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """fc1 → exact GELU → fc2."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(EMBED_DIM, EMBED_DIM * 4)
        self.fc2 = nn.Linear(EMBED_DIM * 4, EMBED_DIM)

    def forward(self, x):  # noqa: D102
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel residual scale ``gamma``."""

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(EMBED_DIM))

    def forward(self, x):  # noqa: D102
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both branches."""

    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(EMBED_DIM, eps=1e-6)
        self.attn = Attention()
        self.ls1 = LayerScale()
        self.norm2 = nn.LayerNorm(EMBED_DIM, eps=1e-6)
        self.mlp = Mlp()
        self.ls2 = LayerScale()

    def forward(self, x):  # noqa: D102
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoV2Small(nn.Module):
    """ViT-S/14 with the official parameter names (``cls_token``, ``pos_embed``, ``mask_token``, …)."""

    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, EMBED_DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, POS_GRID * POS_GRID + 1, EMBED_DIM))
        self.mask_token = nn.Parameter(torch.zeros(1, EMBED_DIM))  # unused at inference, kept for strict loading
        self.patch_embed = PatchEmbed()
        self.blocks = nn.ModuleList(Block() for _ in range(DEPTH))
        self.norm = nn.LayerNorm(EMBED_DIM, eps=1e-6)

    def interpolated_pos_embed(self, rows: int, cols: int) -> torch.Tensor:
        """Pos-embed for a ``rows×cols`` patch grid: ``1×(1+rows·cols)×384``."""
        pos = self.pos_embed.float()
        if rows == POS_GRID and cols == POS_GRID:
            return pos
        grid = pos[:, 1:].reshape(1, POS_GRID, POS_GRID, EMBED_DIM).permute(0, 3, 1, 2)
        scale = ((rows + INTERPOLATE_OFFSET) / POS_GRID, (cols + INTERPOLATE_OFFSET) / POS_GRID)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)
        grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, EMBED_DIM)
        return torch.cat([pos[:, :1], grid], 1)

    def intermediate_maps(self, x: torch.Tensor, layers=(8, 9, 10, 11)) -> list[torch.Tensor]:
        """Normalised outputs of ``layers`` as ``B×384×H/14×W/14`` maps (cls token dropped)."""
        b, _, h, w = x.shape
        rows, cols = h // PATCH, w // PATCH
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], 1)
        tokens = tokens + self.interpolated_pos_embed(rows, cols).to(tokens.dtype)
        maps = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if i in layers:
                out = self.norm(tokens)[:, 1:]
                maps.append(out.reshape(b, rows, cols, EMBED_DIM).permute(0, 3, 1, 2))
        return maps


def _check_geometry():  # pragma: no cover - documentation of an invariant
    assert math.lcm(PATCH, 16) == 112
