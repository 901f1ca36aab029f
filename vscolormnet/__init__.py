"""vscolormnet: ColorMNet video colorization for VapourSynth.

``import vscolormnet as colormnet; colormnet.Colorize(clip, ref, ...)``. Importing the
package has no side effects: VapourSynth and torch load on first use of ``Colorize``.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Colorize", "__version__"]


def __getattr__(name):
    if name == "Colorize":
        from .filter import Colorize
        return Colorize
    raise AttributeError(f"module 'vscolormnet' has no attribute {name!r}")
