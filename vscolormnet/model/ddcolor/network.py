"""DDColor (ICCV 2023) as plain torch.nn modules: grey RGB in, Lab ab out, at one square size S.

Forward (``DDColor.forward``), shapes for S×S:

- x 1×3×S×S grey RGB in [0, 1] → ImageNet-normalised with the ``mean``/``std`` buffers;
- ``encoder``: four normed ConvNeXt stage outputs at S/4, S/8, S/16, S/32;
- ``decoder.layers``: UNet blocks → 1×512×S/16, 1×512×S/8, 1×256×S/4;
- ``decoder.last_shuf``: 1×256×S×S image features;
- ``decoder.color_decoder``: 100 colour queries · image features → 1×100×S×S;
- ``refine_net``: 1×1 spectral conv on ``cat(queries' output, normalised x)`` (103 channels) → 1×2×S×S
  ab in Lab units (no tanh, no scaling, no clamp).

S must be a multiple of 32 (``check_input_size``): the encoder halves the size five times
(stride 4, then 2, 2, 2), and each UNet block concatenates its ×2 upsampled input with the
next finer encoder feature, and ``refine_net`` the ×4 image features with the input, which
agree in size only then (at S=500 the stage sizes are 125, 62, 31, 15: 2·15 ≠ 31).

State_dict names and order are the official checkpoint's (``tests/data/ddcolor/state_dict_keys_*.tsv``),
so a real checkpoint loads with ``strict=True``.
"""
from __future__ import annotations

import torch
from torch import nn

from .color_decoder import QUERIES, MultiScaleColorDecoder
from .encoder import Encoder
from .names import ARCHITECTURES, model_size
from .pixel_decoder import UNET_WIDTH, SpectralConv2d, last_shuffle, unet_blocks

SIZE_MULTIPLE = 32
DEFAULT_INPUT_SIZE = 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_input_size(size) -> int:
    """``size`` as an int if the network can run at ``size×size`` (a positive multiple of 32); else ``ValueError``."""
    import numbers
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < SIZE_MULTIPLE \
            or size % SIZE_MULTIPLE:
        raise ValueError(f"input size must be a positive multiple of {SIZE_MULTIPLE} (the encoder downsamples by "
                         f"32 and the decoder's shapes must agree), got {size!r}")
    return int(size)


class Decoder(nn.Module):
    """``decoder``: UNet blocks (``layers``), ``last_shuf`` and the ``color_decoder``."""

    def __init__(self, dims: tuple[int, ...]):
        super().__init__()
        self.layers = unet_blocks(dims)
        self.last_shuf = last_shuffle()
        self.color_decoder = MultiScaleColorDecoder((UNET_WIDTH, UNET_WIDTH, UNET_WIDTH // 2))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The four encoder features → 1×100×S×S (one channel per colour query)."""
        out0 = self.layers[0](features[3], features[2])
        out1 = self.layers[1](out0, features[1])
        out2 = self.layers[2](out1, features[0])
        return self.color_decoder([out0, out1, out2], self.last_shuf(out2))


class DDColor(nn.Module):
    """The network; ``size`` ``'tiny'``/``'large'`` or a model name (``'ddcolor-large'``, a hub name).

    Built with random weights: load a checkpoint (``weights/ddcolor_checkpoint.py``) before use.
    """

    def __init__(self, size: str = "large"):
        super().__init__()
        self.size = model_size(size)
        depths, dims = ARCHITECTURES[self.size]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.encoder = Encoder(depths, dims)
        self.decoder = Decoder(dims)
        self.refine_net = nn.Sequential(nn.Sequential(SpectralConv2d(QUERIES + 3, 2, 1, bias=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x 1×3×S×S grey RGB in [0, 1] (S a multiple of 32) → ab 1×2×S×S in Lab units."""
        x = (x - self.mean) / self.std
        out = self.decoder(self.encoder(x))
        return self.refine_net(torch.cat([out, x.to(out.dtype)], dim=1))
