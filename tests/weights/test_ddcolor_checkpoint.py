"""DDColor checkpoints: the seeded builder's rule, every published file form, and one-line refusals."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from project_paths import ROOT

from vscolormnet.util.errors import CheckpointError
from vscolormnet.weights.ddcolor_checkpoint import (
    detect_size,
    load_ddcolor,
    read_ddcolor_state,
    resolve_ddcolor_weights,
)
from vscolormnet.weights.seeded import content_sha256
from vscolormnet.weights.seeded_ddcolor import CONTENT_SHA256, make_state_dict


@pytest.fixture(scope="module")
def tiny_state(ddcolor_checkpoints):
    return torch.load(ddcolor_checkpoints("tiny"), map_location="cpu", weights_only=True)


def test_seeded_tiny_matches_the_recorded_hash():
    """Our implementation of the documented rule gives the parity cases' checkpoint, bit for bit."""
    assert content_sha256(make_state_dict("tiny", 0)) == CONTENT_SHA256[("tiny", 0)]


def test_cached_checkpoints_are_the_recorded_ones(ddcolor_checkpoints, tiny_state):
    assert content_sha256(tiny_state) == CONTENT_SHA256[("tiny", 0)]
    large = torch.load(ddcolor_checkpoints("large"), map_location="cpu", weights_only=True, mmap=True)
    assert content_sha256(large) == CONTENT_SHA256[("large", 0)]
    assert detect_size(large) == "large" and detect_size(tiny_state) == "tiny"


@pytest.mark.slow          # a fresh interpreter, and the tiny rule drawn again
def test_builder_command(tmp_path):
    out = tmp_path / "t.pth"
    proc = subprocess.run([sys.executable, "-m", "vscolormnet.weights.seeded_ddcolor", str(out), "--model", "tiny",
                           "--seed", "3"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "no recorded hash" in proc.stderr
    state = torch.load(out, weights_only=True)
    assert f"content_sha256={content_sha256(state)}" in proc.stderr
    assert content_sha256(state) != CONTENT_SHA256[("tiny", 0)]


@pytest.mark.parametrize("form", ["plain.pth", "params.pth", "ema_only.pt", "module_prefix.bin", "hub.safetensors",
                                  "model_prefix.pth"])
def test_every_published_form_loads_strictly(form, tiny_state, tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / form
    kind = form.split(".")[0]
    if kind == "plain":
        torch.save(tiny_state, path)
    elif kind == "params":                          # training checkpoints: the official inference reads 'params'
        torch.save({"params": tiny_state, "params_ema": {k: v + 1 for k, v in list(tiny_state.items())[:3]}}, path)
    elif kind == "ema_only":
        torch.save({"params_ema": tiny_state}, path)
    elif kind == "module_prefix":
        torch.save({f"module.{k}": v for k, v in tiny_state.items()}, path)
    elif kind == "model_prefix":
        torch.save({f"model.{k}": v for k, v in tiny_state.items()}, path)
    else:
        save_file({k: v.contiguous() for k, v in tiny_state.items()}, str(path))
    state, size = read_ddcolor_state(path, "ddcolor-tiny")
    assert size == "tiny" and list(state) == list(tiny_state)
    assert all(torch.equal(state[k], tiny_state[k]) for k in tiny_state)


def test_refusals_are_one_line(tiny_state, tmp_path):
    def refused(state_or_bytes, match, model="ddcolor-tiny"):
        path = tmp_path / "x.pth"
        if isinstance(state_or_bytes, bytes):
            path.write_bytes(state_or_bytes)
        else:
            torch.save(state_or_bytes, path)
        with pytest.raises(CheckpointError, match=match) as e:
            read_ddcolor_state(path, model)
        assert "\n" not in str(e.value) and str(path) in str(e.value)
        return str(e.value)

    line = refused(tiny_state, "holds ddcolor-tiny weights .*but the model is ddcolor-large", model="ddcolor-large")
    assert "--model ddcolor-tiny" in line and "ConvNeXt-T" in line
    refused(tiny_state, "ddcolor-large", model="ddcolor_modelscope")     # hub names mean their architecture
    refused({k: v for k, v in tiny_state.items() if "refine_net" not in k}, r"misses 4 keys: refine_net\.0\.0\.bias")
    extra = dict(tiny_state, **{"decoder.extra.weight": torch.zeros(2)})
    refused(extra, r"has 1 unexpected keys: decoder\.extra\.weight")
    both = {k: v for k, v in extra.items() if k != "std"}
    assert "misses 1 keys: std; has 1 unexpected keys" in refused(both, "misses")
    bad = dict(tiny_state)
    bad["decoder.color_decoder.query_feat.weight"] = bad["decoder.color_decoder.query_feat.weight"].clone()
    bad["decoder.color_decoder.query_feat.weight"][0, :3] = float("nan")
    refused(bad, r"NaN or infinite values .*query_feat\.weight \(3 NaN\)")
    wrong = dict(tiny_state, **{"refine_net.0.0.bias": torch.zeros(3)})
    refused(wrong, r"wrong shape: refine_net\.0\.0\.bias \(3,\) \(expected \(2,\)\)")
    refused({"key_encoder.conv1.weight": torch.zeros(2)}, "not a DDColor checkpoint")
    refused(b"", "it is empty")
    refused(b"garbage" * 100, "cannot be read")
    refused([1, 2], "not a state_dict")


def test_load_and_missing_weights(ddcolor_checkpoints, tmp_path):
    net = load_ddcolor(ddcolor_checkpoints("tiny"))
    assert net.size == "tiny" and not net.training
    with pytest.raises(CheckpointError, match=r"`python -m vscolormnet download ddcolor-artistic`") as e:
        resolve_ddcolor_weights(tmp_path / "none.pth", "ddcolor_artistic")      # the hub name picks its file
    assert e.value.param == "--weights"
    with pytest.raises(CheckpointError, match="is a folder"):
        resolve_ddcolor_weights(tmp_path, "ddcolor-tiny")
    assert resolve_ddcolor_weights(ddcolor_checkpoints("tiny"), "ddcolor-tiny") == ddcolor_checkpoints("tiny")
