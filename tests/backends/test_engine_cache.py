"""Engine cache without TensorRT: names, atomic writes, checksum manifests, rebuild of broken files, folder
fallback, logs (fake build and deserialize functions stand in for TensorRT)."""
from __future__ import annotations

import logging
import os
import sys

import pytest

from vscolormnet.backends import engine_cache as ec
from vscolormnet.backends.engine_cache import EngineCache, EngineKey
from vscolormnet.backends.graphs import manifest
from vscolormnet.util.files import atomic_write, file_sha256, stdout_to_stderr

ENGINE = b"ENGINE" + bytes(range(256)) * 8          # 2 KiB: above MIN_ENGINE_BYTES


def key(**kw) -> EngineKey:
    fields = dict(stage="encode_key", padded_hw=(336, 560), precision="fp16", onnx_sha256="ab" * 32,
                  trt_version="11.4.0.106", gpu_name="NVIDIA H100 80GB HBM3", optimization_level=3,
                  workspace_mib=None, tf32=False)
    fields.update(kw)
    return EngineKey(**fields)


class FakeTrt:
    """Stands in for TensorRT: 'engines' are bytes that start with ENGINE."""

    def __init__(self, payload=ENGINE):
        self.payload = payload
        self.builds = 0
        self.loads = 0
        self.seen = []          # every byte string handed to deserialize

    def build(self, log_file):
        self.builds += 1
        log_file.write("[INFO] fake build\n")
        return self.payload

    def deserialize(self, data: bytes):
        self.loads += 1
        self.seen.append(data)
        if not data.startswith(b"ENGINE"):
            raise RuntimeError("not an engine")
        return ("engine", len(data))


# ---- names ---------------------------------------------------------------------------------------
def test_name_holds_everything_that_invalidates_an_engine():
    name = key().filename()
    assert name == ("encode_key_560x336_fp16_opt3_wsdefault_onnx-abababababababab_trt-11.4.0.106_"
                    "NVIDIA-H100-80GB-HBM3.engine")
    assert key(precision="fp32", tf32=True, optimization_level=5, workspace_mib=2048).filename().startswith(
        "encode_key_560x336_fp32-tf32_opt5_ws2048_onnx-")
    variants = [key(stage="decode"), key(padded_hw=(336, 448)), key(precision="fp32"),
                key(onnx_sha256="cd" * 32), key(trt_version="10.13.0"), key(gpu_name="NVIDIA GeForce RTX 4090"),
                key(tf32=True), key(optimization_level=5), key(workspace_mib=1024), key(workspace_mib=2048)]
    names = {v.filename() for v in variants} | {name}
    assert len(names) == len(variants) + 1


def test_every_engine_setting_is_a_key_field():
    """Each TRT spec field is either in the key (it changes the engine) or only says where files live or
    how fast a build is; a new option must be sorted into one of the two."""
    from dataclasses import fields

    from vscolormnet.backends import TRT
    key_fields = {f.name for f in fields(EngineKey)}
    not_in_key = {"engine_dir", "onnx_dir", "timing_cache", "device_id", "fp16"}   # device: the key has the GPU name
    options = {f.name for f in fields(TRT)}
    assert options - not_in_key <= key_fields, f"options missing from EngineKey: {options - not_in_key - key_fields}"
    assert set(key().fields()) == key_fields, "the manifest records every key field"


def test_engine_of_other_build_settings_is_rebuilt(tmp_path, caplog):
    """An engine whose manifest says it was built with TF32 is not used for a build without it."""
    cache, path = _built(tmp_path)
    manifest.write_manifest(path, **key(tf32=True).fields())
    fake = FakeTrt()
    with caplog.at_level(logging.WARNING, logger="vscolormnet"):
        cache.load_or_build(key(), fake.build, fake.deserialize)
    assert fake.builds == 1 and manifest.problem(path, key().fields()) is None
    assert any("tf32=True" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


@pytest.mark.parametrize("gpu", ["NVIDIA GeForce RTX 4090", "A/B\\C:D*E?", "  ", "Quadro RTX 6000 (rev. 2)"])
def test_gpu_name_is_sanitised(gpu):
    name = key(gpu_name=gpu).filename()
    assert "/" not in name and "\\" not in name and " " not in name and ":" not in name
    assert name.endswith(".engine")
    assert ec.sanitize("  ") == "unknown"


# ---- atomic writes -------------------------------------------------------------------------------
def test_atomic_write_interrupted_leaves_no_file(tmp_path):
    target = tmp_path / "x.engine"

    def writer(f):
        f.write(b"half an engine")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, writer)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == [], "the temporary file must be removed too"


def test_atomic_write_failure_keeps_the_previous_file(tmp_path):
    target = tmp_path / "x.engine"
    atomic_write(target, b"old")

    def writer(f):
        f.write(b"new")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, writer)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.engine"]


def test_build_interrupted_leaves_no_engine(tmp_path):
    cache = EngineCache.open(tmp_path)

    def build(log_file):
        log_file.write("[INFO] started\n")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.load_or_build(key(), build, FakeTrt().deserialize)
    assert not cache.path(key()).exists()
    assert "started" in cache.log_path(key()).read_text(), "the build log is kept on failure"


# ---- load or build -------------------------------------------------------------------------------
def test_builds_once_then_loads(tmp_path):
    fake = FakeTrt()
    cache = EngineCache.open(tmp_path)
    obj, path = cache.load_or_build(key(), fake.build, fake.deserialize)
    assert obj == ("engine", len(ENGINE)) and fake.builds == 1
    assert path == tmp_path / key().filename() and path.read_bytes() == ENGINE
    assert cache.log_path(key()).read_text() == "[INFO] fake build\n"
    assert cache.log_path(key()).parent == path.parent
    assert manifest.problem(path, key().fields()) is None, "the engine has a matching checksum manifest"
    obj2, _ = cache.load_or_build(key(), fake.build, fake.deserialize)
    assert obj2 == obj and fake.builds == 1


def _built(tmp_path):
    fake = FakeTrt()
    cache = EngineCache.open(tmp_path)
    cache.load_or_build(key(), fake.build, fake.deserialize)
    return cache, cache.path(key())


def _flip_middle_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip_one_byte", "truncate_sane_size", "no_manifest", "other_key", "garbage"])
def test_engine_not_matching_its_manifest_is_rebuilt_before_deserializing(tmp_path, caplog, damage):
    cache, path = _built(tmp_path)
    size = path.stat().st_size
    if damage == "flip_one_byte":
        _flip_middle_byte(path)
        assert path.stat().st_size == size
    elif damage == "truncate_sane_size":
        path.write_bytes(ENGINE[:-100])
        assert path.stat().st_size >= cache.min_bytes
    elif damage == "no_manifest":
        manifest.manifest_path(path).unlink()
    elif damage == "other_key":   # an engine of another GPU copied over this name, with its own manifest
        manifest.write_manifest(path, **key(gpu_name="NVIDIA GeForce RTX 4090").fields())
    else:
        manifest.manifest_path(path).write_text("{ not json")
    damaged = path.read_bytes()
    fake = FakeTrt()
    with caplog.at_level(logging.WARNING, logger="vscolormnet"):
        obj, _ = cache.load_or_build(key(), fake.build, fake.deserialize)
    assert fake.builds == 1 and obj == ("engine", len(ENGINE)) and path.read_bytes() == ENGINE
    if damage in ("flip_one_byte", "truncate_sane_size"):
        assert damaged not in fake.seen, "damaged bytes must never reach TensorRT"
    assert manifest.problem(path, key().fields()) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and "rebuilding" in warnings[0]


@pytest.mark.parametrize("corruption", ["garbage", "truncated"])
def test_corrupt_cached_engine_is_rebuilt_with_a_warning(tmp_path, caplog, corruption):
    fake = FakeTrt()
    cache = EngineCache.open(tmp_path)
    path = cache.path(key())
    path.write_bytes(b"X" * 4096 if corruption == "garbage" else ENGINE[:100])
    with caplog.at_level(logging.WARNING, logger="vscolormnet"):
        obj, _ = cache.load_or_build(key(), fake.build, fake.deserialize)
    assert fake.builds == 1 and obj == ("engine", len(ENGINE))
    assert path.read_bytes() == ENGINE
    assert any("rebuilding" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_deserialize_returning_none_counts_as_corrupt(tmp_path):
    cache = EngineCache.open(tmp_path)
    cache.path(key()).write_bytes(ENGINE)
    manifest.write_manifest(cache.path(key()), **key().fields())      # intact bytes that TensorRT refuses
    fake = FakeTrt()
    results = iter([None, ("engine", 1)])
    obj, _ = cache.load_or_build(key(), fake.build, lambda data: next(results))
    assert obj == ("engine", 1) and fake.builds == 1


def test_a_build_that_does_not_deserialize_is_not_written(tmp_path):
    cache = EngineCache.open(tmp_path)
    fake = FakeTrt(payload=b"NOT AN ENGINE" * 200)
    with pytest.raises(RuntimeError):
        cache.load_or_build(key(), fake.build, fake.deserialize)
    assert not cache.path(key()).exists() and not manifest.manifest_path(cache.path(key())).exists()


def test_an_empty_build_is_an_error_naming_the_log(tmp_path):
    cache = EngineCache.open(tmp_path)
    with pytest.raises(RuntimeError, match=r"\.log"):
        cache.load_or_build(key(), lambda log_file: b"", FakeTrt().deserialize)
    assert not cache.path(key()).exists()


# ---- folders -------------------------------------------------------------------------------------
def test_unwritable_folder_falls_back(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    unwritable = blocker / "engines"           # cannot be created, even as root
    fallback = tmp_path / "fallback"
    with caplog.at_level(logging.WARNING, logger="vscolormnet"):
        cache = EngineCache.open(unwritable, fallbacks=(fallback,))
    assert cache.folder == fallback
    assert any("not writable" in r.getMessage() for r in caplog.records)
    fake = FakeTrt()
    _, path = cache.load_or_build(key(), fake.build, fake.deserialize)
    assert path.parent == fallback


def test_no_writable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="no writable engine cache folder"):
        EngineCache.open(blocker / "a", fallbacks=(blocker / "b",))


def test_default_folder_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(ec.ENV_ENGINE_DIR, str(tmp_path / "engines"))
    assert EngineCache.open().folder == tmp_path / "engines"
    monkeypatch.delenv(ec.ENV_ENGINE_DIR)
    assert ec.default_engine_dir().parts[-2:] == ("vscolormnet", "trt")


def test_timing_cache_is_per_version_and_gpu(tmp_path):
    cache = EngineCache.open(tmp_path)
    a = cache.timing_cache_path("11.4.0", "NVIDIA H100")
    assert a.parent == tmp_path and a != cache.timing_cache_path("11.4.0", "NVIDIA H200")
    assert a != cache.timing_cache_path("10.13.0", "NVIDIA H100")


# ---- the pipe -------------------------------------------------------------------------------------
def test_stdout_to_stderr_protects_the_pipe(capfd):
    with stdout_to_stderr():
        os.write(1, b"native library chatter\n")
        print("python chatter")
    print("frame data")
    out, err = capfd.readouterr()
    assert out == "frame data\n"
    assert "native library chatter" in err and "python chatter" in err



def _same_file(fd_a: int, fd_b: int) -> bool:
    a, b = os.fstat(fd_a), os.fstat(fd_b)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def test_stdout_to_stderr_is_reentrant_and_restores_after_overlapping_threads(capfd):
    """The first thread in saves fd 1 and sys.stdout, the last one out restores them, whatever the order."""
    import threading
    original = os.dup(1)
    sys_stdout = sys.stdout
    try:
        with stdout_to_stderr():
            with stdout_to_stderr():                          # nested in one thread
                assert _same_file(1, 2)
            assert _same_file(1, 2) and sys.stdout is sys.stderr
        assert _same_file(1, original) and sys.stdout is sys_stdout
        # A enters, B enters, A leaves first (the order that used to leave fd 1 on stderr), B leaves.
        a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
        seen = {}

        def thread_a():
            with stdout_to_stderr():
                a_in.set()
                b_in.wait(5)
            a_out.set()

        def thread_b():
            a_in.wait(5)
            with stdout_to_stderr():
                b_in.set()
                a_out.wait(5)
                seen["b after a left"] = _same_file(1, 2)
        threads = [threading.Thread(target=f) for f in (thread_a, thread_b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert seen == {"b after a left": True}          # A leaving did not end B's redirect
        assert _same_file(1, original) and not _same_file(1, 2) and sys.stdout is sys_stdout
        print("frame data")
        out, _ = capfd.readouterr()
        assert out == "frame data\n"
    finally:
        os.close(original)

def test_file_sha256_is_memoised_but_tracks_changes(tmp_path):
    f = tmp_path / "m.onnx"
    f.write_bytes(b"a")
    h1 = file_sha256(f)
    assert h1 == file_sha256(f)
    f.write_bytes(b"bb")
    assert file_sha256(f) != h1
