"""The ONNX cache's temp fallback, attacked as in the issue: another user creates ``$TMPDIR/vscolormnet-<uid>``
first and plants a graph with its manifest (a manifest is only a checksum beside the file, so a planted
one matches). Through the real path: ``export_graphs`` with no cache folder given, the user's cache
unwritable (a read-only home), the system temp folder a fresh one per test.

The control step shows the attack works on a folder that passes as ours: the planted graph is used
without any export. Then the same folder, world-writable or owned by someone else, is refused: nothing
under it is even opened, and the graph in use is the genuine one.
"""
from __future__ import annotations

import logging
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from graph_fixtures import HW, TinyNet, tiny_weights  # noqa: F401

from vscolormnet.backends.graphs.cache import ENV_ONNX_DIR, export_graphs
from vscolormnet.backends.graphs.check import ort_session, random_inputs
from vscolormnet.model.stages import INPUTS, OUTPUTS

STAGE = "decode"
NOBODY = 65534
_OPENED: list[str] = []
_HOOK = []


def _audit(event, args):
    if _HOOK and event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes)):
        _OPENED.append(os.fsdecode(args[0]))


def outputs(path, inputs):
    feeds = {name: t.numpy() for name, t in zip(INPUTS[STAGE], inputs)}
    return ort_session(path, threads=1).run(list(OUTPUTS[STAGE]), feeds)


def no_export():
    pytest.fail("exported: the cached graph was not used")


@pytest.fixture
def attacked(tiny_weights, tmp_path, monkeypatch):
    """The planted graph (TinyNet with other weights, a valid graph with a matching manifest) at the
    temp fallback, in a folder that passes as ours (0700 for now); the user's cache unwritable."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    (tmp_path / "home").write_text("a file where the cache folder should be: unwritable, even for root")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home" / "cache"))
    monkeypatch.delenv(ENV_ONNX_DIR, raising=False)
    evil = export_graphs(tiny_weights, HW, stages=(STAGE,), cache_dir=tmp_path / "attacker", net=TinyNet(seed=1))
    evil = evil[(STAGE, "fp32")]
    planted_root = root / f"vscolormnet-{os.getuid()}"
    shutil.copytree(evil.parent, planted_root / "onnx" / evil.parent.name)
    os.chmod(planted_root, 0o700)
    planted = planted_root / "onnx" / evil.parent.name / evil.name
    got = export_graphs(tiny_weights, HW, stages=(STAGE,), net=no_export)[(STAGE, "fp32")]
    assert got == planted, "control: a folder that passes as ours is trusted, planted graph included"
    return planted_root, planted


@pytest.mark.parametrize("attack", ["world-writable", "foreign owner"])
def test_a_planted_temp_cache_is_refused_and_never_read(attacked, tiny_weights, attack, caplog):
    planted_root, planted = attacked
    if attack == "world-writable":
        os.chmod(planted_root, 0o777)
        why = f"{planted_root} is group- or world-writable (mode 0777)"
    else:
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            pytest.skip("chown to another uid needs root (the test machines run as root)")
        os.chown(planted_root, NOBODY, NOBODY)
        why = f"{planted_root} is owned by uid {NOBODY}, not by you (uid 0)"
    if not _HOOK:
        sys.addaudithook(_audit)           # audit hooks cannot be removed: this one records only while enabled
    _OPENED.clear()
    _HOOK.append(True)
    try:
        with caplog.at_level(logging.WARNING, logger="vscolormnet"):
            used = export_graphs(tiny_weights, HW, stages=(STAGE,), net=TinyNet())[(STAGE, "fp32")]
    finally:
        _HOOK.clear()
    assert not used.is_relative_to(planted_root)
    assert [p for p in _OPENED if Path(os.path.abspath(p)).is_relative_to(planted_root)] == []
    assert any(Path(p).is_relative_to(used.parent) for p in _OPENED)      # the hook does see the cache's opens
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refusing")]
    assert refusals == [(f"refusing ONNX cache folder {planted_root / 'onnx'}: {why}; "
                         f"using {used.parent.parent} instead")]
    for folder in (used.parent, used.parent.parent, used.parent.parent.parent):      # <sha>/, onnx/, mkdtemp
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700 and os.stat(folder).st_uid == os.geteuid()
    inputs = random_inputs(STAGE, HW, seed=3)
    with torch.no_grad():
        genuine = TinyNet().decode(*inputs).numpy()
    assert np.abs(outputs(used, inputs)[0] - genuine).max() <= 1e-4
    assert np.abs(outputs(planted, inputs)[0] - genuine).max() > 1e-2      # what the planted graph would have done
