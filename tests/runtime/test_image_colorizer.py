"""The official DDColor pipeline (runtime/image_colorizer.py): parity with both cases through PyTorch and ONNX
Runtime, the official code transcribed as a reference for other inputs, and one shared backend per process."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ddcolor_fixtures import DDCOLOR_CASES, load_ddcolor_case, parity_figures, parity_problems

from vscolormnet.media.color import synthetic_rgb
from vscolormnet.runtime import shared
from vscolormnet.runtime.image_colorizer import colorize_image, open_colorizer


@pytest.fixture(autouse=True, scope="module")
def _network_threads():
    """A 55–228 M parameter network: the suite's usual threads, not the runtime folder's one."""
    threads = torch.get_num_threads()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // workers)))
    yield
    torch.set_num_threads(threads)


def official_process(rgb: np.ndarray, predict_ab, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``ColorizationPipeline.process`` of the official code, transcribed (BGR in, BGR out), around ``predict_ab``."""
    img = rgb[..., ::-1]
    height, width = img.shape[:2]
    img = (img / 255.0).astype(np.float32)
    orig_l = cv2.cvtColor(img, cv2.COLOR_BGR2Lab)[:, :, :1]
    img = cv2.resize(img, (size, size))
    img_l = cv2.cvtColor(img, cv2.COLOR_BGR2Lab)[:, :, :1]
    img_gray_lab = np.concatenate((img_l, np.zeros_like(img_l), np.zeros_like(img_l)), axis=-1)
    img_gray_rgb = cv2.cvtColor(img_gray_lab, cv2.COLOR_LAB2RGB)
    tensor_gray_rgb = torch.from_numpy(img_gray_rgb.transpose((2, 0, 1))).float().unsqueeze(0)
    output_ab = predict_ab(tensor_gray_rgb)
    output_ab_resize = F.interpolate(output_ab, size=(height, width))[0].float().numpy().transpose(1, 2, 0)
    output_lab = np.concatenate((orig_l, output_ab_resize), axis=-1)
    output_bgr = cv2.cvtColor(output_lab, cv2.COLOR_LAB2BGR)
    return (output_bgr * 255.0).round().astype(np.uint8)[..., ::-1], output_ab[0].numpy()


def run_case(name: str, colorizers, backend: str):
    case = load_ddcolor_case(name)
    colorizer = colorizers(case.model, case.input_size, backend)
    rgb, ab_net, ab_full = colorize_image(case.image(), colorizer)
    print(f"\n{backend}: {parity_figures(case, ab_net, ab_full, rgb)}")
    return case, rgb, ab_net, ab_full


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n.startswith("large") else n
                                  for n in DDCOLOR_CASES])
def test_parity_through_torch(name, ddcolor_colorizers):
    case, rgb, ab_net, ab_full = run_case(name, ddcolor_colorizers, "torch")
    assert ab_net.dtype == ab_full.dtype == np.float32 and rgb.dtype == np.uint8
    assert not (problems := parity_problems(case, ab_net, ab_full, rgb)), problems


@pytest.mark.onnx
@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow, pytest.mark.large]) if n.startswith("large")
                                  else n for n in DDCOLOR_CASES])
def test_parity_through_ort(name, ddcolor_colorizers):
    """The graph exported, checked and cached on first use (the large one takes minutes: slow tier)."""
    case, rgb, ab_net, ab_full = run_case(name, ddcolor_colorizers, "ort")
    assert ddcolor_colorizers(case.model, case.input_size, "ort").backend.name == "ort"
    assert not (problems := parity_problems(case, ab_net, ab_full, rgb)), problems


def test_colour_input_and_odd_sizes_follow_the_official_code(ddcolor_colorizers):
    """A colour image (its L only, the official way) at 94×82 and S=256, where exact integer arithmetic would pick
    other rows for the nearest resize: identical to the transcribed official process, bit for bit."""
    colorizer = ddcolor_colorizers("ddcolor-tiny", 256)
    rgb = synthetic_rgb(82, 94, seed=5)
    got = colorize_image(rgb, colorizer)
    want_rgb, want_ab = official_process(rgb, colorizer.predict_ab, 256)
    assert np.array_equal(got.ab_net, want_ab)
    assert np.array_equal(got.rgb, want_rgb)
    assert got.ab_full.shape == (2, 82, 94)
    grey = colorize_image(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), colorizer)    # another grey than L: other input
    assert not np.array_equal(grey.ab_net, got.ab_net)


def test_bilinear_ab_resize_and_grey_shapes(ddcolor_colorizers):
    colorizer = ddcolor_colorizers("ddcolor-tiny", 64)
    grey = cv2.cvtColor(synthetic_rgb(70, 90, seed=2), cv2.COLOR_RGB2GRAY)
    nearest = colorize_image(grey, colorizer)
    smooth = colorize_image(grey[..., None], colorizer, ab_resize="bilinear")
    assert np.array_equal(nearest.ab_net, smooth.ab_net)
    want = F.interpolate(torch.from_numpy(smooth.ab_net)[None], size=(70, 90), mode="bilinear", align_corners=False)
    assert np.array_equal(smooth.ab_full, want[0].numpy())
    assert not np.array_equal(smooth.rgb, nearest.rgb)
    assert np.array_equal(colorize_image(np.repeat(grey[..., None], 3, 2), colorizer).rgb, nearest.rgb)
    with pytest.raises(ValueError, match="ab_resize must be one of nearest, bilinear"):
        colorize_image(grey, colorizer, ab_resize="area")
    with pytest.raises(ValueError, match="at least 2×2"):
        colorize_image(np.zeros((1, 1), np.uint8), colorizer)


def test_one_network_per_process(ddcolor_checkpoints):
    """Equal requests share one backend (torch: one for every S) and one network; the last close frees them."""
    weights = ddcolor_checkpoints("tiny")
    before = shared.stats()
    a = open_colorizer("ddcolor-tiny", weights, input_size=64)
    b = open_colorizer("ddcolor_paper_tiny", str(weights), input_size=128)     # hub name, other S, same network
    assert a.backend is b.backend and (a.input_size, b.input_size) == (64, 128)
    now = shared.stats()
    assert now["backend_leases"] == before["backend_leases"] + 2
    assert now["networks"] <= before["networks"] + 1
    a.close()
    a.close()                                                                   # idempotent
    b.close()
    assert shared.stats() == before
    with pytest.raises(ValueError, match="multiple of 32"):
        open_colorizer("ddcolor-tiny", weights, input_size=100)
