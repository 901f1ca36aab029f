"""DDColor's pixel decoder: three wide UNet blocks and a ×4 pixel shuffle, with spectral-norm convolutions.

Shapes for an input of S×S (``dims`` the encoder's stage widths):

- ``layers.0``: up 1×dims[3]×S/32 + skip 1×dims[2]×S/16 → 1×512×S/16×S/16
- ``layers.1``: up 1×512×S/16 + skip 1×dims[1]×S/8 → 1×512×S/8×S/8
- ``layers.2``: up 1×512×S/8 + skip 1×dims[0]×S/4 → 1×256×S/4×S/4
- ``last_shuf``: 1×256×S/4 → 1×256×S×S (the "image features" the colour queries are read against)

Spectral norm as in eval mode: the checkpoint holds ``weight_orig``, ``weight_u`` and ``weight_v``;
the convolution uses ``weight_orig / sigma`` with ``sigma = u · (W v)`` from the *stored* vectors
(no power iteration at inference, so the result does not drift from run to run).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..precision import fp32_island, to_fp32

UNET_WIDTH = 512      # ``nf``: the first two blocks' width; the last is half of it


class SpectralConv2d(nn.Module):
    """A convolution whose weight is ``weight_orig / sigma`` (state_dict: [bias,] weight_orig, weight_u, weight_v)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool):
        super().__init__()
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_channels))
        else:
            self.register_parameter("bias", None)
        self.weight_orig = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.normal_(self.weight_orig, std=1 / math.sqrt(in_channels * kernel_size * kernel_size))
        self.register_buffer("weight_u", F.normalize(torch.randn(out_channels), dim=0))
        self.register_buffer("weight_v", F.normalize(torch.randn(in_channels * kernel_size * kernel_size), dim=0))
        self.padding = kernel_size // 2

    def weight(self) -> torch.Tensor:
        """``weight_orig / (u · W v)``, computed in fp32 also under autocast (the conv then casts it)."""
        with fp32_island(self.weight_orig.device.type):
            w = to_fp32(self.weight_orig)
            sigma = torch.dot(to_fp32(self.weight_u), torch.mv(w.flatten(1), to_fp32(self.weight_v)))
            return w / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.conv2d(x, self.weight(), self.bias, padding=self.padding)


class PixelShuffleUp(nn.Module):
    """``PixelShuffle_ICNR``: 1×1 spectral conv (→ BatchNorm, or with a bias) → ReLU → pixel shuffle → blur.

    The blur is ``ReplicationPad2d((1, 0, 1, 0))`` then ``AvgPool2d(2, stride=1)``: it keeps the size
    and removes the checkerboard of the shuffle. 1×cin×h×w → 1×cout×(scale·h)×(scale·w).
    """

    def __init__(self, in_channels: int, out_channels: int, scale: int, batch_norm: bool):
        super().__init__()
        width = out_channels * scale * scale
        layers = [SpectralConv2d(in_channels, width, 1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(width))
        self.conv = nn.Sequential(*layers)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = F.pixel_shuffle(F.relu(self.conv(x), inplace=True), self.scale)   # in place: a fresh tensor
        return F.avg_pool2d(F.pad(x, (1, 0, 1, 0), mode="replicate"), 2, stride=1)


class UnetBlock(nn.Module):
    """``UnetBlockWide``: up = ``PixelShuffleUp``(×2), skip = BatchNorm(skip feature); ReLU(cat) → 3×3 spectral
    conv (no bias) → ReLU → BatchNorm. up 1×cin×h×w + skip 1×cskip×2h×2w → 1×cout×2h×2w."""

    def __init__(self, up_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.shuf = PixelShuffleUp(up_channels, out_channels, 2, batch_norm=True)
        self.bn = nn.BatchNorm2d(skip_channels)
        self.conv = nn.Sequential(SpectralConv2d(out_channels + skip_channels, out_channels, 3, bias=False),
                                  nn.ReLU(inplace=True), nn.BatchNorm2d(out_channels))

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.conv(F.relu(torch.cat([self.shuf(up), self.bn(skip)], dim=1), inplace=True))


def unet_blocks(dims: tuple[int, ...]) -> nn.ModuleList:
    """``decoder.layers``: blocks 0, 1, 2 consuming the skips of stages 2, 1, 0 (widths 512, 512, 256)."""
    widths = (UNET_WIDTH, UNET_WIDTH, UNET_WIDTH // 2)
    ins = (dims[3], *widths[:2])
    return nn.ModuleList([UnetBlock(ins[i], dims[2 - i], widths[i]) for i in range(3)])


def last_shuffle() -> PixelShuffleUp:
    """``decoder.last_shuf``: 1×256×S/4 → 1×256×S×S image features (spectral conv with bias, no BatchNorm)."""
    width = UNET_WIDTH // 2
    return PixelShuffleUp(width, width, 4, batch_norm=False)
