"""Run the metrics over the collected clips, streaming frames (only histograms are kept).

The first frame pair of every clip is decoded and checked (same size, large enough for SSIM)
before LPIPS/FID are set up or any clip is measured, so a wrong folder fails in seconds.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from .measures import SSIM_MIN_SIDE, cdc_channels, channel_histograms, colourfulness, js_next, psnr, ssim
from .optional import fid_of_features, setup_optional
from .report import ClipMetrics, EvalResult
from .sources import ClipSource, collect_clips


def check_pair(clip: str, frame: str, pred: np.ndarray, gt: np.ndarray) -> None:
    """A ValueError naming ``--pred``/``--gt`` unless the two frames can be compared."""
    if pred.shape != gt.shape:
        raise ValueError(f"clip {clip}, frame {frame}: --pred is {pred.shape[1]}×{pred.shape[0]}, "
                         f"--gt is {gt.shape[1]}×{gt.shape[0]}; they must be the same size")
    if min(gt.shape[:2]) < SSIM_MIN_SIDE:
        raise ValueError(f"clip {clip}, frame {frame}: frames of {gt.shape[1]}×{gt.shape[0]} are too small "
                         f"(SSIM needs at least {SSIM_MIN_SIDE}×{SSIM_MIN_SIDE} pixels)")


def evaluate_clip(src: ClipSource, lpips_fn=None, fid_fn=None, fid_feats=None) -> ClipMetrics:
    """All per-frame metrics of one clip, streaming its frames (only histograms are kept)."""
    names, ps, ss, cf, cfg, hp, hg, lp = [], [], [], [], [], [], [], []
    for name, pred, gt in src.pairs():
        check_pair(src.name, name, pred, gt)
        names.append(name)
        ps.append(psnr(pred, gt))
        ss.append(ssim(pred, gt))
        cf.append(colourfulness(pred))
        cfg.append(colourfulness(gt))
        hp.append(channel_histograms(pred))
        hg.append(channel_histograms(gt))
        if lpips_fn is not None:
            lp.append(lpips_fn(pred, gt))
        if fid_fn is not None and fid_feats is not None:
            fid_feats[0].append(fid_fn(pred))
            fid_feats[1].append(fid_fn(gt))
    if not names:
        raise ValueError(f"clip {src.name} has no frames")
    hp, hg = np.stack(hp), np.stack(hg)
    return ClipMetrics(src.name, names, np.array(ps), np.array(ss), np.array(cf), np.array(cfg),
                       js_next(hp), js_next(hg), cdc_channels(hp), cdc_channels(hg),
                       np.array(lp) if lpips_fn is not None else None)


def _probe(src: ClipSource) -> None:
    """Decode and check the first frame pair of a clip."""
    for name, pred, gt in src.pairs():
        check_pair(src.name, name, pred, gt)
        return
    raise ValueError(f"clip {src.name} has no frames")


def evaluate(pred: str | os.PathLike, gt: str | os.PathLike, progress: Callable[[str], None] | None = None,
             optional: bool = True) -> EvalResult:
    """Evaluate ``pred`` against ``gt`` (two frame folders, folders of clip folders, or two videos)."""
    clips = collect_clips(pred, gt)
    for src in clips:
        _probe(src)
    lpips_fn, fid_fn, skipped = setup_optional(optional)
    feats: tuple[list, list] = ([], [])
    results = []
    for i, src in enumerate(clips):
        if progress:
            progress(f"clip {i + 1}/{len(clips)}: {src.name} ({src.num_frames} frames)")
        results.append(evaluate_clip(src, lpips_fn, fid_fn, feats))
    fid = fid_of_features(*feats) if fid_fn is not None else None
    if fid_fn is not None and fid is None:
        skipped["fid"] = "FID needs at least 2 frames"
    return EvalResult(results, fid, skipped)
