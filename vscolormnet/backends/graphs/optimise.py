"""Static-graph clean-up of an ``onnx.ModelProto``: shape inference, constant folding, topological order.

Why our own folding: the traced graphs carry ``Shape`` chains and constant sub-graphs (the
attention's out-of-frame mask) that TensorRT would otherwise have to evaluate, and ONNX's own
tools either need extra packages or keep dynamic shapes. Everything here works in place on
a ``ModelProto`` and never changes a computed value.
"""
from __future__ import annotations

import numpy as np

SMALL_INITIALIZER = 4096          # elements; bigger initializers are typed inputs during shape inference


def static_shapes(model) -> dict[str, tuple[int, ...]]:
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
    small = [i for i in g.initializer if int(np.prod(i.dims)) <= SMALL_INITIALIZER]
    big = [onnx.helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
           for i in g.initializer if int(np.prod(i.dims)) > SMALL_INITIALIZER]
    graph = onnx.helper.make_graph(g.node, g.name, list(g.input) + big, g.output, small)
    light = onnx.helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    inferred = onnx.shape_inference.infer_shapes(light)
    del g.value_info[:]
    g.value_info.extend(inferred.graph.value_info)


def _folded_outputs(node, shapes, init_protos, value):
    """The constant outputs of ``node`` if it can be folded, else None."""
    from onnx.reference import ReferenceEvaluator
    if node.op_type == "Shape" and node.input[0] in shapes:
        attrs = {a.name: a.i for a in node.attribute}
        shape = shapes[node.input[0]]
        start, end = attrs.get("start", 0), attrs.get("end", len(shape))
        return [np.array(shape[start:end], dtype=np.int64)]
    if node.op_type == "Size" and node.input[0] in shapes:
        return [np.array(int(np.prod(shapes[node.input[0]])), dtype=np.int64)]
    if node.op_type == "Constant" or (node.input and all(n == "" or n in init_protos for n in node.input)
                                      and not node.op_type.startswith("Random")):
        try:
            return ReferenceEvaluator(node).run(None, {n: value(n) for n in node.input if n})
        except Exception:  # noqa: BLE001 - keep what the reference runtime cannot evaluate
            return None
    return None


def fold_constants(model, max_elements: int = 1 << 24):
    """``Constant`` nodes, ``Shape``/``Size`` of statically shaped values, and every node whose inputs are
    all constants become initializers (up to ``max_elements`` per node); then dead nodes are removed."""
    from onnx import numpy_helper
    infer_value_info(model)
    graph = model.graph
    shapes = static_shapes(model)
    init_protos = {i.name: i for i in graph.initializer}
    values: dict[str, np.ndarray] = {}

    def value(name):
        if name not in values:
            values[name] = numpy_helper.to_array(init_protos[name])
        return values[name]

    kept, new_inits = [], []
    for node in graph.node:
        outs = _folded_outputs(node, shapes, init_protos, value)
        if outs is None or sum(np.asarray(o).size for o in outs) > max_elements:
            kept.append(node)
            continue
        for name, val in zip(node.output, outs):
            val = np.asarray(val)
            values[name] = val
            proto = numpy_helper.from_array(val, name)
            init_protos[name] = proto
            new_inits.append(proto)
    needed = remove_dead(graph, kept, new_inits)
    keep_vi = [vi for vi in graph.value_info if vi.name in needed and vi.name not in init_protos]
    del graph.value_info[:]
    graph.value_info.extend(keep_vi)
    return model


def remove_dead(graph, nodes=None, extra_initializers=()) -> set[str]:
    """Keep only the nodes (of ``nodes``, default the graph's, in order) that feed a graph output, and the
    initializers (the graph's, then ``extra_initializers``) they read; returns the names still read."""
    needed = {o.name for o in graph.output}
    live = []
    for node in reversed(list(graph.node) if nodes is None else nodes):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(n for n in node.input if n)
    live.reverse()
    inits = [i for i in list(graph.initializer) + list(extra_initializers) if i.name in needed]
    del graph.node[:]
    graph.node.extend(live)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    return needed


def simplify(model):
    """Fold constants and static shapes until nothing changes, remove dead nodes, infer shapes."""
    for _ in range(4):
        n = len(model.graph.node)
        model = fold_constants(model)
        if len(model.graph.node) == n:
            break
    infer_value_info(model)
    return model


def topological_sort(model) -> None:
    """Reorder ``model.graph.node`` in place so every node comes after the producers of its inputs
    (TensorRT's parser reads nodes in order)."""
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
