"""The check a TensorRT input passes before its pointer is bound, without TensorRT.

``set_tensor_address`` takes a bare device pointer: TensorRT reads as many bytes as the
engine's binding says, whatever the tensor behind the pointer holds. A tensor of the wrong
shape, dtype, layout or device is read as garbage (or out of bounds) with no error. So every
input is checked against its binding first, and a mismatch is one line naming the stage, the
input, the expected and the got. Pure over torch tensors, so it is tested where TensorRT is
not installed (``tests/backends/test_trt_bindings.py``); ``trt_backend._run`` calls it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..util.errors import BackendError


@dataclass(frozen=True)
class Binding:
    """One engine input as TensorRT will read it.

    name:   the tensor name (``model.stages.INPUTS``).
    shape:  the engine's static shape, e.g. ``(1, 3, Hp, Wp)``; -1 would be a dynamic dimension (any size).
    dtype:  the torch dtype of the engine tensor (our engines: ``torch.float32`` everywhere).
    """

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32


def binding_problem(binding: Binding, tensor: torch.Tensor, device: torch.device) -> str | None:
    """Why ``tensor`` cannot be bound by pointer to ``binding`` on ``device``, or None."""
    shape = tuple(tensor.shape)
    if len(shape) != len(binding.shape) or any(e not in (-1, g) for e, g in zip(binding.shape, shape)):
        return f"expected shape {tuple(binding.shape)}, got {shape}"
    if tensor.dtype != binding.dtype:
        return f"expected dtype {binding.dtype}, got {tensor.dtype} (shape {shape})"
    if tensor.device != device:
        return f"expected device {device}, got {tensor.device} (shape {shape})"
    if not tensor.is_contiguous():
        return f"expected a contiguous tensor, got strides {tuple(tensor.stride())} (shape {shape})"
    return None


def check_inputs(stage: str, bindings: Sequence[Binding], tensors: Sequence[torch.Tensor],
                 device: torch.device) -> None:
    """Raise a one-line ``BackendError`` unless ``tensors`` match ``bindings`` one to one (count, then each)."""
    if len(tensors) != len(bindings):
        raise BackendError(f"trt stage {stage}: got {len(tensors)} inputs, the engine takes {len(bindings)} "
                           f"({', '.join(b.name for b in bindings)})", param=stage, value=len(tensors))
    for binding, tensor in zip(bindings, tensors):
        if why := binding_problem(binding, tensor, device):
            raise BackendError(f"trt stage {stage}, input {binding.name!r}: {why}", param=binding.name,
                               value=tuple(tensor.shape), accepted=str(tuple(binding.shape)))
