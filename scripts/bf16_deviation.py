"""How far bf16 moves ab' from fp32 on the parity cases, and what keeping parts of the network in
fp32 buys: the figures behind README's "Precision" table.

bf16 is emulated (25-40x slower than fp32) on CPUs without AMX / AVX512-BF16, so by default this
*simulates* it at fp32 speed: the real autocast dataflow runs (bf16 tensors between ops), but each
convolution / matrix product is computed in fp32 from its bf16 inputs and rounded to bf16 (the
rounding of a native bf16 kernel up to summation order; within ~8% of the real run's mean).

    .venv/bin/python scripts/bf16_deviation.py [--cases not_first,odd_size] [--real] \
        CONFIG [CONFIG ...]

CONFIG: ``bf16`` (the whole network, as ``precision='bf16'`` runs it), ``bf16:key_encoder+decoder``
(those submodules as extra fp32 islands), ``bf32`` (fp32 tensors, only the products' inputs rounded
to bf16: oneDNN's bf16 fpmath mode). Prints mean / max / 99th percentile |Δab'| against fp32.
"""
from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import vscolormnet.backends.torch_backend as torch_backend  # noqa: E402
import vscolormnet.weights.checkpoint as weights  # noqa: E402
from vscolormnet.backends import Torch  # noqa: E402
from vscolormnet.model.precision import fp32_island  # noqa: E402
from vscolormnet.runtime.frames import colorize_frames  # noqa: E402

aten = torch.ops.aten
PRODUCTS = {aten.convolution.default, aten._convolution.default, aten.conv2d.default, aten.linear.default,
            aten.matmul.default, aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default}
_tree_map = torch.utils._pytree.tree_map


class SimulatedBf16(TorchDispatchMode):
    """Products with bf16 inputs run in fp32 and round their output to bf16; everything else as is."""

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in PRODUCTS and any(isinstance(a, torch.Tensor) and a.dtype == torch.bfloat16
                                    for a in torch.utils._pytree.tree_leaves((args, kwargs))):
            up = (lambda a: a.float() if isinstance(a, torch.Tensor) and a.dtype == torch.bfloat16 else a)
            args, kwargs = _tree_map(up, (args, kwargs))
            return func(*args, **kwargs).bfloat16()
        return func(*args, **kwargs)


class Bf16Products(TorchDispatchMode):
    """fp32 network whose products see bf16-rounded inputs (fp32 accumulation and output)."""

    island_depth = 0

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in PRODUCTS and not Bf16Products.island_depth:
            rnd = (lambda a: a.bfloat16().float() if isinstance(a, torch.Tensor) and a.dtype == torch.float32 else a)
            args, kwargs = _tree_map(rnd, (args, kwargs))
        return func(*args, **kwargs)


def _island(fn):
    """fp32_island that also switches Bf16Products off inside (it does not look at autocast)."""
    inner = fp32_island(fn)

    def run(self, *a, **k):
        Bf16Products.island_depth += 1
        try:
            return inner(self, *a, **k)
        finally:
            Bf16Products.island_depth -= 1
    return run


def _patch(extra_islands: list[str], mode_factory) -> None:
    """Load networks with ``extra_islands`` and run every torch stage call under ``mode_factory()``."""
    load, run = _ORIGINAL

    def load_model(path):
        model = load(path)
        for name in extra_islands:
            module = model.get_submodule(name)
            module.forward = types.MethodType(_island(type(module).forward), module)
        return model

    def run_stage(self, stage, *inputs):
        if mode_factory is None:
            return run(self, stage, *inputs)
        with mode_factory():
            return run(self, stage, *inputs)
    weights.load_model = load_model
    torch_backend.TorchBackend._run = run_stage


_ORIGINAL = (weights.load_model, torch_backend.TorchBackend._run)


def colorize_case(case_dir: Path, checkpoint: Path, config: str, real: bool) -> np.ndarray:
    """ab' (T×2×H×W) of one parity case under ``config``."""
    kind, _, islands = config.partition(":")
    if kind not in ("fp32", "bf16", "bf32"):
        raise SystemExit(f"bf16_deviation: CONFIG must start with fp32, bf16 or bf32, got {config!r}")
    mode = {"fp32": None, "bf16": None if real else SimulatedBf16, "bf32": Bf16Products}[kind]
    _patch([m for m in islands.split("+") if m], mode)
    cfg = json.loads((case_dir / "config.json").read_text())
    result = colorize_frames(case_dir / "input" / cfg["video"], case_dir / cfg["ref"], checkpoint, None,
                             first_frame_is_ref=not cfg["first_frame_not_exemplar"],
                             backend=Torch(precision="bf16" if kind == "bf16" else "fp32"), device=None,
                             device_id=None, progress=False)
    return result.ab_pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+", metavar="CONFIG")
    ap.add_argument("--cases", default="not_first,odd_size,blackswan_short")
    ap.add_argument("--real", action="store_true", help="run real (on AVX2: emulated, slow) bf16 kernels")
    ap.add_argument("--weights", type=Path,
                    default=Path.home() / ".cache/vscolormnet-tests/colormnet_random_seed0.pth")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for case in args.cases.split(","):
        case_dir = ROOT / "tests/data/parity" / case
        reference = colorize_case(case_dir, args.weights, "fp32", args.real)
        for config in args.configs:
            diff = np.abs(colorize_case(case_dir, args.weights, config, args.real) - reference)
            print(f"{case:16s} {config:40s} mean {diff.mean():.2e}  max {diff.max():.2e}  "
                  f"p99 {np.percentile(diff, 99):.2e}", flush=True)


if __name__ == "__main__":
    main()
