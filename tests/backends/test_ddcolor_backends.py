"""DDColor on the backends: the ONNX graph in the shared checked cache, reduced precision against fp32 on the
tiny case, and the backends that cannot run here refused in one line."""
from __future__ import annotations

import importlib.util
import json
import logging

import numpy as np
import pytest
import torch
from ddcolor_fixtures import load_ddcolor_case

from vscolormnet.backends.graphs import manifest
from vscolormnet.backends.graphs.cache import onnx_filename
from vscolormnet.backends.graphs.ddcolor import ensure_ddcolor_onnx
from vscolormnet.runtime.image_colorizer import colorize_image, open_colorizer
from vscolormnet.util.errors import BackendError
from vscolormnet.util.files import file_sha256

SMALL = 64                 # the graph-cache test exports at the smallest sizes (seconds, not minutes)


@pytest.mark.onnx
def test_graph_is_cached_checked_and_rebuilt(ddcolor_checkpoints, tmp_path, caplog):
    """``<sha[:16]>/ddcolor_tiny_64x64_fp32_….onnx`` with its manifest and check results; reused while it matches;
    a damaged file is rebuilt with a warning; the backend runs it like PyTorch."""
    weights = ddcolor_checkpoints("tiny")
    with caplog.at_level(logging.INFO, logger="vscolormnet"):
        path = ensure_ddcolor_onnx(weights, "ddcolor-tiny", SMALL, cache_dir=tmp_path)
    assert path == tmp_path / file_sha256(weights)[:16] / onnx_filename("ddcolor_tiny", (SMALL, SMALL), "fp32")
    record = json.loads(manifest.manifest_path(path).read_text())
    assert record["stage"] == "ddcolor_tiny" and record["padded_hw"] == [SMALL, SMALL]
    assert record["weights_sha256"] == file_sha256(weights)
    assert [c["inputs"] for c in record["checks"]] == ["random", "real"] and all(c["ok"] for c in record["checks"])
    assert "exporting ddcolor_tiny 64x64 fp32" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vscolormnet"):
        assert ensure_ddcolor_onnx(weights, "ddcolor_paper_tiny", SMALL, cache_dir=tmp_path) == path
    assert "exporting" not in caplog.text                                   # reused: it matches its manifest
    with open(path, "r+b") as f:                                            # one flipped byte somewhere inside
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    with caplog.at_level(logging.WARNING, logger="vscolormnet"):
        ensure_ddcolor_onnx(weights, "ddcolor-tiny", SMALL, cache_dir=tmp_path)
    assert "sha256" in caplog.text and manifest.problem(path) is None
    with open_colorizer("ddcolor-tiny", weights, input_size=SMALL, backend="ort", onnx_dir=str(tmp_path)) as ort, \
            open_colorizer("ddcolor-tiny", weights, input_size=SMALL) as ref:
        x = torch.rand(1, 1, SMALL, SMALL).expand(1, 3, SMALL, SMALL)
        assert ort.backend.describe() == "ort on cpu (fp32, 64x64)"
        assert (ort.predict_ab(x) - ref.predict_ab(x)).abs().max() < 1e-2
        with pytest.raises(BackendError, match=r"input image: expected shape \(1, 3, 64, 64\), got \(1, 3, 32, 32\)"):
            ort.predict_ab(torch.rand(1, 3, 32, 32))


def deviation(case, got, ref) -> tuple[float, float, float]:
    """max and mean |Δ ab_net| against ``ref`` (Lab units), and the fraction of RGB values more than 1 level off."""
    d = np.abs(got.ab_net - ref.ab_net)
    rgb = np.abs(got.rgb.astype(np.int16) - ref.rgb)
    print(f"\n{case.name}: max |Δab| {d.max():.3f}, mean {d.mean():.4f}, RGB > 1 level off {(rgb > 1).mean():.4%}")
    return float(d.max()), float(d.mean()), float((rgb > 1).mean())


@pytest.mark.onnx
def test_fp16_graph_against_fp32_on_the_tiny_case(ddcolor_colorizers):
    """The mixed-precision graph (LayerNorm/softmax fp32, the rest fp16) on the tiny case, against PyTorch fp32."""
    case = load_ddcolor_case("tiny_256")
    ref = colorize_image(case.image(), ddcolor_colorizers(case.model, case.input_size))
    half = colorize_image(case.image(), ddcolor_colorizers(case.model, case.input_size, "ort", precision="fp16"))
    worst, mean, rgb_off = deviation(case, half, ref)
    assert worst <= 1.0 and mean <= 0.1 and rgb_off <= 0.01


@pytest.mark.slow          # bf16 is emulated on CPUs without native bf16 (about 5x slower than fp32)
def test_bf16_torch_against_fp32_on_the_tiny_case(ddcolor_colorizers):
    case = load_ddcolor_case("tiny_256")
    ref = colorize_image(case.image(), ddcolor_colorizers(case.model, case.input_size))
    bf16 = colorize_image(case.image(), ddcolor_colorizers(case.model, case.input_size, precision="bf16"))
    worst, mean, rgb_off = deviation(case, bf16, ref)
    assert worst <= 3.0 and mean <= 0.5 and rgb_off <= 0.02


def test_backends_that_cannot_run_here_are_one_line(ddcolor_checkpoints):
    weights = ddcolor_checkpoints("tiny")
    with pytest.raises(BackendError, match="needs device='cuda'") as e:
        open_colorizer("ddcolor-tiny", weights, precision="fp16")
    assert "\n" not in str(e.value)
    if importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available():
        with pytest.raises(BackendError) as e:
            open_colorizer("ddcolor-tiny", weights, backend="trt")
        assert "\n" not in str(e.value)
    with pytest.raises(BackendError, match="precision='bf16' is not available for backend 'ort'"):
        open_colorizer("ddcolor-tiny", weights, backend="ort", precision="bf16")
