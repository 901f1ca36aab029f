"""Backend selection: names, errors, and ``auto`` falling back to the CPU with its reasons logged."""
from __future__ import annotations

import importlib.util
import logging

import pytest
import torch

from vscolormnet.backends import create_backend
from vscolormnet.backends import select as sel
from vscolormnet.backends.torch_backend import TorchBackend

ON_CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available() or importlib.util.find_spec("tensorrt") is not None,
                                 reason="describes a machine without CUDA and TensorRT")


def auto_message(caplog) -> str:
    msgs = [r.getMessage() for r in caplog.records if r.name == "vscolormnet" and "backend auto" in r.getMessage()]
    assert msgs, "auto must log its choice"
    return msgs[-1]


@ON_CPU_ONLY
def test_auto_takes_the_cpu_and_says_why(parity_checkpoint, caplog):
    with caplog.at_level(logging.INFO, logger="vscolormnet"):
        be = create_backend("auto", weights=parity_checkpoint, device="auto", padded_hw=(112, 112))
    assert isinstance(be, TorchBackend) and be.device == torch.device("cpu") and not be.fp16
    msg = auto_message(caplog)
    assert "using torch-cpu" in msg
    assert "trt: tensorrt is not installed" in msg
    assert "ort-cuda: onnxruntime has no CUDAExecutionProvider" in msg
    assert "torch-cuda: torch.cuda.is_available() is False" in msg


@ON_CPU_ONLY
def test_auto_on_cpu_device_skips_gpu_candidates(parity_checkpoint, caplog):
    with caplog.at_level(logging.INFO, logger="vscolormnet"):
        be = create_backend("auto", weights=parity_checkpoint, device="cpu", fp16=True)
    assert be.device.type == "cpu" and not be.fp16
    msg = auto_message(caplog)
    assert msg.count("device='cpu' was asked for") == 3


@ON_CPU_ONLY
def test_auto_on_cuda_without_gpu_is_an_error_listing_reasons(parity_checkpoint):
    with pytest.raises(ValueError, match="no backend could be started.*trt.*torch-cpu: device='cuda'"):
        create_backend("auto", weights=parity_checkpoint, device="cuda", padded_hw=(112, 112))


def test_auto_skips_candidates_that_fail_to_start(parity_checkpoint, caplog, monkeypatch):
    """Pretend TensorRT and CUDA are there: trt and torch-cuda fail to start and are skipped, in order."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "tensorrt" else real_find_spec(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    class Broken:
        def __init__(self, *a, **k):
            raise RuntimeError("no engine for you")

    import vscolormnet.backends.trt_backend as trt_backend
    monkeypatch.setattr(trt_backend, "TrtBackend", Broken)
    real_torch_backend = TorchBackend

    def torch_backend(model, device, fp16):
        if torch.device(device).type == "cuda":
            raise RuntimeError("no CUDA driver")
        return real_torch_backend(model, device, fp16)

    import vscolormnet.backends.torch_backend as tb
    monkeypatch.setattr(tb, "TorchBackend", torch_backend)
    with caplog.at_level(logging.INFO, logger="vscolormnet"):
        be = create_backend("auto", weights=parity_checkpoint, device="auto", padded_hw=(112, 112))
    assert be.device.type == "cpu"
    msg = auto_message(caplog)
    assert "trt: failed to start: RuntimeError: no engine for you" in msg
    assert "torch-cuda: failed to start: RuntimeError: no CUDA driver" in msg
    assert msg.index("trt:") < msg.index("ort-cuda:") < msg.index("torch-cuda:")


def test_unknown_backend_and_options(parity_checkpoint):
    with pytest.raises(ValueError, match="backend must be one of torch, ort, trt, auto"):
        create_backend("tensorflow", weights=parity_checkpoint)
    with pytest.raises(ValueError, match="takes no options"):
        create_backend("torch", weights=parity_checkpoint, num_threads=2)
    with pytest.raises(ValueError, match="unknown backend options: bogus"):
        create_backend("auto", weights=parity_checkpoint, bogus=1)
    with pytest.raises(ValueError, match="device must be"):
        create_backend("auto", weights=parity_checkpoint, device="tpu")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
def test_trt_without_tensorrt_says_how_to_install(parity_checkpoint):
    with pytest.raises(ValueError, match=r"vscolormnet\[trt\]"):
        create_backend("trt", weights=parity_checkpoint, padded_hw=(112, 112))


def test_trt_module_imports_without_tensorrt():
    import vscolormnet.backends.trt_backend as trt_backend
    assert trt_backend.TrtOptions().optimization_level == 3
    assert sel.AUTO_ORDER == ("trt", "ort-cuda", "torch-cuda", "torch-cpu")


@pytest.mark.parametrize("version, has_flag, expected", [("11.4.0.106", True, 0), ("10.13.0", True, 1 << 5),
                                                         ("8.6.1", False, None)])
def test_trt_strong_typing_by_version(version, has_flag, expected):
    """TensorRT 11 is always strongly typed (no BuilderFlag.FP16), 10 needs the flag, 8 falls back to FP16."""
    from types import SimpleNamespace

    from vscolormnet.backends.trt_backend import _strongly_typed_flag
    flags = SimpleNamespace(STRONGLY_TYPED=5) if has_flag else SimpleNamespace()
    fake = SimpleNamespace(__version__=version, NetworkDefinitionCreationFlag=flags)
    assert _strongly_typed_flag(fake) == expected
