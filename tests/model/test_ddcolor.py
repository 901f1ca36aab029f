"""The DDColor network (model/ddcolor): official state_dict, the size rule, each part against PyTorch's own
version of it, and the network on the official input of the tiny parity case."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ddcolor_fixtures import DDCOLOR_DATA, load_ddcolor_case
from torch import nn

from vscolormnet.media import lab
from vscolormnet.model.ddcolor import DDColor, accepted_names, check_input_size, resolve_model
from vscolormnet.model.ddcolor.color_decoder import Attention, sine_position_embedding
from vscolormnet.model.ddcolor.encoder import LayerNorm
from vscolormnet.model.ddcolor.pixel_decoder import SpectralConv2d


def official_keys(size: str) -> list[tuple[str, tuple[int, ...], str]]:
    rows = []
    for line in (DDCOLOR_DATA / f"state_dict_keys_{size}.tsv").read_text().splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            key, shape, dtype = line.split("\t")[:3]
            rows.append((key, () if shape == "scalar" else tuple(int(d) for d in shape.split("x")), dtype))
    return rows


@pytest.mark.parametrize("size", ["tiny", "large"])
def test_state_dict_is_the_official_one(size):
    """Every key, shape and dtype in the official order (the seeded checkpoints hash them in this order)."""
    with torch.device("meta"):
        net = DDColor(size)
    ours = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in net.state_dict().items()]
    assert ours == official_keys(size)


def test_model_names():
    assert resolve_model("ddcolor-large") == resolve_model("DDColor_Modelscope") == "ddcolor-large"
    assert resolve_model("ddcolor_paper_tiny") == "ddcolor-tiny"
    assert resolve_model("ddcolor_artistic") == resolve_model("ddcolor_paper") == "ddcolor-large"
    assert resolve_model("ddcolor-artistic") == resolve_model("ddcolor-paper") == "ddcolor-large"   # download names
    with pytest.raises(ValueError, match="accepted: ddcolor-large, ddcolor-tiny, ddcolor-artistic, "
                                         "ddcolor-paper, ddcolor_modelscope"):
        resolve_model("ddcolor-huge")
    assert set(accepted_names()) >= {"ddcolor-large", "ddcolor-tiny", "ddcolor_artistic"}
    assert DDColor("ddcolor_paper_tiny").size == "tiny"


@pytest.fixture(scope="module")
def tiny_net(ddcolor_checkpoints):
    from vscolormnet.weights.ddcolor_checkpoint import load_ddcolor
    return load_ddcolor(ddcolor_checkpoints("tiny"), "ddcolor-tiny")


def test_input_size_rule_is_the_networks_real_constraint(tiny_net):
    """Multiples of 32 run (any of them, down to 32); 48 (a multiple of 16) really fails inside the decoder."""
    for ok in (32, 64, 256, 512):
        assert check_input_size(ok) == ok
    for bad in (0, 16, 48, 500, -32, 512.0, True, "512"):
        with pytest.raises(ValueError, match="multiple of 32"):
            check_input_size(bad)
    net = tiny_net
    with torch.inference_mode():
        assert net(torch.rand(1, 3, 32, 32)).shape == (1, 2, 32, 32)
        assert net(torch.rand(1, 3, 64, 96)).shape == (1, 2, 64, 96)
        with pytest.raises(RuntimeError):
            net(torch.rand(1, 3, 48, 48))


def test_spectral_conv_is_torchs_spectral_norm_in_eval_mode():
    """weight_orig / (u·W v) with the stored vectors, no power iteration: torch's own spectral_norm in eval."""
    torch.manual_seed(1)
    ours = SpectralConv2d(6, 5, 3, bias=True)
    ref = nn.utils.spectral_norm(nn.Conv2d(6, 5, 3, padding=1))
    ref.load_state_dict(ours.state_dict())
    ref.eval()
    x = torch.randn(2, 6, 9, 9)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5, rtol=1e-5)
        before = ours.weight_u.clone()
        ours(x)
    assert torch.equal(ours.weight_u, before)                    # nothing is updated at inference


def test_channels_first_layernorm_is_the_handwritten_official_one():
    torch.manual_seed(2)
    norm = LayerNorm(8, channels_first=True)
    nn.init.uniform_(norm.weight, 0.5, 1.5)
    nn.init.normal_(norm.bias)
    x = torch.randn(2, 8, 5, 7) * 3 + 1
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    want = norm.weight[:, None, None] * ((x - u) / torch.sqrt(s + 1e-6)) + norm.bias[:, None, None]
    assert torch.allclose(norm(x), want, atol=1e-5)


def test_attention_is_nn_multihead_attention():
    torch.manual_seed(3)
    ours = Attention(32, 4)
    ref = nn.MultiheadAttention(32, 4)
    ref.load_state_dict(ours.state_dict())
    q, k, v = torch.randn(1, 10, 32), torch.randn(1, 50, 32), torch.randn(1, 50, 32)
    with torch.no_grad():
        want = ref(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1))[0].transpose(0, 1)
        assert torch.allclose(ours(q, k, v), want, atol=1e-5)


def test_sine_embedding_is_detrs():
    """DETR's PositionEmbeddingSine(128, normalize=True) written out from its mask cumsum, channels cat(y, x)."""
    h, w, feats = 5, 7, 128
    not_mask = torch.ones(1, h, w)
    y = not_mask.cumsum(1) / (h + 1e-6) * 2 * math.pi
    x = not_mask.cumsum(2) / (w + 1e-6) * 2 * math.pi
    dim_t = 10000 ** (2 * (torch.arange(feats, dtype=torch.float32) // 2) / feats)
    px, py = x[..., None] / dim_t, y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
    want = torch.cat((py, px), dim=3)[0].reshape(h * w, 2 * feats)
    assert torch.allclose(sine_position_embedding(h, w), want, atol=1e-6)


def test_tiny_network_on_the_official_input(tiny_net):
    """The network alone on the case's own network input: ab_net within the parity bound."""
    case = load_ddcolor_case("tiny_256")
    net = tiny_net
    x = lab.network_input(lab.unit_float(case.image()), case.input_size)
    with torch.inference_mode():
        ab = net(x)[0].numpy()
    d = np.abs(ab - case.expected()["ab_net"])
    assert d.max() <= 1e-2 and d.mean() <= 1e-3, (d.max(), d.mean())
    # the ImageNet normalisation is part of the network (a constant offset in ab would show its absence)
    assert torch.equal(net.mean.view(-1), torch.tensor([0.485, 0.456, 0.406]))
    assert F.mse_loss(torch.from_numpy(ab), torch.from_numpy(case.expected()["ab_net"])) < 1e-6
