"""DDColor's encoder: the official ConvNeXt (T or L) with a LayerNorm on each stage's output.

Why not timm's ConvNeXt: the checkpoint's names are the original ConvNeXt's
(``downsample_layers.i``, ``stages.i.j.{dwconv,norm,pwconv1,pwconv2,gamma}``, ``norm0..3``), not
timm's (``stem``, ``stages.i.blocks.j.conv_dw``, ``mlp.fc1``, …), and DDColor reads its skip
features from the extra per-stage norms, which timm does not have. The module is small enough
to write than to remap.

Shapes for an input 1×3×H×W (H, W multiples of 32; ``dims`` = (96, 192, 384, 768) tiny, (192, 384,
768, 1536) large): stage i runs at stride 4·2^i; ``forward`` returns the four normed stage
outputs ``[1×dims[0]×H/4×W/4, 1×dims[1]×H/8×W/8, 1×dims[2]×H/16×W/16, 1×dims[3]×H/32×W/32]``. As
in the official network (forward hooks), the norms do not feed the next stage: the stage chain
continues from the un-normed tensor. The final ``norm`` (on pooled features) is kept for strict
loading only: its result is unused upstream, so it is not computed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6


class LayerNorm(nn.Module):
    """ConvNeXt's LayerNorm over channels, on N×H×W×C (``channels_first=False``) or N×C×H×W input.

    The official channels-first norm is written out by hand (mean, biased variance, divide); it
    equals ``F.layer_norm`` over the channel axis up to float32 rounding (~1e-7 relative), and
    ``F.layer_norm`` is one kernel, an fp32 op under autocast and one ``LayerNormalization``
    node in ONNX (kept fp32 by the mixed-precision graphs).
    """

    def __init__(self, dim: int, channels_first: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.channels_first = channels_first
        self.dim = int(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not self.channels_first:
            return F.layer_norm(x, (self.dim,), self.weight, self.bias, LN_EPS)
        x = F.layer_norm(x.permute(0, 2, 3, 1), (self.dim,), self.weight, self.bias, LN_EPS)
        return x.permute(0, 3, 1, 2)


class Block(nn.Module):
    """ConvNeXt block: depthwise 7×7 → LayerNorm → Linear 4× → GELU (erf) → Linear → ×gamma, plus the input."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm(dim, channels_first=False)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """The official ConvNeXt layout (state_dict names ``downsample_layers``, ``stages``, ``norm0..3``, ``norm``)."""

    def __init__(self, depths: tuple[int, ...], dims: tuple[int, ...]):
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4), LayerNorm(dims[0], channels_first=True))]
            + [nn.Sequential(LayerNorm(dims[i], channels_first=True), nn.Conv2d(dims[i], dims[i + 1], 2, stride=2))
               for i in range(3)])
        self.stages = nn.ModuleList([nn.Sequential(*[Block(dims[i]) for _ in range(depths[i])]) for i in range(4)])
        for i in range(4):
            self.add_module(f"norm{i}", LayerNorm(dims[i], channels_first=True))
        self.norm = nn.LayerNorm(dims[-1], eps=LN_EPS)   # pooled-feature norm: loaded, never used

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x 1×3×H×W (normalised) → the four normed stage outputs (module docstring)."""
        features = []
        for i in range(4):
            x = self.stages[i](self.downsample_layers[i](x))
            features.append(getattr(self, f"norm{i}")(x))
        return features


class Encoder(nn.Module):
    """``encoder.arch``: the ConvNeXt; ``forward`` returns its four normed stage outputs."""

    def __init__(self, depths: tuple[int, ...], dims: tuple[int, ...]):
        super().__init__()
        self.arch = ConvNeXt(depths, dims)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # noqa: D102
        return self.arch(x)
