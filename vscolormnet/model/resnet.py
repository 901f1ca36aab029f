"""ResNet trunks (torchvision layout and key names, v1.5 strides) used by both encoders."""
from __future__ import annotations

from torch import nn


def _downsample(in_dim: int, out_dim: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_dim, out_dim, 1, stride=stride, bias=False), nn.BatchNorm2d(out_dim))


class BasicBlock(nn.Module):
    """ResNet18 block: 3×3-BN-ReLU-3×3-BN + shortcut, ReLU."""
    expansion = 1

    def __init__(self, in_dim: int, dim: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, dim, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)
        self.downsample = _downsample(in_dim, dim, stride) if stride != 1 or in_dim != dim else None

    def forward(self, x):  # noqa: D102
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


class Bottleneck(nn.Module):
    """ResNet50 block: 1×1 → 3×3 (stride here) → 1×1 (×4), BN after each, + shortcut, ReLU."""
    expansion = 4

    def __init__(self, in_dim: int, dim: int, stride: int = 1):
        super().__init__()
        out_dim = dim * self.expansion
        self.conv1 = nn.Conv2d(in_dim, dim, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim)
        self.conv2 = nn.Conv2d(dim, dim, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)
        self.conv3 = nn.Conv2d(dim, out_dim, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_dim)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_dim, out_dim, stride) if stride != 1 or in_dim != out_dim else None

    def forward(self, x):  # noqa: D102
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


def make_layer(block: type, in_dim: int, dim: int, blocks: int, stride: int) -> nn.Sequential:
    """A ResNet stage of ``blocks`` blocks, the first one carrying the stride."""
    layers = [block(in_dim, dim, stride)]
    layers += [block(dim * block.expansion, dim) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)
