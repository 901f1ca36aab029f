"""Gamut mapping as a chroma scale at the inference size (``chroma_in_gamut`` + ``compose_clipped``)."""
import pytest
import torch
import torch.nn.functional as F
from dispatch_counts import DispatchCounts

from vscolormnet.media import color

from .test_color import _lab_grid


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_same_size_scale_then_clip_equals_keep_lightness(dtype):
    lab = _lab_grid(dtype)
    L, ab = lab[0], color.normalise_ab(lab[1:])
    ab_mapped = color.chroma_in_gamut(L, ab, dtype=dtype)
    lin = color._lab_to_linear_rgb(torch.cat([L[None], color.denormalise_ab(ab_mapped.to(dtype))]))
    mid = (L > 1) & (L < 99)                       # at L = 0 and 100 even grey is a hair outside
    assert lin[:, mid].min() >= -color.GAMUT_EPS * 4 and lin[:, mid].max() <= 1 + color.GAMUT_EPS * 4
    out = color.compose_clipped(L, ab_mapped, dtype=dtype)
    expected = color.compose_keep_lightness(L, ab, dtype=dtype)
    assert (out - expected).abs().max() < 1e-5          # 1/400 of an 8-bit code (the mapped ab is float32)


def test_in_gamut_chroma_is_left_exactly_as_it_was():
    lab = _lab_grid()
    L, ab = lab[0], color.normalise_ab(lab[1:])
    inside = ~color._out_of_gamut(color._lab_to_linear_rgb(lab))
    assert int(inside.sum()) > 100
    assert torch.equal(color.chroma_in_gamut(L, ab)[:, inside], ab.float()[:, inside])


def test_a_saturated_frame_keeps_its_lightness_through_the_resize():
    """Smooth L under over-saturated chroma (the network's output at 1/4 the pixels): after the
    chroma is mapped small and resized, L moves by less than 0.5 (clipping RGB moves it by ~10)."""
    h, w = 96, 128
    y, x = torch.meshgrid(torch.linspace(25, 80, h, dtype=torch.float64),
                          torch.linspace(-1, 1, w, dtype=torch.float64), indexing="ij")
    L = y + 5 * x
    ab = color.normalise_ab(torch.stack([90 * torch.ones_like(x), 70 * x]))           # far out of gamut
    L_small = F.interpolate(L[None, None], size=(h // 2, w // 2), mode="area")[0, 0]
    ab_small = F.interpolate(ab[None], size=(h // 2, w // 2), mode="area")[0]
    ab_big = F.interpolate(color.chroma_in_gamut(L_small, ab_small)[None], size=(h, w), mode="bilinear")[0]
    out = color.compose_clipped(L, ab_big)
    moved = (color.rgb_to_lab(out.double())[0] - L).abs()
    clipped = (color.rgb_to_lab(color.compose_clipped(L, ab).double())[0] - L).abs()
    assert moved.max() < 0.5 and clipped.max() > 5


def _gpu_compose_cost(mapped_small: bool) -> DispatchCounts:
    """The branch-free (GPU) output step of one 1920×1080 frame from a 512×288 network output,
    counted on the meta device (shapes only)."""
    dev = torch.device("meta")
    L = torch.empty(1080, 1920, device=dev, dtype=torch.float32)
    ab = torch.empty(2, 288, 512, device=dev, dtype=torch.float32)
    with DispatchCounts() as cost:
        if mapped_small:
            L_small = F.interpolate(L[None, None], size=(288, 512), mode="area")[0, 0]
            ab = F.interpolate(color.chroma_in_gamut(L_small, ab)[None], size=(1080, 1920), mode="bilinear")[0]
            color.compose_clipped(L, ab)
        else:
            ab = F.interpolate(ab[None], size=(1080, 1920), mode="bilinear")[0]
            color.compose_keep_lightness(L, ab)
    return cost


def test_mapping_at_the_inference_size_writes_a_fifth_of_the_elements_at_1080p():
    before, after = _gpu_compose_cost(False), _gpu_compose_cost(True)
    print(f"1080p from 512x288, branch-free: before {len(before.ops)} ops / {before.elements / 1e6:.0f} M elements, "
          f"after {len(after.ops)} ops / {after.elements / 1e6:.0f} M elements")
    assert after.elements * 5 < before.elements
