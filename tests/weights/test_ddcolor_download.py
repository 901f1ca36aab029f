"""download ddcolor-… / verify against a local stand-in for the Hugging Face hub (``fake_hub``; no internet).

Real parts throughout: huggingface_hub's own ``model_info`` parses the hub-shaped JSON, our urllib
transport follows the hub's redirect and resumes with Range, the seeded tiny checkpoint
(``ddcolor_fixtures``) is the file. Full transfers: one through a real ``python -m vscolormnet``
process (the offline default lifted, ``$HF_ENDPOINT`` honoured), one interrupted and resumed, one
holding NaN; the failure cases serve a few MB that are not a checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from project_paths import ROOT

from vscolormnet.__main__ import main
from vscolormnet.util import offline
from vscolormnet.util.errors import CheckpointError, DownloadError
from vscolormnet.util.files import file_sha256
from vscolormnet.weights.ddcolor_download import NOTICE_NAME, download_ddcolor, source_path, verify_ddcolor
from vscolormnet.weights.ddcolor_hub import default_ddcolor_weights, hub_file, resolve_ddcolor_weights

from .fake_hub import COMMIT, FakeHub

TINY_REPO, LARGE_REPO = "piddnad/ddcolor_paper_tiny", "piddnad/ddcolor_modelscope"
HUB_FILE = "pytorch_model.bin"
SMALL = os.urandom(3 << 20)


@pytest.fixture()
def hub(monkeypatch):
    h = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)   # the suite's own default; a user's is tested below
    yield h
    h.close()


@pytest.fixture(scope="module")
def tiny(ddcolor_checkpoints) -> Path:
    return ddcolor_checkpoints("tiny")


def _fails(capsys, argv, *needles, rc: int) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == rc and out == "" and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and lines[0].startswith(f"{argv[0]}: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------ the look-up (huggingface_hub on hub-shaped JSON)
def test_look_up_gives_the_pinned_url_size_lfs_hash_and_licence(hub):
    hub.add(TINY_REPO, HUB_FILE, SMALL)
    f = hub_file("ddcolor-tiny")
    assert (f.variant.repo, f.revision, f.filename, f.size) == (TINY_REPO, COMMIT, HUB_FILE, len(SMALL))
    assert f.sha256 == hashlib.sha256(SMALL).hexdigest()
    assert f.url == f"{hub.endpoint}/{TINY_REPO}/resolve/{COMMIT}/{HUB_FILE}"       # pinned to the commit
    assert f.licence == "apache-2.0" and "DDColor code Apache-2.0" in f.licence_line()
    assert hub_file("ddcolor_paper_tiny").sha256 == f.sha256                        # the hub's name too
    hub.add(TINY_REPO, "model.safetensors", b"st" * 100)
    assert hub_file("ddcolor-tiny").filename == "model.safetensors"                 # preferred when published
    hub.licence = None
    assert "see the model card https://huggingface.co/piddnad/ddcolor_paper_tiny" in hub_file("ddcolor-tiny") \
        .licence_line()


def test_look_up_refusals_are_one_line(hub, monkeypatch):
    with pytest.raises(DownloadError, match=r"the hub answered HTTP 404 for .*piddnad/ddcolor_paper_tiny"):
        hub_file("ddcolor-tiny")
    hub.add(TINY_REPO, "weights.ckpt", SMALL)
    with pytest.raises(DownloadError, match=r"holds none of model.safetensors, pytorch_model.bin"):
        hub_file("ddcolor-tiny")
    hub.add(TINY_REPO, HUB_FILE, SMALL, lfs=False)
    with pytest.raises(DownloadError, match="no LFS SHA-256"):
        hub_file("ddcolor-tiny")
    with pytest.raises(DownloadError, match=r"cannot reach the hub at http://127.0.0.1:9 .*ConnectError"):
        hub_file("ddcolor-tiny", endpoint="http://127.0.0.1:9", timeout=5)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")                                        # the user's own setting
    n = len(hub.requests)
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE=1 is set: the hub is not asked"):
        hub_file("ddcolor-tiny")
    assert len(hub.requests) == n


# ------------------------------------------------------------------ full transfers
@pytest.mark.slow
def test_download_command_fetches_checks_records_and_verify_knows_the_file(hub, tiny, tmp_path, monkeypatch, capsys):
    """A real process: HF_HUB_OFFLINE unset (our default lifted for the download only), $HF_ENDPOINT, the
    default folder from $VSCOLORMNET_WEIGHTS_DIR, the licence on stderr, nothing on stdout."""
    hub.add(TINY_REPO, HUB_FILE, tiny)
    d = tmp_path / "weights"
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT=hub.endpoint, VSCOLORMNET_WEIGHTS_DIR=str(d))
    run = subprocess.run([sys.executable, "-m", "vscolormnet", "download", "ddcolor-tiny", "--no-progress"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    final = d / "ddcolor_paper_tiny.bin"
    sha = file_sha256(tiny)
    assert file_sha256(final) == sha
    assert sorted(p.name for p in d.iterdir()) == sorted([".ddcolor_paper_tiny.lock", final.name, final.name +
                                                          ".sha256", final.name + ".source.json", NOTICE_NAME])
    assert f"SHA-256 {sha} = the hub's LFS SHA-256 of {TINY_REPO}/{HUB_FILE} at {COMMIT[:12]}" in run.stderr
    assert "licence: DDColor code Apache-2.0" in run.stderr and "licence: apache-2.0" in run.stderr
    source = json.loads(source_path(final).read_text())
    assert (source["repo"], source["revision"], source["sha256"], source["model"]) == \
           (TINY_REPO, COMMIT, sha, "ddcolor-tiny")
    assert "Apache-2.0" in (d / NOTICE_NAME).read_text()

    monkeypatch.setenv("VSCOLORMNET_WEIGHTS_DIR", str(d))
    assert default_ddcolor_weights("ddcolor-tiny") == final == resolve_ddcolor_weights(None, "ddcolor_paper_tiny")
    n = len(hub.requests)
    again = download_ddcolor("ddcolor-tiny", progress=False)                # verified against its record: no request
    assert not again.downloaded and again.sha256 == sha and len(hub.requests) == n

    assert main(["verify", "ddcolor-tiny", "--json"]) == 0                  # a model name: its downloaded file
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert (data["kind"], data["model"], data["finite"], data["matches_record"]) == ("ddcolor", "ddcolor-tiny",
                                                                                      True, True)
    assert data["tensors"] == len(torch.load(tiny, weights_only=True, mmap=True)) and data["hub_checked"] is False
    assert "ddcolor-tiny weights (ConvNeXt-T)" in err and "not checked offline" in err
    assert main(["verify", str(final), "--hub"]) == 0
    err = capsys.readouterr().err
    assert f"the hub's current hash: the same ({TINY_REPO})" in err
    res = verify_ddcolor(tiny, ask_hub=True)                 # no record: compared with every tiny repository
    assert res.recorded is None and res.hub_match == TINY_REPO


def test_interrupted_download_keeps_its_partial_and_resumes(hub, tiny, tmp_path):
    cut = 64 << 20
    hub.add(TINY_REPO, HUB_FILE, tiny, cut=cut)
    d = tmp_path / "w"
    with pytest.raises(DownloadError, match="(interrupted|incomplete).*run the same command again to resume"):
        download_ddcolor("ddcolor-tiny", d, progress=False)
    final = d / "ddcolor_paper_tiny.bin"
    (partial,) = d.glob("ddcolor_paper_tiny.*.partial.bin")
    got = partial.stat().st_size
    assert not final.exists() and 0 < got <= cut
    assert partial.name == f"ddcolor_paper_tiny.{file_sha256(tiny)[:16]}.partial.bin"   # one revision per partial
    res = download_ddcolor("ddcolor-tiny", d, progress=False)
    assert res.downloaded and res.sha256 == file_sha256(tiny) == file_sha256(final)
    assert hub.blob_requests()[-1] == f"bytes={got}-"                              # resumed through the redirect
    assert not list(d.glob("*.partial*"))


def test_a_non_finite_download_is_refused_and_deleted(hub, tiny, tmp_path, capsys):
    state = torch.load(tiny, weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key].view(-1)[0] = float("nan")
    bad = tmp_path / "nan.bin"
    torch.save(state, bad)
    del state
    hub.add(TINY_REPO, HUB_FILE, bad)
    d = tmp_path / "w"
    _fails(capsys, ["download", "ddcolor-tiny", "--dir", str(d), "--no-progress"],
           "not a usable ddcolor-tiny checkpoint and was deleted", "NaN or infinite", key, rc=1)
    assert list(d.glob("ddcolor_paper_tiny*")) == []


# ------------------------------------------------------------------ refusals (small files)
def test_a_file_that_differs_from_the_hubs_hash_is_refused_and_deleted(hub, tmp_path, capsys):
    hub.add(LARGE_REPO, HUB_FILE, SMALL, sha256="ab" * 32)
    d = tmp_path / "w"
    _fails(capsys, ["download", "ddcolor-large", "--dir", str(d), "--no-progress"], "SHA-256 mismatch",
           hashlib.sha256(SMALL).hexdigest(), f"the hub's LFS record of {LARGE_REPO}/{HUB_FILE} says {'ab' * 32}",
           rc=1)
    assert list(d.glob("ddcolor_modelscope*")) == []
    hub.add(LARGE_REPO, HUB_FILE, SMALL)                       # the right hash, but not a checkpoint
    _fails(capsys, ["download", "ddcolor-large", "--dir", str(d), "--no-progress"],
           "not a usable ddcolor-large checkpoint and was deleted", "cannot be read", rc=1)
    assert list(d.glob("ddcolor_modelscope*")) == []
    _fails(capsys, ["download", "ddcolor-large", "--dir", str(d), "--sha256", "cd" * 32, "--no-progress"],
           f"--sha256 pins {'cd' * 32}; nothing was downloaded", rc=1)


def test_a_stale_partial_of_another_revision_is_not_resumed(hub, tmp_path):
    d = tmp_path / "w"
    d.mkdir(mode=0o700)
    stale = d / f"ddcolor_modelscope.{'0' * 16}.partial.bin"
    stale.write_bytes(b"x" * 1000)
    hub.add(LARGE_REPO, HUB_FILE, SMALL)
    with pytest.raises(DownloadError, match="not a usable ddcolor-large checkpoint"):
        download_ddcolor("ddcolor-large", d, progress=False)
    assert not stale.exists() and hub.blob_requests() == [None]          # fetched from byte 0


def test_bad_arguments_are_one_line_before_any_request(hub, tmp_path, capsys, monkeypatch):
    dl = ["download", "--dir", str(tmp_path), "--no-progress"]
    _fails(capsys, dl + ["ddcolor-huge"], "MODEL must be colormnet or one of ddcolor-large, ddcolor-tiny, "
                                          "ddcolor-artistic, ddcolor-paper", "'ddcolor-huge'", rc=2)
    _fails(capsys, dl + ["ddcolor-large", "--url", "https://example.org/x.bin"], "--url applies to the ColorMNet",
           rc=2)
    _fails(capsys, dl + ["ddcolor-large", "--sha256", "xyz"], "--sha256", "64 hexadecimal digits", rc=2)
    _fails(capsys, dl + ["ddcolor-large", "--timeout", "0"], "--timeout", rc=2)
    _fails(capsys, dl + ["colormnet", "--url", "ftp://example.org/x.pth"], "--url must be an http", rc=2)  # ColorMNet's
    assert hub.requests == []
    _fails(capsys, dl + ["ddcolor-artistic"], "HTTP 404", "piddnad/ddcolor_artistic", rc=1)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")                  # set by the user before the process started
    monkeypatch.setattr(offline, "_defaulted", False)
    _fails(capsys, dl + ["ddcolor-paper"], "HF_HUB_OFFLINE=1 is set", rc=1)


def test_missing_weights_name_the_download_command(tmp_path, monkeypatch, capsys):
    """Nothing is downloaded at run time: colorize-image without --weights finds the downloaded file or says how."""
    monkeypatch.setenv("VSCOLORMNET_WEIGHTS_DIR", str(tmp_path / "none"))
    with pytest.raises(CheckpointError, match=r"the ddcolor-large weights are not downloaded .*ddcolor_modelscope.bin "
                                              r"is missing.*`python -m vscolormnet download ddcolor-large`"):
        resolve_ddcolor_weights(None, "ddcolor-large")
    with pytest.raises(CheckpointError, match=r"`python -m vscolormnet download ddcolor-artistic`") as e:
        resolve_ddcolor_weights(tmp_path / "x.pth", "ddcolor_artistic")
    assert e.value.param == "--weights"
    assert default_ddcolor_weights("ddcolor_paper").name == "ddcolor_paper.bin"
    image = tmp_path / "in.png"
    image.write_bytes(b"")
    _fails(capsys, ["colorize-image", str(image), "-o", str(tmp_path / "out.png"), "--model", "ddcolor-tiny"],
           "the ddcolor-tiny weights are not downloaded", "`python -m vscolormnet download ddcolor-tiny`", rc=2)
