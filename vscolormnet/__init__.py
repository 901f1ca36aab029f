"""vscolormnet: ColorMNet video colorization for VapourSynth.

``import vscolormnet as colormnet; colormnet.Colorize(clip, ref, ...)``. Importing the
package has no side effects: VapourSynth and torch load on first use of ``Colorize``.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Colorize", "MemoryConfig", "Torch", "ORT", "TRT", "Auto", "__version__"]
_LAZY = {"Colorize": "vs.filter", "MemoryConfig": "runtime.config", "Torch": "backends.spec", "ORT": "backends.spec",
         "TRT": "backends.spec", "Auto": "backends.spec"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'vscolormnet' has no attribute {name!r}")
