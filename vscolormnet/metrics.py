"""Quality metrics of a colorized clip against its ground truth, as in the ColorMNet evaluation, fixed.

All metrics take RGB uint8 frames (H×W×3). Differences from the official
``evaluation_matrics/`` scripts (spec §6), on purpose:

- **PSNR** is computed in float64: ``20·log10(255 / sqrt(mean((gt − pred)²)))`` over all pixels
  and channels of a frame. The official script subtracts ``uint8`` arrays, so every difference
  and square wraps modulo 256 (|d| = 16 counts as 0). A frame identical to its ground truth has
  infinite PSNR; clip and overall means are taken over the other frames and the identical ones
  are counted separately.
- **SSIM**: ``skimage.metrics.structural_similarity(gt, pred, channel_axis=2, data_range=255)``
  (the official call, with the data range stated rather than inferred).
- **CDC** (colour distribution consistency, lower is better), as in the official ``cdc.py``:
  per channel a 256-bin histogram normalised by H·W; for dilations 1, 2, 4 the mean
  Jensen–Shannon divergence (natural log) between frames i and i+d; weight 1/3 each and sum;
  then the mean of the three channels. Computed on the prediction only; ``cdc_gt`` is the same
  figure for the ground truth, the natural variation to compare with. A clip with fewer than
  five frames uses the dilations it has, equally weighted (the official script gives NaN).
- **Colourfulness** (Hasler & Süsstrunk 2003) on R, G, B in the right order
  (the official script swaps R and B): ``rg = R − G``, ``yb = (R + G)/2 − B``,
  ``C = sqrt(σ_rg² + σ_yb²) + 0.3·sqrt(μ_rg² + μ_yb²)``.
- **LPIPS** (AlexNet, inputs scaled to [−1, 1], which the official script forgets) and **FID**
  (pytorch-fid's Inception, over all frames of all clips; the official script averages
  per-clip values) only when their packages *and* weights are on this machine; nothing is
  downloaded. Otherwise they are skipped with the reason.

Per frame we also keep the Jensen–Shannon divergence to the next frame (``js_next``), the
dilation-1 term of CDC, so a plot shows where colours jump.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

log = logging.getLogger("vscolormnet")

CDC_DILATIONS = (1, 2, 4)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CHANNELS = ("r", "g", "b")
LPIPS_ALEX_WEIGHTS = "alexnet-owt-7be5be79.pth"
FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"


# ---------------------------------------------------------------- per-frame metrics
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
    if min(pred.shape[:2]) < 7:
        raise ValueError(f"SSIM needs frames of at least 7×7 pixels, got {pred.shape[1]}×{pred.shape[0]}")
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


# ---------------------------------------------------------------- optional metrics (LPIPS, FID)
def _hub_checkpoint(name: str) -> Path:
    import torch
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def optional_metric_status() -> dict[str, str | None]:
    """``{"lpips": reason or None, "fid": reason or None}``: None means it can run offline here."""
    import importlib.util
    status: dict[str, str | None] = {}
    if importlib.util.find_spec("lpips") is None:
        status["lpips"] = "the lpips package is not installed (pip install lpips torchvision)"
    elif importlib.util.find_spec("torchvision") is None:
        status["lpips"] = "torchvision is not installed (lpips needs it for AlexNet)"
    elif not _hub_checkpoint(LPIPS_ALEX_WEIGHTS).is_file():
        status["lpips"] = (f"the AlexNet weights {LPIPS_ALEX_WEIGHTS} are not in "
                           f"{_hub_checkpoint(LPIPS_ALEX_WEIGHTS).parent} (nothing is downloaded)")
    else:
        status["lpips"] = None
    if importlib.util.find_spec("pytorch_fid") is None:
        status["fid"] = "the pytorch-fid package is not installed (pip install pytorch-fid)"
    elif not _hub_checkpoint(FID_WEIGHTS).is_file():
        status["fid"] = (f"the Inception weights {FID_WEIGHTS} are not in "
                         f"{_hub_checkpoint(FID_WEIGHTS).parent} (nothing is downloaded)")
    else:
        status["fid"] = None
    return status


def _to_tensor(rgb: np.ndarray):
    import torch
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0


class _Lpips:
    """LPIPS (AlexNet) on RGB uint8 frames, inputs scaled to [−1, 1] as the lpips package expects."""

    def __init__(self):
        import lpips
        import torch
        self.torch = torch
        self.net = lpips.LPIPS(net="alex", verbose=False).eval()

    def __call__(self, pred: np.ndarray, gt: np.ndarray) -> float:
        with self.torch.inference_mode():
            return float(self.net(_to_tensor(pred) * 2 - 1, _to_tensor(gt) * 2 - 1).item())


class _FidFeatures:
    """2048-d pool features of pytorch-fid's Inception (inputs in [0, 1], resized to 299 inside)."""

    def __init__(self):
        import torch
        from pytorch_fid.inception import InceptionV3
        self.torch = torch
        self.net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.net(_to_tensor(rgb))[0].reshape(-1).numpy().astype(np.float64)


def _fid(feats_pred: list[np.ndarray], feats_gt: list[np.ndarray]) -> float | None:
    if len(feats_pred) < 2:
        return None
    a, b = np.stack(feats_pred), np.stack(feats_gt)
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


# ---------------------------------------------------------------- clips and their sources
FramePairs = Callable[[], Iterator[tuple[str, np.ndarray, np.ndarray]]]


@dataclass
class ClipSource:
    """A clip to evaluate: a name, its frame count, and a function yielding (frame name, pred, gt)."""

    name: str
    num_frames: int
    pairs: FramePairs


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"), dtype=np.uint8)
    except OSError as e:
        raise ValueError(f"{path} cannot be read as an image: {e}") from None


def _first(items, n: int = 5) -> str:
    items = list(items)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def _match_frames(pred_dir: Path, gt_dir: Path) -> list[tuple[Path, Path]]:
    """Pair each ground-truth image with the prediction of the same name (or the same stem)."""
    gt_files = _images(gt_dir)
    pred_files = _images(pred_dir)
    if not gt_files:
        raise ValueError(f"--gt {gt_dir} holds no images ({', '.join(IMAGE_EXTS)})")
    by_name = {p.name: p for p in pred_files}
    by_stem: dict[str, list[Path]] = {}
    for p in pred_files:
        by_stem.setdefault(p.stem, []).append(p)
    pairs, missing, used = [], [], set()
    for g in gt_files:
        p = by_name.get(g.name)
        if p is None and len(by_stem.get(g.stem, [])) == 1:
            p = by_stem[g.stem][0]
        if p is None:
            missing.append(g.name)
        else:
            pairs.append((p, g))
            used.add(p)
    if missing:
        raise ValueError(f"--pred {pred_dir} has no frame for {len(missing)} ground-truth frame(s) of {gt_dir}: "
                         f"{_first(missing)}")
    extra = [p.name for p in pred_files if p not in used]
    if extra:
        log.info("eval: %d prediction frame(s) in %s have no ground truth and are ignored: %s",
                 len(extra), pred_dir, _first(extra))
    return pairs


def _folder_clip(name: str, pred_dir: Path, gt_dir: Path) -> ClipSource:
    pairs = _match_frames(pred_dir, gt_dir)

    def gen():
        for p, g in pairs:
            yield g.name, _read_rgb(p), _read_rgb(g)
    return ClipSource(name, len(pairs), gen)


def _video_clip(pred_path: Path, gt_path: Path) -> ClipSource:
    from . import vsformat
    pred = vsformat.to_rgb24(vsformat.open_video(pred_path, "--pred"))
    gt = vsformat.to_rgb24(vsformat.open_video(gt_path, "--gt"))
    if pred.num_frames != gt.num_frames:
        raise ValueError(f"--pred {pred_path} has {pred.num_frames} frames, --gt {gt_path} has {gt.num_frames}")
    if (pred.width, pred.height) != (gt.width, gt.height):
        raise ValueError(f"--pred {pred_path} is {pred.width}×{pred.height}, --gt {gt_path} is "
                         f"{gt.width}×{gt.height}")

    def gen():
        for n, (fp, fg) in enumerate(zip(pred.frames(), gt.frames())):
            yield f"{n:06d}", vsformat.rgb_array(fp), vsformat.rgb_array(fg)
    return ClipSource(gt_path.stem, gt.num_frames, gen)


def collect_clips(pred: str | os.PathLike, gt: str | os.PathLike) -> list[ClipSource]:
    """The clips to evaluate.

    Two video files → one clip (decoded with bestsource, to RGB24). Two folders of images →
    one clip (frames paired by file name). Two folders of sub-folders → one clip per
    ground-truth sub-folder, paired by sub-folder name.
    """
    pred, gt = Path(pred).expanduser(), Path(gt).expanduser()
    for flag, p in (("--pred", pred), ("--gt", gt)):
        if not p.exists():
            raise ValueError(f"{flag} {p} does not exist")
    if pred.is_file() and gt.is_file():
        return [_video_clip(pred, gt)]
    if pred.is_file() != gt.is_file():
        raise ValueError(f"--pred {pred} and --gt {gt} must both be folders or both be video files")
    if _images(gt):
        return [_folder_clip(gt.name or "clip", pred, gt)]
    subs = sorted(d for d in gt.iterdir() if d.is_dir() and _images(d))
    if not subs:
        raise ValueError(f"--gt {gt} holds neither images nor sub-folders of images")
    missing = [d.name for d in subs if not (pred / d.name).is_dir()]
    if missing:
        raise ValueError(f"--pred {pred} has no sub-folder for {len(missing)} clip(s) of --gt: {_first(missing)}")
    extra = sorted(d.name for d in pred.iterdir() if d.is_dir() and not (gt / d.name).is_dir())
    if extra:
        log.info("eval: %d sub-folder(s) of %s have no ground truth and are ignored: %s", len(extra), pred,
                 _first(extra))
    return [_folder_clip(d.name, pred / d.name, d) for d in subs]


# ---------------------------------------------------------------- evaluation
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


def _f(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _channels(ch: np.ndarray | None) -> dict | None:
    return None if ch is None else {c: float(v) for c, v in zip(CHANNELS, ch)}


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
            "fid": self.fid,
        }

    def to_json(self) -> dict:
        """Everything, JSON-ready (non-finite numbers are null)."""
        return {"overall": self.overall(),
                "clips": [dict(c.summary(), per_frame=c.per_frame()) for c in self.clips],
                "skipped": dict(self.skipped),
                "definitions": {
                    "psnr": "dB, float64, mean over frames that differ from the ground truth",
                    "ssim": "skimage structural_similarity, channel_axis=2, data_range=255",
                    "cdc": "JS divergence of per-channel 256-bin histograms, frames 1/2/4 apart, 1/3 each, "
                           "channel mean, of the prediction; overall = mean over clips; lower is better",
                    "cdc_gt": "the same for the ground truth",
                    "colourfulness": "Hasler-Suesstrunk on RGB (R, G, B order)",
                    "js_next": "per frame: channel-mean JS divergence to the next frame",
                }}


def evaluate_clip(src: ClipSource, lpips_fn=None, fid_fn=None, fid_feats=None) -> ClipMetrics:
    """All per-frame metrics of one clip, streaming its frames (only histograms are kept)."""
    names, ps, ss, cf, cfg, hp, hg, lp = [], [], [], [], [], [], [], []
    for name, pred, gt in src.pairs():
        if pred.shape != gt.shape:
            raise ValueError(f"clip {src.name}, frame {name}: prediction is {pred.shape[1]}×{pred.shape[0]}, "
                             f"ground truth is {gt.shape[1]}×{gt.shape[0]}")
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


def evaluate(pred: str | os.PathLike, gt: str | os.PathLike, progress: Callable[[str], None] | None = None,
             optional: bool = True) -> EvalResult:
    """Evaluate ``pred`` against ``gt`` (two frame folders, folders of clip folders, or two videos)."""
    clips = collect_clips(pred, gt)
    skipped: dict[str, str] = {}
    lpips_fn = fid_fn = None
    status = optional_metric_status() if optional else {"lpips": "not requested", "fid": "not requested"}
    if status["lpips"] is None:
        try:
            lpips_fn = _Lpips()
        except Exception as e:  # a broken install must not lose the other metrics
            skipped["lpips"] = f"LPIPS could not be set up: {type(e).__name__}: {e}"
    else:
        skipped["lpips"] = status["lpips"]
    if status["fid"] is None:
        try:
            fid_fn = _FidFeatures()
        except Exception as e:
            skipped["fid"] = f"FID could not be set up: {type(e).__name__}: {e}"
    else:
        skipped["fid"] = status["fid"]
    feats: tuple[list, list] = ([], [])
    results = []
    for i, src in enumerate(clips):
        if progress:
            progress(f"clip {i + 1}/{len(clips)}: {src.name} ({src.num_frames} frames)")
        results.append(evaluate_clip(src, lpips_fn, fid_fn, feats))
    fid = _fid(*feats) if fid_fn is not None else None
    if fid_fn is not None and fid is None:
        skipped["fid"] = "FID needs at least 2 frames"
    return EvalResult(results, fid, skipped)


# ---------------------------------------------------------------- report
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


def plot(res: EvalResult, path: str | os.PathLike) -> Path:
    """PNG with per-frame PSNR and per-frame JS divergence to the next frame (prediction vs ground truth).

    Clips are laid end to end; dashed lines mark clip boundaries.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no global backend change
    from matplotlib.figure import Figure

    path = Path(path).expanduser()
    if path.suffix.lower() != ".png":
        raise ValueError(f"--plot must name a .png file, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
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
    fig.savefig(path, dpi=110)
    return path
