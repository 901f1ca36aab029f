"""The results of ``eval`` and their three outputs: a table (stderr), JSON (stdout), a PNG plot.

Kept apart from the metrics so the numbers can be tested without matplotlib, and so the
``--plot`` path is checked (``check_plot_path``) before a long evaluation rather than after.
Non-finite numbers become ``null``: the JSON is strict.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..util.files import atomic_write, is_writable_dir
from .measures import CHANNELS

DEFINITIONS = {
    "psnr": "dB, float64, mean over frames that differ from the ground truth",
    "ssim": "skimage structural_similarity, channel_axis=2, data_range=255",
    "cdc": "JS divergence of per-channel 256-bin histograms, frames 1/2/4 apart, 1/3 each, "
           "channel mean, of the prediction; overall = mean over clips; lower is better",
    "cdc_gt": "the same for the ground truth",
    "colourfulness": "Hasler-Suesstrunk on RGB (R, G, B order)",
    "js_next": "per frame: channel-mean JS divergence to the next frame",
}


def _f(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _channels(ch: np.ndarray | None) -> dict | None:
    return None if ch is None else {c: float(v) for c, v in zip(CHANNELS, ch)}


@dataclass
class ClipMetrics:
    """Per-frame and summary metrics of one clip (arrays have one entry per frame)."""

    name: str
    frames: list[str]
    psnr: np.ndarray
    ssim: np.ndarray
    colourfulness: np.ndarray
    colourfulness_gt: np.ndarray
    js_next: np.ndarray
    js_next_gt: np.ndarray
    cdc_channels: np.ndarray | None
    cdc_gt_channels: np.ndarray | None
    lpips: np.ndarray | None = None

    @property
    def identical_frames(self) -> int:
        """Frames equal to their ground truth (infinite PSNR)."""
        return int(np.isinf(self.psnr).sum())

    def summary(self) -> dict:
        """Clip means (JSON-ready)."""
        finite = self.psnr[np.isfinite(self.psnr)]
        worst = int(np.argmin(self.psnr)) if len(self.psnr) else None
        return {
            "name": self.name,
            "frames": len(self.frames),
            "psnr": _f(finite.mean()) if len(finite) else None,
            "psnr_min": _f(self.psnr.min()) if len(self.psnr) else None,
            "psnr_min_frame": self.frames[worst] if worst is not None else None,
            "identical_frames": self.identical_frames,
            "ssim": _f(self.ssim.mean()),
            "cdc": _f(self.cdc_channels.mean()) if self.cdc_channels is not None else None,
            "cdc_channels": _channels(self.cdc_channels),
            "cdc_gt": _f(self.cdc_gt_channels.mean()) if self.cdc_gt_channels is not None else None,
            "colourfulness": _f(self.colourfulness.mean()),
            "colourfulness_gt": _f(self.colourfulness_gt.mean()),
            "lpips": _f(self.lpips.mean()) if self.lpips is not None else None,
        }

    def per_frame(self) -> dict:
        """Per-frame values (JSON-ready; ``js_next`` of the last frame is null)."""
        pad = [None]
        return {"frame": list(self.frames), "psnr": [_f(v) for v in self.psnr],
                "ssim": [_f(v) for v in self.ssim],
                "js_next": [_f(v) for v in self.js_next] + pad,
                "js_next_gt": [_f(v) for v in self.js_next_gt] + pad,
                "colourfulness": [_f(v) for v in self.colourfulness],
                "lpips": [_f(v) for v in self.lpips] if self.lpips is not None else None}


@dataclass
class EvalResult:
    """Every clip's metrics, the overall figures and the metrics that were skipped (with why)."""

    clips: list[ClipMetrics]
    fid: float | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def overall(self) -> dict:
        """PSNR, SSIM, colourfulness, LPIPS: mean over all frames of all clips; CDC: mean over clips."""
        psnr = np.concatenate([c.psnr for c in self.clips])
        finite = psnr[np.isfinite(psnr)]
        cdcs = [c.cdc_channels for c in self.clips if c.cdc_channels is not None]
        cdcs_gt = [c.cdc_gt_channels for c in self.clips if c.cdc_gt_channels is not None]
        cdc_ch = np.mean(cdcs, axis=0) if cdcs else None
        lp = [c.lpips for c in self.clips if c.lpips is not None]
        return {
            "clips": len(self.clips),
            "frames": int(psnr.size),
            "psnr": _f(finite.mean()) if finite.size else None,
            "psnr_min": _f(psnr.min()),
            "identical_frames": int(np.isinf(psnr).sum()),
            "ssim": _f(np.concatenate([c.ssim for c in self.clips]).mean()),
            "cdc": _f(cdc_ch.mean()) if cdc_ch is not None else None,
            "cdc_channels": _channels(cdc_ch),
            "cdc_gt": _f(np.mean(cdcs_gt, axis=0).mean()) if cdcs_gt else None,
            "colourfulness": _f(np.concatenate([c.colourfulness for c in self.clips]).mean()),
            "colourfulness_gt": _f(np.concatenate([c.colourfulness_gt for c in self.clips]).mean()),
            "lpips": _f(np.concatenate(lp).mean()) if lp else None,
            "fid": _f(self.fid) if self.fid is not None else None,
        }

    def to_json(self) -> dict:
        """Everything, JSON-ready (non-finite numbers are null)."""
        return {"overall": self.overall(),
                "clips": [dict(c.summary(), per_frame=c.per_frame()) for c in self.clips],
                "skipped": dict(self.skipped),
                "definitions": dict(DEFINITIONS)}


def format_table(res: EvalResult) -> str:
    """A human-readable table: one row per clip, then the overall row, then skipped metrics."""
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)
    head = f"{'clip':<24} {'frames':>6} {'PSNR':>7} {'minPSNR':>7} {'SSIM':>6} {'CDC':>8} {'CDC_gt':>8} " \
           f"{'colour':>7} {'col_gt':>7}"
    has_lpips = any(c.lpips is not None for c in res.clips)
    if has_lpips:
        head += f" {'LPIPS':>6}"
    lines = [head, "-" * len(head)]
    rows = [c.summary() for c in res.clips] + [dict(res.overall(), name="overall")]
    for i, s in enumerate(rows):
        if i == len(rows) - 1:
            lines.append("-" * len(head))
        name = s["name"] if len(s["name"]) <= 24 else s["name"][:21] + "..."
        line = (f"{name:<24} {s['frames']:>6} {num(s['psnr'], '7.2f')} {num(s['psnr_min'], '7.2f')} "
                f"{num(s['ssim'], '6.4f')} {num(s['cdc'], '8.5f')} {num(s['cdc_gt'], '8.5f')} "
                f"{num(s['colourfulness'], '7.2f')} {num(s['colourfulness_gt'], '7.2f')}")
        if has_lpips:
            line += f" {num(s['lpips'], '6.4f')}"
        lines.append(line)
    if res.fid is not None:
        lines.append(f"FID (all frames): {res.fid:.3f}")
    ident = res.overall()["identical_frames"]
    if ident:
        lines.append(f"note: {ident} frame(s) equal their ground truth (infinite PSNR) and are left out of the "
                     "PSNR means")
    for k, why in res.skipped.items():
        lines.append(f"note: {k.upper()} skipped: {why}")
    return "\n".join(lines)


def check_plot_path(value: str | os.PathLike) -> Path:
    """The ``--plot`` target, refused up front unless it is a .png in an existing, writable folder."""
    path = Path(value).expanduser()
    if path.suffix.lower() != ".png":
        raise ValueError(f"--plot must name a .png file, got {str(value)!r}")
    if path.is_dir():
        raise ValueError(f"--plot {path} is a folder; name a .png file")
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist (it is not created)"
        raise ValueError(f"--plot {path}: the folder {folder} {what}")
    if not is_writable_dir(folder):
        raise ValueError(f"--plot {path}: the folder {folder} is not writable")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install 'vscolormnet[plot]'") from None
    return path


def plot(res: EvalResult, path: str | os.PathLike) -> Path:
    """PNG with per-frame PSNR and per-frame JS divergence to the next frame (prediction vs ground truth).

    Clips are laid end to end; dashed lines mark clip boundaries. Written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no global backend change
    from matplotlib.figure import Figure

    path = check_plot_path(path)
    total = sum(len(c.frames) for c in res.clips)
    fig = Figure(figsize=(min(6 + total / 40, 24), 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    x0 = 0
    for i, c in enumerate(res.clips):
        x = np.arange(x0, x0 + len(c.frames))
        p = np.where(np.isfinite(c.psnr), c.psnr, np.nan)
        ax1.plot(x, p, color="C0", lw=1.2, label="PSNR" if i == 0 else None)
        if len(c.js_next):
            ax2.plot(x[:-1], c.js_next, color="C3", lw=1.2, label="prediction" if i == 0 else None)
            ax2.plot(x[:-1], c.js_next_gt, color="0.5", lw=1.0, ls="--", label="ground truth" if i == 0 else None)
        if i:
            for ax in (ax1, ax2):
                ax.axvline(x0 - 0.5, color="k", ls=":", lw=0.8)
        if len(res.clips) > 1:
            ax1.text(x0, 1.0, c.name, transform=ax1.get_xaxis_transform(), fontsize=7, va="bottom", rotation=0)
        x0 += len(c.frames)
    ov = res.overall()
    psnr_txt = f"{ov['psnr']:.2f} dB" if ov["psnr"] is not None else "-"
    cdc_txt = f"{ov['cdc']:.5f}" if ov["cdc"] is not None else "-"
    ax1.set_ylabel("PSNR (dB)")
    ax1.set_title(f"{len(res.clips)} clip(s), {ov['frames']} frames: PSNR {psnr_txt}, SSIM {ov['ssim']:.4f}, "
                  f"CDC {cdc_txt}", fontsize=9, loc="left", pad=14 if len(res.clips) > 1 else 6)
    ax1.grid(alpha=0.3)
    ax1.legend(loc="lower right", fontsize=8)
    ax2.set_ylabel("JS divergence to next frame")
    ax2.set_xlabel("frame (clips end to end)" if len(res.clips) > 1 else "frame")
    ax2.grid(alpha=0.3)
    ax2.legend(loc="upper right", fontsize=8)
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
