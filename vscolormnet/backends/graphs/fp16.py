"""Mixed-precision copies of the checked fp32 graphs (inputs and outputs stay float32).

Converted with ONNX Runtime's float16 converter, then cleaned by ``casts.remove_redundant_casts``:
the converter stores every value between two fp32 nodes in fp16 (a Cast pair around each
node), the clean-up passes such values on in fp32, so the parts below compute entirely in
fp32 and Casts remain only where fp16 and fp32 parts meet. These stay **fp32** because fp16
is unsafe there:

- every normalisation and reduction: LayerNormalization (DINOv2 and the fusion blocks),
  ReduceL2 (``F.normalize``), ReduceMean (CBAM average pools), ReduceSum, and Softmax, Exp,
  Pow, Sqrt, Reciprocal wherever they occur (``FP16_KEEP_OPS``);
- the similarities (``FP16_KEEP_SCOPES``): DINOv2's attention core (q·kᵀ, softmax, ·v), the
  fusion blocks' cross-channel attention (normalised q·kᵀ × temperature, softmax, ·v), and the
  whole short-term attention body (225 windowed q·k dot products, the 1e8 out-of-frame
  penalty, which is not representable in fp16, the softmax and the 225-term weighted sum),
  with its relative position logits (``relative_emb_k``, ``FP16_KEEP_SUBTREES``); only its
  depthwise conv and output projection run in fp16;
- the key projection (``FP16_KEEP_SUBTREES``: key, shrinkage ``d²+1``, selection), which
  feeds the memory similarity in host code.

Everything else (convolutions, matmuls of the linear layers, GELU, gates, resizes) is fp16.
The scopes are module paths of ``model/`` as the tracer names nodes (``/key_proj/...``); a
renamed module silently leaves its nodes in fp16, so ``fp16_keep_nodes`` is tested per graph.
"""
from __future__ import annotations

import warnings

from .casts import remove_redundant_casts, shared_fp32_initializers
from .optimise import infer_value_info, topological_sort

FP16_KEEP_OPS = ("LayerNormalization", "Softmax", "ReduceL2", "ReduceMean", "ReduceSum", "Exp", "Pow", "Sqrt",
                 "Reciprocal")
FP16_KEEP_SCOPES = ("/attn", "/crossattn", "/short_term_attn")                   # nodes directly in these scopes
FP16_KEEP_SUBTREES = ("/key_proj/", "/short_term_attn/relative_emb_k/")         # all nodes below these


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
    """The mixed-precision version of a (checked, simplified) fp32 ``ModelProto``, converted in place and
    returned; inputs/outputs stay float32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    typed = {vi.name for vi in list(model.graph.value_info) + list(model.graph.output)}
    if not all(o in typed for n in model.graph.node for o in n.output if o):
        infer_value_info(model)  # the converter casts only values it has a type for (else: invalid graph)
    keep = fp16_keep_nodes(model)
    originals = shared_fp32_initializers(model, set(keep), set(FP16_KEEP_OPS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP16_KEEP_OPS),
                                       node_block_list=keep, disable_shape_infer=True)
    topological_sort(out)  # the converter appends its casts at the end; TensorRT parses in order
    remove_redundant_casts(out, originals)
    topological_sort(out)
    infer_value_info(out)
    return out
