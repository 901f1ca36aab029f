"""DDColor's multi-scale colour decoder: 100 colour queries refined against the three UNet scales.

A Mask2Former-style transformer decoder, post-norm, dropout 0: per layer i, cross-attention to
scale ``i % 3`` (memory = ``input_proj`` of that UNet output + ``level_embed``; keys get DETR's
sine position embedding, values do not), then self-attention among the queries, then an FFN;
each as ``x = LayerNorm(x + branch(x))``. Queries are ``query_feat`` with ``query_embed`` added
to q (and k in self-attention). The refined queries, through ``decoder_norm`` and the
``color_embed`` MLP, are dotted with the image features: one channel per query.

Shapes (batch-first here; the official code is sequence-first, the arithmetic is the same):
scales ``[1×512×S/16², 1×512×S/8², 1×256×S/4²]`` and image features 1×256×S×S → 1×100×S×S.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

HIDDEN, HEADS, FFN_DIM, QUERIES, LAYERS, SCALES = 256, 8, 2048, 100, 9, 3
NORM_EPS = 1e-5


def sine_position_embedding(h: int, w: int, device=None, dim: int = HIDDEN, temperature: float = 10000.0
                            ) -> torch.Tensor:
    """DETR's normalised sine embedding of an h×w grid without padding → (h·w)×dim float32.

    Row/column indices 1…n normalised by (n + 1e-6), times 2π; per axis ``dim/2`` features as
    (sin, cos) pairs with frequencies ``temperature^(2⌊k/2⌋/(dim/2))``; channels ``cat(y, x)``.
    """
    feats = dim // 2
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, h + 1, dtype=torch.float32, device=device) / (h + eps) * scale
    x = torch.arange(1, w + 1, dtype=torch.float32, device=device) / (w + eps) * scale
    k = torch.arange(feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / feats)

    def encode(v):   # n → n×feats, interleaved (sin, cos)
        p = v[:, None] / dim_t
        return torch.stack((p[:, 0::2].sin(), p[:, 1::2].cos()), dim=2).flatten(1)
    pos_y = encode(y)[:, None, :].expand(h, w, feats)
    pos_x = encode(x)[None, :, :].expand(h, w, feats)
    return torch.cat((pos_y, pos_x), dim=2).reshape(h * w, dim)


class Attention(nn.Module):
    """``nn.MultiheadAttention``'s parameters (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) and arithmetic,
    batch-first: q 1×Q×C, k and v 1×N×C → 1×Q×C."""

    def __init__(self, dim: int = HIDDEN, heads: int = HEADS):
        super().__init__()
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        self.heads = heads

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # noqa: D102
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        b, nq, c = q.shape
        d = c // self.heads
        q = F.linear(q, wq, bq).view(b, nq, self.heads, d).transpose(1, 2)          # b×h×Q×d
        k = F.linear(k, wk, bk).view(b, -1, self.heads, d).permute(0, 2, 3, 1)      # b×h×d×N
        v = F.linear(v, wv, bv).view(b, -1, self.heads, d).transpose(1, 2)          # b×h×N×d
        attn = torch.softmax(torch.matmul(q * (1.0 / math.sqrt(d)), k), dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, nq, c)
        return self.out_proj(out)


class CrossAttentionLayer(nn.Module):
    """``x = norm(x + attn(q=x+query_pos, k=memory+pos, v=memory))``."""

    def __init__(self):
        super().__init__()
        self.multihead_attn = Attention()
        self.norm = nn.LayerNorm(HIDDEN, eps=NORM_EPS)

    def forward(self, x, memory, pos, query_pos):  # noqa: D102
        return self.norm(x + self.multihead_attn(x + query_pos, memory + pos, memory))


class SelfAttentionLayer(nn.Module):
    """``x = norm(x + attn(q=k=x+query_pos, v=x))``."""

    def __init__(self):
        super().__init__()
        self.self_attn = Attention()
        self.norm = nn.LayerNorm(HIDDEN, eps=NORM_EPS)

    def forward(self, x, query_pos):  # noqa: D102
        qk = x + query_pos
        return self.norm(x + self.self_attn(qk, qk, x))


class FFNLayer(nn.Module):
    """``x = norm(x + linear2(relu(linear1(x))))``."""

    def __init__(self):
        super().__init__()
        self.linear1 = nn.Linear(HIDDEN, FFN_DIM)
        self.linear2 = nn.Linear(FFN_DIM, HIDDEN)
        self.norm = nn.LayerNorm(HIDDEN, eps=NORM_EPS)

    def forward(self, x):  # noqa: D102
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class MLP(nn.Module):
    """``color_embed``: Linear layers with ReLU between them (not after the last)."""

    def __init__(self, dims: tuple[int, ...]):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])

    def forward(self, x):  # noqa: D102
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class MultiScaleColorDecoder(nn.Module):
    """``decoder.color_decoder`` (children registered in the checkpoint's key order)."""

    def __init__(self, in_channels: tuple[int, ...] = (512, 512, 256)):
        super().__init__()
        self.query_feat = nn.Embedding(QUERIES, HIDDEN)
        self.query_embed = nn.Embedding(QUERIES, HIDDEN)
        self.level_embed = nn.Embedding(SCALES, HIDDEN)
        self.input_proj = nn.ModuleList([nn.Conv2d(c, HIDDEN, 1) for c in in_channels])
        self.transformer_self_attention_layers = nn.ModuleList([SelfAttentionLayer() for _ in range(LAYERS)])
        self.transformer_cross_attention_layers = nn.ModuleList([CrossAttentionLayer() for _ in range(LAYERS)])
        self.transformer_ffn_layers = nn.ModuleList([FFNLayer() for _ in range(LAYERS)])
        self.decoder_norm = nn.LayerNorm(HIDDEN, eps=NORM_EPS)
        self.color_embed = MLP((HIDDEN, HIDDEN, HIDDEN, HIDDEN))

    def forward(self, scales: list[torch.Tensor], image_features: torch.Tensor) -> torch.Tensor:
        """scales (module docstring), image_features 1×256×S×S → 1×100×S×S."""
        memory, pos = [], []
        for i, f in enumerate(scales):
            h, w = int(f.shape[-2]), int(f.shape[-1])     # static: the traced graph gets constants
            pos.append(sine_position_embedding(h, w, f.device)[None])
            memory.append(self.input_proj[i](f).flatten(2).transpose(1, 2) + self.level_embed.weight[i])
        b = image_features.shape[0]
        query_pos = self.query_embed.weight[None].expand(b, -1, -1)
        x = self.query_feat.weight[None].expand(b, -1, -1)
        for i in range(LAYERS):
            level = i % SCALES
            x = self.transformer_cross_attention_layers[i](x, memory[level], pos[level], query_pos)
            x = self.transformer_self_attention_layers[i](x, query_pos)
            x = self.transformer_ffn_layers[i](x)
        colors = self.color_embed(self.decoder_norm(x))                           # 1×Q×256
        return torch.matmul(colors, image_features.flatten(2)).view(b, QUERIES, *image_features.shape[-2:])
