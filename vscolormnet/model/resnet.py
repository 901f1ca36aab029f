"""ResNet trunk stages (torchvision/XMem key names, v1.5 strides) from timm's blocks and stage builder.

``timm.models.resnet.make_blocks`` with ``Bottleneck`` (ResNet50) or ``BasicBlock``
(ResNet18) builds the same stages as XMem's ``model/resnet.py``: stride on the 3×3 conv,
a 1×1-conv + BN ``downsample`` on the first block of a stage, ReLU after the residual add.
Parameter names (``conv1``, ``bn1``, …, ``downsample.0``, ``downsample.1``) equal the
official ones, so no key mapping is needed.
"""
from __future__ import annotations

from timm.models.resnet import BasicBlock, Bottleneck, make_blocks
from torch import nn

__all__ = ["BasicBlock", "Bottleneck", "resnet_stages"]

STAGE_WIDTHS = (64, 128, 256)


def resnet_stages(block: type, repeats: tuple[int, ...], inplanes: int = 64) -> list[nn.Sequential]:
    """The first ``len(repeats)`` ResNet stages (strides 1, 2, 2) after the stem.

    ``B×inplanes×H/4×W/4`` → stage outputs at 1/4, 1/8, 1/16 with ``width·block.expansion`` channels.
    """
    stages, _ = make_blocks((block,) * len(repeats), STAGE_WIDTHS[:len(repeats)], tuple(repeats), inplanes,
                            act_layer=nn.ReLU, norm_layer=nn.BatchNorm2d)
    return [stage for _, stage in stages]
