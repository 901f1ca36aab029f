"""ONNX Runtime backend on CPU: parity cases end to end (fp32), fp16 within its stated tolerance, the interface."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import PARITY_CASES
from vscolormnet.backends import create_backend
from vscolormnet.backends.ort_backend import OrtBackend, OrtOptions
from vscolormnet.frames import colorize_frames

# fp16 graphs end to end against the fp32 reference (ab' = Lab ab / 110). Measured with ORT CPU:
# not_first (12 frames, 112×112) max 0.0055 / mean 5.9e-4, odd_size max 0.0066 / mean 3.9e-4,
# blackswan_short max 0.014 / mean 8.4e-4. 0.02 in ab' is 2.2 Lab units, below a just-noticeable
# colour difference (ΔE ≈ 2.3); the mean bound catches a systematic drift.
FP16_AB_MAX = 0.02
FP16_AB_MEAN = 2e-3


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory):
    """Same folder as tests/test_onnx_export.py's fixture, so graphs are exported once per session."""
    path = tmp_path_factory.getbasetemp() / "onnx-cache"
    path.mkdir(exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)   # ~2 GB of graphs; pytest keeps old base temps around


def run_case(case_name, checkpoint, onnx_dir, monkeypatch, fp16=False):
    monkeypatch.setenv("VSCOLORMNET_ONNX_DIR", str(onnx_dir))
    case = PARITY_CASES / case_name
    cfg = json.loads((case / "config.json").read_text())
    expected = np.load(case / "outputs.npz")
    result = colorize_frames(case / "input" / "blackswan", case / "ref" / "blackswan" / "00000.png", checkpoint,
                             first_frame_is_ref=not cfg["first_frame_not_exemplar"], backend="ort", fp16=fp16,
                             progress=False)
    return result, expected


def test_odd_size_parity_through_ort(parity_checkpoint, onnx_dir, monkeypatch):
    result, expected = run_case("odd_size", parity_checkpoint, onnx_dir, monkeypatch)
    d = np.abs(result.ab_pred - expected["ab_pred"])
    assert d.max() <= 1e-3, f"max |Δab| {d.max():.2e}"
    assert d.mean() <= 1e-5, f"mean |Δab| {d.mean():.2e}"
    for counter in ("work_mem_size", "long_mem_size", "n_consolidations", "n_obsolete_removals"):
        assert np.array_equal(getattr(result, counter), expected[counter]), counter


def test_fp16_graphs_stay_within_tolerance(parity_checkpoint, onnx_dir, monkeypatch):
    result, expected = run_case("not_first", parity_checkpoint, onnx_dir, monkeypatch, fp16=True)
    assert np.isfinite(result.ab_pred).all()
    d = np.abs(result.ab_pred - expected["ab_pred"])
    assert d.max() <= FP16_AB_MAX, f"max |Δab| {d.max():.4f}"
    assert d.mean() <= FP16_AB_MEAN, f"mean |Δab| {d.mean():.2e}"
    for counter in ("work_mem_size", "long_mem_size"):
        assert np.array_equal(getattr(result, counter), expected[counter]), counter


def test_backend_interface_matches_torch(parity_checkpoint, onnx_dir):
    """Every stage: float32 CPU torch tensors out, same shapes and values as the PyTorch backend."""
    from vscolormnet.onnx_export import INPUTS, random_inputs
    hw = (112, 112)
    ort_be = create_backend("ort", weights=parity_checkpoint, padded_hw=hw, onnx_dir=str(onnx_dir), num_threads=1)
    torch_be = create_backend("torch", weights=parity_checkpoint)
    assert isinstance(ort_be, OrtBackend) and ort_be.device == torch.device("cpu") and not ort_be.fp16
    assert ort_be.describe() == "ort on cpu (fp32, 112x112)"
    for name, st in ort_be._stages.items():
        assert st.session.get_session_options().intra_op_num_threads == 1
        inputs = random_inputs(name, hw, seed=7)
        assert len(inputs) == len(INPUTS[name])
        got = getattr(ort_be, name)(*inputs)
        ref = getattr(torch_be, name)(*inputs)
        got, ref = (got, ref) if isinstance(got, tuple) else ((got,), (ref,))
        for g, r in zip(got, ref):
            assert isinstance(g, torch.Tensor) and g.dtype == torch.float32 and g.device.type == "cpu"
            assert g.shape == r.shape
            assert (g - r).abs().max() <= 1e-4
    ort_be.close()


def test_default_threads_follow_torch(parity_checkpoint, onnx_dir):
    be = OrtBackend(parity_checkpoint, (112, 112), options=OrtOptions(onnx_dir=onnx_dir))
    opts = be._stages["decode"].session.get_session_options()
    assert opts.intra_op_num_threads == torch.get_num_threads()


def test_option_and_device_errors(parity_checkpoint, onnx_dir):
    with pytest.raises(ValueError, match="graph_optimization"):
        OrtOptions(graph_optimization="fast").validate()
    with pytest.raises(ValueError, match="num_threads"):
        OrtOptions(num_threads=0).validate()
    with pytest.raises(ValueError, match="padded_hw"):
        create_backend("ort", weights=parity_checkpoint)
    with pytest.raises(ValueError, match="multiples of 112"):
        create_backend("ort", weights=parity_checkpoint, padded_hw=(100, 112), onnx_dir=str(onnx_dir))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda|CUDA"):
            create_backend("ort", weights=parity_checkpoint, padded_hw=(112, 112), device="cuda",
                           onnx_dir=str(onnx_dir))


def test_bench_cli_prints_only_json_on_stdout(parity_checkpoint, onnx_dir, monkeypatch, capfd):
    from vscolormnet.__main__ import main
    monkeypatch.setenv("VSCOLORMNET_ONNX_DIR", str(onnx_dir))
    rc = main(["bench", "--backend", "ort", "--size", "100x56", "--frames", "3", "--threads", "1",
               "--weights", str(parity_checkpoint), "--json"])
    out, err = capfd.readouterr()
    assert rc == 0
    result = json.loads(out)
    assert result["padded_wh"] == [112, 112] and result["timed_frames"] == 2 and result["threads"] == 1
    assert set(result["ms_per_frame"]) == {"encode_key", "memory_readout", "short_term_attention", "decoder",
                                           "encode_value", "colour_conversion"}
    assert result["calls"]["encode_key"] == 2 and result["fps"] > 0 and result["peak_rss_mib"] > 0
    assert "fps" in err and "encode_key" in err


def test_bench_size_presets():
    from vscolormnet.color import padded_size
    from vscolormnet.commands.bench import parse_size
    assert parse_size("512") == (512, 288) and padded_size(288, 512) == (336, 560)
    assert parse_size("384") == (384, 216) and parse_size("640") == (640, 360)
    assert parse_size("185x99") == (185, 99)
    with pytest.raises(ValueError, match="--size"):
        parse_size("500")
