"""Parity with the unmodified official code (seeded checkpoint, fp32, CPU) on the shipped cases."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import color as skcolor

from conftest import PARITY_CASES, ROOT
from vscolormnet.frames import colorize_frames

CASES = sorted(p.name for p in PARITY_CASES.iterdir())
AB_MAX, AB_MEAN, PSNR_MIN = 1e-3, 1e-5, 60.0


def case_paths(case):
    d = PARITY_CASES / case
    cfg = json.loads((d / "config.json").read_text())
    frames_dir = d / "input" / cfg["video"]
    ref = d / cfg["ref"]
    return d, cfg, frames_dir, ref


def rgb_from_case(frames_dir, ab_pred):
    """The case's RGB, re-derived as its README prescribes (skimage, truncation)."""
    out = []
    for path, ab in zip(sorted(frames_dir.glob("*.png")), ab_pred):
        L = skcolor.rgb2lab(np.asarray(Image.open(path).convert("RGB")))[..., 0].astype(np.float32)
        lab = np.concatenate([L[..., None], 110 * ab.transpose(1, 2, 0)], -1)
        out.append((np.clip(skcolor.lab2rgb(lab), 0, 1) * 255).astype(np.uint8))
    return np.stack(out)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def check_against_case(case, ab_pred, counters, rgb=None):
    d, cfg, frames_dir, _ = case_paths(case)
    expected = np.load(d / "outputs.npz")
    assert ab_pred.shape == expected["ab_pred"].shape
    diff = np.abs(ab_pred - expected["ab_pred"])
    assert diff.max() <= AB_MAX, f"{case}: max |Δab| {diff.max():.2e} per frame {diff.reshape(len(diff), -1).max(1)}"
    assert diff.mean() <= AB_MEAN, f"{case}: mean |Δab| {diff.mean():.2e}"
    for name, values in counters.items():
        np.testing.assert_array_equal(values, expected[name], err_msg=f"{case}: {name}")
    if rgb is not None:
        assert psnr(rgb, rgb_from_case(frames_dir, expected["ab_pred"])) >= PSNR_MIN


@pytest.mark.parametrize("case", [c for c in CASES if c != "blackswan_short"])
def test_parity_in_process(case, parity_checkpoint):
    _, cfg, frames_dir, ref = case_paths(case)
    res = colorize_frames(frames_dir, ref, parity_checkpoint, None,
                          first_frame_is_ref=not cfg["first_frame_not_exemplar"], progress=False)
    check_against_case(case, res.ab_pred, {
        "work_mem_size": res.work_mem_size, "long_mem_size": res.long_mem_size,
        "n_consolidations": res.n_consolidations, "n_obsolete_removals": res.n_obsolete_removals})
    # The RGB that we would write, from our own ab, also meets the PSNR bound.
    assert psnr(rgb_from_case(frames_dir, res.ab_pred), rgb_from_case(frames_dir, np.load(
        PARITY_CASES / case / "outputs.npz")["ab_pred"])) >= PSNR_MIN


@pytest.mark.slow
def test_parity_through_the_command(tmp_path, parity_checkpoint):
    """``python -m vscolormnet colorize-frames`` end to end: PNGs, --save-ab npz, clean stdout."""
    case = "blackswan_short"
    _, cfg, frames_dir, ref = case_paths(case)
    out, npz = tmp_path / "out", tmp_path / "ab.npz"
    cmd = [sys.executable, "-m", "vscolormnet", "colorize-frames", str(frames_dir), "--ref", str(ref),
           "--weights", str(parity_checkpoint), "-o", str(out), "--save-ab", str(npz)]
    if not cfg["first_frame_not_exemplar"]:
        cmd.append("--first-frame-is-ref")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "", "nothing but requested data may go to stdout"
    saved = np.load(npz)
    assert saved["work_mem_size"].dtype == np.int64 and saved["ab_pred"].dtype == np.float32
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == sorted(p.name for p in frames_dir.glob("*.png"))
    rgb = np.stack([np.asarray(Image.open(out / n)) for n in names])
    check_against_case(case, saved["ab_pred"], {"work_mem_size": saved["work_mem_size"],
                                                "long_mem_size": saved["long_mem_size"]}, rgb=rgb)
