"""Cast clean-up after ONNX Runtime's float16 converter, so that the fp32 parts really compute in fp32.

Why: the converter wraps every node it keeps in fp32 in its own Cast pair (fp16 in → fp32,
fp32 out → fp16), so between two fp32 nodes every value is stored in fp16: DINOv2's q·kᵀ was
rounded before its Softmax, the key projection's shrinkage ``d²`` overflowed to inf for
|d| > 256, and the short-term attention graph carried 3,237 Casts for 1,619 real nodes.
``remove_redundant_casts`` undoes that without changing what the fp16 nodes compute:

- ``Cast(to=fp16)`` of an fp32 value followed by ``Cast(to=fp32)``: the second reads the fp32
  value directly (a non-float source, e.g. a bool mask, is cast straight to fp32);
- a Cast to the type its input already has is dropped;
- identical Casts of one tensor (same input, same target type) are merged;
- an fp16 copy of an fp32 initializer cast back to fp32 becomes the original fp32 initializer
  (the converter makes such copies for weights shared by fp32 and fp16 nodes);
- nodes and initializers left without consumers are removed.

Graph inputs and outputs keep their names and float32 types. Works in place on a
topologically sorted ``ModelProto``; value_info is stale afterwards (``optimise.infer_value_info``
renews it), and an Identity added for a graph output comes last (``optimise.topological_sort``).
"""
from __future__ import annotations

FLOAT, FLOAT16 = 1, 10          # onnx.TensorProto.FLOAT / FLOAT16


def _cast_to(node) -> int:
    return next(a.i for a in node.attribute if a.name == "to")


def _value_types(graph) -> dict[str, int]:
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(graph.input) + list(graph.value_info)
             + list(graph.output)}
    types.update({i.name: i.data_type for i in graph.initializer})
    for node in graph.node:                  # a Cast's output type is its target, whatever value_info says
        if node.op_type == "Cast":
            types[node.output[0]] = _cast_to(node)
    return types


def shared_fp32_initializers(model, fp32_nodes: set[str], fp32_ops: set[str]) -> dict:
    """Copies of the float32 initializers read by both fp32-kept and converted nodes (the converter stores
    them in fp16 only); ``remove_redundant_casts`` gives them back to the fp32 nodes."""
    readers: dict[str, set[bool]] = {}
    for node in model.graph.node:
        kept = node.name in fp32_nodes or node.op_type in fp32_ops
        for name in node.input:
            readers.setdefault(name, set()).add(kept)
    out = {}
    for init in model.graph.initializer:
        if init.data_type == FLOAT and readers.get(init.name) == {True, False}:
            copy = type(init)()
            copy.CopyFrom(init)
            out[init.name] = copy
    return out


def _rewrite_once(graph, originals: dict) -> bool:
    """One sweep of the rules in the module docstring; True if anything changed."""
    types = _value_types(graph)
    producer = {o: n for n in graph.node for o in n.output}
    inits = {i.name for i in graph.initializer}
    alias: dict[str, str] = {}               # output of a dropped Cast → the value that replaces it
    seen: dict[tuple[str, int], str] = {}
    changed = False
    for node in graph.node:
        if node.op_type != "Cast":
            continue
        src, to = node.input[0], _cast_to(node)
        src = alias.get(src, src)
        node.input[0] = src
        first = producer.get(src)
        if to == FLOAT and first is not None and first.op_type == "Cast" and _cast_to(first) == FLOAT16 \
                and types.get(first.input[0]) not in (None, FLOAT16):
            node.input[0] = src = first.input[0]           # skip the fp16 step of a round trip
            changed = True
        if to == FLOAT and types.get(src) == FLOAT16 and src in originals and src in inits:
            fp32_name = src + "_fp32"
            if fp32_name not in inits:
                copy = type(originals[src])()
                copy.CopyFrom(originals[src])
                copy.name = fp32_name
                graph.initializer.append(copy)
                inits.add(fp32_name)
                types[fp32_name] = FLOAT
            node.input[0] = src = fp32_name
            changed = True
        if types.get(src) == to:
            alias[node.output[0]] = src
        elif (src, to) in seen:
            alias[node.output[0]] = seen[(src, to)]
        else:
            seen[(src, to)] = node.output[0]
    if not alias:
        return changed
    _apply_aliases(graph, alias, inits)
    return True


def _apply_aliases(graph, alias: dict[str, str], inits: set[str]) -> None:
    """Point every reader of a dropped Cast's output at its replacement; a graph output keeps its name
    (its replacement is renamed to it, or, where that is not possible, copied to it by an Identity)."""
    def resolve(name):
        while name in alias:
            name = alias[name]
        return name

    outputs = {o.name for o in graph.output}
    fixed = {i.name for i in graph.input} | inits | outputs
    rename: dict[str, str] = {}
    identities = []
    for out in [o for o in alias if o in outputs]:
        target = resolve(out)
        if target in fixed or target in rename:
            identities.append((rename.get(target, target), out))
        else:
            rename[target] = out
    keep = [n for n in graph.node if not (n.op_type == "Cast" and n.output[0] in alias)]
    for node in keep:
        for i, name in enumerate(node.input):
            name = resolve(name)
            node.input[i] = rename.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = rename.get(name, name)
    import onnx
    keep += [onnx.helper.make_node("Identity", [src], [dst], name=f"{dst}_identity") for src, dst in identities]
    del graph.node[:]
    graph.node.extend(keep)


def remove_redundant_casts(model, originals: dict | None = None):
    """Apply the rules of the module docstring until nothing changes (``originals``: from
    ``shared_fp32_initializers`` on the fp32 model); in place, returns ``model``."""
    from .optimise import infer_value_info, remove_dead
    infer_value_info(model)                  # the type of every Cast's source
    graph = model.graph
    for _ in range(16):
        if not _rewrite_once(graph, originals or {}):
            break
    remove_dead(graph)
    names = {n for node in graph.node for n in node.output} | {i.name for i in graph.initializer}
    keep_vi = [vi for vi in graph.value_info if vi.name in names]
    del graph.value_info[:]
    graph.value_info.extend(keep_vi)
    return model
