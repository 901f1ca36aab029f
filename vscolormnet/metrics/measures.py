"""Pure metrics on RGB uint8 frames (``H×W×3`` numpy arrays), as in the ColorMNet evaluation, fixed.

Nothing here reads files or knows about clips, so every figure can be checked by hand on
small arrays. Differences from the official ``evaluation_matrics/`` scripts, on purpose:

- **PSNR** in float64: ``20·log10(255 / sqrt(mean((gt − pred)²)))`` over all pixels and
  channels. The official script subtracts ``uint8`` arrays, so differences and squares wrap
  modulo 256 (|d| = 16 counts as 0). Identical frames have infinite PSNR.
- **SSIM**: ``skimage.metrics.structural_similarity(gt, pred, channel_axis=2, data_range=255)``
  (the official call, with the data range stated rather than inferred).
- **CDC** (colour distribution consistency, lower is better), as in the official ``cdc.py``:
  per channel a 256-bin histogram normalised by H·W; for dilations 1, 2, 4 the mean
  Jensen–Shannon divergence (natural log) between frames i and i+d; weight 1/3 each; then the
  mean of the three channels. A clip shorter than five frames uses the dilations it has,
  equally weighted (the official script gives NaN).
- **Colourfulness** (Hasler & Süsstrunk 2003) on R, G, B in the right order (the official
  script swaps R and B): ``rg = R − G``, ``yb = (R + G)/2 − B``,
  ``C = sqrt(σ_rg² + σ_yb²) + 0.3·sqrt(μ_rg² + μ_yb²)``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

CDC_DILATIONS = (1, 2, 4)
CHANNELS = ("r", "g", "b")
SSIM_MIN_SIDE = 7  # skimage's default 7×7 window


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction and ground truth differ in size: {pred.shape} vs {gt.shape}")


def mse(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean squared error in float64 over all pixels and channels."""
    _check_pair(pred, gt)
    d = pred.astype(np.float64) - gt.astype(np.float64)
    return float(np.mean(d * d))


def psnr(pred: np.ndarray, gt: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB, computed in float (``inf`` for identical frames)."""
    m = mse(pred, gt)
    if m == 0.0:
        return math.inf
    return float(20.0 * math.log10(data_range) - 10.0 * math.log10(m))


def psnr_official_uint8(pred: np.ndarray, gt: np.ndarray) -> float:
    """The official script's PSNR, with its uint8 wrap-around, for comparison only."""
    with np.errstate(divide="ignore"):
        d = gt.astype(np.uint8) - pred.astype(np.uint8)
        m = float(np.mean(d * d))
        return math.inf if m == 0 else float(20 * math.log10(255.0 / math.sqrt(m)))


def ssim(pred: np.ndarray, gt: np.ndarray, data_range: float = 255.0) -> float:
    """SSIM (skimage defaults: 7×7 uniform window, K1 0.01, K2 0.03), averaged over channels."""
    from skimage.metrics import structural_similarity
    _check_pair(pred, gt)
    if min(pred.shape[:2]) < SSIM_MIN_SIDE:
        raise ValueError(f"SSIM needs frames of at least {SSIM_MIN_SIDE}×{SSIM_MIN_SIDE} pixels, "
                         f"got {pred.shape[1]}×{pred.shape[0]}")
    return float(structural_similarity(gt, pred, channel_axis=2, data_range=data_range))


def channel_histograms(rgb: np.ndarray) -> np.ndarray:
    """3×256 histograms of R, G, B, each normalised by the pixel count H·W."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 RGB frame, got {rgb.dtype} {rgb.shape}")
    n = rgb.shape[0] * rgb.shape[1]
    flat = rgb.reshape(-1, 3)
    return np.stack([np.bincount(flat[:, c], minlength=256) for c in range(3)]).astype(np.float64) / n


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon divergence (natural log) along the last axis: ½KL(p‖m) + ½KL(q‖m), m = (p+q)/2.

    Like ``scipy.stats.entropy``, each distribution is first normalised to sum 1. 0 ≤ JS ≤ ln 2.
    """
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    q = q / q.sum(axis=-1, keepdims=True)
    m = 0.5 * (p + q)

    def kl(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 0, a * np.log(a / b), 0.0)
        return t.sum(axis=-1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def cdc_channels(hists: np.ndarray, dilations: tuple[int, ...] = CDC_DILATIONS) -> np.ndarray | None:
    """Per-channel CDC (R, G, B) of a clip from its T×3×256 histograms; None for a single frame.

    Each dilation d with at least one pair contributes the mean JS(h_i, h_{i+d}) over i; the
    contributions are averaged (weights 1/3 each when all of 1, 2, 4 apply, as officially).
    """
    hists = np.asarray(hists, np.float64)
    t = hists.shape[0]
    terms = [js_divergence(hists[:-d], hists[d:]).mean(axis=0) for d in dilations if t > d]
    if not terms:
        return None
    return np.mean(terms, axis=0)


def cdc(frames: Iterable[np.ndarray], dilations: tuple[int, ...] = CDC_DILATIONS) -> float | None:
    """Colour distribution consistency of a sequence of RGB uint8 frames (lower is better)."""
    ch = cdc_channels(np.stack([channel_histograms(f) for f in frames]), dilations)
    return None if ch is None else float(ch.mean())


def js_next(hists: np.ndarray) -> np.ndarray:
    """Per frame i < T−1: JS divergence between frames i and i+1, averaged over the channels."""
    hists = np.asarray(hists, np.float64)
    if hists.shape[0] < 2:
        return np.zeros(0)
    return js_divergence(hists[:-1], hists[1:]).mean(axis=-1)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler–Süsstrunk colourfulness of an RGB frame (R, G, B in this order)."""
    x = np.asarray(rgb, np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(math.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * math.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between two Gaussians (the FID formula), with an eps diagonal retry."""
    import warnings

    from scipy import linalg
    diff = mu1 - mu2
    with warnings.catch_warnings():  # rank-deficient covariances (few frames) are expected
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
