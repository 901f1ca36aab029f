"""ONNX Runtime backend on CPU: a parity case end to end (fp32), fp16 within its stated tolerance, the interface,
threads, rebuild of a graph that does not load, and the bench command (geometry, JSON, errors).

Graphs come from the session fixture ``onnx_graphs`` (tests/graph_fixtures.py, 112×112): the
``not_first`` parity case (96×55) pads to that size, so no other size is exported.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from graph_fixtures import HW, SOURCE_FOR_HW, TinyNet, cli_errors, no_expensive_work, onnx_graphs, tiny_weights  # noqa: F401
from project_paths import PARITY_CASES

from vscolormnet.backends import ORT, BackendError, create_backend
from vscolormnet.backends.graphs.check import random_inputs
from vscolormnet.backends.ort_backend import OrtBackend
from vscolormnet.model.stages import INPUTS, STAGES
from vscolormnet.runtime.frames import colorize_frames

# fp16 graphs end to end against the fp32 reference (ab' = Lab ab / 110). Measured with ORT CPU:
# not_first (12 frames, 112×112) max 0.0056 / mean 4.4e-4, blackswan_short max 0.010 / mean 7.9e-4
# (with the cast clean-up of graphs/casts.py; the converter alone: 0.0056 / 5.9e-4 and 0.014 / 8.4e-4). 0.02 in ab' is 2.2 Lab units, below a just-noticeable
# colour difference (ΔE ≈ 2.3); the mean bound catches a systematic drift.
FP16_AB_MAX = 0.02
FP16_AB_MEAN = 2e-3
PARITY_CASE = "not_first"          # 96×55 → padded 112×112, the size of the session graphs


def run_case(graphs, monkeypatch, fp16=False):
    monkeypatch.setenv("VSCOLORMNET_ONNX_DIR", str(graphs.cache_dir))
    case = PARITY_CASES / PARITY_CASE
    cfg = json.loads((case / "config.json").read_text())
    expected = np.load(case / "outputs.npz")
    result = colorize_frames(case / "input" / "blackswan", case / "ref" / "blackswan" / "00000.png", graphs.weights,
                             first_frame_is_ref=not cfg["first_frame_not_exemplar"], backend="ort", fp16=fp16,
                             progress=False)
    return result, expected


@pytest.mark.onnx
@pytest.mark.slow
def test_parity_case_through_ort(onnx_graphs, monkeypatch):
    result, expected = run_case(onnx_graphs, monkeypatch)
    d = np.abs(result.ab_pred - expected["ab_pred"])
    assert d.max() <= 1e-3, f"max |Δab| {d.max():.2e}"
    assert d.mean() <= 1e-5, f"mean |Δab| {d.mean():.2e}"
    for counter in ("work_mem_size", "long_mem_size", "n_consolidations", "n_obsolete_removals"):
        assert np.array_equal(getattr(result, counter), expected[counter]), counter


@pytest.mark.onnx
@pytest.mark.slow
def test_fp16_graphs_stay_within_tolerance(onnx_graphs, monkeypatch):
    result, expected = run_case(onnx_graphs, monkeypatch, fp16=True)
    assert np.isfinite(result.ab_pred).all()
    d = np.abs(result.ab_pred - expected["ab_pred"])
    assert d.max() <= FP16_AB_MAX, f"max |Δab| {d.max():.4f}"
    assert d.mean() <= FP16_AB_MEAN, f"mean |Δab| {d.mean():.2e}"
    for counter in ("work_mem_size", "long_mem_size"):
        assert np.array_equal(getattr(result, counter), expected[counter]), counter


@pytest.mark.onnx
@pytest.mark.slow
def test_backend_interface_matches_torch(onnx_graphs):
    """Every stage: float32 CPU torch tensors out, same shapes and values as the PyTorch stage methods."""
    ort_be = OrtBackend(ORT(onnx_dir=str(onnx_graphs.cache_dir), num_threads=1), onnx_graphs.weights, HW)
    assert isinstance(ort_be, OrtBackend) and ort_be.device == torch.device("cpu") and not ort_be.fp16
    assert ort_be.describe() == "ort on cpu (fp32, 112x112)"
    for name, st in ort_be._stages.items():
        assert st.session.get_session_options().intra_op_num_threads == 1
        inputs = random_inputs(name, HW, seed=7)
        assert len(inputs) == len(INPUTS[name])
        got = getattr(ort_be, name)(*inputs)
        with torch.no_grad():
            ref = getattr(onnx_graphs.net, name)(*inputs)
        got, ref = (got, ref) if isinstance(got, tuple) else ((got,), (ref,))
        for g, r in zip(got, ref):
            assert isinstance(g, torch.Tensor) and g.dtype == torch.float32 and g.device.type == "cpu"
            assert g.shape == r.shape
            assert (g - r).abs().max() <= 1e-4
    ort_be.close()


@pytest.mark.onnx
def test_default_threads_and_calls_from_several_threads(onnx_graphs):
    be = OrtBackend(ORT(onnx_dir=onnx_graphs.cache_dir), onnx_graphs.weights, HW)
    opts = be._stages["decode"].session.get_session_options()
    assert opts.intra_op_num_threads == torch.get_num_threads()
    inputs = [random_inputs("encode_value", HW, seed=s) for s in range(4)]
    serial = [be.encode_value(*x) for x in inputs]
    with ThreadPoolExecutor(4) as pool:           # a shared backend is called from several VS threads
        parallel = list(pool.map(lambda x: be.encode_value(*x), inputs * 2))
    for i, out in enumerate(parallel):
        assert torch.equal(out, serial[i % 4])


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@pytest.mark.onnx
def test_graph_that_does_not_load_is_rebuilt_with_a_warning(tiny_weights, tmp_path, caplog):
    """A graph whose manifest matches (written over garbage) but that ONNX Runtime rejects: rebuilt once."""
    from vscolormnet.backends.graphs import manifest
    from vscolormnet.backends.graphs.cache import export_graphs
    from vscolormnet.util.files import atomic_write
    net = TinyNet()
    paths = export_graphs(tiny_weights, HW, cache_dir=tmp_path, net=net)
    bad = paths[("short_term_attention", "fp32")]
    atomic_write(bad, b"not an onnx graph " * 64)
    manifest.write_manifest(bad, **{k: v for k, v in manifest.read_manifest(bad).items()
                                    if k not in ("file", "sha256", "size")})
    assert manifest.problem(bad) is None
    with caplog.at_level(logging.WARNING, logger="vscolormnet"):
        be = OrtBackend(ORT(onnx_dir=tmp_path, num_threads=1), tiny_weights, HW, net=net)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(bad) in warnings[0] and "ONNX Runtime" in warnings[0]
    assert manifest.problem(bad) is None and bad.stat().st_size != 18 * 64
    inputs = random_inputs("short_term_attention", HW, seed=3)
    with torch.no_grad():
        assert (be.short_term_attention(*inputs) - net.short_term_attention(*inputs)).abs().max() <= 1e-4
    assert set(be._stages) == set(STAGES)


def test_option_and_device_errors(parity_checkpoint, tmp_path):
    with pytest.raises(BackendError, match="graph_optimization"):
        ORT(graph_optimization="fast").check()
    with pytest.raises(BackendError, match="num_threads"):
        ORT(num_threads=0).check()
    with pytest.raises(BackendError, match="tf32 must be True or False"):
        ORT(tf32="off").check()
    assert ORT().tf32 is False, "exact fp32 unless asked"
    with pytest.raises(ValueError, match="padded_hw"):
        create_backend("ort", weights=parity_checkpoint)
    with pytest.raises(ValueError, match="multiples of 112"):
        OrtBackend(ORT(onnx_dir=tmp_path), parity_checkpoint, (100, 112))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda|CUDA"):
            create_backend("ort", weights=parity_checkpoint, padded_hw=HW, device="cuda", onnx_dir=str(tmp_path))
    import onnxruntime as ort
    if "CUDAExecutionProvider" not in ort.get_available_providers():   # the CPU build: the fix, in one line
        with pytest.raises(BackendError) as e:
            ORT(device="cuda", onnx_dir=tmp_path).check()
        assert str(e.value).startswith("backend 'ort' with device='cuda': onnxruntime ") and "\n" not in str(e.value)
        assert "pip uninstall -y onnxruntime && pip install \"onnxruntime-gpu>=1.27\"" in str(e.value)


def test_cuda_provider_options_own_stream_and_exact_fp32():
    """ONNX Runtime reads stream handle 0 (torch's legacy default stream) as 'no stream' and then runs unordered
    with torch: the backend passes its own stream, and refuses 0; TF32 is off unless asked (ORT's default is on)."""
    from vscolormnet.backends.ort_backend import cuda_provider_options
    opts = cuda_provider_options(1, 0x5A5A00, tf32=False)
    assert opts == {"device_id": "1", "user_compute_stream": str(0x5A5A00), "has_user_compute_stream": "1",
                    "use_tf32": "0", "arena_extend_strategy": "kSameAsRequested"}   # six arenas: no 2^n growth
    assert cuda_provider_options(0, 7, tf32=True)["use_tf32"] == "1"
    with pytest.raises(ValueError, match="non-default CUDA stream"):
        cuda_provider_options(0, 0, tf32=False)


def test_cuda_runs_do_not_end_with_a_stream_synchronize():
    """ORT's Run() ends with cudaStreamSynchronize unless the run options say not to (onnxruntime #12216);
    the callers' streams are ordered after the backend's stream instead (``_run_cuda``)."""
    from vscolormnet.backends.ort_backend import NO_SYNC_KEY, cuda_run_options
    assert NO_SYNC_KEY == "disable_synchronize_execution_providers"
    assert cuda_run_options().get_run_config_entry(NO_SYNC_KEY) == "1"


@pytest.mark.onnx
def test_cpu_sessions_leave_stdout_alone_and_log_through_ort(onnx_graphs, monkeypatch):
    """Creating the sessions must not point fd 1 at stderr (frame data from other threads would go there);
    ORT logs errors only, through its own logger (stderr). The CPU runs take no run options: unchanged."""
    import onnxruntime as ort
    dup2_calls = []
    real_dup2 = os.dup2
    monkeypatch.setattr(os, "dup2", lambda a, b, *rest: dup2_calls.append((a, b)) or real_dup2(a, b, *rest))
    fd1 = os.fstat(1)
    sessions = []
    real_inference_session = ort.InferenceSession

    def watched(*args, **kw):          # fd 1 as a session is being created
        st = os.fstat(1)
        sessions.append((st.st_dev, st.st_ino) == (fd1.st_dev, fd1.st_ino))
        return real_inference_session(*args, **kw)
    monkeypatch.setattr(ort, "InferenceSession", watched)
    be = OrtBackend(ORT(onnx_dir=onnx_graphs.cache_dir, num_threads=1), onnx_graphs.weights, HW)
    assert sessions == [True] * len(STAGES) and dup2_calls == []
    assert be._run_options is None
    for st in be._stages.values():
        assert st.session.get_session_options().log_severity_level == 3
    be.close()


def test_preloading_cuda_libraries_never_writes_to_stdout(capfd):
    """onnxruntime.preload_dlls() prints; stdout may carry frames (vspipe … - | ffmpeg)."""
    from vscolormnet.backends import ort_backend
    ort_backend.preload_cuda_libraries()
    ort_backend.preload_cuda_libraries()              # once per process; the second call is a no-op
    assert capfd.readouterr().out == ""


# ---- the bench command ----------------------------------------------------------------------------
@pytest.mark.onnx
@pytest.mark.slow
def test_bench_cli_prints_only_json_on_stdout(onnx_graphs, capfd):
    from vscolormnet.__main__ import main
    rc = main(["bench", "--backend", "ort", "--size", "native", "--source", SOURCE_FOR_HW, "--frames", "3",
               "--threads", "1", "--weights", str(onnx_graphs.weights), "--onnx-dir", str(onnx_graphs.cache_dir),
               "--json"])
    out, err = capfd.readouterr()
    assert rc == 0
    result = json.loads(out)
    assert result["padded_wh"] == [112, 112] and result["size_wh"] == [100, 56]
    assert result["timed_frames"] == 2 and result["threads"] == 1 and result["size"] == "native"
    assert set(result["ms_per_frame"]) == {"encode_key", "memory_readout", "short_term_attention", "decoder",
                                           "encode_value", "colour_conversion"}
    assert result["calls"]["encode_key"] == 2 and result["fps"] > 0 and result["peak_rss_mib"] > 0
    assert "fps" in err and "encode_key" in err and "padded 112x112" in err


def test_bench_cli_errors_are_one_line_naming_the_flag(parity_checkpoint, tmp_path, monkeypatch, capfd):
    from vscolormnet.__main__ import main
    no_expensive_work(monkeypatch)
    cases = cli_errors(tmp_path) + [(["--frames", "1"], "--frames")]
    if not torch.cuda.is_available():
        cases.append((["--backend", "torch", "--fp16"], "--backend"))
    for args, flag in cases:
        weights = [] if "--weights" in args else ["--weights", str(parity_checkpoint)]
        rc = main(["bench", *weights, *args])
        out, err = capfd.readouterr()
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 2 and out == "", args
        assert len(lines) == 1 and lines[0].startswith(f"bench: error: {flag}"), (args, err)
