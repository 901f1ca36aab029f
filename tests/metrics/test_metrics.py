"""Metrics against hand-computed values on small arrays, and ``evaluate`` on folders and videos.

The ``eval`` command and its bad-input errors are in test_eval_command.py."""
from __future__ import annotations

import json
import math
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from vscolormnet import metrics as M


def _const(v, h=8, w=8):
    return np.broadcast_to(np.asarray(v, np.uint8), (h, w, 3)).copy()


# ------------------------------------------------------------------ PSNR
def test_psnr_in_float_where_uint8_wrapping_is_wrong():
    gt, pred = _const(0), _const(16)
    # MSE = 16² = 256 → 20·log10(255/16)
    assert M.psnr(pred, gt) == pytest.approx(20 * math.log10(255 / 16), abs=1e-9)
    assert M.psnr(pred, gt) == pytest.approx(24.0484, abs=1e-4)
    # the official uint8 formula: (0 − 16) wraps to 240, 240² wraps to 0 → "infinite" PSNR
    assert M.psnr_official_uint8(pred, gt) == math.inf
    # |d| = 20: float MSE 400, wrapped MSE 400 mod 256 = 144
    assert M.psnr(_const(20), _const(0)) == pytest.approx(10 * math.log10(255 ** 2 / 400))
    assert M.psnr_official_uint8(_const(20), _const(0)) == pytest.approx(10 * math.log10(255 ** 2 / 144))


def test_psnr_mixed_differences_hand_computed():
    gt = np.zeros((1, 2, 3), np.uint8)
    pred = np.array([[[10, 0, 0], [0, 0, 250]]], np.uint8)
    mse = (10 ** 2 + 250 ** 2) / 6
    assert M.mse(pred, gt) == pytest.approx(mse)
    assert M.psnr(pred, gt) == pytest.approx(10 * math.log10(255 ** 2 / mse))
    assert M.psnr(gt, gt) == math.inf
    with pytest.raises(ValueError, match="differ in size"):
        M.psnr(pred, np.zeros((2, 2, 3), np.uint8))


# ------------------------------------------------------------------ SSIM
def test_ssim_of_constant_frames_hand_computed():
    # constant frames: σ = 0, so SSIM = (2·a·b + C1) / (a² + b² + C1), C1 = (0.01·255)²
    a, b, c1 = 100.0, 110.0, (0.01 * 255) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert expected == pytest.approx(0.995476, abs=1e-6)
    assert M.ssim(_const(110), _const(100)) == pytest.approx(expected, abs=1e-9)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert M.ssim(x, x) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 7"):
        M.ssim(_const(1, 4, 4), _const(1, 4, 4))


# ------------------------------------------------------------------ JS / CDC
def test_js_divergence_hand_computed():
    assert M.js_divergence([1, 0], [0, 1]) == pytest.approx(math.log(2))
    assert M.js_divergence([0.3, 0.7], [0.3, 0.7]) == pytest.approx(0.0)
    # m = (0.75, 0.25): ½·½·ln(4/3) + ½·ln(4/3) = ¾·ln(4/3)
    assert M.js_divergence([0.5, 0.5], [1, 0]) == pytest.approx(0.75 * math.log(4 / 3))
    # unnormalised inputs are normalised, like scipy.stats.entropy
    assert M.js_divergence([2, 2], [5, 0]) == pytest.approx(0.75 * math.log(4 / 3))
    from scipy.spatial.distance import jensenshannon
    p, q = np.array([0.1, 0.2, 0.7]), np.array([0.3, 0.3, 0.4])
    assert M.js_divergence(p, q) == pytest.approx(jensenshannon(p, q) ** 2)


def test_channel_histograms_normalised_by_pixel_count():
    img = np.array([[[0, 5, 255], [0, 6, 255]]], np.uint8)
    h = M.channel_histograms(img)
    assert h.shape == (3, 256) and np.allclose(h.sum(axis=1), 1)
    assert h[0, 0] == 1 and h[1, 5] == 0.5 and h[1, 6] == 0.5 and h[2, 255] == 1


def test_cdc_hand_computed():
    black, white = _const(0), _const(255)
    # A B A B A: every pair 1 apart differs (JS = ln 2), pairs 2 and 4 apart are equal (0)
    frames = [black, white, black, white, black]
    assert M.cdc(frames) == pytest.approx(math.log(2) / 3)
    ch = M.cdc_channels(np.stack([M.channel_histograms(f) for f in frames]))
    assert np.allclose(ch, math.log(2) / 3)
    # only blue changes: R, G contribute 0 → mean over channels = ln2 / 9
    a, b = _const((10, 20, 30)), _const((10, 20, 40))
    ch = M.cdc_channels(np.stack([M.channel_histograms(f) for f in [a, b, a, b, a]]))
    assert np.allclose(ch, [0, 0, math.log(2) / 3])
    assert M.cdc([a, b, a, b, a]) == pytest.approx(math.log(2) / 9)
    # A A A A B (5 frames): d=1 → 1 of 4 pairs differs, d=2 → 1 of 3, d=4 → 1 of 1
    frames = [black] * 4 + [white]
    assert M.cdc(frames) == pytest.approx(math.log(2) * (1 / 4 + 1 / 3 + 1) / 3)
    # a static clip is perfectly consistent; a single frame has no CDC
    assert M.cdc([black] * 6) == pytest.approx(0.0)
    assert M.cdc([black]) is None
    # 3 frames: only dilations 1 and 2 exist, equally weighted
    assert M.cdc([black, white, black]) == pytest.approx((math.log(2) + 0) / 2)


def test_js_next_per_frame():
    black, white = _const(0), _const(255)
    h = np.stack([M.channel_histograms(f) for f in [black, black, white]])
    assert np.allclose(M.js_next(h), [0, math.log(2)])


# ------------------------------------------------------------------ colourfulness
def test_colourfulness_hand_computed_in_rgb_order():
    img = np.array([[[255, 0, 0], [0, 0, 0]]], np.uint8)
    # rg = [255, 0], yb = [127.5, 0] → σ = (127.5, 63.75), μ = (127.5, 63.75)
    root = math.sqrt(127.5 ** 2 + 63.75 ** 2)
    assert M.colourfulness(img) == pytest.approx(root + 0.3 * root)
    # the official R/B swap reads the red pixel as blue: rg = 0, yb = [−255, 0] → 1.3 · 127.5
    assert M.colourfulness(img[..., ::-1]) == pytest.approx(1.3 * 127.5)
    assert M.colourfulness(_const(128)) == pytest.approx(0.0)


def test_frechet_distance_hand_computed():
    mu1, mu2 = np.zeros(2), np.array([3.0, 4.0])
    s1, s2 = np.eye(2), 4 * np.eye(2)
    # |μ1−μ2|² + tr(S1) + tr(S2) − 2 tr(sqrt(S1 S2)) = 25 + 2 + 8 − 2·4 = 27
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(27.0)


# ------------------------------------------------------------------ evaluate() on folders and videos
def _write_clip(folder, frames, ext=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}{ext}")


def _frames(seed, n=6, shift=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    return [np.clip(base.astype(int) + shift + i, 0, 255).astype(np.uint8) for i in range(n)]


def test_eval_several_clips_and_stem_matching(tmp_path, capsys):
    gt_a, gt_b = _frames(2, 5), _frames(3, 7)
    pred_a = [f.copy() for f in gt_a]
    pred_a[2][0, 0] = 255 - pred_a[2][0, 0]  # one pixel differs in one frame
    pred_b = [np.clip(f.astype(int) - 20, 0, 255).astype(np.uint8) for f in gt_b]
    _write_clip(tmp_path / "gt" / "a", gt_a)
    _write_clip(tmp_path / "gt" / "b", gt_b)
    _write_clip(tmp_path / "pred" / "a", pred_a)
    _write_clip(tmp_path / "pred" / "b", pred_b, ext=".bmp")  # same stems, other extension (lossless)
    (tmp_path / "pred" / "c").mkdir()  # a prediction clip without ground truth is ignored (with a warning)
    res = M.evaluate(tmp_path / "pred", tmp_path / "gt")
    assert [c.name for c in res.clips] == ["a", "b"]
    a, _ = res.clips
    assert a.identical_frames == 4 and np.isfinite(a.psnr).sum() == 1
    ov = res.overall()
    finite = [M.psnr(p, g) for p, g in zip(pred_a + pred_b, gt_a + gt_b)]
    finite = [v for v in finite if math.isfinite(v)]
    assert ov["psnr"] == pytest.approx(np.mean(finite)) and ov["identical_frames"] == 4
    assert ov["frames"] == 12
    # CDC overall = mean over clips (per channel), then over channels
    assert ov["cdc"] == pytest.approx(np.mean([M.cdc(pred_a), M.cdc(pred_b)]))
    table = M.format_table(res)
    assert "equal their ground truth" in table and "\na " in table
    json.dumps(res.to_json(), allow_nan=False)  # strict JSON: no NaN/Infinity


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_eval_two_videos(tmp_path):
    frames = _frames(5, 8)
    for name, fr in (("gt", frames), ("pred", [np.clip(f.astype(int) + 8, 0, 255).astype(np.uint8)
                                               for f in frames])):
        _write_clip(tmp_path / name, fr)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-framerate", "24", "-i",
                        str(tmp_path / name / "%05d.png"), "-c:v", "ffv1", "-pix_fmt", "bgr0",
                        str(tmp_path / f"{name}.mkv")], check=True)
    res = M.evaluate(tmp_path / "pred.mkv", tmp_path / "gt.mkv")
    frame_res = M.evaluate(tmp_path / "pred", tmp_path / "gt")
    assert res.clips[0].frames == [f"{i:06d}" for i in range(8)]
    # lossless RGB in, RGB24 out: the same numbers as the frame folders
    assert res.overall()["psnr"] == pytest.approx(frame_res.overall()["psnr"], abs=1e-6)
    assert res.overall()["cdc"] == pytest.approx(frame_res.overall()["cdc"], abs=1e-9)


def test_optional_metrics_report_why_they_are_skipped(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("lpips", "pytorch_fid")
                        else real(name, *a))
    st = M.optional_metric_status()
    assert "lpips package is not installed" in st["lpips"]
    assert "pytorch-fid package is not installed" in st["fid"]


def test_package_layers_have_no_cycles():
    """measures is pure numpy; report does not import the sources or the evaluation."""
    import ast
    import pathlib
    pkg = pathlib.Path(M.__file__).parent
    deps = {}
    for f in pkg.glob("*.py"):
        tree = ast.parse(f.read_text())
        deps[f.stem] = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module}
    assert deps["measures"] == set()
    assert deps["report"] == {"measures"} and deps["sources"] == set()
    assert deps["optional"] == {"measures"}
    assert deps["evaluation"] == {"measures", "optional", "report", "sources"}
