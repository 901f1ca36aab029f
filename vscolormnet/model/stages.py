"""The stage contract: the six stateless network calls, their named inputs and outputs, and shapes.

The model (``model/network.py`` stage methods), every backend (``backends/``) and the ONNX
export (``backends/graphs/``) follow this one table, so none of them needs to import another to agree
on names or shapes. Shapes for one padded size ``Hp×Wp`` (multiples of 112; ``h = Hp/16``):

==========================  =======================================  =====================================
stage                       inputs                                   outputs
==========================  =======================================  =====================================
``encode_key``              image 1×3×Hp×Wp                          key 1×64×h×w, shrinkage 1×1×h×w,
                                                                     selection 1×64×h×w, f16 1×1024×h×w,
                                                                     f8 1×512×2h×2w, f4 1×256×4h×4w
``encode_value``            image, f16, ab 1×2×Hp×Wp                 value 1×2×512×h×w
``encode_value_deep``       image, f16, ab, hidden 1×2×64×h×w        value, hidden_out
``short_term_attention``    key, prev_key, prev_value                attention 1×2×512×h×w
``decode``                  f16, f8, f4, readout, hidden             ab 1×2×Hp×Wp
``decode_update``           f16, f8, f4, readout, hidden             ab, hidden_out
==========================  =======================================  =====================================

Every tensor crossing the contract is float32 on the backend's device; a backend may compute
in lower precision inside.
"""
from __future__ import annotations

from .network import HIDDEN_DIM, KEY_DIM, NUM_OBJECTS, PAD_MULTIPLE, STRIDE, VALUE_DIM

STAGES = ("encode_key", "encode_value", "encode_value_deep", "short_term_attention", "decode",
          "decode_update")

INPUTS: dict[str, tuple[str, ...]] = {
    "encode_key": ("image",),
    "encode_value": ("image", "f16", "ab"),
    "encode_value_deep": ("image", "f16", "ab", "hidden"),
    "short_term_attention": ("key", "prev_key", "prev_value"),
    "decode": ("f16", "f8", "f4", "readout", "hidden"),
    "decode_update": ("f16", "f8", "f4", "readout", "hidden"),
}
OUTPUTS: dict[str, tuple[str, ...]] = {
    "encode_key": ("key", "shrinkage", "selection", "f16", "f8", "f4"),
    "encode_value": ("value",),
    "encode_value_deep": ("value", "hidden_out"),
    "short_term_attention": ("attention",),
    "decode": ("ab",),
    "decode_update": ("ab", "hidden_out"),
}

__all__ = ["STAGES", "INPUTS", "OUTPUTS", "PAD_MULTIPLE", "padded_size", "tensor_shapes", "validate_padded_hw",
           "HIDDEN_DIM", "KEY_DIM", "NUM_OBJECTS", "STRIDE", "VALUE_DIM"]


def tensor_shapes(padded_hw: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    """Shape of every named stage input and output for one padded size ``(Hp, Wp)``."""
    hp, wp = padded_hw
    h, w = hp // STRIDE, wp // STRIDE
    value = (1, NUM_OBJECTS, VALUE_DIM, h, w)
    hidden = (1, NUM_OBJECTS, HIDDEN_DIM, h, w)
    return {
        "image": (1, 3, hp, wp), "ab": (1, 2, hp, wp),
        "key": (1, KEY_DIM, h, w), "prev_key": (1, KEY_DIM, h, w), "shrinkage": (1, 1, h, w),
        "selection": (1, KEY_DIM, h, w),
        "f16": (1, 1024, h, w), "f8": (1, 512, 2 * h, 2 * w), "f4": (1, 256, 4 * h, 4 * w),
        "value": value, "prev_value": value, "readout": value, "attention": value,
        "hidden": hidden, "hidden_out": hidden,
    }


def padded_size(h: int, w: int, multiple: int = PAD_MULTIPLE) -> tuple[int, int]:
    """Smallest ``(Hp, Wp)`` ≥ ``(h, w)`` that are multiples of ``multiple`` (the network runs on this size)."""
    return -(-h // multiple) * multiple, -(-w // multiple) * multiple


def validate_padded_hw(padded_hw) -> tuple[int, int]:
    """``(Hp, Wp)`` as ints, both positive multiples of 112; ``ValueError`` otherwise."""
    try:
        hp, wp = (int(v) for v in padded_hw)
    except (TypeError, ValueError):
        raise ValueError(f"padded_hw must be (Hp, Wp), got {padded_hw!r}") from None
    if hp <= 0 or wp <= 0 or hp % PAD_MULTIPLE or wp % PAD_MULTIPLE:
        raise ValueError(f"padded size must be positive multiples of {PAD_MULTIPLE}, got {hp}x{wp} (HxW)")
    return hp, wp
