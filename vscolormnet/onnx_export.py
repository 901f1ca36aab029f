"""Export the six stage graphs to ONNX, one static shape per padded size, and check each against PyTorch.

Graphs (inputs → outputs; ``h = Hp/16``, every tensor float32 at the graph boundary):

==========================  =======================================  =====================================
stage                       inputs                                   outputs
==========================  =======================================  =====================================
``encode_key``              image 1×3×Hp×Wp                          key, shrinkage, selection, f16, f8, f4
``encode_value``            image, f16, ab 1×2×Hp×Wp                 value 1×2×512×h×w
``encode_value_deep``       image, f16, ab, hidden 1×2×64×h×w        value, hidden_out
``short_term_attention``    key, prev_key 1×64×h×w, prev_value       attention 1×2×512×h×w
``decode``                  f16, f8, f4, readout, hidden             ab 1×2×Hp×Wp
``decode_update``           f16, f8, f4, readout, hidden             ab, hidden_out
==========================  =======================================  =====================================

How: each stage method of ``ColorMNet`` is wrapped in ``StageModule`` and exported with the
TorchScript-based exporter (``dynamo=False``, opset 17, weights embedded; its DeprecationWarning
is silenced). The dynamo exporter (torch 2.14) was tried: 142 s for the short-term attention
graph alone at 112×112, and its opset-17 conversion fails (no ``Pad`` adapter).
Two instance-level substitutions make the trace static without changing any value
(``traceable``): DINOv2's interpolated positional embedding is computed once for the
size and used as a constant, and ``LayerNorm2d`` gets its channel count as a Python int.
The traced graph is then folded (the attention's out-of-frame mask and every static
``Shape`` chain become constants, dead nodes go); the result has static shapes, opset 17
and only standard-domain operators that TensorRT's ONNX parser supports.

fp16 (``to_fp16``): the checked fp32 graph converted with ONNX Runtime's float16 converter,
inputs and outputs kept float32. These stay **fp32** because fp16 is unsafe there:

- every normalisation and reduction: LayerNormalization (DINOv2 and the fusion blocks),
  ReduceL2 (``F.normalize``), ReduceMean (CBAM average pools), ReduceSum, and Softmax, Exp,
  Pow, Sqrt, Reciprocal wherever they occur;
- the similarities: DINOv2's attention core (q·kᵀ, softmax, ·v), the fusion blocks'
  cross-channel attention (normalised q·kᵀ × temperature, softmax, ·v), and the whole
  short-term attention body (225 windowed q·k dot products, the 1e8 out-of-frame penalty,
  which is not representable in fp16, the softmax and the 225-term weighted sum);
  only its depthwise conv and output projection run in fp16;
- the key projection (key, shrinkage ``d²+1``, selection), which feeds the memory
  similarity in host code.

Everything else (convolutions, matmuls of the linear layers, GELU, gates, resizes) is fp16.

Every graph is checked when written (``check_graph``): ONNX Runtime on CPU against the
PyTorch stage method on random inputs and on real activations (the chain
encode_key → encode_value_deep → short_term_attention → decode computed from an actual
image): max |Δ| ≤ tolerance · max(1, max |reference|) on every output, with tolerance
``FP32_TOLERANCE`` = 1e-4 for fp32 (an absolute 1e-4 for outputs within ±1, as ab and
hidden are) and ``FP16_TOLERANCE`` for fp16. A graph that fails is not written.

Files are cached under ``onnx_cache_dir()`` (default: the per-user cache
``…/vscolormnet/onnx``), in a folder named by the checkpoint's sha256, and written
atomically. Nothing derived from weights is written anywhere else.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .color import synthetic_rgb  # noqa: F401  (re-exported for the checks)
from .stages import INPUTS, OUTPUTS, STAGES, tensor_shapes, validate_padded_hw  # noqa: F401
from .backends.engine_cache import (atomic_write, choose_writable_dir, file_sha256, stdout_to_stderr,
                                    temp_cache_dir, user_cache_dir)
from .model import ColorMNet
from .model.blocks import LayerNorm2d
from .model.dinov2 import PATCH

log = logging.getLogger("vscolormnet")

OPSET = 17
EXPORT_VERSION = 1                # bump when the exported graphs change for the same weights
PRECISIONS = ("fp32", "fp16")
FP32_TOLERANCE = 1e-4             # max |Δ| / max(1, max |ref|) against PyTorch fp32, every output
# fp16 graphs against PyTorch fp32, max |Δ| / max(1, max |ref|) on every output. Measured with the
# seeded parity checkpoint at 112×112 and 224×112: at most 1.5e-3 (encode_key's f4), so 0.02 leaves
# room for other weights and sizes while still catching a graph that has gone wrong (an fp16
# overflow shows up as inf/NaN, which always fails).
FP16_TOLERANCE = 0.02
ENV_ONNX_DIR = "VSCOLORMNET_ONNX_DIR"

# fp16: operator types kept fp32 everywhere, and module scopes whose own nodes stay fp32.
FP16_KEEP_OPS = ("LayerNormalization", "Softmax", "ReduceL2", "ReduceMean", "ReduceSum", "Exp", "Pow", "Sqrt",
                 "Reciprocal")
FP16_KEEP_SCOPES = ("/attn", "/crossattn", "/short_term_attn")    # nodes directly in these scopes
FP16_KEEP_SUBTREES = ("/key_proj/",)                              # all nodes below these


class ExportCheckError(RuntimeError):
    """An exported graph disagrees with PyTorch beyond the tolerance; nothing was written."""


class StageModule(nn.Module):
    """``forward(*inputs)`` calls one stage method of the network (what gets exported)."""

    def __init__(self, net: ColorMNet, stage: str):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
        self.net = net
        self.stage = stage

    def forward(self, *inputs):  # noqa: D102
        return getattr(self.net, self.stage)(*inputs)


def _layer_norm_2d(module: LayerNorm2d, normalized_shape: tuple[int], x: torch.Tensor) -> torch.Tensor:
    x = F.layer_norm(x.permute(0, 2, 3, 1), normalized_shape, module.weight, module.bias, module.eps)
    return x.permute(0, 3, 1, 2)


@contextlib.contextmanager
def traceable(net: ColorMNet, padded_hw: tuple[int, int]):
    """Instance-level substitutions that compute the same values with trace-time constants.

    - DINOv2's positional embedding for this size, computed eagerly (bicubic, as at run time)
      and returned as a constant, instead of a resize whose scale the tracer turns into tensors;
    - ``LayerNorm2d`` with its channel count as a Python int (``x.shape[1:2]`` traces as a tensor).
    The class methods are restored on exit.
    """
    hp, wp = padded_hw
    patched = []
    backbone = net.key_encoder.network2.backbone
    with torch.no_grad():
        pos = backbone.interpolated_pos_embed(hp // PATCH, wp // PATCH).detach().clone()
    backbone.interpolated_pos_embed = lambda rows, cols, _pos=pos: _pos
    patched.append((backbone, "interpolated_pos_embed"))
    for module in net.modules():
        if isinstance(module, LayerNorm2d):
            module.forward = partial(_layer_norm_2d, module, (int(module.weight.shape[0]),))
            patched.append((module, "forward"))
    try:
        yield
    finally:
        for obj, attr in patched:
            obj.__dict__.pop(attr, None)


# ---- graph export and clean-up ---------------------------------------------------------------
def export_graph(net: ColorMNet, stage: str, padded_hw: tuple[int, int]):
    """The fp32 ``onnx.ModelProto`` of one stage at one padded size (not yet checked)."""
    import onnx
    padded_hw = validate_padded_hw(padded_hw)
    shapes = tensor_shapes(padded_hw)
    module = StageModule(net, stage).eval()
    gen = torch.Generator().manual_seed(0)
    args = tuple(torch.randn(shapes[name], generator=gen) for name in INPUTS[stage])
    buf = io.BytesIO()
    with traceable(net, padded_hw), torch.no_grad(), warnings.catch_warnings(), stdout_to_stderr():
        warnings.simplefilter("ignore")   # DeprecationWarning (legacy exporter), TracerWarning, folding notes
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=OPSET, do_constant_folding=True,
                          input_names=list(INPUTS[stage]), output_names=list(OUTPUTS[stage]),
                          export_params=True)
    model = onnx.load_from_string(buf.getvalue())
    return simplify(model)


def _static_shapes(model) -> dict[str, tuple[int, ...]]:
    """Fully static shapes of all typed values in ``model`` (after ONNX shape inference)."""
    out = {}
    g = model.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            out[vi.name] = tuple(d.dim_value for d in t.shape.dim)
    return out


def infer_value_info(model) -> None:
    """Replace ``model.graph.value_info`` by ONNX shape inference, run on a weightless copy (large
    initializers become graph inputs of the same type and shape), which is seconds faster for
    the big graphs than inferring on the model itself."""
    import onnx
    g = model.graph
    small = [i for i in g.initializer if int(np.prod(i.dims)) <= 4096]
    big = [onnx.helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
           for i in g.initializer if int(np.prod(i.dims)) > 4096]
    graph = onnx.helper.make_graph(g.node, g.name, list(g.input) + big, g.output, small)
    light = onnx.helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    inferred = onnx.shape_inference.infer_shapes(light)
    del g.value_info[:]
    g.value_info.extend(inferred.graph.value_info)


def fold_constants(model, max_elements: int = 1 << 24):
    """Static-graph folding: ``Constant`` nodes, ``Shape``/``Size`` of statically shaped values, and every
    node whose inputs are all constants become initializers; then nodes nobody uses are removed."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator
    infer_value_info(model)
    graph = model.graph
    shapes = _static_shapes(model)
    init_protos = {i.name: i for i in graph.initializer}
    values: dict[str, np.ndarray] = {}

    def value(name):
        if name not in values:
            values[name] = numpy_helper.to_array(init_protos[name])
        return values[name]

    kept, new_inits = [], []
    for node in graph.node:
        outs = None
        if node.op_type == "Shape" and node.input[0] in shapes:
            attrs = {a.name: a.i for a in node.attribute}
            shape = shapes[node.input[0]]
            start, end = attrs.get("start", 0), attrs.get("end", len(shape))
            outs = [np.array(shape[start:end], dtype=np.int64)]
        elif node.op_type == "Size" and node.input[0] in shapes:
            outs = [np.array(int(np.prod(shapes[node.input[0]])), dtype=np.int64)]
        elif node.op_type == "Constant" or (
                node.input and all(n == "" or n in init_protos for n in node.input)
                and not node.op_type.startswith("Random")):
            try:
                outs = ReferenceEvaluator(node).run(None, {n: value(n) for n in node.input if n})
            except Exception:  # noqa: BLE001 - keep what the reference runtime cannot evaluate
                outs = None
        if outs is None or sum(np.asarray(o).size for o in outs) > max_elements:
            kept.append(node)
            continue
        for name, val in zip(node.output, outs):
            val = np.asarray(val)
            values[name] = val
            proto = numpy_helper.from_array(val, name)
            init_protos[name] = proto
            new_inits.append(proto)
    # dead-code elimination, from the outputs back
    needed = {o.name for o in graph.output}
    live = []
    for node in reversed(kept):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(n for n in node.input if n)
    live.reverse()
    inits = [i for i in list(graph.initializer) + new_inits if i.name in needed]
    del graph.node[:]
    graph.node.extend(live)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    keep_vi = [vi for vi in graph.value_info if vi.name in needed and vi.name not in init_protos]
    del graph.value_info[:]
    graph.value_info.extend(keep_vi)
    return model


def simplify(model):
    """Fold constants and static shapes until nothing changes, remove dead nodes, infer shapes."""
    for _ in range(4):
        n = len(model.graph.node)
        model = fold_constants(model)
        if len(model.graph.node) == n:
            break
    infer_value_info(model)
    return model


def fp16_keep_nodes(model) -> list[str]:
    """Names of the nodes that ``to_fp16`` keeps in fp32 (see the module docstring)."""
    keep = []
    for node in model.graph.node:
        scope = node.name.rsplit("/", 1)[0]
        if (node.op_type in FP16_KEEP_OPS or scope.endswith(FP16_KEEP_SCOPES)
                or any(node.name.startswith(s) for s in FP16_KEEP_SUBTREES)):
            keep.append(node.name)
    return keep


def to_fp16(model):
    """Mixed-precision copy of a (checked, simplified) fp32 graph; inputs/outputs stay float32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP16_KEEP_OPS),
                                       node_block_list=fp16_keep_nodes(model), disable_shape_infer=True)
    topological_sort(out)  # the converter appends its input casts at the end; TensorRT parses in order
    infer_value_info(out)
    return out


def topological_sort(model) -> None:
    """Reorder ``model.graph.node`` in place so every node comes after the producers of its inputs."""
    graph = model.graph
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input at node {rest[0].name}")
        pending = rest
    nodes = [type(n)() for n in ordered]
    for dst, src in zip(nodes, ordered):
        dst.CopyFrom(src)
    del graph.node[:]
    graph.node.extend(nodes)


# ---- inputs for the checks -------------------------------------------------------------------
def random_inputs(stage: str, padded_hw: tuple[int, int], seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random float32 inputs with roughly the right ranges (image in [−1, 1], ab in ±0.5, features N(0, 1))."""
    gen = torch.Generator().manual_seed(seed)
    shapes = tensor_shapes(padded_hw)
    out = []
    for name in INPUTS[stage]:
        shape = shapes[name]
        if name == "image":
            t = (torch.rand(shape[2:], generator=gen) * 2 - 1).expand(shape).contiguous()
        elif name == "ab":
            t = torch.rand(shape, generator=gen) - 0.5
        elif name == "hidden":
            t = torch.rand(shape, generator=gen) * 2 - 1
        else:
            t = torch.randn(shape, generator=gen)
        out.append(t)
    return tuple(out)


def real_inputs(net: ColorMNet, padded_hw: tuple[int, int], image: np.ndarray | None = None
                ) -> dict[str, tuple[torch.Tensor, ...]]:
    """Inputs for every stage taken from real activations of ``image`` (``H×W×3`` uint8, resized to the
    padded size; default ``synthetic_rgb``) and of the same image shifted by 8 pixels, run through
    the PyTorch network the way ``core.Propagator`` chains the stages."""
    from . import color
    hp, wp = padded_hw
    if image is None:
        image = synthetic_rgb(hp, wp)
    rgb = color.resize_rgb_like_pil(np.ascontiguousarray(image[..., :3]), (wp, hp))
    lab = color.rgb_to_lab(color.uint8_to_unit(rgb)).float()
    img1 = color.normalise_l(lab[0]).expand(3, -1, -1).unsqueeze(0).contiguous()
    ab1 = color.normalise_ab(lab[1:]).unsqueeze(0).contiguous()
    img2 = torch.roll(img1, shifts=(8, 8), dims=(2, 3)).contiguous()
    with torch.no_grad():
        key1, _, _, f16_1, _, _ = net.encode_key(img1)
        hidden0 = torch.zeros(tensor_shapes(padded_hw)["hidden"])
        value1, hidden1 = net.encode_value_deep(img1, f16_1, ab1, hidden0)
        key2, _, _, f16_2, f8_2, f4_2 = net.encode_key(img2)
        readout = net.short_term_attention(key2, key1, value1)
        ab2, _ = net.decode_update(f16_2, f8_2, f4_2, readout, hidden1)
    return {
        "encode_key": (img2,),
        "encode_value": (img2, f16_2, ab2),
        "encode_value_deep": (img2, f16_2, ab2, hidden1),
        "short_term_attention": (key2, key1, value1),
        "decode": (f16_2, f8_2, f4_2, readout, hidden1),
        "decode_update": (f16_2, f8_2, f4_2, readout, hidden1),
    }


# ---- checks ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckResult:
    """One graph on one input set: per output, max |Δ| to PyTorch fp32 and max |reference|."""

    stage: str
    precision: str
    inputs: str
    max_abs: dict
    ref_max: dict
    tolerance: float
    ok: bool

    def line(self) -> str:
        """One line for logs."""
        worst = max(self.max_abs, key=lambda k: self.max_abs[k] / self._scale(k))
        return (f"{self.stage} {self.precision} {self.inputs} inputs: max|Δ| {self.max_abs[worst]:.2e} on {worst} "
                f"(|ref| ≤ {self.ref_max[worst]:.3g}, tolerance {self.tolerance:g}·max(1, |ref|)) "
                f"{'ok' if self.ok else 'FAILED'}")

    def _scale(self, name: str) -> float:
        return max(1.0, self.ref_max[name])


def ort_session(model, threads: int | None = None, optimization: str = "all", providers=None):
    """An ONNX Runtime session (CPU by default) on a path or serialized bytes."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ORT_OPT_LEVELS[optimization]()
    so.log_severity_level = 3
    with stdout_to_stderr():
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), so,
                                    providers=providers or ["CPUExecutionProvider"])


def _ort_level(name):
    import onnxruntime as ort
    return getattr(ort.GraphOptimizationLevel, name)


ORT_OPT_LEVELS = {
    "disable": partial(_ort_level, "ORT_DISABLE_ALL"),
    "basic": partial(_ort_level, "ORT_ENABLE_BASIC"),
    "extended": partial(_ort_level, "ORT_ENABLE_EXTENDED"),
    "all": partial(_ort_level, "ORT_ENABLE_ALL"),
}


def compare(session, net: ColorMNet, stage: str, inputs: tuple[torch.Tensor, ...], precision: str,
            label: str, tolerance: float | None = None) -> CheckResult:
    """Run ``inputs`` through the ONNX Runtime ``session`` and through PyTorch fp32; compare every output."""
    if tolerance is None:
        tolerance = FP32_TOLERANCE if precision == "fp32" else FP16_TOLERANCE
    feeds = {name: t.detach().float().contiguous().numpy() for name, t in zip(INPUTS[stage], inputs)}
    got = session.run(list(OUTPUTS[stage]), feeds)
    with torch.no_grad():
        ref = StageModule(net, stage).eval()(*inputs)
    ref = ref if isinstance(ref, tuple) else (ref,)
    max_abs, ref_max, ok = {}, {}, True
    for name, g, r in zip(OUTPUTS[stage], got, ref):
        r = r.float().numpy()
        if g.shape != r.shape:
            raise ExportCheckError(f"{stage}: output {name} has shape {g.shape}, PyTorch gives {r.shape}")
        d = float(np.abs(g.astype(np.float32) - r).max()) if np.isfinite(g).all() else float("inf")
        max_abs[name], ref_max[name] = d, float(np.abs(r).max())
        ok = ok and d <= tolerance * max(1.0, ref_max[name])
    return CheckResult(stage, precision, label, max_abs, ref_max, tolerance, ok)


def check_graph(model, net: ColorMNet, stage: str, padded_hw: tuple[int, int], precision: str = "fp32", *,
                image: np.ndarray | None = None, real: dict | None = None, threads: int | None = None
                ) -> list[CheckResult]:
    """Check one graph (path, bytes or ModelProto) on random and on real inputs; returns both results."""
    if not isinstance(model, (bytes, str, os.PathLike)):
        model = model.SerializeToString()
    session = ort_session(model, threads)
    real = real or real_inputs(net, padded_hw, image)
    return [compare(session, net, stage, random_inputs(stage, padded_hw), precision, "random"),
            compare(session, net, stage, real[stage], precision, "real")]


# ---- the cache -------------------------------------------------------------------------------
def onnx_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$VSCOLORMNET_ONNX_DIR``, else the per-user cache ``…/vscolormnet/onnx``;
    falls back to a per-user temp folder when not writable."""
    preferred = cache_dir or os.environ.get(ENV_ONNX_DIR) or user_cache_dir("onnx")
    return choose_writable_dir(preferred, (user_cache_dir("onnx"), temp_cache_dir("onnx")), "ONNX cache")


def onnx_filename(stage: str, padded_hw: tuple[int, int], precision: str) -> str:
    """``<stage>_<Wp>x<Hp>_<precision>_opset17_v<EXPORT_VERSION>.onnx``."""
    hp, wp = padded_hw
    return f"{stage}_{wp}x{hp}_{precision}_opset{OPSET}_v{EXPORT_VERSION}.onnx"


def onnx_path(weights: str | os.PathLike, stage: str, padded_hw: tuple[int, int], precision: str,
              cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the graph for these weights, stage, size and precision is cached."""
    return onnx_cache_dir(cache_dir) / file_sha256(weights)[:16] / onnx_filename(stage, padded_hw, precision)


def export_graphs(weights: str | os.PathLike, padded_hw: tuple[int, int], *, precisions=("fp32",),
                  stages=STAGES, cache_dir: str | os.PathLike | None = None, image: np.ndarray | None = None,
                  force: bool = False, net: ColorMNet | None = None) -> dict[tuple[str, str], Path]:
    """Make sure every ``(stage, precision)`` graph exists in the cache (export + check what is missing).

    Returns ``{(stage, precision): path}``. The network is loaded only if something is missing.
    Raises ``ExportCheckError`` (and writes nothing for that graph) if a check fails.
    """
    import onnx

    from .weights import load_model, resolve_weights
    weights = resolve_weights(weights)
    padded_hw = validate_padded_hw(padded_hw)
    for p in precisions:
        if p not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {p!r}")
    for s in stages:
        if s not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {s!r}")
    folder = onnx_cache_dir(cache_dir) / file_sha256(weights)[:16]
    order = [p for p in PRECISIONS if p in precisions or (p == "fp32" and "fp16" in precisions)]
    paths, real = {}, None
    for precision in order:
        for stage in stages:
            path = folder / onnx_filename(stage, padded_hw, precision)
            paths[(stage, precision)] = path
            if path.is_file() and not force:
                continue
            if net is None:
                net = load_model(weights)
            if real is None:
                real = real_inputs(net, padded_hw, image)
            t0 = time.perf_counter()
            log.info("exporting %s %dx%d %s to ONNX …", stage, padded_hw[1], padded_hw[0], precision)
            if precision == "fp32":
                model = export_graph(net, stage, padded_hw)
            else:
                model = to_fp16(onnx.load(str(paths[(stage, "fp32")])))
            data = model.SerializeToString()
            onnx.checker.check_model(data)
            results = check_graph(data, net, stage, padded_hw, precision, real=real)
            for r in results:
                log.info("onnx check: %s", r.line())
            if not all(r.ok for r in results):
                raise ExportCheckError("exported graph does not match PyTorch, not written: "
                                       + "; ".join(r.line() for r in results if not r.ok))
            atomic_write(path, data)
            report = {"weights_sha256": file_sha256(weights), "stage": stage, "padded_hw": list(padded_hw),
                      "precision": precision, "opset": OPSET, "export_version": EXPORT_VERSION,
                      "torch": torch.__version__, "checks": [asdict(r) for r in results]}
            atomic_write(path.with_suffix(".check.json"), json.dumps(report, indent=1).encode())
            log.info("exported %s (%.1f MB, %.1f s)", path, path.stat().st_size / 1e6, time.perf_counter() - t0)
    return {k: v for k, v in paths.items() if k[1] in precisions}


def ensure_onnx(weights: str | os.PathLike, stage: str, padded_hw: tuple[int, int], precision: str = "fp32", *,
                cache_dir: str | os.PathLike | None = None, net: ColorMNet | None = None) -> Path:
    """The cached graph for one stage, exported and checked on first use."""
    return export_graphs(weights, padded_hw, precisions=(precision,), stages=(stage,), cache_dir=cache_dir,
                         net=net)[(stage, precision)]
