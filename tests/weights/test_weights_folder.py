"""The default weights folder is private (created 0700; one that others can write to is refused, since
they could swap the checkpoint); a folder or file the user names is their choice and used as it is.

The default folder is the real platformdirs one, moved into the test's temp folder by ``XDG_DATA_HOME``.
"""
from __future__ import annotations

import os
import stat

import pytest

from vscolormnet.__main__ import main
from vscolormnet.weights.checkpoint import (CHECKPOINT_NAME, ENV_WEIGHTS_DIR, CheckpointError, resolve_weights,
                                            weights_dir)
from vscolormnet.weights.download import target_folder


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv(ENV_WEIGHTS_DIR, raising=False)
    assert weights_dir() == tmp_path / "data" / "vscolormnet"
    return tmp_path / "data"


def test_the_default_weights_folder_is_created_0700(data_home):
    old = os.umask(0o002)
    try:
        folder = target_folder(None)
    finally:
        os.umask(old)
    assert folder == data_home / "vscolormnet"
    assert mode(folder) == mode(data_home) == 0o700


def test_a_default_weights_folder_others_can_write_is_refused(data_home, capsys):
    folder = data_home / "vscolormnet"
    folder.mkdir(parents=True)
    (folder / CHECKPOINT_NAME).write_bytes(b"planted")
    os.chmod(folder, 0o777)
    why = f"{folder} is group- or world-writable (mode 0777)"
    with pytest.raises(CheckpointError, match="not yours alone") as e:
        resolve_weights(None)                      # lookup: the planted file is never loaded
    assert why in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="not yours alone") as e:
        target_folder(None)                        # download: nothing is written into it
    assert why in str(e.value)
    code = main(["download", "--no-progress", "--url", "http://127.0.0.1:9/x.pth"])
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert code == 2 and out == "" and "Traceback" not in err
    assert len(lines) == 1 and why in lines[0], err
    assert mode(folder) == 0o777 and sorted(p.name for p in folder.iterdir()) == [CHECKPOINT_NAME]


def test_folders_and_files_the_user_names_are_their_choice(data_home, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    weights = shared / CHECKPOINT_NAME
    weights.write_bytes(b"x")
    assert resolve_weights(weights) == weights
    assert target_folder(shared) == shared
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(shared))
    assert target_folder(None) == shared and resolve_weights(None) == weights
    assert mode(shared) == 0o777
