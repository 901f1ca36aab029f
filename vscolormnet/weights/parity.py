"""Parity cases: outputs of the unmodified official code on the seeded checkpoint, and the comparison.

A case folder holds ``config.json`` (video, reference, mode), the input frames, the reference and
``outputs.npz`` (the official ``ab_pred`` and memory counters). The tests and the offline GPU check
(``scripts/gpu_check.py``) judge a run with the same bounds through ``parity_problems``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AB_MAX, AB_MEAN, PSNR_MIN = 1e-3, 1e-5, 60.0        # fp32 against the official fp32 run
FP16_MAX, FP16_MEAN = 0.02, 2e-3                    # reduced precision against our own fp32 run
# bf16 (8-bit mantissa) against our own fp32 run: measured mean 3.7e-3-4.7e-3 / max 0.034-0.037 on the
# parity cases (README "Precision"), bounded with margin as tests/backends/test_torch_precision.py does.
BF16_MAX, BF16_MEAN = 0.06, 6e-3
BOUNDS = {"fp16": (FP16_MAX, FP16_MEAN), "bf16": (BF16_MAX, BF16_MEAN)}    # precision → (max, mean) |Δab'|


@dataclass(frozen=True)
class ParityCase:
    """One case folder: ``frames_dir`` (PNG frames), ``ref`` (reference image), ``config`` (config.json)."""

    folder: Path
    config: dict
    frames_dir: Path
    ref: Path

    @property
    def first_frame_is_ref(self) -> bool:
        return not self.config["first_frame_not_exemplar"]

    def expected(self) -> dict[str, np.ndarray]:
        """The official outputs: ``ab_pred`` (T×2×H×W float32) and the per-frame memory counters."""
        with np.load(self.folder / "outputs.npz") as z:
            return {k: z[k] for k in z.files}


def load_case(folder: str | Path) -> ParityCase:
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    return ParityCase(folder, cfg, folder / "input" / cfg["video"], folder / cfg["ref"])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def rgb_from_ab(frames_dir: Path, ab_pred: np.ndarray) -> np.ndarray:
    """The case's RGB (T×H×W×3 uint8), derived as its README prescribes (skimage, truncation)."""
    from PIL import Image
    from skimage import color as skcolor
    out = []
    for path, ab in zip(sorted(Path(frames_dir).glob("*.png")), ab_pred):
        L = skcolor.rgb2lab(np.asarray(Image.open(path).convert("RGB")))[..., 0].astype(np.float32)
        lab = np.concatenate([L[..., None], 110 * ab.transpose(1, 2, 0)], -1)
        out.append((np.clip(skcolor.lab2rgb(lab), 0, 1) * 255).astype(np.uint8))
    return np.stack(out)


def parity_problems(case: ParityCase, ab_pred: np.ndarray, counters: dict, rgb: np.ndarray | None = None,
                    ab_max: float = AB_MAX, ab_mean: float = AB_MEAN) -> list[str]:
    """Every way a run (``ab_pred``, memory ``counters``, optional written ``rgb``) misses the case; [] = parity."""
    expected = case.expected()
    name = case.folder.name
    if ab_pred.shape != expected["ab_pred"].shape:
        return [f"{name}: ab shape {ab_pred.shape}, expected {expected['ab_pred'].shape}"]
    problems = []
    diff = np.abs(ab_pred - expected["ab_pred"])
    if diff.max() > ab_max:
        problems.append(f"{name}: max |Δab| {diff.max():.2e} > {ab_max:g} "
                        f"(per frame {np.round(diff.reshape(len(diff), -1).max(1), 6).tolist()})")
    if diff.mean() > ab_mean:
        problems.append(f"{name}: mean |Δab| {diff.mean():.2e} > {ab_mean:g}")
    for key, values in counters.items():
        if not np.array_equal(np.asarray(values), expected[key]):
            problems.append(f"{name}: {key} {np.asarray(values).tolist()} != {expected[key].tolist()}")
    if rgb is not None and (p := psnr(rgb, rgb_from_ab(case.frames_dir, expected["ab_pred"]))) < PSNR_MIN:
        problems.append(f"{name}: RGB PSNR {p:.1f} dB < {PSNR_MIN:g}")
    return problems
