"""DDColor as one ONNX graph per model and input size, in the same checked cache as the ColorMNet stages.

The graph is the whole network at S×S: input ``image`` 1×3×S×S (grey RGB in [0, 1]) → output
``ab`` 1×2×S×S (Lab units). Stage name ``ddcolor_<size>`` (``ddcolor_tiny``, ``ddcolor_large``),
so the cache file is ``<weights sha256[:16]>/ddcolor_large_512x512_fp32_opset17_v<N>.onnx`` with its
manifest, exported with the legacy tracer at opset 17 (as ``trace.py``, for the same reasons),
simplified, and checked against PyTorch on a random grey image and a real picture (the
pipeline's own ``media.lab.network_input``) before it is written. fp16 graphs come from the
shared converter (``fp16.py``): LayerNorms and softmax stay fp32, the spectral weights are folded
constants. Tolerances are ``check.py``'s (relative to max(1, |ab|), ab reaches ±50 or more).
"""
from __future__ import annotations

import contextlib
import io
import sys
import warnings
from pathlib import Path

import torch

from ...model.ddcolor.names import model_size
from ...model.ddcolor.network import check_input_size
from .cache import PRECISIONS, _check_choices, ensure_graphs
from .check import compare, ort_session
from .optimise import simplify
from .trace import OPSET

INPUT, OUTPUT = "image", "ab"
IO_NAMES = ((INPUT,), (OUTPUT,))


def ddcolor_stage(model: str) -> str:
    """The graph's stage name for a model name or size: ``ddcolor_tiny`` / ``ddcolor_large``."""
    return f"ddcolor_{model_size(model)}"


def check_inputs(size: int) -> dict[str, torch.Tensor]:
    """1×3×S×S check inputs: ``random`` (uniform grey, the three channels equal) and ``real`` (a synthetic
    picture through the official pipeline's grey conversion)."""
    from ...media import color, lab
    gen = torch.Generator().manual_seed(0)
    grey = torch.rand(1, 1, size, size, generator=gen).expand(1, 3, size, size).contiguous()
    picture = lab.unit_float(color.synthetic_rgb(size + size // 3, size))    # not square: as real frames
    return {"random": grey, "real": lab.network_input(picture, size)}


class DDColorGraphs:
    """The graph source (``cache.ColorMNetGraphs`` describes the contract) of one DDColor model.

    weights: the checkpoint (its sha256 names the cache folder); model: a name or size;
    net: the loaded ``DDColor`` or a function returning it, used only when a graph is missing.
    """

    def __init__(self, weights: Path, model: str, net=None):
        self.weights, self.size, self._net = Path(weights), model_size(model), net
        self.stages = (ddcolor_stage(self.size),)

    def network(self):
        """The ``DDColor`` network (eval, CPU, fp32)."""
        if self._net is None:
            from ...weights.ddcolor_checkpoint import load_ddcolor
            self._net = load_ddcolor(self.weights, self.size)
        elif not isinstance(self._net, torch.nn.Module) and callable(self._net):
            self._net = self._net()
        return self._net.eval()

    def export(self, stage: str, hw: tuple[int, int]):
        """The simplified fp32 ``ModelProto`` of the network at ``hw`` (S, S)."""
        import onnx
        x = check_inputs(hw[0])["random"]
        buf = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")      # TracerWarning (static sizes are intended), legacy-exporter notes
            torch.onnx.export(self.network(), (x,), buf, dynamo=False, opset_version=OPSET, do_constant_folding=True,
                              input_names=[INPUT], output_names=[OUTPUT], export_params=True)
        return simplify(onnx.load_from_string(buf.getvalue()))

    def check(self, data: bytes, stage: str, hw: tuple[int, int], precision: str, references: dict) -> list:
        """The graph against PyTorch fp32 on both check inputs (``check.CheckResult`` each)."""
        session = ort_session(data)
        results = []
        for label, x in check_inputs(hw[0]).items():
            if (stage, label) not in references:
                with torch.inference_mode():
                    references[(stage, label)] = (self.network()(x).float(),)
            results.append(compare(session, None, stage, (x,), precision, label, reference=references[(stage, label)],
                                   io_names=IO_NAMES))
        return results


def ensure_ddcolor_onnx(weights, model: str, size: int, precision: str = "fp32", *, cache_dir=None, net=None,
                        force: bool = False) -> Path:
    """The checked, cached graph of ``model`` at ``size``×``size`` in ``precision`` (``'fp32'``/``'fp16'``),
    exported on first use (fp16: converted from the fp32 graph, which is cached too)."""
    size = check_input_size(size)
    _check_choices((precision,), PRECISIONS, "precision")
    source = DDColorGraphs(weights, model, net)
    return ensure_graphs(source, Path(weights), (size, size), precisions=(precision,), cache_dir=cache_dir,
                         force=force)[(source.stages[0], precision)]

