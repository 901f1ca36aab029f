"""Engine files on disk, independent of TensorRT: names, atomic writes, a lock, a writable folder, logs.

Follows vs-mlrt's engine cache (``vsmlrt.py`` ``trtexec`` path) without its weak spots:

- the file name holds everything that invalidates an engine: stage, padded input size,
  precision, the build settings that change the engine (TF32, optimisation level, workspace
  limit), ONNX checksum, TensorRT version and GPU name (``EngineKey.filename``); anything that
  does not change it (thread counts, log level, the timing cache, …) stays out of it;
- a file is written to a temporary name in the same folder and renamed (``atomic_write``),
  so an interrupted build never leaves a usable-looking engine;
- every engine has a checksum manifest (``graphs.manifest``: sha256, size and the key, written
  after the engine); a cached file is trusted only if it has a sane size, matches its manifest
  (checked *before* TensorRT sees the bytes) and deserializes; otherwise it is rebuilt with a
  warning;
- the folder is configurable, with a writable fallback (user cache, then temp), and used only if
  private (``util.files.make_private_dir``: ours, not group/world-writable, created 0700), since a
  manifest beside an engine proves nothing where others can write;
- the build log is written next to the engine (``<engine>.log``) and kept on failure;
- two processes building the same engine serialise on a lock file.

``EngineCache.load_or_build`` takes the build and deserialize steps as functions, so this
module is fully testable without TensorRT (``tests/test_engine_cache.py`` uses fakes).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, TypeVar

from ..util.files import atomic_write, choose_writable_dir, file_lock, temp_cache_dir, user_cache_dir
from .graphs import manifest

log = logging.getLogger("vscolormnet")
T = TypeVar("T")

ENV_ENGINE_DIR = "VSCOLORMNET_ENGINE_DIR"
MIN_ENGINE_BYTES = 1024          # a serialized engine of any of our graphs is megabytes; 1 KiB is "sane"


def sanitize(text: str, max_len: int = 48) -> str:
    """A file-name-safe form of ``text``: runs of other characters become ``-`` (``"NVIDIA H100 80GB HBM3"`` →
    ``"NVIDIA-H100-80GB-HBM3"``)."""
    out = re.sub(r"[^A-Za-z0-9._]+", "-", str(text)).strip("-.")
    return out[:max_len] or "unknown"


@dataclass(frozen=True, kw_only=True)
class EngineKey:
    """Everything that invalidates a serialized engine.

    stage:        graph name (``encode_key``, …, see ``stages.STAGES``).
    padded_hw:    the padded inference size ``(Hp, Wp)`` the static graph was exported for.
    precision:    ``fp32`` or ``fp16``.
    onnx_sha256:  checksum of the ONNX file the engine is built from (covers weights and graph).
    trt_version:  ``tensorrt.__version__``.
    gpu_name:     the device name (``torch.cuda.get_device_name``), sanitised in the file name.
    optimization_level:  ``builder_optimization_level`` (0…5): picks other tactics.
    workspace_mib:       builder workspace limit in MiB, None = TensorRT's default: bounds the tactics.
    tf32:                whether fp32 layers may use TF32 (``BuilderFlag.TF32``): other numbers.
    """

    stage: str
    padded_hw: tuple[int, int]
    precision: str
    onnx_sha256: str
    trt_version: str
    gpu_name: str
    optimization_level: int
    workspace_mib: int | None
    tf32: bool

    def filename(self) -> str:
        """``<stage>_<Wp>x<Hp>_<precision>[-tf32]_opt<level>_ws<MiB|default>_onnx-<sha16>_trt-<ver>_<gpu>.engine``."""
        hp, wp = self.padded_hw
        math = f"{self.precision}{'-tf32' if self.tf32 else ''}"
        build = f"opt{int(self.optimization_level)}_ws{self.workspace_mib if self.workspace_mib else 'default'}"
        return (f"{self.stage}_{wp}x{hp}_{math}_{build}_onnx-{self.onnx_sha256[:16]}"
                f"_trt-{sanitize(self.trt_version)}_{sanitize(self.gpu_name)}.engine")

    def fields(self) -> dict:
        """The key as JSON-friendly manifest fields (an engine is used only for the same key)."""
        return {"stage": self.stage, "padded_hw": list(self.padded_hw), "precision": self.precision,
                "onnx_sha256": self.onnx_sha256, "trt_version": self.trt_version, "gpu_name": self.gpu_name,
                "optimization_level": int(self.optimization_level), "workspace_mib": self.workspace_mib,
                "tf32": bool(self.tf32)}


def default_engine_dir() -> Path:
    """``$VSCOLORMNET_ENGINE_DIR`` or the per-user cache folder ``…/vscolormnet/trt``."""
    env = os.environ.get(ENV_ENGINE_DIR)
    return Path(env).expanduser() if env else user_cache_dir("trt")


@dataclass(frozen=True, kw_only=True)
class EngineCache:
    """A folder of engines. Build with ``EngineCache.open(folder)`` to get the writable-folder fallback.

    folder:     where engines, their build logs and the timing cache live.
    min_bytes:  a cached file smaller than this is treated as broken and rebuilt.
    """

    folder: Path
    min_bytes: int = MIN_ENGINE_BYTES

    @classmethod
    def open(cls, folder: str | os.PathLike | None = None, *, fallbacks: tuple[str | os.PathLike, ...] | None = None,
             min_bytes: int = MIN_ENGINE_BYTES) -> "EngineCache":
        """``folder`` (default ``default_engine_dir()``) or, if it is not writable or not private, the first
        private, writable fallback (default: the user cache folder, then a per-user temp folder)."""
        if fallbacks is None:
            fallbacks = (user_cache_dir("trt"), temp_cache_dir("trt"))
        preferred = Path(folder).expanduser() if folder else default_engine_dir()
        return cls(folder=choose_writable_dir(preferred, tuple(fallbacks), "engine cache"), min_bytes=min_bytes)

    def path(self, key: EngineKey) -> Path:
        """The engine file for ``key``."""
        return self.folder / key.filename()

    def log_path(self, key: EngineKey) -> Path:
        """The build log written next to the engine."""
        return self.path(key).with_suffix(".log")

    def timing_cache_path(self, trt_version: str, gpu_name: str) -> Path:
        """One timing cache per TensorRT version and GPU, shared by all stages and sizes."""
        return self.folder / f"timing_trt-{sanitize(trt_version)}_{sanitize(gpu_name)}.cache"

    def load_or_build(self, key: EngineKey, build: Callable[[IO[str]], bytes], deserialize: Callable[[bytes], T]
                      ) -> tuple[T, Path]:
        """Deserialize the cached engine for ``key``, or build, write atomically and deserialize it.

        build(log_file) -> bytes:  builds the serialized engine, writing its log to ``log_file``.
        deserialize(data) -> obj:  raises (or returns None) if ``data`` is not a usable engine.
        A cached file that is too small, does not match its checksum manifest or fails to
        deserialize is removed and rebuilt with a warning.
        """
        path = self.path(key)
        with file_lock(path.with_name(path.name + ".lock")):
            if path.is_file():
                obj, problem = self._try_load(path, key, deserialize)
                if obj is not None:
                    log.info("engine %s loaded from cache", path.name)
                    return obj, path
                manifest.discard(path, problem)
            log_path = self.log_path(key)
            log.info("building engine %s (log: %s)", path.name, log_path)
            with open(log_path, "w", encoding="utf-8") as log_file:
                try:
                    data = build(log_file)
                except BaseException:
                    log_file.flush()
                    log.error("engine build for %s failed; its log is %s", path.name, log_path)
                    raise
            if data is None or len(data) < self.min_bytes:
                raise RuntimeError(f"engine build for {path.name} produced no usable engine "
                                   f"({0 if data is None else len(data)} bytes); see {log_path}")
            data = bytes(data)
            obj = deserialize(data)
            if obj is None:
                raise RuntimeError(f"the freshly built engine {path.name} does not deserialize; see {log_path}")
            atomic_write(path, data)
            manifest.write_manifest(path, **key.fields())     # after the engine: it vouches for complete bytes
            return obj, path

    def _try_load(self, path: Path, key: EngineKey, deserialize: Callable[[bytes], T]) -> tuple[T | None, str]:
        size = path.stat().st_size
        if size < self.min_bytes:
            return None, f"is only {size} bytes (truncated?)"
        problem = manifest.problem(path, key.fields())
        if problem is not None:
            return None, problem
        try:
            obj = deserialize(path.read_bytes())
        except Exception as e:  # noqa: BLE001 - any failure means "rebuild"
            return None, f"failed to deserialize ({type(e).__name__}: {e})"
        if obj is None:
            return None, "failed to deserialize"
        return obj, ""
