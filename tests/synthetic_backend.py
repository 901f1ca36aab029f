"""A cheap stand-in for the network (fixed random projections), so the memory policy and the
per-frame step can be exercised over hundreds of frames. Only the network is replaced."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vscolormnet.backends.base import Backend


class SyntheticBackend(Backend):
    """Deterministic features derived from the image; shapes as the real stages."""

    name = "synthetic"

    def __init__(self, seed: int = 0, device="cpu"):
        g = torch.Generator().manual_seed(seed)
        self.device = torch.device(device)
        self.proj_key = torch.randn(64, 3, generator=g).to(self.device)
        self.proj_val = torch.randn(512, 4, generator=g).to(self.device)
        self.calls = {"encode_key": 0, "encode_key_batch": 0}
        self.batch_sizes: list[int] = []

    def encode_key(self, image):  # noqa: D102
        self.calls["encode_key"] += 1
        return self._key(image)

    def encode_key_batch(self, images):
        """Like a real batched kernel, a frame's bits depend on its batch: its size and the frame's place
        in it (a relative 1e-6). Only a fixed batch composition per frame keeps outputs order-independent."""
        self.calls["encode_key_batch"] += 1
        self.batch_sizes.append(images.shape[0])
        outs = [self._key(images[i:i + 1]) for i in range(images.shape[0])]
        outs = [tuple(o * (1 + 1e-6 * (len(outs) + 0.5 * i)) for o in out) for i, out in enumerate(outs)]
        return tuple(torch.cat(parts, 0) for parts in zip(*outs))

    def _key(self, image):
        x = F.avg_pool2d(image, 16)                      # 1×3×h×w
        h, w = x.shape[-2:]
        pos = torch.linspace(-1, 1, h * w, device=image.device).view(1, 1, h, w)
        key = torch.einsum("kc,bchw->bkhw", self.proj_key, x + pos)
        shrinkage = 1 + key[:, :1] ** 2
        selection = torch.sigmoid(key)
        f16 = x.mean(1, keepdim=True).expand(1, 1024, h, w)
        return key, shrinkage, selection, f16, F.interpolate(f16[:, :512], scale_factor=2), \
            F.interpolate(f16[:, :256], scale_factor=4)

    def encode_value(self, image, f16, ab):  # noqa: D102
        small = F.avg_pool2d(torch.cat([image[:, :2], ab], 1), 16)
        v = torch.einsum("vc,bchw->bvhw", self.proj_val, small)
        return torch.stack([v, -v], 1)

    def encode_value_deep(self, image, f16, ab, hidden):  # noqa: D102
        value = self.encode_value(image, f16, ab)
        return value, torch.tanh(hidden + value[:, :, :64])

    def short_term_attention(self, key, prev_key, prev_value):  # noqa: D102
        return 0.1 * prev_value

    def decode(self, f16, f8, f4, readout, hidden):  # noqa: D102
        ab = torch.tanh(readout[:, :, 0] + hidden[:, :, 0])
        return F.interpolate(ab, scale_factor=16)

    def decode_update(self, f16, f8, f4, readout, hidden):  # noqa: D102
        return self.decode(f16, f8, f4, readout, hidden), torch.tanh(hidden + 0.1 * readout[:, :, :64])


def synthetic_frame(t: int, size: int = 112) -> torch.Tensor:
    """A moving gradient as L' ×3: ``1×3×size×size``."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    L = torch.sin(3 * x + 0.2 * t) * torch.cos(2 * y - 0.1 * t)
    return L.expand(1, 3, size, size).contiguous()
