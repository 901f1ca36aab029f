"""Build the seeded random checkpoint the parity cases were produced with (the documented rule).

Each tensor has its own generator seeded by the first 8 bytes (little-endian, top bit
cleared) of ``sha256("colormnet-oracle:<seed>:<key>")``; the value distribution depends
on the tensor kind. For seed 0 the content hash must be ``PARITY_CONTENT_SHA256``.
It is only for tests and demos: its colours are meaningless.

    python -m vscolormnet.weights.seeded OUT.pth [--seed 0]
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys

import torch

from ..util.files import atomic_write
from .checkpoint import expected_shapes

PARITY_CONTENT_SHA256 = "64ac99dd8cf39a7ae8c33c3f20cad2ea6fabe3a5897ed052aa931128cb9cc82f"
GAINS = (("decoder.hidden_update.transform.weight", 0.5), ("crossattn.to_out.", 3.0),
         ("network2.backbone.patch_embed.proj.weight", 2.0))


def _generator(seed: int, key: str) -> torch.Generator:
    digest = hashlib.sha256(f"colormnet-oracle:{seed}:{key}".encode()).digest()
    g = torch.Generator(device="cpu")
    g.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return g


def _tensor(key: str, shape: tuple, is_bn: bool, g: torch.Generator) -> torch.Tensor:
    def normal(std):
        return torch.randn(shape, generator=g, dtype=torch.float32) * std

    def uniform(lo, hi):
        return torch.rand(shape, generator=g, dtype=torch.float32) * (hi - lo) + lo

    leaf = key.rpartition(".")[2]
    if leaf == "num_batches_tracked":
        return torch.zeros((), dtype=torch.int64)
    if is_bn:
        return {"weight": lambda: uniform(0.5, 1.5), "bias": lambda: normal(0.1),
                "running_mean": lambda: normal(0.1), "running_var": lambda: uniform(0.5, 2.0)}[leaf]()
    if leaf == "weight" and len(shape) >= 2:
        gain = next((v for pattern, v in GAINS if pattern in key), 1.0)
        t = normal(gain / math.sqrt(math.prod(shape[1:])))
        if key == "decoder.pred.weight":
            t = t - t.flatten(1).mean(1).view(-1, *([1] * (t.dim() - 1)))
        return t
    if leaf == "bias":
        return normal(0.05)  # conv/linear bias; LayerNorm bias handled below by its own rule
    raise KeyError(key)


def make_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """The random state_dict, keys in the official order."""
    shapes = expected_shapes()
    sd = {}
    for key, shape in shapes.items():
        module = key.rpartition(".")[0]
        leaf = key.rpartition(".")[2]
        is_bn = f"{module}.running_mean" in shapes
        has_matrix_weight = len(shapes.get(f"{module}.weight", ())) >= 2
        g = _generator(seed, key)
        if not is_bn and leaf in ("weight", "bias") and len(shape) == 1 and not has_matrix_weight:
            # LayerNorm / LayerNorm2d
            t = (torch.rand(shape, generator=g) * 0.6 + 0.7 if leaf == "weight"
                 else torch.randn(shape, generator=g) * 0.05)
        elif leaf == "gamma":
            t = torch.rand(shape, generator=g) * 0.45 + 0.05
        elif leaf == "temperature":
            t = torch.rand(shape, generator=g) * 4.0 + 1.0
        elif leaf in ("cls_token", "mask_token"):
            t = torch.randn(shape, generator=g) * 0.5
        elif leaf == "pos_embed":
            t = torch.randn(shape, generator=g) * 0.3
        else:
            t = _tensor(key, shape, is_bn, g)
        sd[key] = t
    return sd


def content_sha256(sd: dict[str, torch.Tensor]) -> str:
    """Hash over (key, dtype, shape, bytes) in order, as the parity README defines it."""
    h = hashlib.sha256()
    for k, v in sd.items():
        v = v.detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(v.dtype).encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


def build(out: str | os.PathLike, seed: int = 0) -> str:
    """Write the checkpoint to ``out`` and return its content hash.

    Missing parent folders are created; the file appears only when complete (temporary name in
    the same folder, renamed), so concurrent builders and interrupted runs never leave a partial file.
    """
    sd = make_state_dict(seed)
    digest = content_sha256(sd)
    if seed == 0 and digest != PARITY_CONTENT_SHA256:
        raise RuntimeError(f"random checkpoint hash {digest} does not match the parity cases")
    atomic_write(out, lambda f: torch.save(sd, f))
    return digest


def main(argv=None) -> int:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(f"{args.out} content_sha256={build(args.out, args.seed)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
