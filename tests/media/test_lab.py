"""DDColor's image maths (media/lab.py) against the official pipeline's own calls and the parity cases."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ddcolor_fixtures import DDCOLOR_CASES, load_ddcolor_case

from vscolormnet.media import lab
from vscolormnet.media.images import read_rgb_like_opencv


def torch_nearest(src: int, out: int) -> np.ndarray:
    """The source index of each output position under ``F.interpolate(mode='nearest')`` (PyTorch itself)."""
    return F.interpolate(torch.arange(src, dtype=torch.float32).view(1, 1, src), size=out)[0, 0].long().numpy()


@pytest.mark.parametrize("src", [256, 320, 384, 512])
def test_nearest_indices_are_pytorchs(src):
    for out in range(8, 1200):
        assert np.array_equal(lab.nearest_indices(src, out), torch_nearest(src, out)), (src, out)


@pytest.mark.parametrize("out", [82, 94, 110])
def test_nearest_indices_where_integer_arithmetic_differs(out):
    """S=256 → 82/94/110: exact ``k*S//out`` picks another row somewhere; the float32 rule picks PyTorch's."""
    ours, exact = lab.nearest_indices(256, out), np.arange(out) * 256 // out
    assert (ours != exact).any()
    assert np.array_equal(ours, torch_nearest(256, out))
    ab = np.random.default_rng(out).normal(0, 20, (2, 256, 256)).astype(np.float32)
    want = F.interpolate(torch.from_numpy(ab)[None], size=(out, out + 12))[0].numpy()
    assert np.array_equal(lab.resize_ab(ab, (out, out + 12), "nearest"), want)


def test_bilinear_resize_is_interpolate_bilinear():
    ab = np.random.default_rng(1).normal(0, 20, (2, 64, 64)).astype(np.float32)
    want = F.interpolate(torch.from_numpy(ab)[None], size=(41, 203), mode="bilinear", align_corners=False)[0].numpy()
    assert np.array_equal(lab.resize_ab(ab, (41, 203), "bilinear"), want)
    assert np.array_equal(lab.resize_ab(torch.from_numpy(ab), (41, 203), "bilinear"), want)
    with pytest.raises(ValueError, match="ab_resize must be one of nearest, bilinear"):
        lab.resize_ab(ab, (41, 203), "bicubic")


@pytest.mark.parametrize("name", DDCOLOR_CASES)
def test_case_arrays_follow_from_each_other_bit_exactly(name):
    """ab_full = nearest(ab_net) and rgb = merge(L, ab_full), bit for bit, with L re-derived the documented way."""
    case = load_ddcolor_case(name)
    want = case.expected()
    bgr = cv2.imread(str(case.folder / "input.png"))
    l_official = cv2.cvtColor((bgr / 255.0).astype(np.float32), cv2.COLOR_BGR2Lab)[:, :, 0]
    rgb = case.image()
    lum = lab.lightness(lab.unit_float(rgb))
    assert np.array_equal(lum, l_official)
    if "l_orig" in want:                                        # held-out cases store it
        assert np.array_equal(lum, want["l_orig"].reshape(lum.shape))
    ab_full = lab.resize_ab(want["ab_net"], lum.shape, "nearest")
    assert np.array_equal(ab_full, want["ab_full"])
    assert np.array_equal(lab.merge_lab(lum, want["ab_full"]), want["rgb"])


def test_network_input_is_the_official_grey_image():
    """Resize the BGR image first, L, (L, 0, 0) → RGB: the official steps, on a colour image (so the channel
    order matters), bit for bit."""
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (37, 61, 3), dtype=np.uint8)
    bgr01 = (rgb[..., ::-1] / 255.0).astype(np.float32)
    small = cv2.resize(bgr01, (96, 96))
    lum = cv2.cvtColor(small, cv2.COLOR_BGR2Lab)[:, :, :1]
    grey = cv2.cvtColor(np.concatenate((lum, np.zeros_like(lum), np.zeros_like(lum)), -1), cv2.COLOR_LAB2RGB)
    x = lab.network_input(lab.unit_float(rgb), 96)
    assert x.shape == (1, 3, 96, 96) and x.dtype == torch.float32
    assert np.array_equal(x[0].numpy(), grey.transpose(2, 0, 1))
    assert float((x[0, 0] - x[0, 2]).abs().max()) < 1e-5          # grey: the channels agree (not bitwise)


def test_as_rgb_uint8_shapes_and_refusals():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(lab.as_rgb_uint8(grey), np.repeat(grey[..., None], 3, 2))
    assert np.array_equal(lab.as_rgb_uint8(grey[..., None]), lab.as_rgb_uint8(grey))
    for bad, match in ((np.zeros((1, 1), np.uint8), "at least 2×2"), (np.zeros((4, 4), np.float32), "uint8"),
                       (np.zeros((4, 4, 4), np.uint8), "H×W×3"), (np.zeros((1, 9, 3), np.uint8), "at least 2×2")):
        with pytest.raises(ValueError, match=match):
            lab.as_rgb_uint8(bad)


def test_reader_is_opencvs_imread(tmp_path, caplog):
    """16-bit: OpenCV's high byte; RGBA: alpha dropped with a warning only when something is transparent."""
    a16 = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3301 + 200)
    cv2.imwrite(str(tmp_path / "g16.png"), a16)
    got = read_rgb_like_opencv(tmp_path / "g16.png")
    assert got.shape == (4, 5, 3) and np.array_equal(got[..., 0], (a16 >> 8).astype(np.uint8))
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., :3] = (30, 20, 10)                                  # BGR on disk
    rgba[..., 3] = 255
    cv2.imwrite(str(tmp_path / "opaque.png"), rgba)
    rgba[0, 0, 3] = 0
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    with caplog.at_level("WARNING", logger="vscolormnet"):
        assert np.array_equal(read_rgb_like_opencv(tmp_path / "opaque.png")[1, 1], (10, 20, 30))
        assert not caplog.records
        assert np.array_equal(read_rgb_like_opencv(tmp_path / "alpha.png")[0, 0], (10, 20, 30))
    assert "transparent" in caplog.text
    (tmp_path / "junk.png").write_bytes(b"not a picture")
    with pytest.raises(ValueError, match="cannot be read as an image"):
        read_rgb_like_opencv(tmp_path / "junk.png", "INPUT")
    with pytest.raises(ValueError, match="INPUT .* does not exist"):
        read_rgb_like_opencv(tmp_path / "missing.png", "INPUT")
