"""The TensorRT input check (backends/trt_bindings.py), on real torch tensors and without TensorRT:
``trt_backend._run`` binds inputs by bare pointer, so a tensor of the wrong shape, dtype, device or
layout must be refused in one line (stage, input, expected, got) before ``set_tensor_address``.
"""
from __future__ import annotations

import threading

import pytest
import torch

from vscolormnet.backends import trt_backend
from vscolormnet.backends.trt_bindings import Binding, binding_problem, check_inputs
from vscolormnet.model.stages import INPUTS, tensor_shapes
from vscolormnet.util.errors import BackendError

HW = (224, 336)
CPU = torch.device("cpu")


def bindings(stage: str, hw=HW) -> list[Binding]:
    """What ``TrtBackend`` builds from an engine for ``stage``: the static shapes of the exported graph."""
    shapes = tensor_shapes(hw)
    return [Binding(name, shapes[name], torch.float32) for name in INPUTS[stage]]


def inputs(stage: str, hw=HW) -> list[torch.Tensor]:
    shapes = tensor_shapes(hw)
    return [torch.randn(shapes[name]) for name in INPUTS[stage]]


@pytest.mark.parametrize("stage", list(INPUTS))
def test_matching_inputs_pass(stage):
    check_inputs(stage, bindings(stage), inputs(stage), CPU)


def refusal(stage, tensors, hw=HW) -> str:
    with pytest.raises(BackendError) as e:
        check_inputs(stage, bindings(stage, hw), tensors, CPU)
    text = str(e.value)
    assert "\n" not in text and text.startswith(f"trt stage {stage}")
    return text


def test_a_tensor_of_another_size_is_refused_with_both_shapes():
    got = inputs("decode", (112, 112))              # a frame padded for another engine size
    text = refusal("decode", got)
    assert text == ("trt stage decode, input 'f16': expected shape (1, 1024, 14, 21), got (1, 1024, 7, 7)")
    swapped = inputs("short_term_attention")
    swapped[0] = swapped[2]                        # the value where the key belongs: same pointer type, 8× the bytes
    assert refusal("short_term_attention", swapped) == (
        "trt stage short_term_attention, input 'key': expected shape (1, 64, 14, 21), got (1, 2, 512, 14, 21)")


def test_dtype_layout_device_and_count_are_checked():
    image = torch.randn(tensor_shapes(HW)["image"])
    assert "expected dtype torch.float32, got torch.float16" in refusal("encode_key", [image.half()])
    nchw_as_nhwc = image.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)   # right shape, wrong memory order
    assert nchw_as_nhwc.shape == image.shape and not nchw_as_nhwc.is_contiguous()
    assert "expected a contiguous tensor" in refusal("encode_key", [nchw_as_nhwc])
    assert binding_problem(bindings("encode_key")[0], image, torch.device("cuda", 0)) == (
        f"expected device cuda:0, got cpu (shape {tuple(image.shape)})")
    assert refusal("encode_value", inputs("encode_value")[:2]) == (
        "trt stage encode_value: got 2 inputs, the engine takes 3 (image, f16, ab)")


def test_a_dynamic_dimension_takes_any_size():
    b = Binding("image", (1, 3, -1, -1))
    assert binding_problem(b, torch.zeros(1, 3, 112, 224), CPU) is None
    assert binding_problem(b, torch.zeros(1, 3, 112), CPU) == "expected shape (1, 3, -1, -1), got (1, 3, 112)"


def test_the_trt_runtime_calls_the_check_before_binding():
    """``_run`` (on CUDA) with a stand-in for TensorRT's context that records what is bound: a wrong
    shape never reaches ``set_tensor_address``."""
    bound = []

    class Context:
        def set_tensor_address(self, name, ptr):
            bound.append(name)

    class Stage:
        context = Context()
        inputs, outputs = list(INPUTS["encode_key"]), ["key"]
        shapes = {"key": (1, 64, 14, 21)}  # noqa: RUF012

    if not torch.cuda.is_available():
        pytest.skip("TrtBackend._run runs under torch.cuda.device; the check itself is tested above on CPU")
    backend = trt_backend.TrtBackend.__new__(trt_backend.TrtBackend)
    backend.device = torch.device("cuda", 0)
    stage = Stage()
    stage.bindings = bindings("encode_key")
    backend._stages = {"encode_key": stage}
    backend._lock = threading.Lock()
    with pytest.raises(BackendError, match="input 'image': expected shape"):
        backend._run("encode_key", torch.zeros(1, 3, 112, 112))
    assert bound == []
