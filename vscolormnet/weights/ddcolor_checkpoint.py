"""Read, check and load DDColor checkpoints in every form they are published in; strict, offline, safe.

Accepted files: ``.pt``/``.pth``/``.bin`` (read with ``torch.load(weights_only=True)``) and
``.safetensors``. Accepted contents: a plain state_dict (the seeded parity checkpoints), the
training framework's ``{'params': …}`` (the official inference reads ``params``; ``params_ema``
is used when there is no ``params``), and the Hugging Face hub files (``pytorch_model.bin``,
``model.safetensors``, written by ``PyTorchModelHubMixin``: the bare state_dict). A ``module.``
prefix, or any other one prefix shared by every key, is removed when that makes the keys ours.

Checks, each a one-line ``CheckpointError`` naming the file: not a DDColor checkpoint; a
checkpoint of the other size than asked for (naming both, and the ``--model`` that fits);
missing/unexpected keys or wrong shapes (the first few named); NaN or infinite values (they
load and run, but the output is then black or grey).
"""
from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import torch

from ..model.ddcolor import DDColor
from ..model.ddcolor.names import ARCHITECTURES, model_name, resolve_model
from ..util.errors import CheckpointError
from .checkpoint import _first, _load_error, build_with_state, non_finite
from .ddcolor_hub import resolve_ddcolor_weights  # noqa: F401  (re-exported: where the files live is ddcolor_hub's)

SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
WRAPPERS = ("params", "params_ema", "state_dict", "model")
SIZE_KEY = "encoder.arch.downsample_layers.0.0.weight"      # stem conv: dims[0] × 3 × 4 × 4
ENCODERS = {"tiny": "ConvNeXt-T", "large": "ConvNeXt-L"}


@functools.cache
def expected_shapes(size: str) -> dict[str, tuple[int, ...]]:
    """Every state_dict key of the ``size`` network and its shape, in order (built on the meta device)."""
    with torch.device("meta"):
        net = DDColor(size)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _read_file(path: Path) -> object:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path), device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def _unwrap(obj: object) -> object:
    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for wrapper in WRAPPERS:
            if isinstance(obj.get(wrapper), dict):
                return obj[wrapper]
    return obj


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``module.`` (data parallel), or one prefix every key shares, when that yields our key names."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if SIZE_KEY in state or not state:
        return state
    prefix = next(iter(state)).split(".", 1)[0] + "."
    if all(k.startswith(prefix) for k in state) and SIZE_KEY in {k[len(prefix):] for k in state}:
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def detect_size(state: dict[str, torch.Tensor]) -> str | None:
    """``'tiny'``/``'large'`` from the stem's width (and the depth of stage 2), or None if neither fits."""
    stem = state.get(SIZE_KEY)
    if stem is None or stem.dim() != 4:
        return None
    blocks = {int(k.split(".")[4]) for k in state if k.startswith("encoder.arch.stages.2.")}
    for size, (depths, dims) in ARCHITECTURES.items():
        if stem.shape[0] == dims[0] and len(blocks) == depths[2]:
            return size
    return None


def read_ddcolor_state(path: str | os.PathLike, model: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """``(state_dict, size)`` of a checked DDColor checkpoint; ``model`` (a name or size) must match its size."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file" if path.is_dir()
                              else f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} cannot be read: it is empty")
    try:
        obj = _unwrap(_read_file(path))
    except Exception as e:  # noqa: BLE001 - any parse failure of a corrupt or foreign file lands here
        raise CheckpointError(f"checkpoint {path} cannot be read (truncated, corrupt or not a torch/safetensors "
                              f"file): {_load_error(e)}") from None
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} is not a state_dict (a dict of tensors); it holds a "
                              f"{type(obj).__name__}")
    state = _strip_prefix(obj)
    size = detect_size(state)
    if size is None:
        raise CheckpointError(f"checkpoint {path} is not a DDColor checkpoint (tiny or large): "
                              f"no ConvNeXt-T/L stem {SIZE_KEY} with the matching depth")
    if model is not None:
        wanted = resolve_model(model) if model not in ARCHITECTURES else model_name(model)
        if model_name(size) != wanted:
            raise CheckpointError(f"checkpoint {path} holds {model_name(size)} weights ({ENCODERS[size]}), but the "
                                  f"model is {wanted}; use --model {model_name(size)} or a {wanted} checkpoint",
                                  param="--weights", value=str(path), accepted=f"a {wanted} checkpoint")
    want = expected_shapes(size)
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    if missing or unexpected:
        parts = ([f"misses {len(missing)} keys: {_first(missing)}"] if missing else []) + \
                ([f"has {len(unexpected)} unexpected keys: {_first(unexpected)}"] if unexpected else [])
        raise CheckpointError(f"checkpoint {path} ({model_name(size)}) {'; '.join(parts)}")
    wrong = [f"{k} {tuple(state[k].shape)} (expected {s})" for k, s in want.items() if tuple(state[k].shape) != s]
    if wrong:
        raise CheckpointError(f"checkpoint {path} has {len(wrong)} tensors of the wrong shape: {_first(wrong)}")
    bad = non_finite({k: state[k] for k in want})
    if bad:
        raise CheckpointError(f"checkpoint {path} has {len(bad)} tensors with NaN or infinite values "
                              f"(the output would be black or grey): {_first(bad)}")
    return {k: state[k] for k in want}, size


def load_ddcolor(path: str | os.PathLike, model: str | None = None) -> DDColor:
    """The network (CPU, fp32, eval) of checkpoint ``path``, loaded strictly; ``model`` as ``read_ddcolor_state``."""
    state, size = read_ddcolor_state(path, model)
    return build_with_state(lambda: DDColor(size), state)
