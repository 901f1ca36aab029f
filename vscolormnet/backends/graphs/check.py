"""Check a graph against the PyTorch stage method, in ONNX Runtime on the CPU, before it is trusted.

Why two input sets: random inputs cover the whole range of every input, real activations (the
chain encode_key → encode_value_deep → short_term_attention → decode of an actual image, as
``core.Propagator`` chains the stages) cover the values the graph really sees. A graph passes
when max |Δ| ≤ tolerance · max(1, max |reference|) on every output: ``FP32_TOLERANCE`` = 1e-4
(an absolute 1e-4 for outputs within ±1, as ab and hidden are) or ``FP16_TOLERANCE``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ...model import ColorMNet
from ...model.stages import INPUTS, OUTPUTS, tensor_shapes
from .trace import StageModule

FP32_TOLERANCE = 1e-4
# fp16 graphs against PyTorch fp32, max |Δ| / max(1, max |ref|) on every output. Measured with the
# seeded parity checkpoint at 112×112 and 224×112: at most 1.5e-3 (encode_key's f4), so 0.02 leaves
# room for other weights and sizes while still catching a graph that has gone wrong (an fp16
# overflow shows up as inf/NaN, which always fails).
FP16_TOLERANCE = 0.02
OPTIMIZATION_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                       "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class ExportCheckError(RuntimeError):
    """An exported graph disagrees with PyTorch beyond the tolerance; nothing was written."""


def ort_optimization_level(name: str):
    """``onnxruntime.GraphOptimizationLevel`` for ``disable``/``basic``/``extended``/``all``."""
    import onnxruntime as ort
    if name not in OPTIMIZATION_LEVELS:
        raise ValueError(f"graph_optimization must be one of {', '.join(OPTIMIZATION_LEVELS)}, got {name!r}")
    return getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[name])


def ort_session(model, threads: int | None = None, optimization: str = "all", providers=None):
    """An ONNX Runtime session (CPU by default) on a path or serialized bytes (ORT logs errors only, to stderr)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort_optimization_level(optimization)
    so.log_severity_level = 3          # ORT logs errors only, through its logger (stderr)
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), so,
                                providers=providers or ["CPUExecutionProvider"])


# ---- inputs ----------------------------------------------------------------------------------
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
    """Inputs for every stage from real activations of ``image`` (``H×W×3`` uint8, resized to the padded
    size; default ``color.synthetic_rgb``) and of the same image shifted by 8 pixels."""
    from ...media import color
    hp, wp = padded_hw
    if image is None:
        image = color.synthetic_rgb(hp, wp)
    rgb = color.resize_rgb_like_pil(np.ascontiguousarray(image[..., :3]), (wp, hp))
    lab = color.lab_float32(rgb)
    img1 = color.network_image(lab[0])                # already Hp×Wp: no padding added
    ab1 = color.network_ab(lab[1:])
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


# ---- comparison ------------------------------------------------------------------------------
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
        worst = max(self.max_abs, key=lambda k: self.max_abs[k] / max(1.0, self.ref_max[k]))
        return (f"{self.stage} {self.precision} {self.inputs} inputs: max|Δ| {self.max_abs[worst]:.2e} on {worst} "
                f"(|ref| ≤ {self.ref_max[worst]:.3g}, tolerance {self.tolerance:g}·max(1, |ref|)) "
                f"{'ok' if self.ok else 'FAILED'}")


def pytorch_outputs(net: ColorMNet, stage: str, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The PyTorch fp32 outputs of one stage, always as a tuple."""
    with torch.no_grad():
        ref = StageModule(net, stage).eval()(*inputs)
    return ref if isinstance(ref, tuple) else (ref,)


def compare(session, net: ColorMNet, stage: str, inputs: tuple[torch.Tensor, ...], precision: str,
            label: str, tolerance: float | None = None, reference: tuple | None = None,
            io_names: tuple[tuple[str, ...], tuple[str, ...]] | None = None) -> CheckResult:
    """Run ``inputs`` through the ONNX Runtime ``session`` and through PyTorch fp32 (unless its outputs
    are given as ``reference``); compare every output. ``io_names``: the graph's (inputs, outputs) for a
    stage outside the ColorMNet table (default ``stages.INPUTS``/``OUTPUTS``)."""
    if tolerance is None:
        tolerance = FP32_TOLERANCE if precision == "fp32" else FP16_TOLERANCE
    input_names, output_names = io_names or (INPUTS[stage], OUTPUTS[stage])
    feeds = {name: t.detach().float().contiguous().numpy() for name, t in zip(input_names, inputs)}
    got = session.run(list(output_names), feeds)
    ref = reference if reference is not None else pytorch_outputs(net, stage, inputs)
    max_abs, ref_max, ok = {}, {}, True
    for name, g, r in zip(output_names, got, ref):
        r = r.float().numpy()
        if g.shape != r.shape:
            raise ExportCheckError(f"{stage}: output {name} has shape {g.shape}, PyTorch gives {r.shape}")
        d = float(np.abs(g.astype(np.float32) - r).max()) if np.isfinite(g).all() else float("inf")
        max_abs[name], ref_max[name] = d, float(np.abs(r).max())
        ok = ok and d <= tolerance * max(1.0, ref_max[name])
    return CheckResult(stage, precision, label, max_abs, ref_max, tolerance, ok)


def check_graph(model, net: ColorMNet, stage: str, padded_hw: tuple[int, int], precision: str = "fp32", *,
                image: np.ndarray | None = None, real: dict | None = None, threads: int | None = None,
                references: dict | None = None) -> list[CheckResult]:
    """Check one graph (path, bytes or ModelProto) on random and on real inputs; returns both results.

    references: a dict that memoises the PyTorch outputs per ``(stage, inputs label)``, so the fp16
    graph of a stage is compared without running PyTorch again (pass the same dict for one size).
    """
    if not isinstance(model, (bytes, str, os.PathLike)):
        model = model.SerializeToString()
    session = ort_session(model, threads)
    real = real or real_inputs(net, padded_hw, image)
    references = {} if references is None else references
    results = []
    for label, inputs in (("random", random_inputs(stage, padded_hw)), ("real", real[stage])):
        if (stage, label) not in references:
            references[(stage, label)] = pytorch_outputs(net, stage, inputs)
        results.append(compare(session, net, stage, inputs, precision, label, reference=references[(stage, label)]))
    return results
