"""Colour handling: sRGB ↔ CIE Lab exactly as scikit-image does it (D65, 2°), the network's
normalisation, padding to multiples of 112, and every conversion between images and the
network's inputs/outputs (``network_image``, ``network_ab``, ``compose_rgb``).

Everything works on torch tensors of any device so the GPU path never round-trips through
host memory, and the colour maths neither synchronises with the host nor copies to the
device: the constants are cached per (device, dtype), and on GPUs the keep-lightness gamut
mapping is branch-free.

The working dtype comes from ``work_dtype``: float64 on CPU, as skimage computes (the official
pipeline converts uint8 frames with skimage: parity), float32 elsewhere (float64 runs at 1/64
rate on GeForce GPUs; MPS has none). In gamut, float32 moves output RGB by < 0.01 of an 8-bit
code (``tests/media/test_color.py``); where the gamut mapping reduces chroma, a bisection step can
fall the other way for a rare pixel, which moves it by up to the bisection's resolution (a few
codes next to black, where the sRGB toe is steep).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..model.stages import PAD_MULTIPLE, padded_size

# sRGB (linear) → XYZ, D65, and its inverse (skimage.color.colorconv.xyz_from_rgb).
XYZ_FROM_RGB = torch.tensor([[0.412453, 0.357580, 0.180423],
                             [0.212671, 0.715160, 0.072169],
                             [0.019334, 0.119193, 0.950227]], dtype=torch.float64)
RGB_FROM_XYZ = torch.linalg.inv(XYZ_FROM_RGB)
WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)

L_MEAN, L_STD, AB_STD = 50.0, 50.0, 110.0
GAMUT_EPS = 1e-6

_CONSTANTS: dict[tuple[torch.device, torch.dtype], dict] = {}


def work_dtype(device) -> torch.dtype:
    """The dtype of colour maths on ``device``: float64 on CPU (skimage parity), else float32."""
    return torch.float64 if torch.device(device).type == "cpu" else torch.float32


def _constants(device: torch.device, dtype: torch.dtype) -> dict:
    """The colour constants on ``device`` in ``dtype``, copied there once (not on every call).

    ``xyz_from_rgb 3×3``, ``white 3×1×1``, and ``rgb_from_xyz`` / ``white`` as 0-d elements
    (``m[i][j]``, ``w[j]``) for the per-channel linear maps.
    """
    key = (device, dtype)
    c = _CONSTANTS.get(key)
    if c is None:
        inv = RGB_FROM_XYZ.to(device, dtype)
        white = WHITE_D65.to(device, dtype)
        c = _CONSTANTS[key] = {"xyz_from_rgb": XYZ_FROM_RGB.to(device, dtype), "white": white.view(3, 1, 1),
                               "m": [[inv[i, j] for j in range(3)] for i in range(3)],
                               "w": [white[j] for j in range(3)]}
    return c


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """``…×3×H×W`` sRGB in [0, 1] → Lab (L in [0, 100]), same dtype as the input."""
    c = _constants(rgb.device, rgb.dtype)
    lin = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = torch.einsum("ij,...jhw->...ihw", c["xyz_from_rgb"], lin)
    xyz = xyz / c["white"]
    f = torch.where(xyz > 0.008856, torch.pow(xyz.clamp_min(0), 1 / 3), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-3)
    lab = torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], -3)
    return lab


def _f_inverse(f: torch.Tensor) -> torch.Tensor:
    return torch.where(f > 0.2068966, f ** 3, (f - 16.0 / 116.0) / 7.787)


def _linear_from_parts(fy: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: dict):
    """Linear sRGB ``(r, g, b)`` from ``fy = (L+16)/116``, ``y = f⁻¹(fy)·Y_white`` and a, b (same shapes).

    Elementwise only (no matmul), so every pixel's result is the same whatever the tensor's
    shape: the masked and branch-free gamut mappings agree bit for bit.
    """
    x = _f_inverse(a / 500.0 + fy) * c["w"][0]
    z = _f_inverse((fy - b / 200.0).clamp_min(0)) * c["w"][2]   # skimage clips negative z
    m = c["m"]
    return tuple(m[i][0] * x + m[i][1] * y + m[i][2] * z for i in range(3))


def _fy_y(L: torch.Tensor, c: dict) -> tuple[torch.Tensor, torch.Tensor]:
    fy = (L + 16.0) / 116.0
    return fy, _f_inverse(fy) * c["w"][1]


def _lab_to_linear_rgb(lab: torch.Tensor) -> torch.Tensor:
    """``…×3×H×W`` Lab → linear sRGB (not clipped), skimage's formulas."""
    c = _constants(lab.device, lab.dtype)
    L, a, b = lab.unbind(-3)
    return torch.stack(_linear_from_parts(*_fy_y(L, c), a, b, c), -3)


def _gamma(lin: torch.Tensor) -> torch.Tensor:
    return torch.where(lin > 0.0031308, 1.055 * torch.pow(lin.clamp_min(0), 1 / 2.4) - 0.055, lin * 12.92)


def lab_to_rgb(lab: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """``…×3×H×W`` Lab → sRGB, clipped to [0, 1] as skimage's ``lab2rgb`` does (unless ``clip=False``)."""
    rgb = _gamma(_lab_to_linear_rgb(lab))
    return rgb.clamp(0, 1) if clip else rgb


def _in_gamut(rgb) -> torch.Tensor:
    r, g, b = rgb
    return ((r >= -GAMUT_EPS) & (r <= 1 + GAMUT_EPS) & (g >= -GAMUT_EPS) & (g <= 1 + GAMUT_EPS)
            & (b >= -GAMUT_EPS) & (b <= 1 + GAMUT_EPS))


def _chroma_scale(L: torch.Tensor, a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """The largest ``s`` in [0, 1] with ``(L, s·a, s·b)`` in gamut, to ``steps`` bisection steps
    (``L, a, b`` of any one shape; elementwise, shape-independent)."""
    c = _constants(L.device, L.dtype)
    fy, y = _fy_y(L, c)
    lo, hi = torch.zeros_like(L), torch.ones_like(L)
    for _ in range(steps):
        mid = (lo + hi) / 2
        ok = _in_gamut(_linear_from_parts(fy, y, a * mid, b * mid, c))
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid)
    return lo


def _reduced_chroma(L: torch.Tensor, a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Linear RGB ``3×…`` of ``(L, s·a, s·b)`` with ``s`` from ``_chroma_scale``."""
    c = _constants(L.device, L.dtype)
    s = _chroma_scale(L, a, b, steps)
    return torch.stack(_linear_from_parts(*_fy_y(L, c), a * s, b * s, c), 0)


def _out_of_gamut(lin: torch.Tensor) -> torch.Tensor:
    return ((lin < -GAMUT_EPS) | (lin > 1 + GAMUT_EPS)).any(0)


def _keep_lightness_masked(lab: torch.Tensor, steps: int) -> torch.Tensor:
    """Linear RGB with only the out-of-gamut pixels bisected (gathers: fast on CPU, syncs on GPUs)."""
    lin = _lab_to_linear_rgb(lab)
    bad = _out_of_gamut(lin)
    if bool(bad.any()):
        L, a, b = lab[:, bad]                                            # K each
        lin[:, bad] = _reduced_chroma(L, a, b, steps)
    return lin


def _keep_lightness_branch_free(lab: torch.Tensor, steps: int) -> torch.Tensor:
    """Linear RGB with every pixel bisected and the result chosen per pixel (no host sync)."""
    lin = _lab_to_linear_rgb(lab)
    bad = _out_of_gamut(lin)
    return torch.where(bad, _reduced_chroma(*lab.unbind(0), steps), lin)


def lab_to_rgb_keep_lightness(lab: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """``3×H×W`` Lab → sRGB in [0, 1], reducing the chroma of out-of-gamut pixels (same hue)
    instead of clipping RGB, so that every pixel keeps its L.

    Bisection on the ab scale, tested in linear RGB (the gamma curve is monotonic, so the gamut
    is the same unit cube there). On CPU only the out-of-gamut pixels are bisected; elsewhere
    every pixel is, branch-free. Both give the same bits.
    """
    if lab.device.type == "cpu":
        lin = _keep_lightness_masked(lab, steps)
    else:
        lin = _keep_lightness_branch_free(lab, steps)
    return _gamma(lin.clamp(0, 1)).clamp(0, 1)


def _lab(L: torch.Tensor, ab_norm: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """L ``H×W`` (0…100) and ab' ``2×H×W`` → Lab ``3×H×W`` in ``dtype`` (default ``work_dtype``)."""
    dt = dtype or work_dtype(L.device)
    return torch.cat([L[None].to(dt), denormalise_ab(ab_norm.to(dt))], 0)


def chroma_in_gamut(L: torch.Tensor, ab_norm: torch.Tensor, steps: int = 10,
                    dtype: torch.dtype | None = None) -> torch.Tensor:
    """ab' ``2×H×W`` (float32) with each out-of-gamut pixel's chroma reduced at constant hue until
    ``(L, ab)`` is in the sRGB gamut (``L``: ``H×W``, 0…100). The gamut mapping of
    ``lab_to_rgb_keep_lightness`` as a chroma scale, so that it can run at the inference size and
    the scaled chroma be resized (``compose_clipped``): ~600 elementwise passes over the network's
    pixels instead of the clip's. Masked on CPU, branch-free elsewhere (same bits)."""
    lab = _lab(L, ab_norm, dtype)
    bad = _out_of_gamut(_lab_to_linear_rgb(lab))
    if lab.device.type == "cpu":
        scale = torch.ones_like(lab[0])
        if bool(bad.any()):
            scale[bad] = _chroma_scale(*lab[:, bad], steps)
    else:
        scale = torch.where(bad, _chroma_scale(*lab.unbind(0), steps), 1.0)
    return (ab_norm.to(lab.dtype) * scale).float()


def compose_clipped(L: torch.Tensor, ab_norm: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Own L (``H×W``) + ab' (``2×H×W``) → ``3×H×W`` float32 sRGB, clipped to [0, 1]: the output
    step after ``chroma_in_gamut`` at a smaller size (what is left out of gamut is what resizing
    the chroma moved there: a sliver along sharp edges in L)."""
    lab = _lab(L, ab_norm, dtype)
    return lab_to_rgb(lab).float()


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
    """``H×W×3`` uint8 → ``3×H×W`` Lab float32, converted in ``work_dtype`` (float64 on CPU, like
    skimage on uint8 input); the uint8 pixels are what crosses to the device."""
    u8 = torch.from_numpy(np.array(rgb_u8, copy=True)).to(device)
    return rgb_to_lab(u8.permute(2, 0, 1).to(work_dtype(u8.device)) / 255.0).float()


def lab_from_unit_rgb(rgb: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``3×H×W`` RGB in [0, 1] (any float dtype) → Lab float32, computed in ``dtype``
    (default ``work_dtype``: float64 on CPU like skimage, float32 on GPUs)."""
    return rgb_to_lab(rgb.to(dtype or work_dtype(rgb.device)).clamp(0, 1)).float()


def network_image(L: torch.Tensor) -> torch.Tensor:
    """L ``H×W`` (0…100) → padded ``1×3×Hp×Wp`` L' ×3 (padding is L' = 0)."""
    return pad(normalise_l(L)).expand(3, -1, -1).unsqueeze(0).contiguous()


def network_ab(ab: torch.Tensor) -> torch.Tensor:
    """Lab ab ``2×H×W`` → padded ``1×2×Hp×Wp`` ab'."""
    return pad(normalise_ab(ab)).unsqueeze(0).contiguous()


def compose_rgb(L: torch.Tensor, ab_norm: torch.Tensor) -> np.ndarray:
    """Own L (``H×W``) + predicted ab' (``2×H×W``) → ``H×W×3`` uint8, truncated like the official code."""
    lab = torch.cat([L.unsqueeze(0), denormalise_ab(ab_norm)], 0)
    return unit_to_uint8(lab_to_rgb(lab.to(work_dtype(lab.device))))


def compose_keep_lightness(L: torch.Tensor, ab_norm: torch.Tensor, dtype: torch.dtype | None = None
                           ) -> torch.Tensor:
    """Own L (``H×W``) + ab' (``2×H×W``, same size) → ``3×H×W`` float32 RGB in [0, 1] with every
    pixel's L kept (out-of-gamut chroma reduced at constant hue): what ``Colorize`` outputs.
    Computed in ``dtype`` (default ``work_dtype``)."""
    lab = _lab(L, ab_norm, dtype)
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
