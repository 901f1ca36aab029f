"""Value encoder: ResNet18 on ``[L, L, L, own ab channel, other ab channel]`` per colour "object"."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import FeatureFusionBlock, HiddenReinforcer
from .resnet import BasicBlock, resnet_stages


class ValueEncoder(nn.Module):
    """``image B×3×Hp×Wp, f16 B×1024×h×w, ab B×2×Hp×Wp, hidden B×2×64×h×w`` → value ``B×2×512×h×w``."""

    def __init__(self, value_dim: int = 512, hidden_dim: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(5, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1, self.layer2, self.layer3 = resnet_stages(BasicBlock, (2, 2, 2))  # timm ResNet18 stages 1-3
        self.fuser = FeatureFusionBlock(1024, 256, value_dim, value_dim)
        self.hidden_reinforce = HiddenReinforcer(value_dim, hidden_dim)

    def value(self, image: torch.Tensor, f16: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """The memory value; the two objects see ``[L,L,L,a,b]`` and ``[L,L,L,b,a]``."""
        b, o = ab.shape[:2]
        others = ab.flip(1)  # with two objects, "the sum of the other objects" is the other channel
        g = torch.stack([ab, others], 2)
        g = torch.cat([image.unsqueeze(1).expand(-1, o, -1, -1, -1), g], 2).flatten(0, 1)
        g = F.relu(F.max_pool2d(self.bn1(self.conv1(g)), 3, stride=2, padding=1))  # ReLU after maxpool
        g = self.layer3(self.layer2(self.layer1(g)))
        return self.fuser(f16, g.view(b, o, *g.shape[1:]))

    def forward(self, image, f16, ab, hidden, deep_update: bool):  # noqa: D102
        value = self.value(image, f16, ab)
        if deep_update:
            hidden = self.hidden_reinforce(value, hidden)
        return value, hidden
