"""ONNX export: every graph in ONNX Runtime (CPU) against PyTorch, static shapes, opset, TensorRT-parsable ops,
the checked cache (manifests, rebuild of damaged graphs), and the export command's geometry and errors.

The real graphs come from the session fixture ``onnx_graphs`` (tests/graph_fixtures.py: the parity
checkpoint at 112×112, exported once into pytest's temp folder). Tests that must export again use
``TinyNet``, a small real network with the same stage contract. What fp16 graphs keep in fp32, and
their deviation from PyTorch, is tested in test_fp16_graphs.py.
"""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import onnx
import pytest
import torch
from graph_fixtures import HW, SOURCE_FOR_HW, TinyNet, cli_errors, no_expensive_work, onnx_graphs, tiny_weights  # noqa: F401
from project_paths import PARITY_CASES

from vscolormnet.backends.graphs import manifest
from vscolormnet.backends.graphs.cache import EXPORT_VERSION, PRECISIONS, export_graphs, origin
from vscolormnet.backends.graphs.check import ExportCheckError, ort_session, random_inputs, real_inputs
from vscolormnet.backends.graphs.trace import traceable
from vscolormnet.media.images import read_rgb
from vscolormnet.model.stages import INPUTS, OUTPUTS, STAGES, tensor_shapes, validate_padded_hw

FP32_ABS_TOL = 1e-4

# Operators the TensorRT ONNX parser supports (onnx-tensorrt docs/operators.md; LayerNormalization
# since TensorRT 8.6). Our graphs must use nothing else.
TRT_SUPPORTED_OPS = {
    "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape",
    "Conv", "Div", "Equal", "Erf", "Exp", "Expand", "Flatten", "Gather", "Gemm", "GlobalAveragePool",
    "GlobalMaxPool", "Identity", "LayerNormalization", "MatMul", "Max", "MaxPool", "Min", "Mul", "Neg", "Pad",
    "Pow", "ReduceL2", "ReduceMax", "ReduceMean", "ReduceSum", "Relu", "Reshape", "Resize", "Shape", "Sigmoid",
    "Slice", "Softmax", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Tile", "Transpose", "Unsqueeze", "Where",
}
TRT_RESIZE_MODES = {"nearest", "linear"}
TRT_RESIZE_COORDS = {"half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners", "tf_half_pixel_for_nn"}


@pytest.fixture(scope="module")
def real(onnx_graphs):
    """Real activations from an actual photograph (the parity reference, a colour frame)."""
    image = read_rgb(PARITY_CASES / "blackswan_short" / "ref" / "blackswan" / "00000.png")
    return real_inputs(onnx_graphs.net, HW, image)


_SESSIONS = {}
_REFERENCES = {}                   # PyTorch outputs per (net, stage, inputs label)


def run_both(path, net, stage, inputs, label=None):
    """ONNX Runtime outputs of the graph at ``path`` and the PyTorch stage outputs, as NumPy."""
    feeds = {name: t.numpy() for name, t in zip(INPUTS[stage], inputs)}
    if path not in _SESSIONS:
        _SESSIONS[path] = ort_session(path, threads=torch.get_num_threads())
    got = _SESSIONS[path].run(list(OUTPUTS[stage]), feeds)
    key = (id(net), stage, label)
    if label is None or key not in _REFERENCES:
        with torch.no_grad():
            ref = getattr(net, stage)(*inputs)
        _REFERENCES[key] = [r.numpy() for r in (ref if isinstance(ref, tuple) else (ref,))]
    return got, _REFERENCES[key]


def assert_matches_fp32(path, net, stage, input_sets):
    for label, inputs in input_sets:
        got, ref = run_both(path, net, stage, inputs, label)
        assert len(got) == len(ref) == len(OUTPUTS[stage])
        for name, g, r in zip(OUTPUTS[stage], got, ref):
            assert g.shape == r.shape and g.dtype == np.float32
            assert np.abs(g - r).max() <= FP32_ABS_TOL, f"{stage}.{name}: max |Δ| {np.abs(g - r).max():.2e}"


# ---- the real graphs ------------------------------------------------------------------------------
SLOW_STAGES = [pytest.param(s, marks=pytest.mark.slow) if s == "encode_key" else s for s in STAGES]


@pytest.mark.onnx
@pytest.mark.parametrize("stage", SLOW_STAGES)
def test_fp32_graph_matches_pytorch(onnx_graphs, real, stage):
    assert_matches_fp32(onnx_graphs[(stage, "fp32")], onnx_graphs.net, stage,
                        (("random", random_inputs(stage, HW, seed=123)), ("real", real[stage])))


@pytest.mark.onnx
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("stage", STAGES)
def test_graph_is_static_opset17_and_tensorrt_parsable(onnx_graphs, stage, precision):
    model = onnx.load(str(onnx_graphs[(stage, precision)]))
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
    assert max(o.version for o in model.opset_import) <= 17
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    shapes = tensor_shapes(HW)
    assert [vi.name for vi in model.graph.input] == list(INPUTS[stage])
    assert [vi.name for vi in model.graph.output] == list(OUTPUTS[stage])
    for vi in list(model.graph.input) + list(model.graph.output):
        t = vi.type.tensor_type
        assert t.elem_type == onnx.TensorProto.FLOAT
        assert all(d.HasField("dim_value") for d in t.shape.dim)
        assert tuple(d.dim_value for d in t.shape.dim) == shapes[vi.name]
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for vi in inferred.graph.value_info:
        assert all(d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim), f"{vi.name} is dynamic"
    ops = {n.op_type for n in model.graph.node}
    assert ops <= TRT_SUPPORTED_OPS, f"not parsable by TensorRT: {sorted(ops - TRT_SUPPORTED_OPS)}"
    for n in model.graph.node:
        if n.op_type == "Resize":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            assert attrs.get("mode", b"nearest").decode() in TRT_RESIZE_MODES
            assert attrs.get("coordinate_transformation_mode", b"half_pixel").decode() in TRT_RESIZE_COORDS
    # topologically sorted (TensorRT parses nodes in order)
    seen = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer} | {""}
    for n in model.graph.node:
        assert all(i in seen for i in n.input), f"{n.name} uses a value defined later"
        seen.update(n.output)


# ---- the cache ------------------------------------------------------------------------------------
@pytest.mark.onnx
def test_cache_layout_manifests_and_reuse(onnx_graphs, monkeypatch):
    from vscolormnet.util.files import file_sha256
    weights_sha = file_sha256(onnx_graphs.weights)
    folder = onnx_graphs.cache_dir / weights_sha[:16]
    for (stage, precision), path in onnx_graphs.paths.items():
        assert path.parent == folder
        assert path.name == f"{stage}_112x112_{precision}_opset17_v{EXPORT_VERSION}.onnx"
        assert manifest.problem(path, origin(weights_sha, stage, HW, precision)) is None
        record = manifest.read_manifest(path)
        assert record["size"] == path.stat().st_size and all(c["ok"] for c in record["checks"])
    assert not list(folder.glob(".*.tmp")), "no temporary files left behind"
    from vscolormnet.backends.graphs import cache
    monkeypatch.setattr(cache, "export_graph", lambda *a, **k: pytest.fail("intact graphs must not be re-exported"))
    again = export_graphs(onnx_graphs.weights, HW, precisions=("fp32", "fp16"), cache_dir=onnx_graphs.cache_dir)
    assert again == onnx_graphs.paths


@pytest.mark.onnx
def test_a_graph_that_disagrees_is_not_written(tiny_weights, tmp_path, monkeypatch):
    from vscolormnet.backends.graphs import cache
    real_export = cache.export_graph

    def broken_export(net_, stage, padded_hw):          # the real graph with a 1 % weight error
        model = real_export(net_, stage, padded_hw)
        for init in model.graph.initializer:
            if init.name.endswith("dec_out.weight"):
                w = onnx.numpy_helper.to_array(init) * 1.01
                init.CopyFrom(onnx.numpy_helper.from_array(w, init.name))
        return model

    monkeypatch.setattr(cache, "export_graph", broken_export)
    with pytest.raises(ExportCheckError, match="decode fp32"):
        cache.ensure_onnx(tiny_weights, "decode", HW, cache_dir=tmp_path, net=TinyNet())
    assert not list(tmp_path.rglob("*.onnx")) and not list(tmp_path.rglob("*.json"))


def test_export_and_check_leave_file_descriptor_1_alone(tiny_weights, tmp_path, monkeypatch, capfd):
    """An export may run while another node's frames stream to stdout (vspipe): it must not point
    fd 1 elsewhere (a process-wide dup2), and nothing it prints may land there."""
    import os

    from vscolormnet.backends.graphs import cache
    calls = []
    real_dup2 = os.dup2
    monkeypatch.setattr(os, "dup2", lambda a, b, *r: (calls.append((a, b)), real_dup2(a, b, *r))[1])
    cache.ensure_onnx(tiny_weights, "decode", HW, cache_dir=tmp_path, net=TinyNet())
    assert list(tmp_path.rglob("*.onnx")), "the graph was exported"
    assert not [c for c in calls if c[1] == 1], calls
    assert capfd.readouterr().out == ""


@pytest.fixture
def tiny_cache(tiny_weights, tmp_path):
    """Two fp32 TinyNet graphs, freshly exported into a private cache folder."""
    net = TinyNet()
    paths = export_graphs(tiny_weights, HW, stages=("encode_value", "decode_update"), cache_dir=tmp_path, net=net)
    return paths, net


@pytest.mark.onnx
@pytest.mark.parametrize("damage", ["flip_one_byte", "truncate", "no_manifest", "other_weights"])
def test_damaged_cached_graph_is_rebuilt_with_a_warning(tiny_weights, tiny_cache, tmp_path, caplog, damage):
    paths, net = tiny_cache
    stage = "decode_update"
    path = paths[(stage, "fp32")]
    size = path.stat().st_size
    if damage == "flip_one_byte":
        with open(path, "r+b") as f:
            f.seek(size // 2)
            byte = f.read(1)
            f.seek(size // 2)
            f.write(bytes([byte[0] ^ 0xFF]))
        assert path.stat().st_size == size
    elif damage == "truncate":
        with open(path, "r+b") as f:
            f.truncate(size // 3)
    elif damage == "no_manifest":
        manifest.manifest_path(path).unlink()
    else:
        record = manifest.read_manifest(path) | {"weights_sha256": "0" * 64}
        manifest.manifest_path(path).write_text(json.dumps(record))
    others = {k: p.stat().st_mtime_ns for k, p in paths.items() if k[0] != stage}
    with caplog.at_level(logging.WARNING, logger="vscolormnet"):
        again = export_graphs(tiny_weights, HW, stages=("encode_value", "decode_update"), cache_dir=tmp_path, net=net)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and "rebuilding" in warnings[0]
    assert again == paths and path.stat().st_size == size
    assert {k: p.stat().st_mtime_ns for k, p in paths.items() if k[0] != stage} == others, "only it is rebuilt"
    from vscolormnet.util.files import file_sha256
    assert manifest.problem(path, origin(file_sha256(tiny_weights), stage, HW, "fp32")) is None
    real = real_inputs(net, HW)
    assert_matches_fp32(path, net, stage, ((None, random_inputs(stage, HW, seed=5)), (None, real[stage])))


@pytest.mark.onnx
def test_fp16_is_rebuilt_from_a_damaged_fp32_graph(tiny_weights, tmp_path, caplog):
    net = TinyNet()
    fp32 = export_graphs(tiny_weights, HW, stages=("encode_value",), cache_dir=tmp_path, net=net)
    path = fp32[("encode_value", "fp32")]
    path.write_bytes(b"\0" * path.stat().st_size)
    with caplog.at_level(logging.WARNING, logger="vscolormnet"):
        fp16 = export_graphs(tiny_weights, HW, precisions=("fp16",), stages=("encode_value",), cache_dir=tmp_path,
                             net=net)
    assert any(str(path) in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert manifest.problem(path) is None and manifest.problem(fp16[("encode_value", "fp16")]) is None


def test_manifest_problems(tmp_path):
    f = tmp_path / "g.onnx"
    f.write_bytes(b"graph bytes" * 100)
    assert "manifest" in manifest.problem(f)
    manifest.write_manifest(f, export_version=1, weights_sha256="ab")
    assert manifest.problem(f) is None and manifest.problem(f, {"export_version": 1}) is None
    assert "export_version" in manifest.problem(f, {"export_version": 2})
    manifest.manifest_path(f).write_text("{not json")
    assert "manifest" in manifest.problem(f)
    manifest.write_manifest(f)
    f.write_bytes(b"graph bytes" * 99)
    assert "bytes" in manifest.problem(f)
    assert manifest.problem(tmp_path / "missing.onnx") == "is missing"


def test_traceable_restores_the_network():
    from vscolormnet.model import ColorMNet
    from vscolormnet.model.blocks import LayerNorm2d
    with torch.device("meta"):
        net = ColorMNet()
    net = net.to_empty(device="cpu")
    with traceable(net, HW):
        assert "interpolated_pos_embed" in vars(net.key_encoder.network2.backbone)
        assert any("forward" in vars(m) for m in net.modules() if isinstance(m, LayerNorm2d))
    assert "interpolated_pos_embed" not in vars(net.key_encoder.network2.backbone)
    assert not any("forward" in vars(m) for m in net.modules() if isinstance(m, LayerNorm2d))


@pytest.mark.parametrize("bad", [(100, 112), (112, 0), "112", (112,)])
def test_padded_size_is_validated(bad):
    with pytest.raises(ValueError):
        validate_padded_hw(bad)


# ---- the export command ---------------------------------------------------------------------------
@pytest.mark.onnx
def test_export_cli_lists_the_cached_files(onnx_graphs, capfd):
    from vscolormnet.__main__ import main
    rc = main(["export", "--size", "native", "--source", SOURCE_FOR_HW, "--precision", "both",
               "--weights", str(onnx_graphs.weights), "--onnx-dir", str(onnx_graphs.cache_dir), "--json"])
    out, err = capfd.readouterr()
    assert rc == 0
    listed = json.loads(out)
    assert len(listed) == 12 and listed["encode_key/fp16"] == str(onnx_graphs[("encode_key", "fp16")])
    assert "padded 112x112" in err


@pytest.mark.parametrize("size, source, padded", [
    ("512", "1920x1080", (336, 560)), ("512", "16:9", (336, 560)), ("512", "4:3", (448, 560)),
    ("512", "1440x1080", (448, 560)), ("384", "4:3", (336, 448)), ("640", "1440x1080", (560, 672)),
    ("native", "100x56", (112, 112)), ("512", "320x240", (336, 336))])
def test_export_and_bench_use_colorize_geometry(size, source, padded):
    from argparse import Namespace

    from vscolormnet.commands.export import geometry_from_args
    from vscolormnet.runtime.geometry import inference_geometry, parse_source_size
    g = geometry_from_args(Namespace(size=size, source=source))
    assert g.padded_hw == padded == inference_geometry(*parse_source_size(source), size).padded_hw


def test_export_cli_errors_are_one_line_naming_the_flag(parity_checkpoint, tmp_path, monkeypatch, capfd):
    from vscolormnet.__main__ import main
    no_expensive_work(monkeypatch)
    cases = cli_errors(tmp_path) + [(["--precision", "fp8"], "--precision"), (["--backend", "tf"], "--backend"),
                                    (["--image", str(tmp_path / "missing.png")], "--image"),
                                    (["--tf32"], "--tf32"), (["--backend", "ort", "--tf32"], "--tf32")]
    for args, flag in cases:
        weights = [] if "--weights" in args else ["--weights", str(parity_checkpoint)]
        rc = main(["export", *weights, *args])
        out, err = capfd.readouterr()
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 2 and out == "", args
        assert len(lines) == 1 and lines[0].startswith(f"export: error: {flag}"), (args, err)
        shutil.rmtree(tmp_path / "missing", ignore_errors=True)


def test_export_tf32_reaches_the_tensorrt_spec_and_engine_build(tmp_path, monkeypatch, capfd):
    """``export --tf32`` (listed in --help) reaches the TRT spec's check and the engine build options for
    every precision, so prebuilt engines match runs with --tf32. TensorRT is faked (not installable
    here): the spec check, the graph export and the engine build are stand-ins that record."""
    from vscolormnet.__main__ import main
    from vscolormnet.backends import spec, trt_backend
    from vscolormnet.backends.graphs import cache
    with pytest.raises(SystemExit) as e:
        main(["export", "--help"])
    assert e.value.code == 0 and "--tf32" in capfd.readouterr().out
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"not loaded")
    checked, built = [], []

    def fake_build(trt_spec, weights_, padded_hw):
        built.append((padded_hw, trt_spec.resolved_precision() == "fp16", trt_spec.tf32))
        return [tmp_path / f"{stage}.engine" for stage in STAGES]
    monkeypatch.setattr(spec.TRT, "check", lambda self: checked.append(self))
    monkeypatch.setattr(cache, "export_graphs", lambda *a, **k: {})
    monkeypatch.setattr(trt_backend, "build_engines", fake_build)
    for extra, tf32 in (([], False), (["--tf32"], True)):
        checked.clear()
        built.clear()
        rc = main(["export", "--weights", str(weights), "--size", "native", "--source", SOURCE_FOR_HW,
                   "--precision", "both", "--backend", "trt", "--json", *extra])
        out, err = capfd.readouterr()
        assert rc == 0, err
        assert [(s.resolved_precision(), s.tf32) for s in checked] == [("fp32", tf32), ("fp16", tf32)]
        assert built == [(HW, False, tf32), (HW, True, tf32)]
        assert len(json.loads(out)) == 2 * len(STAGES)
