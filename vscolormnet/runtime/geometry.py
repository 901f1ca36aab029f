"""One geometry rule for ``Colorize``, ``bench`` and ``export``: the inference size of a source.

A preset names the longest side (aspect kept, never upscaled); ``native`` keeps the source
size. The network then runs on the size zero-padded to multiples of 112, so a 4:3 film and a
16:9 film at the same preset run different graphs: ``export``/``bench`` take the source size.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..model.stages import padded_size

SIZE_PRESETS = {"384": 384, "512": 512, "640": 640}
DEFAULT_SIZE = "512"
SIZE_CHOICES = (*SIZE_PRESETS, "native")


@dataclass(frozen=True)
class Geometry:
    """Source size, inference size (unpadded) and padded network size."""

    width: int
    height: int
    inf_width: int
    inf_height: int

    @property
    def padded_hw(self) -> tuple[int, int]:
        """``(Hp, Wp)``: the inference size rounded up to multiples of 112."""
        return padded_size(self.inf_height, self.inf_width)

    @property
    def resized(self) -> bool:
        """True when the network runs at another size than the source."""
        return (self.inf_width, self.inf_height) != (self.width, self.height)


def check_size(size) -> str:
    """The preset key for ``size`` (``384``/``'384'``, …, ``'native'``); ``ValueError`` naming the choices."""
    key = str(size).strip().lower() if isinstance(size, (str, int)) and not isinstance(size, bool) else None
    if key not in SIZE_CHOICES:
        raise ValueError(f"size must be one of {', '.join(repr(s) for s in SIZE_CHOICES)}, got {size!r}")
    return key


def inference_geometry(width: int, height: int, size=DEFAULT_SIZE) -> Geometry:
    """Scale so the longest side equals the preset (never upscaling), keeping the aspect ratio."""
    key = check_size(size)
    if width < 1 or height < 1:
        raise ValueError(f"source size must be positive, got {width}x{height}")
    if key == "native":
        return Geometry(width, height, width, height)
    target = SIZE_PRESETS[key]
    longest = max(width, height)
    if longest <= target:
        return Geometry(width, height, width, height)
    scale = target / longest
    iw, ih = max(2, round(width * scale)), max(2, round(height * scale))
    return Geometry(width, height, iw, ih)


def parse_source_size(text: str) -> tuple[int, int]:
    """``'1440x1080'`` or an aspect ``'4:3'`` (→ 4000×3000, scaled down by the preset) as ``(W, H)``."""
    t = str(text).strip().lower()
    for sep, scale in (("x", 1), (":", 1000)):
        if sep in t:
            a, _, b = t.partition(sep)
            try:
                w, h = int(a) * scale, int(b) * scale
            except ValueError:
                break
            if w > 0 and h > 0:
                return w, h
            break
    raise ValueError(f"expected WIDTHxHEIGHT (e.g. 1440x1080) or an aspect W:H (e.g. 4:3), got {text!r}")
