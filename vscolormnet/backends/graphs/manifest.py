"""Checksum manifests for cached files (ONNX graphs here, TensorRT engines in ``backends.engine_cache``).

Why: an atomic rename protects against an interrupted write, not against a file damaged later
(disk, copy, sync tools). A cached graph with one flipped byte still loads and gives grey
output; a truncated one fails every run. So every cached file gets a small JSON sidecar
``<file>.manifest.json``, written atomically *after* the file, holding its sha256, its size and
whatever identifies what it was made from (export version, weights hash, …). A file is used
only if its manifest exists, names the same origin and matches the bytes on disk; otherwise
the caller rebuilds it (``problem`` says why, for the warning).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from ...util.files import atomic_write, file_sha256

log = logging.getLogger("vscolormnet")
SUFFIX = ".manifest.json"


def manifest_path(path: str | os.PathLike) -> Path:
    """``<file>.manifest.json`` beside ``path``."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def write_manifest(path: str | os.PathLike, **fields) -> Path:
    """Record ``path``'s sha256 and size plus ``fields`` (JSON-serialisable); call after ``path`` is complete."""
    path = Path(path)
    record = {"file": path.name, "sha256": file_sha256(path), "size": path.stat().st_size, **fields}
    return atomic_write(manifest_path(path), json.dumps(record, indent=1, sort_keys=True).encode())


def read_manifest(path: str | os.PathLike) -> dict | None:
    """The manifest of ``path``, or None if it is missing or unreadable."""
    try:
        record = json.loads(manifest_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def problem(path: str | os.PathLike, expected: dict | None = None) -> str | None:
    """None if ``path`` matches its manifest and the manifest holds ``expected``; else why not (for a warning)."""
    path = Path(path)
    if not path.is_file():
        return "is missing"
    record = read_manifest(path)
    if record is None:
        return f"has no readable checksum manifest ({manifest_path(path).name})"
    for name, want in (expected or {}).items():
        if record.get(name) != want:
            return f"was made for {name}={record.get(name)!r}, not {want!r}"
    size = path.stat().st_size
    if record.get("size") != size:
        return f"is {size} bytes, its manifest says {record.get('size')} (truncated or overwritten?)"
    if record.get("sha256") != file_sha256(path):
        return "does not match its sha256 checksum (corrupted on disk?)"
    return None


def discard(path: str | os.PathLike, reason: str) -> None:
    """Warn that ``path`` is rebuilt because of ``reason``, and remove it and its manifest."""
    path = Path(path)
    log.warning("cached file %s %s; rebuilding it", path, reason)
    for p in (path, manifest_path(path)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
