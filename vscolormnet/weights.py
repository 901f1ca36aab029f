"""Locate, verify and load checkpoints: strict, offline, ``weights_only``.

The official checkpoint is a raw state_dict with 667 entries whose names equal our module
names, so no renaming is needed. Every failure names the file and the first offending keys.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .model import ColorMNet

CHECKPOINT_NAME = "DINOv2FeatureV6_LocalAtten_s2_154000.pth"
CHECKPOINT_URL = f"https://github.com/yyang181/colormnet/releases/download/v0.1/{CHECKPOINT_NAME}"
ENV_WEIGHTS_DIR = "VSCOLORMNET_WEIGHTS_DIR"
SHOW_KEYS = 5


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and what is wrong."""


def weights_dir() -> Path:
    """Folder for downloaded weights: ``$VSCOLORMNET_WEIGHTS_DIR`` or the per-user data folder."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs
    return Path(platformdirs.user_data_dir("vscolormnet", appauthor=False))


def default_checkpoint() -> Path:
    """Where ``python -m vscolormnet download`` puts the official checkpoint."""
    return weights_dir() / CHECKPOINT_NAME


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every state_dict key of the network and its shape (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = ColorMNet()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _first(keys, n=SHOW_KEYS) -> str:
    keys = list(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read and structurally verify a checkpoint; raise ``CheckpointError`` naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any parse failure of a corrupt file lands here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be read (truncated, corrupt or not a torch file): {first}") from None
    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for wrapper in ("state_dict", "model", "network"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} is not a state_dict (a dict of tensors); "
                              f"it holds a {type(obj).__name__}")
    obj = {k.removeprefix("module."): v for k, v in obj.items()}
    want = expected_shapes()
    missing = [k for k in want if k not in obj]
    unexpected = [k for k in obj if k not in want]
    if missing:
        raise CheckpointError(f"checkpoint {path} misses {len(missing)} keys: {_first(missing)}")
    if unexpected:
        raise CheckpointError(f"checkpoint {path} has {len(unexpected)} unexpected keys: {_first(unexpected)}")
    wrong = [f"{k} {tuple(obj[k].shape)} (expected {want[k]})" for k in want if tuple(obj[k].shape) != want[k]]
    if wrong:
        raise CheckpointError(f"checkpoint {path} has {len(wrong)} tensors of the wrong shape: {_first(wrong)}")
    return obj


def load_model(path: str | os.PathLike) -> ColorMNet:
    """Build the network on CPU and load ``path`` strictly; returns it in eval mode."""
    state = read_state_dict(path)
    model = ColorMNet()
    model.load_state_dict(state, strict=True)
    return model.eval()


def resolve_weights(weights: str | os.PathLike | None) -> Path:
    """The checkpoint to use: ``weights`` or the default location; a clear error if absent."""
    path = Path(weights).expanduser() if weights else default_checkpoint()
    if not path.is_file():
        hint = ("run `python -m vscolormnet download` to fetch the official checkpoint "
                f"(into {default_checkpoint().parent}; set {ENV_WEIGHTS_DIR} to choose another folder)")
        raise CheckpointError(f"weights file {path} not found; {hint}")
    return path
