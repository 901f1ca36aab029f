"""GPU paths on the shipped parity case: PyTorch CUDA, ONNX Runtime CUDA and TensorRT, fp32 and fp16.

Skipped, with the reason, where a path is unavailable. fp32 runs with TF32 disabled and must
meet the CPU parity bound (max |Δab'| 1e-3, mean 1e-5); fp16 meets the README's bound (max 0.02,
mean 2e-3). Outputs are always finite and the memory schedule is the official one. The skip is
decided at collection, so a machine without a GPU does not even build the seeded checkpoint.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from test_parity import AB_MAX, AB_MEAN, case_paths

pytestmark = pytest.mark.gpu

CASE = "blackswan_short"
FP16_MAX, FP16_MEAN = 0.02, 2e-3
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
    from vscolormnet.frames import colorize_frames
    d, cfg, frames_dir, ref = case_paths(CASE)
    res = colorize_frames(frames_dir, ref, weights, None, first_frame_is_ref=not cfg["first_frame_not_exemplar"],
                          backend=backend, device="cuda", fp16=fp16, progress=False)
    expected = np.load(d / "outputs.npz")
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
