"""Lab conversion against scikit-image, padding geometry."""
import numpy as np
import pytest
import torch
from skimage import color as skcolor

from vscolormnet.media import color


def test_rgb_to_lab_matches_skimage():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    img[0, :8] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 1, 1], [10, 10, 10], [128, 64, 2]]
    ours = color.rgb_to_lab(color.uint8_to_unit(img)).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, skcolor.rgb2lab(img), atol=1e-9)


def test_lab_to_rgb_matches_skimage_including_out_of_gamut():
    rng = np.random.default_rng(1)
    lab = np.stack([rng.uniform(0, 100, (31, 29)), rng.uniform(-110, 110, (31, 29)),
                    rng.uniform(-110, 110, (31, 29))], -1)
    lab[0, 0] = [0, 0, 120]  # z < 0 gets clipped by skimage
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = skcolor.lab2rgb(lab)
    ours = color.lab_to_rgb(torch.from_numpy(lab).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-9)


@pytest.mark.parametrize("h,w,expected", [(129, 224, (0, 0, 47, 48)), (99, 185, (19, 20, 6, 7)),
                                          (55, 96, (8, 8, 28, 29)), (112, 224, (0, 0, 0, 0))])
def test_padding_matches_the_parity_cases(h, w, expected):
    assert color.pad_amounts(h, w) == expected
    x = torch.arange(h * w, dtype=torch.float32).view(1, h, w)
    padded = color.pad(x)
    assert padded.shape[-2] % 112 == 0 and padded.shape[-1] % 112 == 0
    assert torch.equal(color.unpad(padded, h, w), x)


def test_reference_resize_is_pil_bilinear():
    from PIL import Image
    img = np.random.default_rng(2).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    ours = color.resize_rgb_like_pil(img, (33, 21))
    assert ours.shape == (21, 33, 3)
    np.testing.assert_array_equal(ours, np.asarray(Image.fromarray(img).resize((33, 21), Image.BILINEAR)))


def _lab_grid(dtype=torch.float64) -> torch.Tensor:
    """``3×H×W`` Lab: real colours (in gamut), over-saturated ones, the L extremes, neutral greys."""
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    lab = color.rgb_to_lab(color.uint8_to_unit(img))
    lab[1:, 12:] *= torch.from_numpy(rng.uniform(1.0, 3.0, (1, 12, 40)))        # pushed out of gamut
    lab[:, 20] = torch.tensor([0.0, 100.0, 50.0])[:, None]                      # black with chroma
    lab[0, 21], lab[0, 22] = 0.0, 100.0                                         # the L extremes
    lab[1:, 23, :10] = 0.0                                                      # neutral greys
    return lab.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_keep_lightness_masked_and_branch_free_are_bit_identical(dtype):
    """The CPU (masked) and GPU (branch-free) gamut mappings give the same bits; in-gamut pixels
    are exactly ``lab_to_rgb``'s."""
    lab = _lab_grid(dtype)
    masked = color._keep_lightness_masked(lab, 10)
    free = color._keep_lightness_branch_free(lab, 10)
    assert torch.equal(masked, free)
    lin = color._lab_to_linear_rgb(lab)
    inside = ((lin >= 0) & (lin <= 1)).all(0)
    assert int(inside.sum()) > 100 and int((~inside).sum()) > 100, "the grid must mix in and out of gamut"
    out = color.lab_to_rgb_keep_lightness(lab)
    assert torch.equal(out[:, inside], color.lab_to_rgb(lab)[:, inside])
    assert torch.equal(masked[:, inside], lin[:, inside])


def test_keep_lightness_keeps_l_and_hue():
    """Out-of-gamut pixels keep L and their hue (plain RGB clipping moves L by up to 22 here);
    chroma only shrinks."""
    lab = _lab_grid()
    out = color.lab_to_rgb_keep_lightness(lab)
    back = color.rgb_to_lab(out)
    ok = (lab[0] > 1) & (lab[0] < 99)
    assert (back[0] - lab[0])[ok].abs().max() < 1e-3
    chroma_in, chroma_out = lab[1:].norm(dim=0), back[1:].norm(dim=0)
    hued = ok & (chroma_out > 5)
    cos = (lab[1:] * back[1:]).sum(0)[hued] / (chroma_in * chroma_out)[hued]
    assert cos.min() > 0.9999
    assert (chroma_out - chroma_in)[ok].max() < 1e-6


def test_work_dtype_and_cached_constants():
    assert color.work_dtype("cpu") == torch.float64
    assert color.work_dtype(torch.device("cuda", 0)) == torch.float32
    assert color.work_dtype("mps") == torch.float32
    a = color._constants(torch.device("cpu"), torch.float32)
    assert a is color._constants(torch.device("cpu"), torch.float32)
    assert a["xyz_from_rgb"].dtype == torch.float32


def test_cpu_conversions_unchanged_float64():
    """On CPU the network inputs are still skimage's float64 conversion, rounded to float32."""
    img = np.random.default_rng(4).integers(0, 256, (21, 34, 3), dtype=np.uint8)
    expected = color.rgb_to_lab(color.uint8_to_unit(img)).float()
    assert torch.equal(color.lab_float32(img), expected)
    assert torch.equal(color.lab_from_unit_rgb(color.uint8_to_unit(img).float()),
                       color.rgb_to_lab(color.uint8_to_unit(img).float().double()).float())


def _test_images():
    from PIL import Image
    from project_paths import PARITY_CASES
    ref = PARITY_CASES / "blackswan_short" / "ref" / "blackswan" / "00000.png"
    return [np.asarray(Image.open(ref).convert("RGB")), color.synthetic_rgb(96, 160, seed=3),
            np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)]


def test_float32_colour_maths_move_output_by_a_tiny_fraction_of_a_code():
    """What GPUs compute (float32) against CPU's float64: L within 1e-4, and the Colorize output
    of a frame's own colours within 0.01 of an 8-bit code."""
    for img in _test_images():
        rgb = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)
        lab64 = color.lab_from_unit_rgb(rgb, dtype=torch.float64)
        lab32 = color.lab_from_unit_rgb(rgb, dtype=torch.float32)
        assert (lab64 - lab32).abs().max() < 1e-4
        out64 = color.compose_keep_lightness(lab64[0], color.normalise_ab(lab64[1:]), dtype=torch.float64)
        out32 = color.compose_keep_lightness(lab32[0], color.normalise_ab(lab32[1:]), dtype=torch.float32)
        assert 255 * (out64 - out32).abs().max() < 0.01


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cuda_colour_path_has_no_host_sync():
    """Per-frame conversions on CUDA: no synchronisation (no host→device copy, no mask gather)
    once the constants are cached, and the result agrees with CPU float64."""
    dev = torch.device("cuda")
    img = _test_images()[0]
    rgb_cpu = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)
    rgb = rgb_cpu.to(dev)
    ab = 1.8 * torch.rand(2, *rgb.shape[1:], device=dev) - 0.9                 # many out of gamut
    color.compose_keep_lightness(color.lab_from_unit_rgb(rgb)[0], ab)       # warm-up: constants
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        L = color.lab_from_unit_rgb(rgb)[0]
        out = color.compose_keep_lightness(L, ab)
        small = color.chroma_in_gamut(L[::2, ::2], ab[:, ::2, ::2])          # the resized clip's path
        color.compose_clipped(L, torch.nn.functional.interpolate(small[None], size=L.shape, mode="bilinear")[0])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.dtype == torch.float32
    ref = color.compose_keep_lightness(color.lab_from_unit_rgb(rgb_cpu)[0], ab.cpu())
    assert (L.cpu() - color.lab_from_unit_rgb(rgb_cpu)[0]).abs().max() < 1e-4
    close = (255 * (out.cpu() - ref).abs()).amax(0) < 0.05
    assert close.float().mean() > 0.995      # bisection decisions may flip at the gamut boundary
