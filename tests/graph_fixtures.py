"""The exported ONNX graphs, made once per test session (the slowest step of the ONNX tests).

``onnx_graphs`` exports the fp32 and fp16 graphs of all six stages of the seeded parity
checkpoint at the smallest padded size, 112×112, into one folder under pytest's base temp
(never into the repo or the user cache), and removes it at the end. fp16 is needed: its
graphs are checked per stage and end to end. Register the fixture in conftest.py with
``from graph_fixtures import onnx_graphs  # noqa: F401``; importing it in several test modules
also works (the export is memoised per process, so it still runs once).

``TinyNet`` and ``tiny_weights`` (import both where needed) are a small real network with the
stage contract, for the cache tests that must export again.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vscolormnet.model.stages import KEY_DIM, NUM_OBJECTS, VALUE_DIM

HW = (112, 112)                    # (Hp, Wp): the smallest padded size
SOURCE_FOR_HW = "100x56"           # a source whose native size pads to HW (for the CLI tests)
_MEMO: dict = {}


@dataclass(frozen=True)
class ExportedGraphs:
    """paths[(stage, precision)] → file; cache_dir is the ONNX cache folder; net the loaded checkpoint."""

    paths: dict
    cache_dir: Path
    weights: Path
    net: object = field(repr=False)
    hw: tuple = HW

    def __getitem__(self, key):
        return self.paths[key]


@pytest.fixture(scope="session")
def onnx_graphs(parity_checkpoint, tmp_path_factory) -> ExportedGraphs:
    """fp32 + fp16 graphs of every stage at 112×112, exported and checked once per session."""
    if "graphs" not in _MEMO:
        from vscolormnet.backends.graphs.cache import export_graphs
        from vscolormnet.weights.checkpoint import load_model
        base = tmp_path_factory.getbasetemp()
        # pytest-xdist: every worker has its own base temp inside the run's; the graphs are exported once
        # into the run's folder (the cache locks and writes atomically: the other worker waits and reuses).
        cache_dir = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "onnx-cache"
        cache_dir.mkdir(exist_ok=True)
        net = load_model(parity_checkpoint)
        paths = export_graphs(parity_checkpoint, HW, precisions=("fp32", "fp16"), cache_dir=cache_dir, net=net)
        _MEMO["graphs"] = ExportedGraphs(paths, cache_dir, Path(parity_checkpoint), net)
    yield _MEMO["graphs"]
    graphs = _MEMO.pop("graphs", None)
    if graphs is not None and not os.environ.get("PYTEST_XDIST_WORKER"):     # another worker may still read it
        shutil.rmtree(graphs.cache_dir, ignore_errors=True)   # ~1 GB; pytest keeps old base temps around


# ---- a small real network with the stage contract, for cache tests -----------------------------
class _Backbone(nn.Module):
    def interpolated_pos_embed(self, rows, cols):   # what graphs.trace.traceable replaces by a constant
        return torch.zeros(1, rows * cols + 1, 8)


class TinyNet(nn.Module):
    """The six stage methods with the contract's shapes (``stages.tensor_shapes``) and ~0.5 M weights.

    Why: the cache's rebuild paths (damaged file → warning → export → check → write) need a
    real export, and ColorMNet's takes minutes; this one exports and checks in about a second.
    """

    def __init__(self, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.key_encoder = nn.Module()
            self.key_encoder.network2 = nn.Module()
            self.key_encoder.network2.backbone = _Backbone()
            self.f4 = nn.Conv2d(3, 256, 1)
            self.f8 = nn.Conv2d(3, 512, 1)
            self.f16 = nn.Conv2d(3, 1024, 1)
            self.key = nn.Conv2d(1024, KEY_DIM, 1)
            self.shrink = nn.Conv2d(1024, 1, 1)
            self.select = nn.Conv2d(1024, KEY_DIM, 1)
            self.value_in = nn.Conv2d(5, 1024, 1)
            self.value_f16 = nn.Conv2d(1024, 1024, 1, groups=16)
            self.hidden_in = nn.Conv2d(1024, 128, 1)
            self.dec_hidden = nn.Conv2d(128, 1024, 1)
            self.dec_out = nn.Conv2d(1024, 2, 1)
            self.dec_f4 = nn.Conv2d(256, 2, 1)

    def encode_key(self, image):  # noqa: D102
        x4 = F.avg_pool2d(image, 4)
        f16 = self.f16(F.avg_pool2d(x4, 4))
        return (self.key(f16), self.shrink(f16) ** 2 + 1, torch.sigmoid(self.select(f16)), f16,
                self.f8(F.avg_pool2d(x4, 2)), self.f4(x4))

    def encode_value(self, image, f16, ab):  # noqa: D102
        g = F.avg_pool2d(torch.cat([image, ab], 1), 16)
        v = torch.tanh(self.value_in(g) + self.value_f16(f16))
        return v.view(1, NUM_OBJECTS, VALUE_DIM, v.shape[-2], v.shape[-1])

    def encode_value_deep(self, image, f16, ab, hidden):  # noqa: D102
        value = self.encode_value(image, f16, ab)
        h = self.hidden_in(value.flatten(1, 2)).view(hidden.shape)
        return value, torch.tanh(hidden + h)

    def short_term_attention(self, key, prev_key, prev_value):  # noqa: D102
        a = torch.softmax((key * prev_key).sum(1, keepdim=True).flatten(2), -1).view(1, 1, 1, *key.shape[-2:])
        return prev_value * a

    def _decode(self, f16, f8, f4, readout, hidden):
        r = readout.flatten(1, 2) + self.dec_hidden(hidden.flatten(1, 2)) + f16 + F.avg_pool2d(f8, 2).mean(1, True)
        ab = F.interpolate(self.dec_out(r), scale_factor=4, mode="bilinear") + self.dec_f4(f4)
        return torch.tanh(F.interpolate(ab, scale_factor=4, mode="bilinear")), r

    def decode(self, f16, f8, f4, readout, hidden):  # noqa: D102
        return self._decode(f16, f8, f4, readout, hidden)[0]

    def decode_update(self, f16, f8, f4, readout, hidden):  # noqa: D102
        ab, r = self._decode(f16, f8, f4, readout, hidden)
        return ab, torch.tanh(self.hidden_in(r)).view(hidden.shape)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A file standing for TinyNet's checkpoint (its hash keys the cache folder; it is never loaded)."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    torch.save(TinyNet().state_dict(), path)
    return path


# ---- command-line error cases shared by the export and bench tests ----------------------------------
def no_expensive_work(monkeypatch):
    """Make loading the network or exporting a graph fail the test (errors must come before them)."""
    from vscolormnet.backends.graphs import cache
    from vscolormnet.weights import checkpoint as weights
    monkeypatch.setattr(weights, "load_model", lambda *a, **k: pytest.fail("loaded the network"))
    monkeypatch.setattr(cache, "export_graphs", lambda *a, **k: pytest.fail("started an export"))


def cli_errors(tmp_path):
    """(arguments, flag named in the error) shared by the export and bench error tests."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = [(["--size", "500"], "--size"), (["--size", "1080p"], "--size"), (["--source", "wide"], "--source"),
             (["--source", "0x1080"], "--source"), (["--size", "native", "--source", "4:3"], "--size"),
             (["--onnx-dir", str(tmp_path / "missing")], "--onnx-dir"), (["--onnx-dir", str(a_file)], "--onnx-dir"),
             (["--engine-dir", str(tmp_path / "missing")], "--engine-dir"), (["--threads", "0"], "--threads"),
             (["--weights", str(tmp_path / "missing.pth")], "--weights")]
    if os.geteuid() != 0:          # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        cases.append((["--onnx-dir", str(locked)], "--onnx-dir"))
    if importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available():
        cases.append((["--backend", "trt"], "--backend"))
    return cases
