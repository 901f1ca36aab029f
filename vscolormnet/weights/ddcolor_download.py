"""Fetch the DDColor weights from the hub so that they check themselves, and verify them later.

``download_ddcolor(name)`` asks the hub for the file's commit, size and LFS SHA-256
(``ddcolor_hub.hub_file``), streams it with the ColorMNet transport (``download.fetch``: resumable
with HTTP ``Range``, sizes checked) into ``<repo>.<sha16>.partial.<suffix>`` in the target
folder, and renames it only after every check passed: the SHA-256 equals the hub's LFS hash
(and ``--sha256`` if pinned), the size equals the hub's, and the strict DDColor load
(``ddcolor_checkpoint.read_ddcolor_state``: the model's size, every key and shape, all values
finite). The partial's name holds the expected hash, so a resume never splices two revisions;
partials of other hashes are removed. A complete file that fails a check is deleted; an
interrupted transfer keeps its partial for the next run. Nothing ever appears at the final path
unless it passed. Beside the file: ``<file>.sha256`` (``sha256sum`` format, as for ColorMNet),
``<file>.source.json`` (repository, commit, hub file, hub SHA-256, licence) and
``NOTICE-ddcolor.txt``. A file already there that matches its record is not fetched again (no
network). ``verify_ddcolor`` re-checks a file offline, and against the hub only when asked.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..util.errors import CheckpointError, DownloadError
from ..util.files import atomic_write_text, file_lock, file_sha256
from .checkpoint import normalise_sha256, read_recorded_sha256, record_sha256, sha256_record_path
from .ddcolor_checkpoint import ENCODERS, read_ddcolor_state
from .ddcolor_hub import CODE_LICENCE, CODE_URL, HUB_FILES, VARIANTS, HubFile, Variant, hub_file, variant_of
from .download import check_timeout, fetch, target_folder

log = logging.getLogger("vscolormnet")
NOTICE_NAME = "NOTICE-ddcolor.txt"


@dataclass(frozen=True)
class DDColorDownload:
    """What ``download_ddcolor`` produced; ``hub`` is None when a verified file was already there."""

    path: Path
    variant: Variant
    sha256: str
    size: int
    tensors: int
    downloaded: bool
    hub: HubFile | None = None
    source: dict = field(default_factory=dict)


def source_path(path: str | os.PathLike) -> Path:
    """``<file>.source.json``: where the file came from (written by ``download``)."""
    path = Path(path)
    return path.with_name(path.name + ".source.json")


def read_source(path: str | os.PathLike) -> dict:
    """The source record of ``path`` ({} if there is none or it is unreadable)."""
    try:
        data = json.loads(source_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def notice_text() -> str:
    """The licence notice written beside the weights: the code's licence, each model card's address."""
    cards = "\n".join(f"  {v.name:<17} {v.card_url}" for v in VARIANTS.values())
    return f"""\
DDColor weights: licence notice
===============================

DDColor (Kang et al., "DDColor: Towards Photo-Realistic Image Colorization via Dual Decoders",
ICCV 2023) is published by its authors at {CODE_URL}; the code is {CODE_LICENCE}.
The weights were downloaded from the Hugging Face hub; their terms are what each model card
states (the cards declared `license: apache-2.0` when this was written; the card is what binds):

{cards}

Each file's repository, commit, SHA-256 and the licence its card declared at download time are in
<file>.source.json beside it. vscolormnet (the code that downloaded them) is a separate work
under its own licence; it does not include or redistribute these weights.
"""


def _partial(final: Path, sha: str) -> Path:
    return final.with_name(f"{final.stem}.{sha[:16]}.partial{final.suffix}")


def _drop_stale_partials(final: Path, keep: Path) -> None:
    for p in final.parent.glob(f"{final.stem}.*.partial{final.suffix}"):
        if p != keep:
            log.info("download: removing %s (a partial download of another revision)", p.name)
            p.unlink(missing_ok=True)


def _check_existing(final: Path, variant: Variant, pin: str | None, hub: HubFile | None = None
                    ) -> DDColorDownload | None:
    """The file already there, if it loads strictly and its SHA-256 matches its record (no network), or, once
    ``hub`` was asked, the hub's LFS hash (then the record is written); None if it must be fetched."""
    try:
        recorded = read_recorded_sha256(final)
        digest = file_sha256(final)
        want = hub.sha256 if hub is not None else recorded
        if want is None or digest != want or (pin is not None and digest != pin):
            return None
        state, _ = read_ddcolor_state(final, variant.model)
    except (CheckpointError, ValueError) as e:
        log.warning("download: the existing %s fails verification (%s); downloading it again", final, e)
        return None
    if hub is not None:
        _install_records(final, hub)
    return DDColorDownload(final, variant, digest, final.stat().st_size, len(state), False, hub, read_source(final))


def download_ddcolor(name: str, dest_dir: str | os.PathLike | None = None, *, endpoint: str | None = None,
                     revision: str | None = None, sha256: str | None = None, force: bool = False,
                     timeout: float = 60.0, progress: bool = True) -> DDColorDownload:
    """Download, verify and install the weights of ``name`` (``ddcolor-large|tiny|artistic|paper`` or a hub
    name) into ``dest_dir`` (default: the weights folder, as ``download``). ``endpoint``: the hub (default
    ``$HF_ENDPOINT`` or huggingface.co); ``sha256``: an extra pin; ``force``: fetch even if a verified file
    is there. ValueError (one line) for a bad argument before any request; ``DownloadError`` for a failed
    look-up, transfer or check."""
    variant = variant_of(name)
    pin = normalise_sha256(sha256)
    check_timeout(timeout)
    folder = target_folder(dest_dir)
    with file_lock(folder / f".{variant.hub_name}.lock"):
        there = [f for f in (folder / variant.local_name(n) for n in HUB_FILES) if f.is_file()]
        if not force and revision is None:
            for final in there:
                if (done := _check_existing(final, variant, pin)) is not None:
                    _write_notice(folder)
                    return done
        hub = hub_file(variant, endpoint=endpoint, revision=revision, timeout=timeout)
        if pin is not None and pin != hub.sha256:
            raise DownloadError(f"the hub's {variant.repo}/{hub.filename} has SHA-256 {hub.sha256}, --sha256 pins "
                                f"{pin}; nothing was downloaded")
        final = folder / variant.local_name(hub.filename)
        if not force and final.is_file() and (done := _check_existing(final, variant, pin, hub)) is not None:
            return done
        return _download_locked(final, hub, timeout, progress)


def _download_locked(final: Path, hub: HubFile, timeout: float, progress: bool) -> DDColorDownload:
    if final.exists() and not final.is_file():
        raise ValueError(f"{final} exists and is not a file: move it away first")
    partial = _partial(final, hub.sha256)
    _drop_stale_partials(final, partial)
    if partial.is_file() and partial.stat().st_size > hub.size:
        partial.unlink()
    log.info("download: %s (%s at %s, %.1f MB) -> %s", hub.url, hub.filename, hub.revision[:12], hub.size / 1e6,
             final)
    digest = fetch(hub.url, partial, timeout, progress)
    size = partial.stat().st_size
    if digest != hub.sha256 or size != hub.size:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"SHA-256 mismatch: the download has {digest} ({size:,} bytes), the hub's LFS record of "
                            f"{hub.variant.repo}/{hub.filename} says {hub.sha256} ({hub.size:,} bytes); the file was "
                            f"deleted (run again to download afresh)")
    try:
        state, _ = read_ddcolor_state(partial, hub.variant.model)
    except CheckpointError as e:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"the downloaded file is not a usable {hub.variant.model} checkpoint and was deleted: "
                            f"{e}") from None
    os.replace(partial, final)
    source = _install_records(final, hub)
    log.debug("download: %s verified (%d tensors, every shape right, all finite)", final, len(state))
    return DDColorDownload(final, hub.variant, digest, size, len(state), True, hub, source)


def _install_records(final: Path, hub: HubFile) -> dict:
    """``<file>.sha256``, ``<file>.source.json`` and the notice, written atomically; returns the source record."""
    record_sha256(final, hub.sha256)
    source = {"model": hub.variant.name, "architecture": hub.variant.model, "repo": hub.variant.repo,
              "revision": hub.revision, "filename": hub.filename, "url": hub.url, "sha256": hub.sha256,
              "size": hub.size, "licence": hub.licence, "model_card": hub.variant.card_url,
              "code_licence": CODE_LICENCE}
    atomic_write_text(source_path(final), json.dumps(source, indent=1) + "\n")
    _write_notice(final.parent)
    return source


def _write_notice(folder: Path) -> Path:
    path = folder / NOTICE_NAME
    text = notice_text()
    if not path.is_file() or path.read_text(encoding="utf-8", errors="replace") != text:
        atomic_write_text(path, text)
    return path


# ---------------------------------------------------------------- verify
def is_ddcolor_checkpoint(path: str | os.PathLike) -> bool:
    """True if ``path`` looks like a DDColor checkpoint (its ConvNeXt stem key), read cheaply (mmap/header)."""
    from .ddcolor_checkpoint import SIZE_KEY
    path = Path(path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open
            with safe_open(str(path), framework="pt") as f:
                keys = list(f.keys())
        else:
            import warnings

            import torch
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            for wrapper in ("params", "params_ema", "state_dict", "model"):
                if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
                    obj = obj[wrapper]
                    break
            keys = list(obj) if isinstance(obj, dict) else []
    except Exception:  # noqa: BLE001 - not readable this way: not ours to judge here (verify reports it)
        return False
    return any(str(k).endswith(SIZE_KEY) for k in keys)


@dataclass(frozen=True)
class DDColorVerify:
    """What ``verify_ddcolor`` found. ``hub``: {repo: sha256} asked of the hub (None: not asked, offline)."""

    path: Path
    model: str              # ddcolor-large / ddcolor-tiny (from the file's shapes)
    encoder: str
    sha256: str
    size: int
    tensors: int
    recorded: str | None
    source: dict
    hub: dict | None = None

    @property
    def matches_record(self) -> bool | None:
        return None if self.recorded is None else self.recorded == self.sha256

    @property
    def hub_match(self) -> str | None:
        """The repository whose hub file has this SHA-256, if asked and one has."""
        return next((repo for repo, sha in (self.hub or {}).items() if sha == self.sha256), None)


def verify_ddcolor(path: str | os.PathLike, sha256: str | None = None, *, ask_hub: bool = False,
                   endpoint: str | None = None, timeout: float = 60.0) -> DDColorVerify:
    """Strict load (size, keys, shapes, finite), SHA-256 against the pin and the record; with ``ask_hub``
    also the hub's current LFS hash of the file's repository (from its source record), or of every
    repository of its size, to compare (``hub_match``). Raises ``CheckpointError``/ValueError as
    ``verify_checkpoint`` does; a file the hub has since replaced is reported, not refused."""
    pin = normalise_sha256(sha256)
    path = Path(path).expanduser()
    state, size = read_ddcolor_state(path)
    digest = file_sha256(path)
    source = read_source(path)
    from ..model.ddcolor.names import model_name
    res = DDColorVerify(path, model_name(size), ENCODERS[size], digest, path.stat().st_size, len(state),
                        read_recorded_sha256(path), source)
    if pin is not None and digest != pin:
        raise ValueError(f"{path} has SHA-256 {digest}, --sha256 pins {pin}")
    if res.matches_record is False:
        raise ValueError(f"{path} has SHA-256 {digest}, but {sha256_record_path(path).name} records "
                         f"{res.recorded}: the file changed since it was downloaded")
    if not ask_hub:
        return res
    candidates = [v for v in VARIANTS.values() if v.repo == source.get("repo")] or \
                 [v for v in VARIANTS.values() if v.model == res.model]
    hub = {v.repo: hub_file(v, endpoint=endpoint, timeout=timeout).sha256 for v in candidates}
    return DDColorVerify(**{**res.__dict__, "hub": hub})
