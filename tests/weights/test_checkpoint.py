"""Bad checkpoints give a clear error naming the file and the first offending keys; ``verify`` turns
each into one line naming ``PATH`` or ``--sha256`` (exit 2, no traceback, nothing on stdout)."""
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from vscolormnet.__main__ import main
from vscolormnet.util.files import file_sha256
from vscolormnet.weights.checkpoint import (
    CHECKPOINT_NAME,
    ENV_WEIGHTS_DIR,
    CheckpointError,
    expected_shapes,
    load_model,
    read_state_dict,
    record_sha256,
    sha256_record_path,
    verify_checkpoint,
)

NAN_KEY, INF_KEY = "decoder.pred.weight", "value_encoder.conv1.weight"
CACHE = Path(os.environ.get("VSCOLORMNET_TEST_CACHE", Path.home() / ".cache" / "vscolormnet-tests"))


def cheap_state_dict():
    """All keys with the right shapes, each backed by a one-element storage (small file)."""
    return {k: (torch.zeros((), dtype=torch.int64) if k.endswith("num_batches_tracked")
                else torch.zeros(1).expand(*s) if s else torch.zeros(()))
            for k, s in expected_shapes().items()}


def test_expected_structure_matches_the_official_checkpoint():
    shapes = expected_shapes()
    assert len(shapes) == 667
    assert shapes["key_encoder.network2.backbone.pos_embed"] == (1, 1370, 384)
    assert shapes["value_encoder.conv1.weight"] == (64, 5, 7, 7)


def test_valid_cheap_checkpoint_loads(tmp_path):
    path = tmp_path / "ok.pth"
    torch.save(cheap_state_dict(), path)
    assert len(read_state_dict(path)) == 667


def test_truncated(tmp_path):
    path = tmp_path / "trunc.pth"
    torch.save(cheap_state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"trunc\.pth cannot be read"):
        read_state_dict(path)


def test_missing_keys(tmp_path):
    sd = cheap_state_dict()
    del sd["decoder.pred.bias"], sd["key_proj.d_proj.weight"]
    path = tmp_path / "missing.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"missing\.pth misses 2 keys: key_proj\.d_proj\.weight, decoder\.pred\.bias"):
        read_state_dict(path)


def test_unexpected_keys(tmp_path):
    sd = cheap_state_dict()
    sd["key_encoder.layer4.0.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "extra.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"1 unexpected keys: key_encoder\.layer4\.0\.conv1\.weight"):
        read_state_dict(path)


def test_wrong_shapes(tmp_path):
    sd = cheap_state_dict()
    sd["value_encoder.conv1.weight"] = torch.zeros(64, 4, 7, 7)
    path = tmp_path / "shape.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"shape\.pth has 1 tensors of the wrong shape: "
                                              r"value_encoder\.conv1\.weight \(64, 4, 7, 7\) \(expected \(64, 5, 7, 7\)\)"):
        read_state_dict(path)


def test_pickle_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match=r"list\.pth is not a state_dict"):
        read_state_dict(path)


def test_arbitrary_pickle_is_refused_by_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match=r"evil\.pth cannot be read"):
        read_state_dict(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        read_state_dict(tmp_path)


# ------------------------------------------------------------------ NaN / inf values
def nan_inf_copy(parity_checkpoint: Path) -> Path:
    """The seeded parity checkpoint with one NaN in NAN_KEY and one +inf in INF_KEY (cached like it)."""
    path = CACHE / "colormnet_random_seed0_nan_inf_v1.pth"
    if not path.exists():
        sd = torch.load(parity_checkpoint, map_location="cpu", weights_only=True)
        sd[NAN_KEY].view(-1)[7] = float("nan")
        sd[INF_KEY].view(-1)[3] = float("inf")
        tmp = path.with_name(path.name + ".partial")
        torch.save(sd, tmp)
        os.replace(tmp, path)
    return path


@pytest.fixture(scope="session")
def nan_inf_checkpoint(parity_checkpoint) -> Path:  # noqa: D103
    return nan_inf_copy(parity_checkpoint)


def test_nan_and_inf_are_refused_on_load(nan_inf_checkpoint):
    with pytest.raises(CheckpointError) as e:
        read_state_dict(nan_inf_checkpoint)
    msg = str(e.value)
    assert str(nan_inf_checkpoint) in msg and "2 tensors with NaN or infinite values" in msg
    assert f"{NAN_KEY} (1 NaN)" in msg and f"{INF_KEY} (1 inf)" in msg and "\n" not in msg


def test_non_finite_cheap_checkpoint(tmp_path):
    sd = cheap_state_dict()
    sd["key_proj.d_proj.weight"] = torch.full((1,), float("-inf")).expand(*sd["key_proj.d_proj.weight"].shape)
    path = tmp_path / "inf.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"inf\.pth has 1 tensors with NaN or infinite values .*"
                                              r"key_proj\.d_proj\.weight \(\d+ inf\)"):
        load_model(path)


# ------------------------------------------------------------------ verify: one line per bad input
def _fails(capsys, argv, *needles) -> str:
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, err
    assert out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err  # nothing but the error line
    line = err.strip()
    assert line.startswith(f"{argv[0]}: error: "), line
    for needle in needles:
        assert needle in line, line
    return line


def test_verify_refuses_nan_and_inf(capsys, nan_inf_checkpoint):
    _fails(capsys, ["verify", str(nan_inf_checkpoint), "--json"], "PATH", str(nan_inf_checkpoint),
           f"{NAN_KEY} (1 NaN)", f"{INF_KEY} (1 inf)")


def test_verify_path_missing_or_a_folder(tmp_path, capsys):
    _fails(capsys, ["verify", str(tmp_path / "nope.pth")], "PATH", "does not exist")
    _fails(capsys, ["verify", str(tmp_path)], "PATH", "is a folder", CHECKPOINT_NAME)


@pytest.mark.parametrize("kind", ["truncated", "random", "zip", "list", "empty"])
def test_verify_corrupt_files(tmp_path, capsys, kind):
    path = tmp_path / f"{kind}.pth"
    if kind in ("truncated", "zip"):
        torch.save(cheap_state_dict(), path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] if kind == "truncated" else data[:2000] + os.urandom(2000))
    elif kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "list":
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(b"")
    _fails(capsys, ["verify", str(path)], "PATH", str(path))


def test_verify_sha256_checks(tmp_path, capsys):
    path = tmp_path / "ok.pth"
    torch.save(cheap_state_dict(), path)
    digest = file_sha256(path)
    # a malformed pin is refused before the file is even looked at
    _fails(capsys, ["verify", str(tmp_path / "nope.pth"), "--sha256", "12g4"], "--sha256", "64 hexadecimal digits")
    _fails(capsys, ["verify", str(path), "--sha256", "0" * 64], "--sha256 pins", digest)
    assert main(["verify", str(path), "--sha256", digest.upper(), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["sha256"] == digest and data["matches_record"] is None
    record_sha256(path, digest)
    assert verify_checkpoint(path).matches_record is True
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the record was written atomically
    sha256_record_path(path).write_text("not a hash\n")
    _fails(capsys, ["verify", str(path)], sha256_record_path(path).name, "does not hold a SHA-256")


def test_verify_default_checkpoint_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path))
    _fails(capsys, ["verify"], str(tmp_path / CHECKPOINT_NAME), "not found", "python -m vscolormnet download")
