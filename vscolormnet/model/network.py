"""ColorMNet with one method per exportable stage (tensor in, tensor out, no data-dependent branches).

The four stateless parts are ``encode_key``, ``encode_value`` / ``encode_value_deep``,
``short_term_attention`` and ``decode`` / ``decode_update``. The memory and everything
that depends on the frame index live in host code (``vscolormnet.runtime.propagator``), so the same
stages can be served by PyTorch, ONNX Runtime or TensorRT.

Child names (``key_encoder``, ``value_encoder``, ``key_proj``, ``short_term_attn``,
``decoder``) and all parameter names equal the official checkpoint's, so its state_dict
loads strictly without renaming.
"""
from __future__ import annotations

import torch
from torch import nn

from .decoder import Decoder
from .key_encoder import KeyEncoder, KeyProjection
from .local_attention import LocalAttention
from .value_encoder import ValueEncoder

KEY_DIM = 64
VALUE_DIM = 512
HIDDEN_DIM = 64
NUM_OBJECTS = 2          # the a and b channels, treated as two XMem "objects"
STRIDE = 16              # f16 grid
PAD_MULTIPLE = 112       # lcm(DINOv2 patch 14, stride 16)


class ColorMNet(nn.Module):
    """The network. Build with ``ColorMNet().eval()`` and load weights with ``weights.load_weights``."""

    def __init__(self):
        super().__init__()
        self.key_encoder = KeyEncoder()
        self.value_encoder = ValueEncoder(VALUE_DIM, HIDDEN_DIM)
        self.key_proj = KeyProjection(1024, KEY_DIM)
        self.short_term_attn = LocalAttention(KEY_DIM, NUM_OBJECTS * VALUE_DIM)
        self.decoder = Decoder(VALUE_DIM, HIDDEN_DIM)

    def encode_key(self, image: torch.Tensor):
        """``image 1×3×Hp×Wp`` → key ``1×64×h×w``, shrinkage ``1×1×h×w``, selection ``1×64×h×w``,
        f16 ``1×1024×h×w``, f8 ``1×512×2h×2w``, f4 ``1×256×4h×4w``."""
        f16, f8, f4 = self.key_encoder(image)
        key, shrinkage, selection = self.key_proj(f16)
        return key, shrinkage, selection, f16, f8, f4

    def encode_value(self, image: torch.Tensor, f16: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """Memory value ``1×2×512×h×w`` from ``image 1×3×Hp×Wp``, ``f16`` and ``ab 1×2×Hp×Wp``."""
        return self.value_encoder.value(image, f16, ab)

    def encode_value_deep(self, image, f16, ab, hidden):
        """As ``encode_value``, plus the deep hidden update: returns value, hidden ``1×2×64×h×w``."""
        return self.value_encoder(image, f16, ab, hidden, deep_update=True)

    def short_term_attention(self, key: torch.Tensor, prev_key: torch.Tensor, prev_value: torch.Tensor):
        """Local attention of ``key`` to the last memory frame: ``1×2×512×h×w``."""
        return self.short_term_attn(key, prev_key, prev_value)

    def decode(self, f16, f8, f4, readout, hidden) -> torch.Tensor:
        """Predicted ab' ``1×2×Hp×Wp`` in [−1, 1] (Lab ab / 110), hidden state unchanged."""
        return self.decoder(f16, f8, f4, readout, hidden, update_hidden=False)[0]

    def decode_update(self, f16, f8, f4, readout, hidden):
        """As ``decode``, plus the normal hidden update: returns ab', hidden'."""
        return self.decoder(f16, f8, f4, readout, hidden, update_hidden=True)
