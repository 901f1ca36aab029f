"""DDColor on the project's backends: the same ``Torch``/``ORT``/``TRT`` specs, one call instead of six stages.

The contract (every backend): ``predict_ab(image)`` with image 1×3×S×S float32 grey RGB in [0, 1]
→ ab 1×2×S×S float32 Lab units on the CPU; ``input_size`` S (None: any multiple of 32) and
``model_name`` (``ddcolor-large``/``-tiny``) say what it runs. Each class is the ColorMNet backend of
its runtime with one graph:

- ``DDColorTorch``: ``TorchBackend`` calling the network's ``forward`` (autocast for fp16/bf16 with
  the same fp32 islands: every LayerNorm and softmax by autocast's own lists, the spectral
  weight normalisation by ``model/ddcolor/pixel_decoder.py``); any S, one backend for all sizes;
- ``DDColorOrt``: ``OrtBackend`` with one session on the checked graph ``ddcolor_<size>`` at S×S
  (``graphs/ddcolor.py``: same cache folder, manifest and check as the ColorMNet stages);
- ``DDColorTrt``: ``TrtBackend`` with one engine built from that graph through the same engine
  cache (``engine_cache.py``: key = stage ``ddcolor_<size>``, S×S, precision, ONNX hash, …), and
  the same binding check. TensorRT is not installable on the development machines: this class
  has not run (README).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..model.ddcolor.names import model_name, model_size
from ..model.ddcolor.network import check_input_size
from ..util.errors import BackendError
from .graphs.ddcolor import INPUT, OUTPUT, ddcolor_stage, ensure_ddcolor_onnx
from .ort_backend import OrtBackend
from .torch_backend import TorchBackend
from .trt_backend import TrtBackend

if TYPE_CHECKING:
    from .spec import ORT, TRT, Torch


def _checked(image: torch.Tensor, size: int, name: str) -> torch.Tensor:
    """``image`` if it is 1×3×S×S (the graph's one shape); ``BackendError`` naming expected and got otherwise."""
    if tuple(image.shape) != (1, 3, size, size):
        raise BackendError(f"{name} runs DDColor at {size}x{size}: input image: expected shape (1, 3, {size}, {size}), "
                           f"got {tuple(image.shape)}")
    return image


class DDColorTorch(TorchBackend):
    """PyTorch (CPU or CUDA, fp32/fp16/bf16) over the loaded network (shared on the CPU in fp32, copied otherwise)."""

    def __init__(self, spec: "Torch", net):
        super().__init__(spec, net)
        self.model_name, self.input_size = model_name(net.size), None     # any multiple of 32

    def predict_ab(self, image: torch.Tensor) -> torch.Tensor:
        """image 1×3×S×S → ab 1×2×S×S float32 (CPU)."""
        return self._run("forward", image).cpu()


class DDColorOrt(OrtBackend):
    """ONNX Runtime (CPU or CUDA, fp32 or fp16 graph) on the cached graph at S×S.

    net: the loaded ``DDColor`` or a function returning it, used only when the graph must be exported.
    """

    def __init__(self, spec: "ORT", weights, model: str, input_size: int, net=None):
        self._configure(spec)
        size = check_input_size(input_size)
        self.model_name, self.input_size, self.padded_hw = model_name(model_size(model)), size, (size, size)
        self.stage = ddcolor_stage(model)

        def graph():   # local, so the backend does not keep the network alive
            return ensure_ddcolor_onnx(weights, model, size, self.precision, cache_dir=spec.onnx_dir, net=net)
        self._options.enable_mem_pattern = True
        self._open_stage(self.stage, graph(), (INPUT,), (OUTPUT,), graph)
        self._log_ready()

    def predict_ab(self, image: torch.Tensor) -> torch.Tensor:  # noqa: D102 - as DDColorTorch
        return self._run(self.stage, _checked(image, self.input_size, self.name)).cpu()


class DDColorTrt(TrtBackend):
    """TensorRT (CUDA, fp32 or fp16 graph): one engine at S×S from the checked graph, cached. Untested here."""

    def __init__(self, spec: "TRT", weights, model: str, input_size: int, net=None):
        size = check_input_size(input_size)
        self._configure(spec, (size, size))
        self.model_name, self.input_size = model_name(model_size(model)), size
        self.stage = ddcolor_stage(model)
        graph = ensure_ddcolor_onnx(weights, model, size, self.precision, cache_dir=spec.onnx_dir, net=net)
        self._load_engines({self.stage: graph}, {self.stage: ((INPUT,), (OUTPUT,))})

    def predict_ab(self, image: torch.Tensor) -> torch.Tensor:  # noqa: D102 - as DDColorTorch
        return self._run(self.stage, _checked(image, self.input_size, self.name)).cpu()


def create_ddcolor_backend(spec, weights, model: str, input_size: int, net):
    """The backend of a checked, concrete spec (``Torch``/``ORT``/``TRT``, not ``Auto``) for ``model`` at S.

    net: the loaded network (required for torch) or a function returning it (graph backends call it only
    when a graph must be exported).
    """
    if spec.name == "torch":
        return DDColorTorch(spec, net() if callable(net) and not isinstance(net, torch.nn.Module) else net)
    if spec.name == "ort":
        return DDColorOrt(spec, weights, model, input_size, net=net)
    if spec.name == "trt":
        return DDColorTrt(spec, weights, model, input_size, net=net)
    raise TypeError(f"resolve backend {spec.name!r} to a concrete backend (Torch/ORT/TRT) first")
