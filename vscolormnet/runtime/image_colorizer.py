"""One image coloured by DDColor the official way: the pipeline around the network, and the shared colorizer.

``colorize_image(image, colorizer, ab_resize)`` is the official ``ColorizationPipeline.process``
(``media/lab.py`` has each step and why): the image's own L at full size, the network at S×S
on the stretched grey image, its ab resized back (``'nearest'``: official, parity;
``'bilinear'``: smooth chroma), merged with L. ``open_colorizer`` gives a ``Colorizer``: a DDColor
backend (any of the project's specs) and the S it runs at, shared per process through
``shared.acquire_ddcolor_backend`` (one network instance for every caller with the same weights,
model and backend).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..media import lab
from ..model.ddcolor import DEFAULT_INPUT_SIZE, check_input_size, resolve_model
from .shared import Lease, acquire_ddcolor_backend

log = logging.getLogger("vscolormnet")


class ColorizedImage(NamedTuple):
    """What ``colorize_image`` returns (a tuple: ``rgb, ab_net, ab_full = colorize_image(...)``).

    rgb:      H×W×3 uint8, the coloured image (the input's own L, the network's ab).
    ab_net:   2×S×S float32, the network's output (Lab a, b).
    ab_full:  2×H×W float32, ``ab_net`` resized to the image (what was merged with L).
    """

    rgb: np.ndarray
    ab_net: np.ndarray
    ab_full: np.ndarray


@dataclass
class Colorizer:
    """A DDColor backend (``predict_ab``: 1×3×S×S → 1×2×S×S) and the square size S it runs at.

    Close it (or use it as a context manager) to give the shared backend back.
    """

    backend: object
    input_size: int
    model: str
    lease: Lease | None = None

    def predict_ab(self, image):
        """image 1×3×S×S float32 grey RGB → ab 1×2×S×S float32 (CPU)."""
        return self.backend.predict_ab(image)

    def describe(self) -> str:
        """One line for logs: model, S and backend."""
        return f"{self.model} at {self.input_size}x{self.input_size} on {self.backend.describe()}"

    def close(self) -> None:
        """Release the shared backend (idempotent)."""
        if self.lease is not None:
            self.lease.release()
            self.lease = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_colorizer(model: str, weights, *, input_size: int = DEFAULT_INPUT_SIZE, backend="torch", device=None,
                   device_id=None, fp16=None, precision=None, tf32=None, **options) -> Colorizer:
    """A ``Colorizer`` for ``model`` (a DDColor model name) with checkpoint ``weights`` at ``input_size`` S.

    backend/device/precision/...: as for ColorMNet (``backends.resolve_spec``); the backend is shared
    by every caller in this process that asks for the same weights, model, backend (and S for ORT/TRT).
    """
    from ..backends import resolve_spec
    name = resolve_model(model)
    size = check_input_size(input_size)
    spec = resolve_spec(backend, device=device, device_id=device_id, fp16=fp16, precision=precision, tf32=tf32,
                        **options)
    lease = acquire_ddcolor_backend(spec, weights, name, size)
    return Colorizer(lease.value, size, name, lease)


def colorize_image(image: np.ndarray, colorizer: Colorizer, ab_resize: str = "nearest") -> ColorizedImage:
    """Colour one image the official DDColor way.

    image:      H×W (grey), H×W×1 or H×W×3 uint8 RGB; a colour image is used for its L only (the
                official pipeline takes L of the colour image, no other grey conversion).
    colorizer:  from ``open_colorizer`` (anything with ``predict_ab`` and ``input_size``).
    ab_resize:  ``'nearest'`` (official, parity) or ``'bilinear'`` (smooth chroma when S is small next
                to the image).
    """
    if ab_resize not in lab.AB_RESIZE_MODES:
        raise ValueError(f"ab_resize must be one of {', '.join(lab.AB_RESIZE_MODES)}, got {ab_resize!r}")
    rgb01 = lab.unit_float(lab.as_rgb_uint8(image))
    lum = lab.lightness(rgb01)
    ab_net = colorizer.predict_ab(lab.network_input(rgb01, colorizer.input_size))[0]
    ab_net = np.ascontiguousarray(ab_net.detach().float().cpu().numpy())
    ab_full = lab.resize_ab(ab_net, lum.shape, ab_resize)
    return ColorizedImage(lab.merge_lab(lum, ab_full), ab_net, ab_full)
