"""The network is built from timm's blocks, loads the official key names strictly, and its DINOv2
follows the official (facebookresearch/dinov2 b8931f7, no xFormers) op order."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vscolormnet.model import ColorMNet, dinov2
from vscolormnet.model.blocks import LayerNorm2d

HW = (112, 112)


@pytest.fixture(scope="module")
def net(parity_checkpoint):
    from vscolormnet.weights.checkpoint import read_state_dict
    model = ColorMNet()
    result = model.load_state_dict(read_state_dict(parity_checkpoint), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model.eval()


@pytest.fixture(scope="module")
def image():
    gen = torch.Generator().manual_seed(0)
    return (torch.rand(1, 1, *HW, generator=gen) * 2 - 1).expand(1, 3, *HW).contiguous()


def test_built_from_timm_blocks(net):
    from timm.layers import Mlp, PatchEmbed
    from timm.models.resnet import BasicBlock, Bottleneck
    from timm.models.vision_transformer import Attention, Block, LayerScale
    backbone = net.key_encoder.network2.backbone
    assert isinstance(net.key_encoder.res2[0], Bottleneck) and isinstance(net.key_encoder.layer3[5], Bottleneck)
    assert isinstance(net.value_encoder.layer1[0], BasicBlock) and isinstance(net.value_encoder.layer3[1], BasicBlock)
    assert isinstance(backbone.patch_embed, PatchEmbed)
    assert len(backbone.blocks) == 12 and all(isinstance(b, Block) for b in backbone.blocks)
    block = backbone.blocks[0]
    assert isinstance(block.attn, Attention) and isinstance(block.mlp, Mlp) and isinstance(block.ls1, LayerScale)


def test_official_key_names_load_strictly(net, parity_checkpoint):
    from vscolormnet.weights.checkpoint import expected_shapes, read_state_dict
    state = read_state_dict(parity_checkpoint)
    assert list(state) == list(expected_shapes())                 # same names, same order as ColorMNet()
    for key in ("key_encoder.res2.0.downsample.0.weight", "key_encoder.layer3.5.bn3.running_var",
                "value_encoder.layer2.0.downsample.1.weight", "key_encoder.network2.backbone.patch_embed.proj.weight",
                "key_encoder.network2.backbone.blocks.0.attn.qkv.weight",
                "key_encoder.network2.backbone.blocks.11.ls2.gamma", "key_encoder.network2.backbone.mask_token"):
        assert key in state
    assert torch.equal(net.key_encoder.network2.backbone.blocks[3].attn.qkv.bias,
                       state["key_encoder.network2.backbone.blocks.3.attn.qkv.bias"])


def test_attention_kernel_is_pinned_per_module(net):
    """Every DINOv2 attention module carries the official kernel choice, whatever timm's global flag says."""
    from timm.layers import config
    mods = [m for m in net.key_encoder.network2.backbone.modules() if hasattr(m, "fused_attn")]
    assert len(mods) == 12 and all(m.fused_attn is dinov2.FUSED_ATTN for m in mods)
    saved = config._USE_FUSED_ATTN
    try:
        config.set_fused_attn(not dinov2.FUSED_ATTN)
        assert dinov2.make_block().attn.fused_attn is dinov2.FUSED_ATTN
    finally:
        config._USE_FUSED_ATTN = saved


def official_dinov2_maps(backbone, x, layers=(8, 9, 10, 11)):
    """DINOv2 ``get_intermediate_layers(x, n=layers, reshape=True)``, written from the spec/official code."""
    sd = backbone.state_dict()
    b, _, h, w = x.shape
    rows, cols, m, dim = h // 14, w // 14, 37, 384
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=14).flatten(2).transpose(1, 2)
    t = torch.cat((sd["cls_token"].expand(b, -1, -1), t), dim=1)
    pos = sd["pos_embed"].float()
    grid = F.interpolate(pos[:, 1:].reshape(1, m, m, dim).permute(0, 3, 1, 2), mode="bicubic", antialias=False,
                         scale_factor=(float(rows + 0.1) / m, float(cols + 0.1) / m))
    t = t + torch.cat((pos[:, 0].unsqueeze(0), grid.permute(0, 2, 3, 1).view(1, -1, dim)), dim=1)
    outs = []
    for i in range(12):
        p = f"blocks.{i}."
        n = t.shape[1]
        y = F.layer_norm(t, (dim,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6)
        qkv = F.linear(y, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"]).reshape(b, n, 3, 6, dim // 6)
        q, k, v = [z.transpose(1, 2) for z in torch.unbind(qkv, 2)]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0, is_causal=False)
        a = F.linear(a.transpose(1, 2).contiguous().view(b, n, dim), sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        t = t + a * sd[p + "ls1.gamma"]
        y = F.layer_norm(t, (dim,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6)
        y = F.linear(F.gelu(F.linear(y, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                     sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        t = t + y * sd[p + "ls2.gamma"]
        if i in layers:
            outs.append(t)
    outs = [F.layer_norm(o, (dim,), sd["norm.weight"], sd["norm.bias"], 1e-6)[:, 1:] for o in outs]
    return [o.reshape(b, rows, cols, -1).permute(0, 3, 1, 2).contiguous() for o in outs]


def test_encode_key_matches_the_official_dinov2_op_order(net, image, monkeypatch):
    """encode_key with our DINOv2 vs with the inline official computation: maps and all six outputs."""
    backbone = net.key_encoder.network2.backbone
    ours_fn, maps = backbone.intermediate_maps, {}

    def record(name, fn):
        def run(x, layers):
            maps[name] = fn(x, layers)
            return maps[name]
        return run

    with torch.no_grad():
        monkeypatch.setattr(backbone, "intermediate_maps", record("ours", ours_fn))
        got = net.encode_key(image)
        monkeypatch.setattr(backbone, "intermediate_maps",
                            record("official", lambda x, layers: official_dinov2_maps(backbone, x, layers)))
        want = net.encode_key(image)
    assert len(maps["ours"]) == 4
    for a, r in zip(maps["ours"], maps["official"]):
        assert a.shape == r.shape == (1, 384, 8, 8) and (a - r).abs().max() <= 1e-6
    for name, g, w in zip(("key", "shrinkage", "selection", "f16", "f8", "f4"), got, want):
        assert g.shape == w.shape and (g - w).abs().max() <= 1e-6, name


def test_layer_norm_2d_is_the_official_formula():
    """The fusion blocks' LayerNorm2d in the official ``LayerNormFunction`` op order (bit-exact)."""
    gen = torch.Generator().manual_seed(1)
    norm = LayerNorm2d(16)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(16, generator=gen) + 0.5)
        norm.bias.copy_(torch.randn(16, generator=gen))
        x = torch.randn(2, 16, 5, 7, generator=gen) * 3 + 1
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = norm.weight.view(1, 16, 1, 1) * ((x - mu) / (var + 1e-6).sqrt()) + norm.bias.view(1, 16, 1, 1)
        assert torch.equal(norm(x), y)
        assert norm(x.half()).dtype == torch.float16
