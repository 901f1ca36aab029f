"""Quality metrics of a colorized clip against its ground truth (``python -m vscolormnet eval``).

``measures``: the pure metrics on numpy frames (PSNR, SSIM, CDC, JS divergence, colourfulness,
Fréchet distance). ``optional``: LPIPS and FID when available offline. ``sources``: prediction
and ground truth as folders or videos, paired frame by frame. ``report``: the results, table,
JSON and plot. ``evaluation``: ties them together. The names below are the public API.
"""
from __future__ import annotations

from .evaluation import check_pair, evaluate, evaluate_clip
from .measures import (
                       CDC_DILATIONS,
                       CHANNELS,
                       cdc,
                       cdc_channels,
                       channel_histograms,
                       colourfulness,
                       frechet_distance,
                       js_divergence,
                       js_next,
                       mse,
                       psnr,
                       psnr_official_uint8,
                       ssim,
)
from .optional import FID_WEIGHTS, LPIPS_ALEX_WEIGHTS, optional_metric_status
from .report import ClipMetrics, EvalResult, check_plot_path, format_table, plot
from .sources import ClipSource, collect_clips, match_frames

__all__ = ["CDC_DILATIONS", "CHANNELS", "FID_WEIGHTS", "LPIPS_ALEX_WEIGHTS", "ClipMetrics", "ClipSource",
           "EvalResult", "cdc", "cdc_channels", "channel_histograms", "check_pair", "check_plot_path",
           "collect_clips", "colourfulness", "evaluate", "evaluate_clip", "format_table", "frechet_distance",
           "js_divergence", "js_next", "match_frames", "mse", "optional_metric_status", "plot", "psnr",
           "psnr_official_uint8", "ssim"]
