"""LPIPS and FID: run only when their packages *and* weights are already on this machine.

Nothing is downloaded (no torch.hub fetch at run time); otherwise each is skipped with the
reason, so ``eval`` works on a bare install. LPIPS (AlexNet) gets inputs scaled to [−1, 1]
(the official script forgets); FID uses pytorch-fid's Inception over all frames of all clips
(the official script averages per-clip values).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .measures import frechet_distance

LPIPS_ALEX_WEIGHTS = "alexnet-owt-7be5be79.pth"
FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"


def _hub_checkpoint(name: str) -> Path:
    import torch
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def optional_metric_status() -> dict[str, str | None]:
    """``{"lpips": reason or None, "fid": reason or None}``: None means it can run offline here."""
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


class Lpips:
    """LPIPS (AlexNet) on RGB uint8 frames, inputs scaled to [−1, 1] as the lpips package expects."""

    def __init__(self):
        import lpips
        import torch
        self.torch = torch
        self.net = lpips.LPIPS(net="alex", verbose=False).eval()

    def __call__(self, pred: np.ndarray, gt: np.ndarray) -> float:
        with self.torch.inference_mode():
            return float(self.net(_to_tensor(pred) * 2 - 1, _to_tensor(gt) * 2 - 1).item())


class FidFeatures:
    """2048-d pool features of pytorch-fid's Inception (inputs in [0, 1], resized to 299 inside)."""

    def __init__(self):
        import torch
        from pytorch_fid.inception import InceptionV3
        self.torch = torch
        self.net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.net(_to_tensor(rgb))[0].reshape(-1).numpy().astype(np.float64)


def fid_of_features(feats_pred: list[np.ndarray], feats_gt: list[np.ndarray]) -> float | None:
    """FID between two sets of Inception features; None with fewer than two frames."""
    if len(feats_pred) < 2:
        return None
    a, b = np.stack(feats_pred), np.stack(feats_gt)
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def setup_optional(wanted: bool) -> tuple[Callable | None, Callable | None, dict[str, str]]:
    """``(lpips_fn, fid_fn, skipped)``: the optional metrics that can run, and why the others cannot."""
    status = optional_metric_status() if wanted else {"lpips": "not requested", "fid": "not requested"}
    skipped: dict[str, str] = {}
    fns: dict[str, Callable | None] = {"lpips": None, "fid": None}
    for name, cls, label in (("lpips", Lpips, "LPIPS"), ("fid", FidFeatures, "FID")):
        if status[name] is not None:
            skipped[name] = status[name]
            continue
        try:
            fns[name] = cls()
        except Exception as e:  # noqa: BLE001 - a broken install must not lose the other metrics
            skipped[name] = f"{label} could not be set up: {type(e).__name__}: {e}"
    return fns["lpips"], fns["fid"], skipped
