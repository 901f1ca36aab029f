"""Trace one stage method of ``ColorMNet`` into a static-shape fp32 ONNX graph.

Why the legacy (TorchScript) exporter at opset 17: the dynamo exporter (torch 2.14) took 142 s
for the short-term attention graph alone at 112×112, and its opset-17 conversion fails (no
``Pad`` adapter). TensorRT's ONNX parser wants static shapes, so two instance-level
substitutions (``traceable``) make the trace static without changing any value, and the
traced graph is folded (``optimise.simplify``): the attention's out-of-frame mask and every
static ``Shape`` chain become constants, dead nodes go.

Graph inputs/outputs are named and shaped as ``stages.INPUTS``/``OUTPUTS``/``tensor_shapes``
(e.g. ``encode_key``: image 1×3×Hp×Wp → key 1×64×h×w, …, f4 1×256×4h×4w, ``h = Hp/16``).
"""
from __future__ import annotations

import contextlib
import io
import sys
import warnings
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ...model import ColorMNet
from ...model.blocks import LayerNorm2d
from ...model.dinov2 import PATCH
from ...model.stages import INPUTS, OUTPUTS, STAGES, tensor_shapes, validate_padded_hw
from .optimise import simplify

OPSET = 17


class StageModule(nn.Module):
    """``forward(*inputs)`` calls one stage method of the network (what gets exported and compared)."""

    def __init__(self, net: ColorMNet, stage: str):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
        self.net = net
        self.stage = stage

    def forward(self, *inputs):  # noqa: D102
        return getattr(self.net, self.stage)(*inputs)


def _layer_norm_2d(module: LayerNorm2d, normalized_shape: tuple[int], x: torch.Tensor) -> torch.Tensor:
    x = F.layer_norm(x.permute(0, 2, 3, 1), normalized_shape, module.weight, module.bias, module.eps)
    return x.permute(0, 3, 1, 2)


@contextlib.contextmanager
def traceable(net: ColorMNet, padded_hw: tuple[int, int]):
    """Instance-level substitutions that compute the same values with trace-time constants.

    - DINOv2's positional embedding for this size, computed eagerly (bicubic, as at run time)
      and returned as a constant, instead of a resize whose scale the tracer turns into tensors;
    - ``LayerNorm2d`` with its channel count as a Python int (``x.shape[1:2]`` traces as a tensor).
    The class methods are restored on exit.
    """
    hp, wp = padded_hw
    patched = []
    backbone = net.key_encoder.network2.backbone
    with torch.no_grad():
        pos = backbone.interpolated_pos_embed(hp // PATCH, wp // PATCH).detach().clone()
    backbone.interpolated_pos_embed = lambda rows, cols, _pos=pos: _pos
    patched.append((backbone, "interpolated_pos_embed"))
    for module in net.modules():
        if isinstance(module, LayerNorm2d):
            module.forward = partial(_layer_norm_2d, module, (int(module.weight.shape[0]),))
            patched.append((module, "forward"))
    try:
        yield
    finally:
        for obj, attr in patched:
            obj.__dict__.pop(attr, None)


def export_graph(net: ColorMNet, stage: str, padded_hw: tuple[int, int]):
    """The fp32 ``onnx.ModelProto`` of one stage at one padded size ``(Hp, Wp)``, simplified (not yet checked)."""
    import onnx
    padded_hw = validate_padded_hw(padded_hw)
    shapes = tensor_shapes(padded_hw)
    module = StageModule(net, stage).eval()
    gen = torch.Generator().manual_seed(0)
    args = tuple(torch.randn(shapes[name], generator=gen) for name in INPUTS[stage])
    buf = io.BytesIO()
    # Python-level only: fd 1 may be carrying another node's frames (vspipe) during a minutes-long export.
    with traceable(net, padded_hw), torch.no_grad(), warnings.catch_warnings(), \
            contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")   # DeprecationWarning (legacy exporter), TracerWarning, folding notes
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=OPSET, do_constant_folding=True,
                          input_names=list(INPUTS[stage]), output_names=list(OUTPUTS[stage]),
                          export_params=True)
    return simplify(onnx.load_from_string(buf.getvalue()))
