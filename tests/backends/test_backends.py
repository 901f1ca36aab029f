"""Backends as data: names → specs, ``check()`` at call time, ``Auto``'s choice and its reasons."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import sys

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


def test_torch_spec_passes_precision_and_tf32_to_the_backend():
    """The spec's resolved precision and tf32 reach TorchBackend; on the CPU it shares the network."""
    from vscolormnet.model import ColorMNet
    net = ColorMNet().eval()
    be = Torch(precision="bf16", tf32=True).create(net, None, None)
    assert isinstance(be, TorchBackend) and be.precision == "bf16" and be.tf32 and not be.fp16
    assert be.model is net and be.describe() == "torch on cpu (bf16)"
    assert Torch().create(net, None, None).autocast_dtype is None
    assert Torch().cache_key() != Torch(precision="bf16").cache_key() != Torch(precision="bf16", tf32=True).cache_key()


@ON_CPU_ONLY
def test_missing_gpu_pieces_are_reported_by_check():
    """Each message names what is missing and the one command that installs it (torch here is CUDA 13)."""
    with pytest.raises(BackendError) as e:
        TRT().check()
    assert str(e.value) == ("backend 'trt' needs TensorRT >= 10 (not installed): pip install \"tensorrt-cu13>=10.13\"; "
                            "or use backend='ort' or 'torch'")
    with pytest.raises(BackendError, match="device='cuda': CUDA is not available"):
        Torch(device="cuda").check()
    with pytest.raises(BackendError) as e:
        ORT(device="cuda").check()
    version = importlib.metadata.version("onnxruntime")
    assert str(e.value) == (f"backend 'ort' with device='cuda': onnxruntime {version} is the CPU build (no "
                            "CUDAExecutionProvider): pip uninstall -y onnxruntime && pip install "
                            "\"onnxruntime-gpu>=1.27\"; use device='cpu'")
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

    def torch_backend(spec, model, **kw):
        if spec.device == "cuda":
            raise RuntimeError("no CUDA driver")
        return real(spec, model, **kw)
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
    assert callable(trt_backend.build_engines) and TRT().optimization_level == 3
    assert TRT().tf32 is False, "fp32 engines are exact fp32 by default"


@pytest.mark.parametrize("version, expected", [("11.4.0.106", 0), ("10.13.0", 1 << 5)])
def test_trt_strong_typing_by_version(version, expected):
    """TensorRT 11 is always strongly typed (no BuilderFlag.FP16), 10 needs the creation flag."""
    from types import SimpleNamespace

    from vscolormnet.backends.trt_backend import _strongly_typed_flag
    fake = SimpleNamespace(__version__=version, NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=5))
    assert _strongly_typed_flag(fake) == expected


def test_trt_option_errors_name_the_field():
    """The spec is the one place a TensorRT field is checked (before TensorRT itself is looked for)."""
    for spec, match in [(TRT(optimization_level=6), "optimization_level"),
                        (TRT(workspace_mib=0), "workspace_mib"), (TRT(tf32="no"), "tf32"),
                        (TRT(timing_cache=None), "timing_cache")]:
        with pytest.raises(BackendError, match=match):
            spec.check()
    with pytest.raises(BackendError, match="TensorRT|CUDA|tensorrt"):   # valid fields: only availability is left
        TRT(optimization_level=5, workspace_mib=1024, tf32=True).check()


# ---- what is missing, and the command that installs it (backends/availability.py) ---------------
def _fake_distribution(root, name: str, version: str, module: str | None = None, module_text: str = ""):
    """A real installed-looking distribution under ``root`` (dist-info, optionally a module), for importlib."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if module:
        (root / module).mkdir()
        (root / module / "__init__.py").write_text(module_text)


def test_both_onnxruntime_flavours_are_reported_with_the_fix(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "onnxruntime-gpu", "1.31.1")
    monkeypatch.syspath_prepend(str(tmp_path))
    cpu = importlib.metadata.version("onnxruntime")
    keep = '"onnxruntime-gpu>=1.27"' if torch.cuda.is_available() else '"onnxruntime>=1.18"'
    both = (f"onnxruntime {cpu} and onnxruntime-gpu 1.31.1 are both installed and overwrite each other's files: "
            f"pip uninstall -y onnxruntime onnxruntime-gpu && pip install ")
    with pytest.raises(BackendError) as e:
        ORT().check()
    assert str(e.value) == both + keep
    with pytest.raises(BackendError) as e:
        TRT().check()
    assert str(e.value) == both + '"onnxruntime-gpu>=1.27"', "TensorRT machines keep the GPU build"
    usable, skipped = Auto().candidates()
    reasons = dict(skipped)
    assert reasons["trt"] == both + '"onnxruntime-gpu>=1.27"' and both in reasons["ort-cuda"], "auto says why"
    assert Torch(device="cpu") in usable


def test_missing_onnxruntime_names_the_flavour_for_the_machine(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
    with pytest.raises(BackendError) as e:
        ORT().check()
    wanted = '"onnxruntime-gpu>=1.27"' if torch.cuda.is_available() else '"onnxruntime>=1.18"'
    assert str(e.value) == f"backend 'ort' needs ONNX Runtime (not installed): pip install {wanted}"


def test_too_old_tensorrt_is_refused_with_the_install_command(tmp_path, monkeypatch):
    """A TensorRT 8 (no strong typing) on the path: check() and the backend refuse it in one line."""
    from vscolormnet.backends.trt_backend import TrtBackend, import_tensorrt
    _fake_distribution(tmp_path, "tensorrt", "8.6.1", module="tensorrt", module_text='__version__ = "8.6.1"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    expected = ("backend 'trt' needs TensorRT >= 10, but TensorRT 8.6.1 (tensorrt) is installed: "
                "pip uninstall -y tensorrt && pip install \"tensorrt-cu13>=10.13\"")
    try:
        with pytest.raises(BackendError) as e:
            TRT().check()
        assert str(e.value) == expected
        for call in (import_tensorrt, lambda: TrtBackend(TRT(), tmp_path / "never-read.pth", (112, 112))):
            with pytest.raises(ValueError) as e:
                call()
            assert str(e.value) == expected
    finally:
        sys.modules.pop("tensorrt", None)        # the fake must not outlive the test


def test_tensorrt_version_rule():
    from vscolormnet.backends.availability import trt_version_problem
    assert trt_version_problem("10.0.1") is None and trt_version_problem("11.4.0.106") is None
    assert trt_version_problem("9.3.0", "tensorrt-cu13") == (
        "backend 'trt' needs TensorRT >= 10, but TensorRT 9.3.0 (tensorrt-cu13) is installed: "
        "pip install -U \"tensorrt-cu13>=10.13\"")


# ---- math mode around a whole step (TF32 is process-wide) and stage timing on the backend's GPU ----
def test_fp32_mode_is_reentrant_in_one_thread_even_with_the_other_mode_waiting():
    """A step holds the mode and its stage calls enter it again; a call of the other mode waiting meanwhile
    must not deadlock that (it joins the holder's mode), and waits until the outer hold ends."""
    import threading
    import time

    from vscolormnet.backends.torch_backend import Fp32Mode
    before = Fp32Mode.current()
    mode, events = Fp32Mode(), []
    inside = threading.Event()

    def other():
        inside.wait(5)
        with mode.hold(False):
            events.append("other in")

    t = threading.Thread(target=other)
    t.start()
    with mode.hold(True):
        inside.set()
        time.sleep(0.1)                                    # 'other' is waiting for the ieee mode now
        with mode.hold(True):                              # a stage call inside the step
            assert Fp32Mode.current() == ("tf32", "tf32")
            events.append("nested")
        with pytest.raises(RuntimeError, match="fp32 math mode 'ieee' asked for inside 'tf32'"):
            with mode.hold(False):
                pass
        assert Fp32Mode.current() == ("tf32", "tf32")
        events.append("outer out")
    t.join(10)
    assert not t.is_alive() and events == ["nested", "outer out", "other in"]
    assert Fp32Mode.current() == before and not mode._active


def test_torch_math_mode_holds_the_tf32_mode_on_cuda_only():
    from vscolormnet.backends.torch_backend import Fp32Mode
    before = Fp32Mode.current()
    cpu, cuda = TorchBackend.__new__(TorchBackend), TorchBackend.__new__(TorchBackend)   # no network needed
    cpu.device, cpu.tf32 = torch.device("cpu"), True
    with cpu.math_mode():
        assert Fp32Mode.current() == before                # the CPU has no process-wide mode: unchanged
    cuda.device, cuda.tf32 = torch.device("cuda", 0), True  # the flags are plain process state: no GPU needed
    with cuda.math_mode():
        assert Fp32Mode.current() == ("tf32", "tf32")
    assert Fp32Mode.current() == before


def test_propagator_step_runs_inside_the_backends_math_mode(monkeypatch):
    """The memory readout between the stages is device math too: the whole step holds the mode, once."""
    from contextlib import contextmanager

    from synthetic_backend import SyntheticBackend, synthetic_frame

    from vscolormnet.runtime.config import MemoryConfig
    from vscolormnet.runtime.memory import MemoryManager
    from vscolormnet.runtime.propagator import Propagator, Reference

    class ModeBackend(SyntheticBackend):
        def __init__(self):
            super().__init__()
            self.depth, self.entries, self.outside = 0, 0, []

        @contextmanager
        def math_mode(self):
            self.depth += 1
            self.entries += 1
            try:
                yield
            finally:
                self.depth -= 1

        def _record(self, what):
            if self.depth == 0:
                self.outside.append(what)

        def encode_key(self, image):
            self._record("encode_key")
            return super().encode_key(image)

        def encode_value(self, *a):
            self._record("encode_value")
            return super().encode_value(*a)

        def decode(self, *a):
            self._record("decode")
            return super().decode(*a)

        def decode_update(self, *a):
            self._record("decode_update")
            return super().decode_update(*a)

    be = ModeBackend()
    read = MemoryManager.read

    def watched_read(memory, *a, **kw):
        be._record("memory.read")
        return read(memory, *a, **kw)
    monkeypatch.setattr(MemoryManager, "read", watched_read)
    size = 64
    ref = Reference(synthetic_frame(-1, size), 0.1 * torch.ones(1, 2, size, size), frame=None)
    prop = Propagator(be, MemoryConfig(mem_every=2), [ref], count_long_term_usage=False)
    assert be.entries == 1                                  # the reference encoding
    state = prop.new_state()
    for t in range(5):
        prop.step(state, synthetic_frame(t, size), end=t == 4)
    assert be.outside == [] and be.depth == 0 and be.entries == 1 + 5


def test_stage_times_synchronise_the_backends_gpu(monkeypatch):
    """``torch.cuda.synchronize()`` without a device waits for device 0, not for a backend on cuda:1."""
    from synthetic_backend import SyntheticBackend, synthetic_frame

    from vscolormnet.backends.base import StageTimes
    from vscolormnet.runtime.config import MemoryConfig
    from vscolormnet.runtime.propagator import Propagator, Reference
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    times = StageTimes(sync_cuda=True, device=torch.device("cuda", 1))
    times.enabled = True
    with times.measure("decode"):
        pass
    assert synced == [torch.device("cuda", 1)] * 2 and times.calls["decode"] == 1
    be = SyntheticBackend()
    be.device = torch.device("cuda", 1)                     # only read for the timing device here
    times = StageTimes(sync_cuda=True)
    ref = Reference(synthetic_frame(-1, 64), torch.zeros(1, 2, 64, 64), frame=None)
    Propagator(be, MemoryConfig(), [ref], count_long_term_usage=False, times=times)
    assert times.device == torch.device("cuda", 1)
