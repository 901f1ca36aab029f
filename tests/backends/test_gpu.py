"""GPU paths on the shipped parity case: PyTorch CUDA, ONNX Runtime CUDA and TensorRT, fp32 and fp16.

Skipped, with the reason, where a path is unavailable. fp32 runs with TF32 disabled and must
meet the CPU parity bound (max |Δab'| 1e-3, mean 1e-5); fp16 meets the README's bound (max 0.02,
mean 2e-3). Outputs are always finite and the memory schedule is the official one. The skip is
decided at collection, so a machine without a GPU does not even build the seeded checkpoint.

The graph backends (ONNX Runtime CUDA, TensorRT) are also checked stage by stage on the small
``TinyNet`` graphs (seconds to export and build): a run sees inputs that the caller's stream
writes late (a side stream or the legacy default stream) and the caller sees finished outputs;
fp32 with ``tf32=False`` matches the CPU network at fp32 precision (TF32 would be ~100× off);
ORT's sessions run on the backend's own stream; TensorRT's six contexts share one activation buffer.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from graph_fixtures import HW, TinyNet, tiny_weights  # noqa: F401
from project_paths import PARITY_CASES

from vscolormnet.weights.parity import AB_MAX, AB_MEAN, FP16_MAX, FP16_MEAN, load_case

pytestmark = pytest.mark.gpu

CASE = "blackswan_short"
COUNTERS = ("work_mem_size", "long_mem_size", "n_consolidations", "n_obsolete_removals")


def _cuda_available() -> bool:
    import torch
    return torch.cuda.is_available()


def _ort_cuda_available() -> bool:
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    import onnxruntime as ort
    return "CUDAExecutionProvider" in ort.get_available_providers()


def skip_reason(backend: str) -> str | None:
    """Why ``backend`` on CUDA cannot run here, or None."""
    if not _cuda_available():
        return "CUDA is not available"
    if backend == "ort" and not _ort_cuda_available():
        return "onnxruntime-gpu (CUDAExecutionProvider) is not installed"
    if backend == "trt" and importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed"
    return None


@pytest.fixture(scope="module")
def graph_cache(tmp_path_factory):
    """ONNX graphs and TensorRT engines for this module (kept where the user already points them)."""
    root = tmp_path_factory.mktemp("gpu-cache")
    return {"VSCOLORMNET_ONNX_DIR": os.environ.get("VSCOLORMNET_ONNX_DIR", str(root / "onnx")),
            "VSCOLORMNET_ENGINE_DIR": os.environ.get("VSCOLORMNET_ENGINE_DIR", str(root / "trt"))}


@pytest.fixture()
def no_tf32():
    """Full fp32 matmuls and convolutions in PyTorch (TF32 would exceed the parity bound)."""
    import torch
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


BACKENDS = [pytest.param(b, marks=pytest.mark.skipif(why is not None, reason=why or ""))
            for b, why in ((b, skip_reason(b)) for b in ("torch", "ort", "trt"))]


def run_case(backend: str, fp16: bool, weights, graph_cache, monkeypatch):
    for name, value in graph_cache.items():
        monkeypatch.setenv(name, value)
    from vscolormnet.runtime.frames import colorize_frames
    c = load_case(PARITY_CASES / CASE)
    res = colorize_frames(c.frames_dir, c.ref, weights, None, first_frame_is_ref=c.first_frame_is_ref,
                          backend=backend, device="cuda", fp16=fp16, progress=False)
    expected = c.expected()
    assert res.ab_pred.shape == expected["ab_pred"].shape
    assert np.isfinite(res.ab_pred).all(), f"{backend}: non-finite ab'"
    for name in COUNTERS:
        np.testing.assert_array_equal(getattr(res, name), expected[name], err_msg=f"{backend}: {name}")
    return np.abs(res.ab_pred - expected["ab_pred"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp32_parity_on_cuda(backend, parity_checkpoint, graph_cache, no_tf32, monkeypatch):
    diff = run_case(backend, False, parity_checkpoint, graph_cache, monkeypatch)
    per_frame = diff.reshape(len(diff), -1).max(1)
    assert diff.max() <= AB_MAX, f"{backend} fp32: max |Δab'| {diff.max():.2e} per frame {per_frame}"
    assert diff.mean() <= AB_MEAN, f"{backend} fp32: mean |Δab'| {diff.mean():.2e}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp16_within_the_stated_bound(backend, parity_checkpoint, graph_cache, no_tf32, monkeypatch):
    diff = run_case(backend, True, parity_checkpoint, graph_cache, monkeypatch)
    per_frame = diff.reshape(len(diff), -1).max(1)
    assert diff.max() <= FP16_MAX, f"{backend} fp16: max |Δab'| {diff.max():.3f} per frame {per_frame}"
    assert diff.mean() <= FP16_MEAN, f"{backend} fp16: mean |Δab'| {diff.mean():.2e}"


# ---- the graph backends stage by stage, on TinyNet's graphs ---------------------------------------
GRAPH_BACKENDS = [p for p in BACKENDS if p.values[0] != "torch"]
REL_FP32 = 5e-5      # max |Δ| / max |reference|: fp32 sums over 1024 channels ~2e-6, TF32 ~1e-4…1e-3


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """One ONNX and engine folder for this module: TinyNet's graphs are exported and built once."""
    return tmp_path_factory.mktemp("tiny-gpu")


def tiny_backend(backend: str, weights, cache, **options):
    """The ``backend`` runtime over TinyNet's fp32 graphs at 112×112 on cuda:0."""
    if backend == "ort":
        from vscolormnet.backends import ORT
        from vscolormnet.backends.ort_backend import OrtBackend
        return OrtBackend(ORT(device="cuda", onnx_dir=cache / "onnx", **options), weights, HW, net=TinyNet())
    from vscolormnet.backends import TRT
    from vscolormnet.backends.trt_backend import TrtBackend
    return TrtBackend(TRT(onnx_dir=cache / "onnx", engine_dir=cache / "trt", **options), weights, HW, net=TinyNet())


def _tuple(x):
    return x if isinstance(x, tuple) else (x,)


@pytest.mark.parametrize("backend", GRAPH_BACKENDS)
def test_runs_are_ordered_with_the_callers_stream(backend, tiny_weights, tiny_cache):
    """Inputs written late on the caller's stream are seen, and the caller reads finished outputs, whether the
    caller is on a side stream or on the legacy default stream (handle 0, which ORT reads as 'no stream')."""
    import torch

    from vscolormnet.backends.graphs.check import random_inputs
    be = tiny_backend(backend, tiny_weights, tiny_cache)
    src = random_inputs("encode_key", HW, seed=5)[0].cuda()
    torch.cuda.synchronize()
    expected = [t.clone() for t in _tuple(be.encode_key(src))]
    zeros = [t.clone() for t in _tuple(be.encode_key(torch.zeros_like(src)))]
    torch.cuda.synchronize()
    assert max((e - z).abs().max().item() for e, z in zip(expected, zeros)) > 1e-3, "the input must matter"
    for stream in (torch.cuda.Stream(), torch.cuda.default_stream()):
        with torch.cuda.stream(stream):
            x = torch.zeros_like(src)
            torch.cuda._sleep(100_000_000)      # tens of milliseconds: the copy below lands late
            x.copy_(src)
            got = [t.clone() for t in _tuple(be.encode_key(x))]   # read on the caller's stream at once
        torch.cuda.synchronize()
        for g, e in zip(got, expected):
            assert (g - e).abs().max().item() <= 1e-5, f"{backend} on stream {stream.cuda_stream}"
    be.close()


@pytest.mark.parametrize("backend", GRAPH_BACKENDS)
def test_fp32_stages_are_exact_fp32_without_tf32(backend, tiny_weights, tiny_cache):
    """Every stage, tf32=False (the default): within fp32 rounding of the CPU network (TF32 is not)."""
    import torch

    from vscolormnet.backends.graphs.check import random_inputs
    from vscolormnet.model.stages import STAGES
    be = tiny_backend(backend, tiny_weights, tiny_cache)
    net = TinyNet()
    for stage in (*STAGES, STAGES[0]):                  # the first again: contexts may share memory
        inputs = random_inputs(stage, HW, seed=11)
        with torch.no_grad():
            ref = _tuple(getattr(net, stage)(*inputs))
        got = _tuple(getattr(be, stage)(*[t.cuda() for t in inputs]))
        for g, r in zip(got, ref):
            rel = (g.cpu() - r).abs().max().item() / max(r.abs().max().item(), 1e-6)
            assert rel <= REL_FP32, f"{backend} {stage}: max |Δ| / max |ref| = {rel:.1e}"
    be.close()


@pytest.mark.skipif(skip_reason("ort") is not None, reason=skip_reason("ort") or "")
def test_ort_sessions_run_on_the_backends_stream_with_tf32_as_asked(tiny_weights, tiny_cache):
    import torch
    for tf32 in (False, True):
        be = tiny_backend("ort", tiny_weights, tiny_cache, tf32=tf32)
        handle = be._stream.cuda_stream
        assert handle not in (0, torch.cuda.default_stream().cuda_stream)
        for st in be._stages.values():
            opts = st.session.get_provider_options()["CUDAExecutionProvider"]
            assert opts.get("user_compute_stream") == str(handle) and opts.get("has_user_compute_stream") == "1"
            assert opts.get("use_tf32") == ("1" if tf32 else "0")
            assert opts.get("arena_extend_strategy") in ("kSameAsRequested", "1")   # six arenas: no 2^n growth
        assert be._run_options.get_run_config_entry("disable_synchronize_execution_providers") == "1"
        be.close()


@pytest.mark.parametrize("backend", GRAPH_BACKENDS)
def test_stage_calls_only_enqueue(backend, tiny_weights, tiny_cache):
    """A stage call returns before the GPU has done its work (run-ahead and deferred checks rely on it):
    behind ~1 s of GPU sleep on the caller's stream, the call itself takes a small part of that."""
    import time

    import torch

    from vscolormnet.backends.graphs.check import random_inputs
    be = tiny_backend(backend, tiny_weights, tiny_cache)
    x = random_inputs("encode_key", HW, seed=5)[0].cuda()
    for _ in range(2):                                  # warm-up: first runs may search kernels and allocate
        be.encode_key(x)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    torch.cuda._sleep(2_000_000_000)
    be.encode_key(x)
    call_s = time.perf_counter() - t0
    torch.cuda.synchronize()
    total_s = time.perf_counter() - t0
    assert total_s > 0.3, f"the GPU sleep was too short to tell ({total_s:.2f} s)"
    assert call_s < 0.25 * total_s, f"{backend}: the call waited for the GPU ({call_s:.2f} s of {total_s:.2f} s)"
    be.close()


@pytest.mark.skipif(skip_reason("trt") is not None, reason=skip_reason("trt") or "")
def test_trt_contexts_share_one_activation_buffer(tiny_weights, tiny_cache):
    import tensorrt as trt
    be = tiny_backend("trt", tiny_weights, tiny_cache)
    sizes = [st.engine.device_memory_size_v2 for st in be._stages.values()]
    assert hasattr(trt.ExecutionContextAllocationStrategy, "USER_MANAGED")
    assert be._activation is not None and be._activation.numel() >= max(sizes)
    assert be._activation.device == be.device
    be.close()
