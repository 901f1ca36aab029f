"""Cache folders are trusted only when they are ours (util.files: private_problem, make_private_dir,
choose_writable_dir), as a hostile user on the same machine would try it: by creating the shared temp
fallback ``$TMPDIR/vscolormnet-<uid>`` first, world-writable or owned by them.

The temp folder is a fresh one per test (``tempfile.tempdir``), and the preferred folders are made
unwritable the way a user meets it (a read-only cache path: here a file where a folder should be,
which stops root too).
"""
from __future__ import annotations

import logging
import os
import stat
import tempfile

import pytest

from vscolormnet.backends.engine_cache import EngineCache
from vscolormnet.util import files
from vscolormnet.util.errors import UserError
from vscolormnet.util.files import choose_writable_dir, make_private_dir, private_problem, temp_cache_dir

ROOT_ONLY = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                               reason="chown to another uid needs root (the test machines run as root)")
NOBODY = 65534


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def tmpdir_root(tmp_path, monkeypatch):
    """A fresh system temp folder for this test (what ``$TMPDIR`` points at), and an unwritable user cache."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    blocker = tmp_path / "read-only-home"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    return root


@pytest.fixture
def unwritable(tmp_path):
    return tmp_path / "read-only-home" / "cache" / "vscolormnet" / "onnx"


def choose(unwritable):
    return choose_writable_dir(unwritable, (files.user_cache_dir("onnx"), temp_cache_dir("onnx")), "ONNX cache")


def test_the_temp_fallback_is_created_0700_whatever_the_umask(tmpdir_root, unwritable, caplog):
    old = os.umask(0o002)                 # a user-private-group umask: mkdir alone would give 0775
    try:
        with caplog.at_level(logging.WARNING, logger="vscolormnet"):
            folder = choose(unwritable)
    finally:
        os.umask(old)
    assert folder == temp_cache_dir("onnx") == tmpdir_root / f"vscolormnet-{os.getuid()}" / "onnx"
    assert mode(folder) == mode(folder.parent) == 0o700
    assert [r.getMessage() for r in caplog.records] == [
        f"ONNX cache folder {unwritable} is not writable; using {folder} instead"]


@pytest.mark.parametrize("planted_mode", [0o777, 0o1777, 0o770], ids=["0777", "sticky-1777", "group-0770"])
def test_a_world_or_group_writable_temp_fallback_is_refused(tmpdir_root, unwritable, caplog, planted_mode):
    planted = tmpdir_root / f"vscolormnet-{os.getuid()}"
    (planted / "onnx").mkdir(parents=True)
    os.chmod(planted, planted_mode)          # the sticky bit is no excuse: a cache folder is ours alone
    with caplog.at_level(logging.WARNING, logger="vscolormnet"):
        folder = choose(unwritable)
    assert not folder.is_relative_to(planted)
    assert folder.parent.parent == tmpdir_root and folder.parent.name.startswith(f"vscolormnet-{os.getuid()}-")
    assert folder.name == "onnx" and mode(folder) == mode(folder.parent) == 0o700
    assert private_problem(folder) is None
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refusing")]
    assert refusals == [(f"refusing ONNX cache folder {planted / 'onnx'}: {planted} is group- or world-writable "
                         f"(mode {planted_mode:04o}); using {folder} instead")]
    assert mode(planted) == planted_mode       # judged, never changed
    assert choose(unwritable) == folder        # one fresh folder per process, not one per call


@ROOT_ONLY
def test_a_temp_fallback_owned_by_someone_else_is_refused(tmpdir_root, unwritable, caplog):
    planted = tmpdir_root / f"vscolormnet-{os.getuid()}"
    (planted / "onnx").mkdir(parents=True, mode=0o700)
    os.chmod(planted, 0o700)
    os.chown(planted, NOBODY, NOBODY)          # private, but not ours: its owner can plant graphs
    with caplog.at_level(logging.WARNING, logger="vscolormnet"):
        folder = choose(unwritable)
    assert not folder.is_relative_to(planted) and private_problem(folder) is None
    assert f"{planted} is owned by uid {NOBODY}, not by you (uid 0)" in caplog.text


@ROOT_ONLY
def test_a_subfolder_or_a_link_owned_by_someone_else_is_refused(tmpdir_root, unwritable, tmp_path):
    ours = tmpdir_root / f"vscolormnet-{os.getuid()}"
    (ours / "onnx").mkdir(parents=True, mode=0o700)
    os.chmod(ours, 0o700)
    os.chown(ours / "onnx", NOBODY, NOBODY)        # every component below the temp root is checked
    assert private_problem(ours / "onnx") == f"{ours / 'onnx'} is owned by uid {NOBODY}, not by you (uid 0)"
    assert not choose(unwritable).is_relative_to(ours)
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    link = tmpdir_root / "vscolormnet-link"
    link.symlink_to(target)
    os.lchown(link, NOBODY, NOBODY)                # their link into a folder of ours: where it points is theirs
    assert "is a link owned by uid 65534" in private_problem(link / "onnx")


def test_an_existing_private_folder_is_used_as_it_is(tmp_path, caplog):
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    readable = tmp_path / "readable"
    readable.mkdir(mode=0o755)                     # readable by others, writable only by us: fine
    os.chmod(readable, 0o755)
    with caplog.at_level(logging.WARNING, logger="vscolormnet"):
        assert choose_writable_dir(mine, (), "engine cache") == mine
        assert choose_writable_dir(readable, (), "engine cache") == readable
    assert caplog.records == []
    assert mode(mine) == 0o700 and mode(readable) == 0o755     # an existing folder is never chmod-ed


def test_a_group_writable_chosen_folder_is_refused_for_the_next_private_one(tmp_path, caplog):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o775)
    with caplog.at_level(logging.WARNING, logger="vscolormnet"):
        cache = EngineCache.open(shared, fallbacks=(tmp_path / "own",))
    assert cache.folder == tmp_path / "own" and mode(cache.folder) == 0o700
    assert [r.getMessage() for r in caplog.records] == [
        (f"refusing engine cache folder {shared}: {shared} is group- or world-writable (mode 0775); "
         f"using {tmp_path / 'own'} instead")]


def test_no_private_folder_is_one_line(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UserError) as e:
        choose_writable_dir(shared, (tmp_path / "a-file" / "x",), "ONNX cache")
    text = str(e.value)
    assert "\n" not in text and text.startswith("no writable ONNX cache folder that is yours alone: tried ")
    assert f"{shared} ({shared} is group- or world-writable (mode 0777))" in text
    assert f"{tmp_path / 'a-file' / 'x'} (is not writable" in text


def test_make_private_dir_creates_only_the_missing_components(tmp_path):
    parent = tmp_path / "parent"
    parent.mkdir()
    os.chmod(parent, 0o751)
    assert make_private_dir(parent / "a" / "b") is None
    assert mode(parent) == 0o751 and mode(parent / "a") == mode(parent / "a" / "b") == 0o700
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        make_private_dir(tmp_path / "file" / "sub")
