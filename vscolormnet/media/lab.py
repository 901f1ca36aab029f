"""DDColor's image maths, exactly as the official inference pipeline does it (no network here).

Why OpenCV: the official pipeline converts with OpenCV's float32 ``cvtColor`` (not the exact CIE
formulas: its L of pure greys is off by up to 0.19 from scikit-image's, its grey round trip by
up to 1.9e-3) and resizes with ``cv2.resize`` (INTER_LINEAR); parity with it means the same calls.
Images here are RGB (the project's order): OpenCV's ``RGB2Lab``/``LAB2RGB`` on RGB are the
official ``BGR2Lab``/``LAB2BGR`` on BGR, channel for channel, bit for bit.

The steps (``runtime/image_colorizer.py`` chains them around the network):

- ``unit_float``:       uint8 → float32 in [0, 1] (divided in float64, then cast, as the official code);
- ``lightness``:        L (0…100) of the full-size image, kept for the merge;
- ``network_input``:    stretch to S×S (INTER_LINEAR, no aspect kept), L only, back to grey RGB:
                        1×3×S×S float32, what the network sees;
- ``resize_ab``:        the network's ab (2×S×S) back to H×W: ``"nearest"`` as the official
                        ``F.interpolate`` default (``nearest_indices``: PyTorch's float32 index rule),
                        or ``"bilinear"`` (smooth chroma, not the official output);
- ``merge_lab``:        L + ab → RGB uint8 (OpenCV clips to [0, 1], numpy rounds half to even).
"""
from __future__ import annotations

import numpy as np
import torch

AB_RESIZE_MODES = ("nearest", "bilinear")


def _cv2():
    import cv2
    return cv2


def as_rgb_uint8(image: np.ndarray, what: str = "image") -> np.ndarray:
    """``image`` (H×W, H×W×1 grey or H×W×3 RGB, uint8) as a contiguous H×W×3 uint8 RGB array; ``ValueError``
    naming ``what`` for anything else (other dtypes, alpha, fewer than 2×2 pixels)."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 (8 bits per channel), got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{what} must be H×W (grey) or H×W×3 (RGB), got shape {tuple(np.shape(image))}")
    if min(a.shape[:2]) < 2:
        raise ValueError(f"{what} must be at least 2×2 pixels, got {a.shape[1]}x{a.shape[0]}")
    return np.ascontiguousarray(a)


def unit_float(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 → float32 in [0, 1]: ``(rgb / 255.0).astype(float32)`` (float64 division, as official)."""
    return (rgb / 255.0).astype(np.float32)


def lightness(rgb01: np.ndarray) -> np.ndarray:
    """L (0…100, H×W float32) of an H×W×3 float32 RGB image, with OpenCV's float32 conversion."""
    return _cv2().cvtColor(rgb01, _cv2().COLOR_RGB2Lab)[..., 0]


def network_input(rgb01: np.ndarray, size: int) -> torch.Tensor:
    """The network input for an H×W×3 float32 RGB image: 1×3×S×S float32 grey RGB in [0, 1].

    Resize first (INTER_LINEAR to S×S, half-pixel centres, no antialiasing), then L of the resized
    image, then Lab ``(L, 0, 0)`` → RGB; the three channels agree to ~6e-7, not bitwise.
    """
    cv2 = _cv2()
    small = cv2.resize(rgb01, (int(size), int(size)), interpolation=cv2.INTER_LINEAR)
    lum = cv2.cvtColor(small, cv2.COLOR_RGB2Lab)[..., :1]
    grey = cv2.cvtColor(np.concatenate([lum, np.zeros_like(lum), np.zeros_like(lum)], axis=-1), cv2.COLOR_LAB2RGB)
    return torch.from_numpy(np.ascontiguousarray(grey.transpose(2, 0, 1)))[None]


def nearest_indices(src: int, out: int) -> np.ndarray:
    """Source indices (int64, length ``out``) of PyTorch's legacy ``'nearest'`` resize from ``src`` to ``out``.

    ``min(floor(float32(k) * scale), src - 1)`` with ``scale = float32(src) / float32(out)`` rounded
    to float32 and the product in float32: exact ``k * src // out`` picks another row for some sizes
    (S=256 → 82, 94, 110, …), and the official output comes from this rule.
    """
    scale = np.float32(src) / np.float32(out)
    k = np.arange(out, dtype=np.float32)
    return np.minimum(np.floor(k * scale).astype(np.int64), src - 1)


def resize_ab(ab: np.ndarray | torch.Tensor, hw: tuple[int, int], mode: str = "nearest") -> np.ndarray:
    """ab 2×S×S (Lab units) → 2×H×W float32: ``'nearest'`` (official, blocky when enlarged) or ``'bilinear'``
    (``F.interpolate(..., 'bilinear', align_corners=False)``: smooth chroma)."""
    if mode not in AB_RESIZE_MODES:
        raise ValueError(f"ab_resize must be one of {', '.join(AB_RESIZE_MODES)}, got {mode!r}")
    h, w = (int(v) for v in hw)
    if mode == "bilinear":
        t = ab if isinstance(ab, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(ab))
        out = torch.nn.functional.interpolate(t.float()[None], size=(h, w), mode="bilinear", align_corners=False)
        return out[0].numpy()
    a = ab.numpy() if isinstance(ab, torch.Tensor) else np.asarray(ab)
    a = a.astype(np.float32, copy=False)
    return np.ascontiguousarray(a[:, nearest_indices(a.shape[1], h)][:, :, nearest_indices(a.shape[2], w)])


def merge_lab(lum: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """L (H×W float32) + ab (2×H×W float32) → H×W×3 uint8 RGB: OpenCV's float32 ``LAB2RGB`` (clipped to
    [0, 1] by OpenCV), ×255 and rounded half to even in float32."""
    lab = np.concatenate([np.asarray(lum, np.float32)[..., None], np.asarray(ab, np.float32).transpose(1, 2, 0)], -1)
    rgb = _cv2().cvtColor(np.ascontiguousarray(lab), _cv2().COLOR_LAB2RGB)
    return (rgb * 255.0).round().astype(np.uint8)
