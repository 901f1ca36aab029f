"""The ONNX cache: one checked graph per checkpoint, stage, padded size and precision.

Layout: ``onnx_cache_dir()/<weights sha256[:16]>/<stage>_<Wp>x<Hp>_<precision>_opset17_v<N>.onnx``
plus ``….onnx.manifest.json`` (``manifest``: sha256, size, export version, weights hash, stage,
size, precision, and the check results). Why: exporting and checking takes minutes, so graphs
are made once; but a cached file is only used while it matches its manifest, and a graph that
fails its check against PyTorch is never written. Each graph is built under a lock file, so two
processes never export the same graph at once. Nothing derived from weights is written
anywhere else.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ...model.stages import STAGES, validate_padded_hw
from ...util.errors import UserError
from ...util.files import (atomic_write, choose_writable_dir, file_lock, file_sha256, make_private_dir, temp_cache_dir,
                            user_cache_dir)
from . import manifest
from .check import ExportCheckError, check_graph, real_inputs
from .trace import OPSET, export_graph

log = logging.getLogger("vscolormnet")
EXPORT_VERSION = 2                # bump when the exported graphs change for the same weights
PRECISIONS = ("fp32", "fp16")
ENV_ONNX_DIR = "VSCOLORMNET_ONNX_DIR"


def onnx_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$VSCOLORMNET_ONNX_DIR``, else the per-user cache ``…/vscolormnet/onnx``;
    falls back to a per-user temp folder when not writable or not private (``choose_writable_dir``:
    a manifest beside a graph proves nothing where others can write)."""
    preferred = cache_dir or os.environ.get(ENV_ONNX_DIR) or user_cache_dir("onnx")
    return choose_writable_dir(preferred, (user_cache_dir("onnx"), temp_cache_dir("onnx")), "ONNX cache")


def onnx_filename(stage: str, padded_hw: tuple[int, int], precision: str) -> str:
    """``<stage>_<Wp>x<Hp>_<precision>_opset17_v<EXPORT_VERSION>.onnx``."""
    hp, wp = padded_hw
    return f"{stage}_{wp}x{hp}_{precision}_opset{OPSET}_v{EXPORT_VERSION}.onnx"


def onnx_path(weights: str | os.PathLike, stage: str, padded_hw: tuple[int, int], precision: str,
              cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the graph for these weights, stage, size and precision is cached."""
    return onnx_cache_dir(cache_dir) / file_sha256(weights)[:16] / onnx_filename(stage, padded_hw, precision)


def origin(weights_sha256: str, stage: str, padded_hw: tuple[int, int], precision: str) -> dict:
    """The manifest fields a cached graph must carry to be used for this request."""
    return {"weights_sha256": weights_sha256, "stage": stage, "padded_hw": list(padded_hw),
            "precision": precision, "opset": OPSET, "export_version": EXPORT_VERSION}


def _check_choices(values, allowed, what: str) -> None:
    for v in values:
        if v not in allowed:
            raise ValueError(f"{what} must be one of {', '.join(allowed)}, got {v!r}")


class ColorMNetGraphs:
    """The graph source of the six ColorMNet stages (what ``_Exporter`` needs from a network).

    A graph source has ``stages``, ``export(stage, hw)`` (the simplified fp32 ``ModelProto``) and
    ``check(data, stage, hw, precision, references)`` (the ``check.CheckResult`` list); it loads its
    network only when a graph is missing. DDColor's is ``graphs.ddcolor.DDColorGraphs``.
    """

    stages = STAGES

    def __init__(self, weights: Path, net=None, image: np.ndarray | None = None):
        self.weights, self._net, self.image = weights, net, image
        self.real = None                     # real activations per stage, made once per size

    def network(self):
        """The ``ColorMNet`` (``net``, or what the loader ``net`` returns, or loaded from the weights)."""
        import torch
        if self._net is None:
            from ...weights.checkpoint import load_model
            self._net = load_model(self.weights)
        elif not isinstance(self._net, torch.nn.Module) and callable(self._net):
            self._net = self._net()                # a loader: the network is needed only now
        return self._net

    def export(self, stage: str, hw: tuple[int, int]):  # noqa: D102
        return export_graph(self.network(), stage, hw)

    def check(self, data: bytes, stage: str, hw: tuple[int, int], precision: str, references: dict):  # noqa: D102
        if self.real is None:
            self.real = real_inputs(self.network(), hw, self.image)
        return check_graph(data, self.network(), stage, hw, precision, real=self.real, references=references)


class _Exporter:
    """One ``export_graphs`` call: the graph source loads its network and check inputs only when a graph is missing."""

    def __init__(self, weights: Path, padded_hw, folder: Path, net=None, image=None, force: bool = False,
                 source=None):
        self.weights, self.padded_hw, self.folder = weights, padded_hw, folder
        self.weights_sha256 = file_sha256(weights)
        self.source = source if source is not None else ColorMNetGraphs(weights, net, image)
        self.force = force
        self.references: dict = {}      # PyTorch outputs per (stage, inputs), shared by fp32 and fp16 checks
        self.done: dict[tuple[str, str], Path] = {}

    def ensure(self, stage: str, precision: str) -> Path:
        """The verified path of one graph, exported (fp16: converted from the fp32 graph) if needed."""
        if (stage, precision) in self.done:
            return self.done[(stage, precision)]
        path = self.folder / onnx_filename(stage, self.padded_hw, precision)
        with file_lock(path.with_name(path.name + ".lock")):
            why = manifest.problem(path, origin(self.weights_sha256, stage, self.padded_hw, precision))
            if why is not None and (path.exists() or manifest.manifest_path(path).exists()):
                manifest.discard(path, why)            # damaged or foreign: warn, never use it
            if why is not None or self.force:
                self._export(stage, precision, path)
        self.done[(stage, precision)] = path
        return path

    def _export(self, stage: str, precision: str, path: Path) -> None:
        import onnx
        import torch

        from .fp16 import to_fp16
        t0 = time.perf_counter()
        log.info("exporting %s %dx%d %s to ONNX …", stage, self.padded_hw[1], self.padded_hw[0], precision)
        if precision == "fp32":
            model = self.source.export(stage, self.padded_hw)
        else:
            source = self.ensure(stage, "fp32")
            try:
                model = onnx.load(str(source))
            except Exception as e:  # noqa: BLE001 - a verified file that does not parse: rebuild it once
                manifest.discard(source, f"does not parse as ONNX ({type(e).__name__}: {e})")
                self.done.pop((stage, "fp32"), None)
                model = onnx.load(str(self.ensure(stage, "fp32")))
            model = to_fp16(model)
        data = model.SerializeToString()
        onnx.checker.check_model(data)
        results = self.source.check(data, stage, self.padded_hw, precision, self.references)
        for r in results:
            log.info("onnx check: %s", r.line())
        if not all(r.ok for r in results):
            raise ExportCheckError("exported graph does not match PyTorch, not written: "
                                   + "; ".join(r.line() for r in results if not r.ok))
        atomic_write(path, data)
        manifest.write_manifest(path, **origin(self.weights_sha256, stage, self.padded_hw, precision),
                                torch=torch.__version__, checks=[asdict(r) for r in results])
        log.info("exported %s (%.1f MB, %.1f s)", path, path.stat().st_size / 1e6, time.perf_counter() - t0)


def export_graphs(weights: str | os.PathLike | None, padded_hw: tuple[int, int], *, precisions=("fp32",),
                  stages=STAGES, cache_dir: str | os.PathLike | None = None, image: np.ndarray | None = None,
                  force: bool = False, net=None) -> dict[tuple[str, str], Path]:
    """Make sure every ``(stage, precision)`` graph is in the cache and matches its manifest.

    Missing or damaged graphs are exported and checked (a damaged one with a warning); fp16 graphs
    are converted from the fp32 graph, which is made only if needed. Returns ``{(stage, precision):
    path}``. The network (``net``: a ``ColorMNet`` or a function returning one; else loaded from
    ``weights``) is used only if something is missing. Raises ``ExportCheckError`` (and writes nothing for that graph) if a check fails.
    """
    from ...weights.checkpoint import resolve_weights
    weights = resolve_weights(weights)
    padded_hw = validate_padded_hw(padded_hw)
    _check_choices(precisions, PRECISIONS, "precision")
    _check_choices(stages, STAGES, "stage")
    return ensure_graphs(ColorMNetGraphs(weights, net, image), weights, padded_hw, precisions=precisions,
                         stages=stages, cache_dir=cache_dir, force=force)


def ensure_graphs(source, weights: Path, hw: tuple[int, int], *, precisions=("fp32",), stages=None,
                  cache_dir: str | os.PathLike | None = None, force: bool = False) -> dict[tuple[str, str], Path]:
    """``export_graphs`` for any graph source (``ColorMNetGraphs``, ``ddcolor.DDColorGraphs``), arguments checked:
    the graphs of ``weights`` (an existing file: its sha256 names the folder) at ``hw``, in the one cache folder."""
    folder = onnx_cache_dir(cache_dir) / file_sha256(weights)[:16]
    if why := make_private_dir(folder):
        raise UserError(f"ONNX cache folder {folder} refused: {why}", param="onnx_dir", value=str(folder))
    exporter = _Exporter(weights, hw, folder, force=force, source=source)
    return {(stage, precision): exporter.ensure(stage, precision)
            for precision in PRECISIONS if precision in precisions for stage in (stages or source.stages)}


def ensure_onnx(weights: str | os.PathLike | None, stage: str, padded_hw: tuple[int, int], precision: str = "fp32",
                *, cache_dir: str | os.PathLike | None = None, net=None) -> Path:
    """The cached graph for one stage, exported and checked on first use."""
    return export_graphs(weights, padded_hw, precisions=(precision,), stages=(stage,), cache_dir=cache_dir,
                         net=net)[(stage, precision)]
