"""ONNX export: every graph in ONNX Runtime (CPU) against PyTorch, static shapes, opset, TensorRT-parsable ops.

Graphs are exported once per test session at the smallest padded size, 112×112, into a folder
under pytest's temporary directory (shared with tests/test_ort_backend.py), never into the repo.
"""
from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
import torch

from conftest import PARITY_CASES
from vscolormnet import onnx_export as ox
from vscolormnet.backends.base import STAGES
from vscolormnet.frames import read_rgb

HW = (112, 112)
FP32_ABS_TOL = 1e-4
# Per-graph fp16 bound used here: max |Δ| / max(1, max |ref|). Measured: ≤ 1.5e-3 (encode_key f4).
FP16_REL_TOL = 5e-3

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


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory):
    """One ONNX cache for the whole test session (tests/test_ort_backend.py uses the same folder)."""
    path = tmp_path_factory.getbasetemp() / "onnx-cache"
    path.mkdir(exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)   # ~2 GB of graphs; pytest keeps old base temps around


@pytest.fixture(scope="module")
def net(parity_checkpoint):
    from vscolormnet.weights import load_model
    return load_model(parity_checkpoint)


@pytest.fixture(scope="module")
def graphs(parity_checkpoint, onnx_dir, net):
    return ox.export_graphs(parity_checkpoint, HW, precisions=("fp32", "fp16"), cache_dir=onnx_dir, net=net)


@pytest.fixture(scope="module")
def real(net):
    """Real activations from an actual photograph (the parity reference, a colour frame)."""
    image = read_rgb(PARITY_CASES / "blackswan_short" / "ref" / "blackswan" / "00000.png")
    return ox.real_inputs(net, HW, image)


_SESSIONS = {}


def run_both(path, net, stage, inputs):
    if path not in _SESSIONS:
        _SESSIONS[path] = ox.ort_session(path, threads=torch.get_num_threads())
    session = _SESSIONS[path]
    feeds = {name: t.numpy() for name, t in zip(ox.INPUTS[stage], inputs)}
    got = session.run(list(ox.OUTPUTS[stage]), feeds)
    with torch.no_grad():
        ref = getattr(net, stage)(*inputs)
    ref = ref if isinstance(ref, tuple) else (ref,)
    return got, [r.numpy() for r in ref]


@pytest.mark.parametrize("stage", STAGES)
def test_fp32_graph_matches_pytorch(graphs, net, real, stage):
    for inputs in (ox.random_inputs(stage, HW, seed=123), real[stage]):
        got, ref = run_both(graphs[(stage, "fp32")], net, stage, inputs)
        assert len(got) == len(ref) == len(ox.OUTPUTS[stage])
        for name, g, r in zip(ox.OUTPUTS[stage], got, ref):
            assert g.shape == r.shape and g.dtype == np.float32
            assert np.abs(g - r).max() <= FP32_ABS_TOL, f"{stage}.{name}: max |Δ| {np.abs(g - r).max():.2e}"


@pytest.mark.parametrize("stage", STAGES)
def test_fp16_graph_within_tolerance(graphs, net, real, stage):
    for inputs in (ox.random_inputs(stage, HW, seed=123), real[stage]):
        got, ref = run_both(graphs[(stage, "fp16")], net, stage, inputs)
        for name, g, r in zip(ox.OUTPUTS[stage], got, ref):
            assert g.dtype == np.float32 and np.isfinite(g).all()
            rel = np.abs(g - r).max() / max(1.0, np.abs(r).max())
            assert rel <= FP16_REL_TOL, f"{stage}.{name}: relative max |Δ| {rel:.2e}"


def _value_types(model):
    g = model.graph
    return {vi.name: vi.type.tensor_type for vi in list(g.input) + list(g.value_info) + list(g.output)} | {
        i.name: onnx.helper.make_tensor_type_proto(i.data_type, i.dims).tensor_type for i in g.initializer}


@pytest.mark.parametrize("precision", ox.PRECISIONS)
@pytest.mark.parametrize("stage", STAGES)
def test_graph_is_static_opset17_and_tensorrt_parsable(graphs, stage, precision):
    model = onnx.load(str(graphs[(stage, precision)]))
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
    assert max(o.version for o in model.opset_import) <= 17
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    shapes = ox.tensor_shapes(HW)
    io = [(vi, shapes[vi.name]) for vi in list(model.graph.input) + list(model.graph.output)]
    assert [vi.name for vi in model.graph.input] == list(ox.INPUTS[stage])
    assert [vi.name for vi in model.graph.output] == list(ox.OUTPUTS[stage])
    for vi, shape in io:
        t = vi.type.tensor_type
        assert t.elem_type == onnx.TensorProto.FLOAT
        assert tuple(d.dim_value for d in t.shape.dim) == shape and all(d.HasField("dim_value") for d in t.shape.dim)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for vi in inferred.graph.value_info:
        dims = vi.type.tensor_type.shape.dim
        assert all(d.HasField("dim_value") for d in dims), f"{vi.name} has a dynamic dimension"
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


@pytest.mark.parametrize("stage", STAGES)
def test_fp16_keeps_the_unsafe_parts_fp32(graphs, stage):
    model = onnx.shape_inference.infer_shapes(onnx.load(str(graphs[(stage, "fp16")])))
    types = _value_types(model)
    fp16_convs = 0
    for n in model.graph.node:
        kinds = {types[i].elem_type for i in n.input if i in types and types[i].elem_type in (1, 10)}
        if n.op_type in ox.FP16_KEEP_OPS:
            assert kinds == {onnx.TensorProto.FLOAT}, f"{n.name} ({n.op_type}) is not fp32"
        if "/short_term_attn/" in n.name and n.op_type == "Softmax":
            assert kinds == {onnx.TensorProto.FLOAT}
        if n.op_type == "Conv" and onnx.TensorProto.FLOAT16 in kinds:
            fp16_convs += 1
    assert fp16_convs > 0, "the convolutions should run in fp16"


def test_a_graph_that_disagrees_is_not_written(parity_checkpoint, tmp_path, net, monkeypatch):
    real_export = ox.export_graph

    def broken_export(net_, stage, padded_hw):
        model = real_export(net_, stage, padded_hw)
        for init in model.graph.initializer:
            if init.name.endswith("pred.weight"):
                w = onnx.numpy_helper.to_array(init) * 1.01
                init.CopyFrom(onnx.numpy_helper.from_array(w, init.name))
        return model

    monkeypatch.setattr(ox, "export_graph", broken_export)
    with pytest.raises(ox.ExportCheckError, match="decode fp32"):
        ox.ensure_onnx(parity_checkpoint, "decode", HW, cache_dir=tmp_path, net=net)
    assert not list(tmp_path.rglob("*.onnx"))


def test_cache_layout_and_reuse(parity_checkpoint, graphs, onnx_dir, monkeypatch):
    from vscolormnet.backends.engine_cache import file_sha256
    folder = onnx_dir / file_sha256(parity_checkpoint)[:16]
    for (stage, precision), path in graphs.items():
        assert path.parent == folder
        assert path.name == f"{stage}_112x112_{precision}_opset17_v{ox.EXPORT_VERSION}.onnx"
        assert path.with_suffix(".check.json").is_file()
    assert not list(folder.glob(".*.tmp")), "no temporary files left behind"
    monkeypatch.setattr(ox, "export_graph", lambda *a, **k: pytest.fail("cached graphs must not be re-exported"))
    again = ox.export_graphs(parity_checkpoint, HW, precisions=("fp32", "fp16"), cache_dir=onnx_dir)
    assert again == graphs


def test_traceable_restores_the_network(net):
    from vscolormnet.model.blocks import LayerNorm2d
    with ox.traceable(net, HW):
        assert "interpolated_pos_embed" in vars(net.key_encoder.network2.backbone)
    assert "interpolated_pos_embed" not in vars(net.key_encoder.network2.backbone)
    assert not any("forward" in vars(m) for m in net.modules() if isinstance(m, LayerNorm2d))


@pytest.mark.parametrize("bad", [(100, 112), (112, 0), "112", (112,)])
def test_padded_size_is_validated(bad):
    with pytest.raises(ValueError):
        ox.validate_padded_hw(bad)


def test_export_cli_lists_the_cached_files(parity_checkpoint, graphs, onnx_dir, capfd):
    import json

    from vscolormnet.__main__ import main
    rc = main(["export", "--size", "100x56", "--precision", "both", "--weights", str(parity_checkpoint),
               "--onnx-dir", str(onnx_dir), "--json"])
    out, _ = capfd.readouterr()
    assert rc == 0
    listed = json.loads(out)
    assert len(listed) == 12 and listed["encode_key/fp16"] == str(graphs[("encode_key", "fp16")])
