"""Lab conversion against scikit-image, padding geometry."""
import numpy as np
import pytest
import torch
from skimage import color as skcolor

from vscolormnet import color


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
