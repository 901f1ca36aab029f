"""fp32 islands: parts of the network that keep float32 when a backend runs it under ``torch.autocast``.

Reduced precision (fp16 on CUDA, bf16 on CUDA or a CPU) comes from ``torch.autocast`` around
each stage call (``backends/torch_backend.py``) over float32 weights (or a copy with the
autocast-cast ones pre-cast: ``cast_autocast_weights``). Parts unsafe in 16 bits run as
islands: the key projection (the shrinkage ``d²+1`` overflows
fp16 for |d| > 256; key and selection feed the memory similarity), the attention cores of
DINOv2 and of the fusion blocks (``F.normalize``'s eps 1e-12 is 0 in fp16), every LayerNorm
and the short-term attention body. The ONNX mixed-precision graphs keep the same parts fp32
(``graphs/fp16.py``).

Outside autocast, ``fp32_island`` calls the function unchanged (no cast, no context), so the
fp32 path and the traced ONNX graphs are exactly what they were without it.
"""
from __future__ import annotations

import contextlib
import functools

import torch


def to_fp32(x):
    """``x`` as float32 if it is a lower-precision floating tensor; anything else unchanged."""
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != torch.float32:
        return x.float()
    return x


def _device_type(args, kwargs) -> str | None:
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            return a.device.type
    return None


def autocast_active(device_type: str | None) -> bool:
    """True when autocast is on for ``device_type`` (False for None)."""
    return device_type is not None and torch.is_autocast_enabled(device_type)


def fp32_island(target):
    """An fp32 island: ``@fp32_island`` on a module method, or ``with fp32_island(device_type):``.

    As a decorator: under autocast the method runs with autocast off, its lower-precision tensor
    arguments cast to float32, and returns what it computes in float32 (no cast back). As a
    context (``device_type`` a string, ``torch.device`` or tensor): autocast off inside when it
    is on; the caller casts its inputs with ``to_fp32``. Without autocast both do nothing.
    """
    if callable(target) and not isinstance(target, torch.Tensor):
        return _island_method(target)
    if isinstance(target, torch.Tensor):
        target = target.device.type
    return _island_context(getattr(target, "type", target))


@contextlib.contextmanager
def _island_context(device_type: str):
    if not autocast_active(device_type):
        yield
        return
    with torch.autocast(device_type=device_type, enabled=False):
        yield


def _island_method(fn):
    @functools.wraps(fn)
    def island(self, *args, **kwargs):
        device_type = _device_type(args, kwargs)
        if not autocast_active(device_type):
            return fn(self, *args, **kwargs)
        with torch.autocast(device_type=device_type, enabled=False):
            return fn(self, *map(to_fp32, args), **{k: to_fp32(v) for k, v in kwargs.items()})
    return island


# Conv/linear modules whose weights are read inside fp32 islands (by qualified name prefix).
FP32_WEIGHTS = ("key_proj", "short_term_attn.relative_emb_k")


def cast_autocast_weights(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """Cast, in place, the conv and linear weights that autocast would cast to ``dtype`` at every call.

    For a model that only runs under ``torch.autocast(dtype=dtype)`` the results are identical
    (autocast casts inputs to ``dtype`` and leaves ``dtype`` weights as they are) and the per-call
    weight casts go away. Weights read inside fp32 islands (``FP32_WEIGHTS``) stay float32.
    Returns how many modules were cast.
    """
    n = 0
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and not name.startswith(FP32_WEIGHTS):
            module.to(dtype)
            n += 1
    return n
