"""Counting what torch ops do, device-independently (a ``TorchDispatchMode``): which ops ran, the
elements they wrote and the largest tensor they allocated. Views allocate nothing and are skipped.
Used for the "by construction" figures (op counts, elements written, temporaries)."""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class DispatchCounts(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []      # op names, in order
        self.elements = 0             # elements of every output
        self.largest = 0              # bytes of the largest output

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.is_view:
            return out
        self.ops.append(func.overloadpacket.__name__)
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.elements += t.numel()
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out
