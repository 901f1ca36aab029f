"""Colour handling: sRGB ↔ CIE Lab exactly as scikit-image does it (D65, 2°), the network's
normalisation, padding to multiples of 112, and every conversion between images and the
network's inputs/outputs (``network_image``, ``network_ab``, ``compose_rgb``).

Everything works on torch tensors of any device so the GPU path never round-trips
through host memory. float64 is used for the conversions on CPU by default, as skimage
does, because the official pipeline converts uint8 frames with skimage.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .geometry import padded_size
from .stages import PAD_MULTIPLE

# sRGB (linear) → XYZ, D65, and its inverse (skimage.color.colorconv.xyz_from_rgb).
XYZ_FROM_RGB = torch.tensor([[0.412453, 0.357580, 0.180423],
                             [0.212671, 0.715160, 0.072169],
                             [0.019334, 0.119193, 0.950227]], dtype=torch.float64)
RGB_FROM_XYZ = torch.linalg.inv(XYZ_FROM_RGB)
WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)

L_MEAN, L_STD, AB_STD = 50.0, 50.0, 110.0


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """``…×3×H×W`` sRGB in [0, 1] → Lab (L in [0, 100]), same dtype as the input."""
    m = XYZ_FROM_RGB.to(rgb.device, rgb.dtype)
    lin = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = torch.einsum("ij,...jhw->...ihw", m, lin)
    xyz = xyz / WHITE_D65.to(rgb.device, rgb.dtype).view(3, 1, 1)
    f = torch.where(xyz > 0.008856, torch.pow(xyz.clamp_min(0), 1 / 3), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-3)
    lab = torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], -3)
    return lab


def _lab_to_linear_rgb(lab: torch.Tensor) -> torch.Tensor:
    """``…×3×H×W`` Lab → linear sRGB (not clipped), skimage's formulas."""
    L, a, b = lab.unbind(-3)
    fy = (L + 16.0) / 116.0
    fx = a / 500.0 + fy
    fz = (fy - b / 200.0).clamp_min(0)  # skimage clips negative z
    f = torch.stack([fx, fy, fz], -3)
    xyz = torch.where(f > 0.2068966, f ** 3, (f - 16.0 / 116.0) / 7.787)
    xyz = xyz * WHITE_D65.to(lab.device, lab.dtype).view(3, 1, 1)
    return torch.einsum("ij,...jhw->...ihw", RGB_FROM_XYZ.to(lab.device, lab.dtype), xyz)


def _gamma(lin: torch.Tensor) -> torch.Tensor:
    return torch.where(lin > 0.0031308, 1.055 * torch.pow(lin.clamp_min(0), 1 / 2.4) - 0.055, lin * 12.92)


def lab_to_rgb(lab: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """``…×3×H×W`` Lab → sRGB, clipped to [0, 1] as skimage's ``lab2rgb`` does (unless ``clip=False``)."""
    rgb = _gamma(_lab_to_linear_rgb(lab))
    return rgb.clamp(0, 1) if clip else rgb


def lab_to_rgb_keep_lightness(lab: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """``3×H×W`` Lab → sRGB in [0, 1], reducing the chroma of out-of-gamut pixels (same hue)
    instead of clipping RGB, so that every pixel keeps its L.

    Bisection on the ab scale of the out-of-gamut pixels only, tested in linear RGB (the
    gamma curve is monotonic, so the gamut is the same unit cube there).
    """
    eps = 1e-6
    lin = _lab_to_linear_rgb(lab)
    bad = ((lin < -eps) | (lin > 1 + eps)).any(0)
    if bool(bad.any()):
        sub = lab[:, bad].unsqueeze(-1)                      # 3×K×1
        lo = torch.zeros_like(sub[:1])
        hi = torch.ones_like(sub[:1])
        for _ in range(steps):
            mid = (lo + hi) / 2
            trial = _lab_to_linear_rgb(torch.cat([sub[:1], sub[1:] * mid], 0))
            ok = ((trial >= -eps) & (trial <= 1 + eps)).all(0, keepdim=True)
            lo = torch.where(ok, mid, lo)
            hi = torch.where(ok, hi, mid)
        lin[:, bad] = _lab_to_linear_rgb(torch.cat([sub[:1], sub[1:] * lo], 0)).squeeze(-1)
    return _gamma(lin.clamp(0, 1)).clamp(0, 1)


def normalise_l(L: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] → L' = (L − 50) / 50 in [−1, 1]."""
    return (L - L_MEAN) / L_STD


def normalise_ab(ab: torch.Tensor) -> torch.Tensor:
    """Lab ab → ab' = ab / 110."""
    return ab / AB_STD


def denormalise_ab(ab: torch.Tensor) -> torch.Tensor:
    """ab' → Lab ab."""
    return ab * AB_STD


def pad_amounts(h: int, w: int, multiple: int = PAD_MULTIPLE) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` zero padding; the extra pixel goes right/bottom."""
    hp, wp = padded_size(h, w, multiple)
    dh, dw = hp - h, wp - w
    return dw // 2, dw - dw // 2, dh // 2, dh - dh // 2


def pad(x: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Zero-pad the last two dims to multiples of ``multiple`` (centred)."""
    return F.pad(x, pad_amounts(x.shape[-2], x.shape[-1], multiple))


def unpad(x: torch.Tensor, h: int, w: int, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Crop a padded ``…×Hp×Wp`` tensor back to ``…×h×w``."""
    left, _, top, _ = pad_amounts(h, w, multiple)
    return x[..., top:top + h, left:left + w]


def uint8_to_unit(img: np.ndarray) -> torch.Tensor:
    """``H×W×3`` uint8 → ``3×H×W`` float64 in [0, 1]."""
    return torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).to(torch.float64) / 255.0


def unit_to_uint8(rgb: torch.Tensor) -> np.ndarray:
    """``3×H×W`` in [0, 1] → ``H×W×3`` uint8 by truncation (the official quantisation)."""
    return (rgb.clamp(0, 1) * 255).permute(1, 2, 0).cpu().numpy().astype(np.uint8)


def resize_rgb_like_pil(img: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Resize ``H×W×3`` uint8 with PIL bilinear (the official exemplar resize), ignoring aspect."""
    from PIL import Image
    if (img.shape[1], img.shape[0]) == tuple(size_wh):
        return img
    return np.asarray(Image.fromarray(img).resize(tuple(size_wh), Image.BILINEAR))


# ---- network inputs and outputs ---------------------------------------------------------
def lab_float32(rgb_u8: np.ndarray, device="cpu") -> torch.Tensor:
    """``H×W×3`` uint8 → ``3×H×W`` Lab float32, converted in float64 like skimage on uint8 input."""
    return rgb_to_lab(uint8_to_unit(rgb_u8).to(device)).float()


def lab_from_unit_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """``3×H×W`` RGB in [0, 1] (any float dtype) → Lab float32, computed in float64 like skimage."""
    return rgb_to_lab(rgb.double().clamp(0, 1)).float()


def network_image(L: torch.Tensor) -> torch.Tensor:
    """L ``H×W`` (0…100) → padded ``1×3×Hp×Wp`` L' ×3 (padding is L' = 0)."""
    return pad(normalise_l(L)).expand(3, -1, -1).unsqueeze(0).contiguous()


def network_ab(ab: torch.Tensor) -> torch.Tensor:
    """Lab ab ``2×H×W`` → padded ``1×2×Hp×Wp`` ab'."""
    return pad(normalise_ab(ab)).unsqueeze(0).contiguous()


def compose_rgb(L: torch.Tensor, ab_norm: torch.Tensor) -> np.ndarray:
    """Own L (``H×W``) + predicted ab' (``2×H×W``) → ``H×W×3`` uint8, truncated like the official code."""
    lab = torch.cat([L.unsqueeze(0), denormalise_ab(ab_norm)], 0)
    return unit_to_uint8(lab_to_rgb(lab.double()))


def compose_keep_lightness(L: torch.Tensor, ab_norm: torch.Tensor) -> torch.Tensor:
    """Own L (``H×W``) + ab' (``2×H×W``, same size) → ``3×H×W`` float32 RGB in [0, 1] with every
    pixel's L kept (out-of-gamut chroma reduced at constant hue): what ``Colorize`` outputs."""
    lab = torch.cat([L[None], denormalise_ab(ab_norm)], 0)
    return lab_to_rgb_keep_lightness(lab).float()


def synthetic_rgb(height: int, width: int, t: int = 0, seed: int = 0) -> np.ndarray:
    """A deterministic picture-like ``H×W×3`` uint8 image: colour gradients, soft discs that move
    with ``t``, and mild noise. Used when no real image is given, and by ``bench``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y /= max(height - 1, 1)
    x /= max(width - 1, 1)
    img = np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.8 - 0.5 * x * y], -1)
    for _ in range(6):
        cy, cx = rng.uniform(0.1, 0.9, 2)
        vy, vx = rng.uniform(-0.01, 0.01, 2)
        r = rng.uniform(0.05, 0.25)
        colour = rng.uniform(0, 1, 3)
        d2 = (y - cy - vy * t) ** 2 + (x - cx - vx * t) ** 2
        alpha = np.clip(1.5 - np.sqrt(d2) / r, 0, 1)[..., None]
        img = img * (1 - alpha) + colour * alpha
    img = img + rng.normal(0, 0.02, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)
