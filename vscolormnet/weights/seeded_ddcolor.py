"""Seeded random DDColor checkpoints: the ones the DDColor parity cases were made with (the documented rule).

The trained weights cannot be downloaded where the tests run, so the parity cases ran the
official code on random weights drawn by a published rule; this is our implementation of it.
Every tensor has its own generator, seeded by the first 8 bytes (little-endian, top bit
cleared) of ``sha256("ddcolor-oracle:<seed>:<key>")``, so a key's values depend only on the
seed, the key and its shape. The distribution follows the kind of module that owns the tensor
(``_draw``); the spectral-norm vectors are the power iteration of their ``weight_orig`` (so
sigma is, as in a trained checkpoint, the largest singular value). Keys, shapes and order come
from our own network (built on the meta device), so the content hash for seed 0 also proves
that the network's state_dict is the official one.

    python -m vscolormnet.weights.seeded_ddcolor OUT.pth --model tiny|large [--seed N]

Only for tests and demos: the colours it makes are meaningless.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys

import torch
from torch import nn

from ..model.ddcolor.color_decoder import Attention
from ..model.ddcolor.encoder import Block, LayerNorm
from ..model.ddcolor.names import model_size
from ..model.ddcolor.network import IMAGENET_MEAN, IMAGENET_STD, DDColor
from ..model.ddcolor.pixel_decoder import SpectralConv2d
from ..util.files import atomic_write
from .seeded import content_sha256

CONTENT_SHA256 = {  # (size, seed) → content hash of the parity cases' checkpoints
    ("tiny", 0): "f8038e4676cd9f44bd51c613614e7151883286aa8e7e35c7647082b2f4a3df3e",
    ("large", 0): "b5a73d5909609fab2f3c6c31b69cb46ffef67a0b5cac800715c3f7c9c97f2345",
}
GAIN = {"decoder.color_decoder.color_embed.layers.2.weight": 20.0}   # ab in Lab units from small features
EMBEDDING_STD = {"query_feat": 1.0, "query_embed": 0.5, "level_embed": 0.5}
POWER_ITERATIONS = 100


def _generator(seed: int, key: str) -> torch.Generator:
    digest = hashlib.sha256(f"ddcolor-oracle:{seed}:{key}".encode()).digest()
    return torch.Generator(device="cpu").manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def _normal(shape, std: float, g) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float32) * std


def _uniform(shape, lo: float, hi: float, g) -> torch.Tensor:
    return torch.rand(shape, generator=g, dtype=torch.float32) * (hi - lo) + lo


def _power_iteration(weight_orig: torch.Tensor, seed: int, owner: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, v) float32: u0 from the ``<owner>.weight_u`` generator, then torch's update order in float64."""
    w = weight_orig.reshape(weight_orig.shape[0], -1).double()
    u = torch.randn(w.shape[0], generator=_generator(seed, f"{owner}.weight_u"), dtype=torch.float32).double()
    u = u / u.norm()
    v = u.new_zeros(w.shape[1])
    for _ in range(POWER_ITERATIONS):
        v = w.t().mv(u)
        v = v / v.norm()
        u = w.mv(v)
        u = u / u.norm()
    return u.float(), v.float()


def _draw(key: str, owner: str, module: nn.Module, shape: tuple, g) -> torch.Tensor:
    """One tensor by the kind of module that holds it (weight_u/weight_v are done by the caller)."""
    leaf = key.rpartition(".")[2]
    if isinstance(module, nn.BatchNorm2d):
        if leaf == "num_batches_tracked":
            return torch.zeros((), dtype=torch.int64)
        # BNs right after a spectral conv see small inputs; the skip BNs (``….bn``) normal ones
        var = (0.5, 2.0) if owner.endswith(".bn") else (0.05, 0.2)
        return {"weight": lambda: _uniform(shape, 0.5, 1.5, g), "bias": lambda: _normal(shape, 0.1, g),
                "running_mean": lambda: _normal(shape, 0.1, g), "running_var": lambda: _uniform(shape, *var, g)}[leaf]()
    if isinstance(module, nn.Embedding):
        return _normal(shape, EMBEDDING_STD[owner.rpartition(".")[2]], g)
    if isinstance(module, (LayerNorm, nn.LayerNorm)):
        return _uniform(shape, 0.7, 1.3, g) if leaf == "weight" else _normal(shape, 0.05, g)
    if isinstance(module, Block) and leaf == "gamma":
        return _uniform(shape, 0.05, 0.5, g)
    if isinstance(module, (nn.Conv2d, nn.Linear, SpectralConv2d, Attention)):
        if leaf in ("weight", "weight_orig", "in_proj_weight"):
            return _normal(shape, GAIN.get(key, 1.0) / math.sqrt(math.prod(shape[1:])), g)
        if leaf in ("bias", "in_proj_bias"):
            return _normal(shape, 0.05, g)
    raise KeyError(f"no rule for {key} ({type(module).__name__})")


def make_state_dict(model: str = "large", seed: int = 0) -> dict[str, torch.Tensor]:
    """The seeded state_dict of ``model`` (``'tiny'``/``'large'`` or a model name), keys in the official order."""
    with torch.device("meta"):
        net = DDColor(model_size(model))
    modules = dict(net.named_modules())
    state = {}
    for key, meta in net.state_dict().items():
        owner = key.rpartition(".")[0]
        shape = tuple(meta.shape)
        if key == "mean" or key == "std":
            state[key] = torch.tensor(IMAGENET_MEAN if key == "mean" else IMAGENET_STD).view(shape)
        elif key.endswith((".weight_u", ".weight_v")):
            if key.endswith(".weight_u"):
                u, v = _power_iteration(state[f"{owner}.weight_orig"], seed, owner)
                state[key], state[f"{owner}.weight_v"] = u, v
        else:
            state[key] = _draw(key, owner, modules[owner], shape, _generator(seed, key))
    return {k: state[k] for k in net.state_dict()}


def build(out: str | os.PathLike, model: str = "large", seed: int = 0) -> str:
    """Write the checkpoint to ``out`` atomically and return its content hash; refuses (RuntimeError) a
    hash that differs from the recorded one for (model, seed)."""
    size = model_size(model)
    state = make_state_dict(size, seed)
    digest = content_sha256(state)
    want = CONTENT_SHA256.get((size, seed))
    if want is not None and digest != want:
        raise RuntimeError(f"seeded DDColor {size} seed {seed}: content hash {digest} is not the recorded {want}")
    atomic_write(out, lambda f: torch.save(state, f))
    return digest


def main(argv=None) -> int:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", metavar="OUT.pth")
    ap.add_argument("--model", required=True, choices=("tiny", "large"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    digest = build(args.out, args.model, args.seed)
    checked = "matches the parity cases" if (args.model, args.seed) in CONTENT_SHA256 else "no recorded hash"
    print(f"{args.out} content_sha256={digest} ({checked})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
