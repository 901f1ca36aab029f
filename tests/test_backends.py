"""Backends as data: names → specs, ``check()`` at call time, ``Auto``'s choice and its reasons."""
from __future__ import annotations

import importlib.util
import logging

import pytest
import torch

from vscolormnet.backends import ORT, TRT, Auto, BackendError, Torch, create_backend, from_name, resolve_spec
from vscolormnet.backends.torch_backend import TorchBackend

ON_CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available() or importlib.util.find_spec("tensorrt") is not None,
                                 reason="describes a machine without CUDA and TensorRT")


def auto_message(caplog) -> str:
    msgs = [r.getMessage() for r in caplog.records if r.name == "vscolormnet" and "backend auto" in r.getMessage()]
    assert msgs, "auto must log its choice"
    return msgs[-1]


def test_names_become_frozen_specs():
    assert from_name("torch") == Torch()
    assert from_name("ORT", device="cpu", fp16=False) == ORT()
    assert from_name("trt", device_id=1) == TRT(device_id=1)
    assert from_name("auto", device="cpu") == Auto(device="cpu")
    spec = ORT(num_threads=2)
    assert from_name(spec) is spec
    with pytest.raises(Exception):
        spec.num_threads = 3                                  # frozen
    with pytest.raises(TypeError):
        ORT("cpu")                                            # keyword-only


def test_spec_field_errors_name_the_field():
    for spec, match in [(Torch(device="tpu"), "device must be 'cpu' or 'cuda' for backend 'torch'"),
                        (Torch(device_id=-1), "device_id must be an integer ≥ 0"),
                        (Torch(fp16="yes"), "fp16 must be True or False"),
                        (ORT(num_threads=0), "num_threads must be an integer ≥ 1 or None"),
                        (ORT(graph_optimization="max"), "graph_optimization must be one of"),
                        (ORT(onnx_dir=5), "onnx_dir must be a folder path or None"),
                        (Auto(device="tpu"), "device must be 'auto', 'cpu' or 'cuda' for backend 'auto'"),
                        (Auto(ort="fast"), "ort must be an ORT")]:
        with pytest.raises(BackendError, match=match):
            spec.check()
    with pytest.raises(BackendError, match="backend must be one of 'torch', 'ort', 'trt', 'auto'"):
        from_name("tensorflow")
    with pytest.raises(BackendError, match="give device, fp16 inside the backend object"):
        from_name(ORT(), device="cpu", fp16=True)
    with pytest.raises(BackendError, match="backend 'trt' runs on device='cuda' only"):
        from_name("trt", device="cpu")
    with pytest.raises(BackendError, match="backend 'torch' has no option num_threads"):
        resolve_spec("torch", num_threads=2)


def test_cache_keys_separate_what_must_differ():
    assert Torch().cache_key() == Torch(device_id=3).cache_key(), "device_id means nothing on the CPU"
    assert ORT().cache_key() != ORT(fp16=True).cache_key()
    assert ORT().cache_key() != ORT(num_threads=1).cache_key()
    assert TRT().cache_key() != TRT(device_id=1).cache_key()


@ON_CPU_ONLY
def test_missing_gpu_pieces_are_reported_by_check():
    with pytest.raises(BackendError, match=r"backend 'trt' needs TensorRT: pip install 'vscolormnet\[trt\]'"):
        TRT().check()
    with pytest.raises(BackendError, match="device='cuda': CUDA is not available"):
        Torch(device="cuda").check()
    with pytest.raises(BackendError, match="no CUDAExecutionProvider.*onnxruntime-gpu"):
        ORT(device="cuda").check()
    with pytest.raises(BackendError, match="fp16=True needs device='cuda'"):
        Torch(fp16=True).check()


@ON_CPU_ONLY
def test_auto_takes_the_cpu_and_says_why(parity_checkpoint, caplog):
    with caplog.at_level(logging.INFO, logger="vscolormnet"):
        be = create_backend("auto", weights=parity_checkpoint, device="auto", padded_hw=(112, 112))
    assert isinstance(be, TorchBackend) and be.device == torch.device("cpu") and not be.fp16
    msg = auto_message(caplog)
    assert "using torch on cpu" in msg
    assert "trt: backend 'trt' needs TensorRT" in msg
    assert "ort-cuda: backend 'ort' with device='cuda'" in msg
    assert "torch-cuda: device='cuda': CUDA is not available" in msg


@ON_CPU_ONLY
def test_auto_on_cpu_device_skips_gpu_candidates(parity_checkpoint, caplog):
    with caplog.at_level(logging.INFO, logger="vscolormnet"):
        be = create_backend("auto", weights=parity_checkpoint, device="cpu", fp16=True)
    assert be.device.type == "cpu" and not be.fp16
    assert auto_message(caplog).count("device='cpu' was asked for") == 3


@ON_CPU_ONLY
def test_auto_on_cuda_without_gpu_is_an_error_listing_reasons():
    with pytest.raises(BackendError, match="no backend can run here.*trt.*torch-cpu: device='cuda' was asked for"):
        Auto(device="cuda").check()


def test_auto_skips_candidates_that_fail_to_start(parity_checkpoint, caplog, monkeypatch):
    """Pretend TensorRT and a GPU are there: trt and torch-cuda fail to start and are skipped, in order."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "tensorrt" else real_find_spec(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)

    class Broken:
        def __init__(self, *a, **k):
            raise RuntimeError("no engine for you")

    import vscolormnet.backends.torch_backend as tb
    import vscolormnet.backends.trt_backend as trt_backend
    monkeypatch.setattr(trt_backend, "TrtBackend", Broken)
    real = tb.TorchBackend

    def torch_backend(model, device, fp16):
        if torch.device(device).type == "cuda":
            raise RuntimeError("no CUDA driver")
        return real(model, device, fp16)
    monkeypatch.setattr(tb, "TorchBackend", torch_backend)
    with caplog.at_level(logging.INFO, logger="vscolormnet"):
        be = create_backend("auto", weights=parity_checkpoint, device="auto", padded_hw=(112, 112))
    assert be.device.type == "cpu"
    msg = auto_message(caplog)
    assert "trt-cuda: failed to start: RuntimeError: no engine for you" in msg
    assert "torch-cuda: failed to start: RuntimeError: no CUDA driver" in msg
    assert msg.index("trt-cuda: failed") < msg.index("torch-cuda: failed"), "tried in order"


def test_trt_module_imports_without_tensorrt():
    import vscolormnet.backends.trt_backend as trt_backend
    assert trt_backend.TrtOptions().optimization_level == 3 == TRT().optimization_level


@pytest.mark.parametrize("version, has_flag, expected", [("11.4.0.106", True, 0), ("10.13.0", True, 1 << 5),
                                                         ("8.6.1", False, None)])
def test_trt_strong_typing_by_version(version, has_flag, expected):
    """TensorRT 11 is always strongly typed (no BuilderFlag.FP16), 10 needs the flag, 8 falls back to FP16."""
    from types import SimpleNamespace

    from vscolormnet.backends.trt_backend import _strongly_typed_flag
    flags = SimpleNamespace(STRONGLY_TYPED=5) if has_flag else SimpleNamespace()
    fake = SimpleNamespace(__version__=version, NetworkDefinitionCreationFlag=flags)
    assert _strongly_typed_flag(fake) == expected
