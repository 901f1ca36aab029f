"""Decoder: memory readout + hidden state + key features → ab logits (and the normal hidden update)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import FeatureFusionBlock, HiddenUpdater, UpsampleBlock


class Decoder(nn.Module):
    """``f16, f8, f4, readout B×2×512×h×w, hidden B×2×64×h×w`` → ``ab' B×2×Hp×Wp`` (tanh), hidden'."""

    def __init__(self, value_dim: int = 512, hidden_dim: int = 64):
        super().__init__()
        self.fuser = FeatureFusionBlock(1024, value_dim + hidden_dim, 512, 512)
        self.hidden_update = HiddenUpdater((512, 256, 256 + 1), 256, hidden_dim)
        self.up_16_8 = UpsampleBlock(512, 512, 256)
        self.up_8_4 = UpsampleBlock(256, 256, 256)
        self.pred = nn.Conv2d(256, 1, 3, padding=1)

    def forward(self, f16, f8, f4, readout, hidden, update_hidden: bool):  # noqa: D102
        b, o = readout.shape[:2]
        g16 = self.fuser(f16, torch.cat([readout, hidden], 2))
        g8 = self.up_16_8(f8, g16)
        g4 = self.up_8_4(f4, g8)
        logits = self.pred(F.relu(g4.flatten(0, 1)))
        if update_hidden:
            g4 = torch.cat([g4, logits.view(b, o, 1, *logits.shape[-2:])], 2)
            hidden = self.hidden_update(g16, g8, g4, hidden)
        logits = F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False)
        return torch.tanh(logits.view(b, o, *logits.shape[-2:])), hidden

