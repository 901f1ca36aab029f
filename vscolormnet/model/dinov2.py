"""DINOv2 ViT-S/14 (no registers, LayerScale) from timm's building blocks; nothing is downloaded.

The patch embedding and the twelve transformer blocks are timm's (``timm.layers.PatchEmbed``,
``timm.models.vision_transformer.Block`` with its ``Attention``, ``Mlp`` and ``LayerScale``);
their parameter names equal facebookresearch/dinov2's (``patch_embed.proj``,
``blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}``), so the
official checkpoint loads strictly without renaming. Two parts stay our own because timm
cannot reproduce the official numbers there:

- the positional-embedding interpolation (``interpolated_pos_embed``): DINOv2 resizes the
  37×37 grid bicubically with ``scale_factor = (n + 0.1) / 37`` and no antialias, while
  timm's ``resample_abs_pos_embed`` resizes to an explicit ``size`` (other sampling
  coordinates);
- the intermediate-layer read-out (``intermediate_maps``): DINOv2's
  ``get_intermediate_layers(n=[8..11], reshape=True, norm=True)`` semantics (final norm
  on each taken block, cls dropped, NCHW maps), which timm's ``VisionTransformer`` wraps
  in a class with other parameter names and a size-bound pos-embed.

Attention kernel: the pinned DINOv2 (b8931f7) ``MemEffAttention`` without xFormers falls
back to ``Attention.forward``, which calls ``F.scaled_dot_product_attention(q, k, v)`` on
the fused-qkv ``reshape(B,N,3,H,D)`` views — exactly timm's ``fused_attn`` path (same views,
same call). ``FUSED_ATTN`` pins that choice on every attention module, independent of
timm's global ``set_fused_attn``/``TIMM_FUSED_ATTN``/exportable settings. (The explicit
``q·scale @ kᵀ`` form of older DINOv2 / timm's unfused path moves encode_key by up to ~1e-5.)

Reduced precision: ``Attention`` is timm's with its core (q·kᵀ, softmax, ·v) split out as an
fp32 island, and the LayerNorms are ``blocks.LayerNorm`` (fp32 islands too); qkv, proj and
the MLP follow autocast. Without autocast the ops are timm's, in timm's order.
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Attention as TimmAttention
from timm.models.vision_transformer import Block
from torch import nn

from .blocks import LayerNorm
from .precision import fp32_island

PATCH = 14
EMBED_DIM = 384
DEPTH = 12
HEADS = 6
MLP_RATIO = 4.0
LN_EPS = 1e-6
POS_GRID = 37          # 518 / 14: the grid the pos-embed was trained on
INTERPOLATE_OFFSET = 0.1
FUSED_ATTN = True      # official: F.scaled_dot_product_attention (see the module docstring)


class Attention(TimmAttention):
    """timm's ``Attention`` (same parameters, same ops) with the core an fp32 island under autocast.

    ``B×N×384 → B×N×384``; only the plain configuration DINOv2 uses (no gate, no masks, eval).
    """

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:  # noqa: D102
        if self.gate is not None or attn_mask is not None or is_causal:
            raise NotImplementedError("DINOv2 attention: no gate, mask or causal attention")
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = self.core(self.q_norm(q), self.k_norm(k), v)
        x = self.norm(x.transpose(1, 2).reshape(b, n, self.attn_dim))
        return self.proj_drop(self.proj(x))

    @fp32_island
    def core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``q, k, v: B×heads×N×64`` → ``softmax(q·kᵀ/8)·v`` (fused SDPA or timm's explicit form)."""
        if self.fused_attn:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        return self.attn_drop(attn.softmax(dim=-1)) @ v


def make_block() -> Block:
    """One DINOv2 block: ``B×N×384 → B×N×384``; LayerNorm eps 1e-6, exact GELU, LayerScale, qkv bias."""
    block = Block(EMBED_DIM, HEADS, mlp_ratio=MLP_RATIO, qkv_bias=True, proj_bias=True, init_values=1.0,
                  act_layer=nn.GELU, norm_layer=partial(LayerNorm, eps=LN_EPS), attn_layer=Attention)
    pin_attention_kernel(block, FUSED_ATTN)
    return block


def pin_attention_kernel(module: nn.Module, enable: bool) -> None:
    """Pin the attention kernel on every timm attention module below ``module`` (per instance)."""
    for m in module.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = bool(enable)


class DinoV2Small(nn.Module):
    """ViT-S/14 with the official parameter names (``cls_token``, ``pos_embed``, ``mask_token``, …)."""

    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, EMBED_DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, POS_GRID * POS_GRID + 1, EMBED_DIM))
        self.mask_token = nn.Parameter(torch.zeros(1, EMBED_DIM))  # unused at inference, kept for strict loading
        # img_size=None: any multiple of 14, no size assertions (keeps the ONNX trace free of them)
        self.patch_embed = PatchEmbed(img_size=None, patch_size=PATCH, in_chans=3, embed_dim=EMBED_DIM)
        self.blocks = nn.ModuleList(make_block() for _ in range(DEPTH))
        self.norm = LayerNorm(EMBED_DIM, eps=LN_EPS)

    def interpolated_pos_embed(self, rows: int, cols: int) -> torch.Tensor:
        """Pos-embed for a ``rows×cols`` patch grid: ``1×(1+rows·cols)×384`` float32.

        Our own (not timm's) so that the sampling follows DINOv2's ``scale_factor`` call; the
        ONNX export replaces this method by a constant for its size (``graphs.trace.traceable``).
        """
        pos = self.pos_embed.float()
        if rows == POS_GRID and cols == POS_GRID:
            return pos
        grid = pos[:, 1:].reshape(1, POS_GRID, POS_GRID, EMBED_DIM).permute(0, 3, 1, 2)
        scale = ((rows + INTERPOLATE_OFFSET) / POS_GRID, (cols + INTERPOLATE_OFFSET) / POS_GRID)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)
        grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, EMBED_DIM)
        return torch.cat([pos[:, :1], grid], 1)

    def intermediate_maps(self, x: torch.Tensor, layers=(8, 9, 10, 11)) -> list[torch.Tensor]:
        """``x B×3×H×W`` (H, W multiples of 14) → normalised outputs of ``layers`` as
        ``B×384×H/14×W/14`` maps (cls token dropped), in the order of ``layers``."""
        b, _, h, w = x.shape
        rows, cols = h // PATCH, w // PATCH
        tokens = self.patch_embed(x)                                    # B×(rows·cols)×384
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], 1)
        tokens = tokens + self.interpolated_pos_embed(rows, cols).to(tokens.dtype)
        maps = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if i in layers:
                out = self.norm(tokens)[:, 1:]
                # contiguous NCHW as in DINOv2: a channels-last view would make the next 1×1 conv
                # pick another kernel (another summation order, ~1e-5 further down)
                maps.append(out.reshape(b, rows, cols, EMBED_DIM).permute(0, 3, 1, 2).contiguous())
        return maps


def _check_geometry():  # pragma: no cover - documentation of an invariant
    assert math.lcm(PATCH, 16) == 112
