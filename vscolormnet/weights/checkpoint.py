"""Locate, verify and load checkpoints: strict, offline, ``weights_only``.

The official checkpoint is a raw state_dict with 667 entries whose names equal our module
names, so no renaming is needed. Every failure names the file and the first offending keys.
Values are checked too: a tensor holding NaN or infinity loads and runs, but turns the output
silently black or grey, so it is refused like a missing key. ``verify_checkpoint`` adds the
SHA-256 checks (pinned, and the ``<file>.sha256`` record that ``download`` writes).
"""
from __future__ import annotations

import functools
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..model import ColorMNet
from ..util.errors import CheckpointError  # noqa: F401  (defined with the other user errors)
from ..util.files import atomic_write_text, file_sha256, private_problem

CHECKPOINT_NAME = "DINOv2FeatureV6_LocalAtten_s2_154000.pth"
CHECKPOINT_URL = f"https://github.com/yyang181/colormnet/releases/download/v0.1/{CHECKPOINT_NAME}"
ENV_WEIGHTS_DIR = "VSCOLORMNET_WEIGHTS_DIR"
SHOW_KEYS = 5
_HEX64 = re.compile(r"^[0-9a-f]{64}$")




def weights_dir() -> Path:
    """Folder for downloaded weights: ``$VSCOLORMNET_WEIGHTS_DIR`` or the per-user data folder."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs
    return Path(platformdirs.user_data_dir("vscolormnet", appauthor=False))


def default_weights_problem() -> str | None:
    """Why the default weights folder is not private to this user (``util.files.private_problem``), or None.

    Only the platformdirs default is judged: ``$VSCOLORMNET_WEIGHTS_DIR``, ``--dir`` and ``--weights``
    are the user's own choice, like any file they name.
    """
    return None if os.environ.get(ENV_WEIGHTS_DIR) else private_problem(weights_dir())


def default_checkpoint() -> Path:
    """Where ``python -m vscolormnet download`` puts the official checkpoint."""
    return weights_dir() / CHECKPOINT_NAME


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every state_dict key of the network and its shape (built on the meta device: no memory)."""
    return dict(_shapes())


@functools.cache
def _shapes() -> dict[str, tuple[int, ...]]:  # building the network, even on meta, takes ~0.3 s
    with torch.device("meta"):
        model = ColorMNet()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _first(keys, n=SHOW_KEYS) -> str:
    keys = list(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def non_finite(state: dict[str, torch.Tensor]) -> list[str]:
    """``"key (n NaN, m inf)"`` for every floating tensor holding NaN or ±inf, in ``state``'s order."""
    bad = []
    for k, v in state.items():
        if not v.is_floating_point():
            continue
        v = v.detach().cpu()
        a = (v if v.dtype in (torch.float16, torch.float32, torch.float64) else v.float()).numpy()
        if np.isfinite(a).all():  # numpy: several times faster than torch.isfinite on CPU here
            continue
        counts = ((int(np.isnan(a).sum()), "NaN"), (int(np.isinf(a).sum()), "inf"))
        bad.append(f"{k} ({', '.join(f'{n} {what}' for n, what in counts if n)})")
    return bad


def _load_error(e: Exception) -> str:
    """torch.load's error in one short phrase (its weights_only message advises unsafe loading: dropped)."""
    text = str(e).strip()
    m = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\s*\n|Check the documentation|$)", text, re.DOTALL)
    if text.startswith("Weights only load failed"):
        return f"the safe weights_only loader refuses it ({' '.join(m.group(1).split()) if m else 'pickled objects'})"
    first = text.splitlines()[0] if text else type(e).__name__
    return first.split(". ")[0]


def _normalise_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoint names → our module names (the one place a key mapping belongs): drop ``module.``."""
    return {k.removeprefix("module."): v for k, v in state.items()}


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read and verify a checkpoint (keys, shapes, finite values); raise ``CheckpointError`` naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file")
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} cannot be read (truncated, corrupt or not a torch file): "
                              "it is empty")
    try:
        with warnings.catch_warnings():  # e.g. "pickle protocol 4": noise on top of the one-line error
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any parse failure of a corrupt file lands here
        raise CheckpointError(f"checkpoint {path} cannot be read (truncated, corrupt or not a torch file): "
                              f"{_load_error(e)}") from None
    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for wrapper in ("state_dict", "model", "network"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} is not a state_dict (a dict of tensors); "
                              f"it holds a {type(obj).__name__}")
    obj = _normalise_keys(obj)
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
    bad = non_finite({k: obj[k] for k in want})
    if bad:
        raise CheckpointError(f"checkpoint {path} has {len(bad)} tensors with NaN or infinite values "
                              f"(the output would be black or grey): {_first(bad)}")
    return obj


def load_model(path: str | os.PathLike) -> ColorMNet:
    """Build the network on CPU and load ``path`` strictly; returns it in eval mode."""
    return build_with_state(ColorMNet, read_state_dict(path))


def build_with_state(build, state: dict[str, torch.Tensor]):
    """``build()`` on the meta device, then ``state`` (checked: every key, right shapes) assigned strictly:
    no random initialisation (~2 s for ColorMNet) and no second copy of the weights. Eval mode."""
    with torch.device("meta"):
        net = build()
    want = net.state_dict()
    net.load_state_dict({k: v.to(dtype=want[k].dtype).contiguous() for k, v in state.items()},
                        strict=True, assign=True)
    return net.eval()


def resolve_weights(weights: str | os.PathLike | None) -> Path:
    """The checkpoint to use: ``weights`` or the default location; a clear error if absent, or if
    the default folder is not private (anyone who can write there could swap the weights)."""
    if not weights and (why := default_weights_problem()):
        raise CheckpointError(f"the default weights folder {weights_dir()} is not yours alone: {why}; "
                              f"make it yours (chmod 700), set {ENV_WEIGHTS_DIR} or pass weights",
                              param="weights", value=None, accepted="a checkpoint file (.pth)")
    path = Path(weights).expanduser() if weights else default_checkpoint()
    if path.is_dir():
        inside = path / CHECKPOINT_NAME
        hint = f"; did you mean {inside}?" if inside.is_file() else ""
        raise CheckpointError(f"{path} is a folder, not a checkpoint file (e.g. {inside}){hint}",
                              param="weights", value=str(path), accepted="a checkpoint file (.pth)")
    if not path.is_file():
        hint = ("run `python -m vscolormnet download` to fetch the official checkpoint "
                f"(into {default_checkpoint().parent}; set {ENV_WEIGHTS_DIR} to choose another folder)")
        raise CheckpointError(f"weights file {path} not found; {hint}")
    return path


# ---------------------------------------------------------------- SHA-256 pins and records
def normalise_sha256(value: str | None, param: str = "--sha256") -> str | None:
    """Lower-case 64-digit hex, or None; a ValueError naming ``param`` otherwise."""
    if value is None:
        return None
    v = value.strip().lower()
    if not _HEX64.match(v):
        raise ValueError(f"{param} must be 64 hexadecimal digits (a SHA-256), got {value!r}")
    return v


def sha256_record_path(path: str | os.PathLike) -> Path:
    """``<file>.sha256``: where the hash of ``path`` is recorded."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def read_recorded_sha256(path: str | os.PathLike) -> str | None:
    """The hash recorded next to ``path`` (``sha256sum`` format), or None if there is none."""
    rec = sha256_record_path(path)
    if not rec.is_file():
        return None
    text = rec.read_text(encoding="utf-8", errors="replace").split()
    if not text or not _HEX64.match(text[0].lower()):
        raise ValueError(f"{rec} does not hold a SHA-256 (expected '<64 hex digits>  <file name>')")
    return text[0].lower()


def record_sha256(path: str | os.PathLike, digest: str) -> Path:
    """Write ``<file>.sha256`` in ``sha256sum`` format; returns its path."""
    path = Path(path)
    rec = sha256_record_path(path)
    atomic_write_text(rec, f"{digest}  {path.name}\n")
    return rec


@dataclass(frozen=True)
class VerifyResult:
    """What ``verify_checkpoint`` found. ``recorded`` is the hash in ``<file>.sha256`` (or None)."""

    path: Path
    sha256: str
    size: int
    tensors: int
    recorded: str | None

    @property
    def matches_record(self) -> bool | None:
        """True/False against the recorded hash; None when nothing is recorded."""
        return None if self.recorded is None else self.recorded == self.sha256


def verify_checkpoint(path: str | os.PathLike, sha256: str | None = None) -> VerifyResult:
    """Check an existing checkpoint: strict structural load, SHA-256, recorded and pinned hashes.

    Raises ``CheckpointError`` (a ValueError) if the file is unusable, ValueError if its hash differs
    from ``sha256`` or from the one recorded next to it.
    """
    pin = normalise_sha256(sha256)
    path = Path(path).expanduser()
    state = read_state_dict(path)
    digest = file_sha256(path)
    res = VerifyResult(path, digest, path.stat().st_size, len(state), read_recorded_sha256(path))
    if pin is not None and digest != pin:
        raise ValueError(f"{path} has SHA-256 {digest}, --sha256 pins {pin}")
    if res.matches_record is False:
        raise ValueError(f"{path} has SHA-256 {digest}, but {sha256_record_path(path).name} records "
                         f"{res.recorded}: the file changed since it was downloaded")
    return res
