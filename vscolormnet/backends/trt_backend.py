"""TensorRT backend: one engine per stage graph, built from the checked ONNX files with the Python API.

- Needs TensorRT ≥ 10 (``availability.MIN_TRT_MAJOR``): older versions are refused with the
  install command, since they can neither build strongly typed networks nor run ``execute_async_v3``
  the way this module does.
- Build: ``trt.Builder`` → network → ``trt.OnnxParser.parse_from_file`` → builder config
  (workspace limit, optimisation level, TF32, a timing cache shared per TensorRT version and GPU,
  a progress monitor that prints to stderr) → ``build_serialized_network``. No trtexec.
- Precision is the graph's: fp16 builds the mixed-precision ONNX graph (``graphs.fp16.to_fp16``:
  norms, softmax and the similarities stay fp32 as explicit types), fp32 the fp32 graph, both as
  *strongly typed* networks (10.x: the ``STRONGLY_TYPED`` creation flag; 11.x: always, and
  ``BuilderFlag.FP16`` no longer exists). ``BuilderFlag.TF32`` is cleared unless ``tf32=True``:
  TensorRT enables it by default, and TF32 fp32 layers miss the fp32 parity bound.
- Engines are cached by ``engine_cache.EngineCache`` (names holding every build setting that
  changes the engine, atomic writes, checksum manifests, rebuild of a broken file,
  writable-folder fallback, build log next to the engine).
- Run: ``execute_async_v3`` with ``set_tensor_address`` pointing at torch CUDA tensors (no
  pycuda, no host copies), each input first checked against its binding (``trt_bindings``:
  shape, dtype, device, contiguity; a pointer carries none of them). The backend is shared by
  several VapourSynth nodes and called from several threads, but an execution context is not
  thread-safe: each stage runs under a lock and the device guard, on one backend-owned
  (non-default) stream that is ordered after the caller's current stream, and the caller's
  stream waits for it, so callers on any stream see finished outputs. Since the six contexts
  never run at the same time (one lock, one stream), they share one activation buffer sized for
  the largest (``ExecutionContextAllocationStrategy.USER_MANAGED``; a TensorRT without it gives
  each context its own).

TensorRT cannot be installed on the development machines; this module is only imported
when ``backend='trt'`` (or ``auto`` finds ``tensorrt``). What was verified where is in README.
"""
from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING

import torch

from ..model.stages import INPUTS, OUTPUTS, STAGES, validate_padded_hw
from ..util.files import atomic_write, file_sha256, stdout_to_stderr
from .availability import pip_install, tensorrt_requirement, trt_version_problem
from .base import Backend
from .engine_cache import EngineCache, EngineKey
from .graphs.cache import export_graphs
from .trt_bindings import Binding, check_inputs

if TYPE_CHECKING:
    from .spec import TRT

log = logging.getLogger("vscolormnet")


def import_tensorrt():
    """``import tensorrt``, refusing a missing or too old one in one line with the install command."""
    try:
        with stdout_to_stderr():
            import tensorrt as trt
    except ImportError as e:
        raise ValueError(f"backend 'trt' needs TensorRT (import failed: {e}): {pip_install(tensorrt_requirement())} "
                         "on a machine with an NVIDIA GPU") from None
    if why := trt_version_problem(getattr(trt, "__version__", "0")):
        raise ValueError(why)
    return trt


def _strongly_typed_flag(trt) -> int:
    """``create_network`` flags for a strongly typed network: implied in 11.x (0), the creation flag in 10.x."""
    if int(trt.__version__.split(".")[0]) >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _set_tf32(trt, config, tf32: bool) -> None:
    """Set or clear ``BuilderFlag.TF32`` (on by default in TensorRT)."""
    flag = getattr(trt.BuilderFlag, "TF32", None)
    if flag is None:
        log.warning("this TensorRT has no BuilderFlag.TF32; fp32 layers use its default math")
    elif tf32:
        config.set_flag(flag)
    else:
        config.clear_flag(flag)


def _user_managed_context(trt, engine, strategy):
    """A context without its own activation memory, through whichever API this TensorRT has, or None."""
    try:
        return engine.create_execution_context(strategy)
    except TypeError:
        if not hasattr(engine, "create_runtime_config"):
            return None
    config = engine.create_runtime_config()
    config.set_execution_context_allocation_strategy(strategy)
    return engine.create_execution_context(config)


def create_contexts(trt, engines: list, device: torch.device) -> tuple[list, torch.Tensor | None]:
    """One execution context per engine, all on one activation buffer of the largest
    ``device_memory_size_v2`` (uint8, on ``device``); per-context memory (buffer None) where this
    TensorRT lacks ``USER_MANAGED``, ``device_memory_size_v2`` or ``set_device_memory``.

    Only valid because the contexts never run at the same time: one lock, one stream.
    """
    strategy = getattr(getattr(trt, "ExecutionContextAllocationStrategy", None), "USER_MANAGED", None)
    sizes = [getattr(e, "device_memory_size_v2", None) for e in engines]
    contexts = []
    if strategy is not None and None not in sizes:
        contexts = [_user_managed_context(trt, e, strategy) for e in engines]
    if not contexts or any(c is None or not hasattr(c, "set_device_memory") for c in contexts):
        log.info("trt: this TensorRT cannot share activation memory; one buffer per context")
        return [e.create_execution_context() for e in engines], None
    buffer = torch.empty(max(max(sizes), 256), dtype=torch.uint8, device=device)   # torch blocks: 512-byte aligned
    for context in contexts:
        context.set_device_memory(buffer.data_ptr(), buffer.numel())
    log.info("trt: one activation buffer of %.1f MiB for %s contexts (separately %.1f MiB)",
             buffer.numel() / 2 ** 20, len(contexts), sum(sizes) / 2 ** 20)
    return contexts, buffer


def _make_logger(trt, log_file):
    """A ``trt.ILogger`` that writes every message to the build log and warnings and errors to stderr."""
    names = {trt.ILogger.Severity.INTERNAL_ERROR: "INTERNAL_ERROR", trt.ILogger.Severity.ERROR: "ERROR",
             trt.ILogger.Severity.WARNING: "WARNING", trt.ILogger.Severity.INFO: "INFO",
             trt.ILogger.Severity.VERBOSE: "VERBOSE"}

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, msg):  # noqa: D102
            if log_file is not None:
                log_file.write(f"[{names.get(severity, severity)}] {msg}\n")
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                log.error("tensorrt: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING and log_file is None:
                log.warning("tensorrt: %s", msg)

    return _Logger()


def _make_progress(trt, label: str):
    """A ``trt.IProgressMonitor`` printing the build phases to stderr (TensorRT ≥ 10), or None."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class _Progress(base):
        def __init__(self):
            base.__init__(self)
            self.steps = {}

        def phase_start(self, phase_name, parent_phase, num_steps):  # noqa: D102
            self.steps[phase_name] = num_steps
            if parent_phase is None:
                print(f"\rbuilding {label}: {phase_name} …", end="", file=sys.stderr, flush=True)

        def step_complete(self, phase_name, step):  # noqa: D102
            total = self.steps.get(phase_name)
            if total:
                print(f"\rbuilding {label}: {phase_name} {step + 1}/{total}", end="", file=sys.stderr, flush=True)
            return True

        def phase_finish(self, phase_name):  # noqa: D102
            self.steps.pop(phase_name, None)
            if not self.steps:
                print(f"\rbuilding {label}: done" + " " * 30, file=sys.stderr, flush=True)

    return _Progress()


class _Stage:
    """An engine, its execution context and its I/O tensor names and shapes."""

    def __init__(self, trt, engine, context):
        self.engine = engine
        self.context = context
        self.inputs, self.outputs, self.shapes = [], [], {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            self.shapes[name] = tuple(engine.get_tensor_shape(name))
            if engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise RuntimeError(f"engine tensor {name} is {engine.get_tensor_dtype(name)}, expected float32")
            (self.inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else self.outputs).append(name)


class TrtBackend(Backend):
    """Runs the six stage engines on one GPU for one padded size; float32 torch CUDA tensors in and out.

    spec:       the ``TRT`` dataclass, already checked: device_id, precision, tf32, engine_dir,
                onnx_dir, workspace_mib, optimization_level, timing_cache are read from it.
    weights:    checkpoint path.
    padded_hw:  ``(Hp, Wp)``, multiples of 112.
    net:        the loaded ``ColorMNet`` (or a function returning it), used only if a graph must be exported.
    Thread-safe: ``_run`` holds a lock and runs on the backend's own stream (module docstring).
    """

    name = "trt"

    def __init__(self, spec: "TRT", weights, padded_hw: tuple[int, int], net=None):
        self._configure(spec, validate_padded_hw(padded_hw))
        paths = export_graphs(weights, self.padded_hw, precisions=(self.precision,),
                              cache_dir=spec.onnx_dir, net=net)
        self._load_engines({stage: paths[(stage, self.precision)] for stage in STAGES},
                           {stage: (INPUTS[stage], OUTPUTS[stage]) for stage in STAGES})

    def _configure(self, spec: "TRT", padded_hw: tuple[int, int]) -> None:
        """TensorRT, the device, precision, the engine cache and the logger from ``spec`` (shared with
        ``ddcolor_backend``, which builds one engine instead of six)."""
        trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise ValueError("backend 'trt' needs CUDA, but torch.cuda.is_available() is False")
        self.spec = spec
        self.trt = trt
        self.device = torch.device("cuda", spec.device_id)
        self.fp16 = spec.resolved_precision() == "fp16"   # sets self.precision, also the ONNX graphs' (strongly typed)
        self.tf32 = bool(spec.tf32)
        self.padded_hw = padded_hw
        self.cache = EngineCache.open(spec.engine_dir)
        self._lock = threading.Lock()          # execution contexts are not thread-safe
        self.network_flags = _strongly_typed_flag(trt)
        self.gpu_name = torch.cuda.get_device_name(self.device)
        self._logger = _make_logger(trt, None)

    def _load_engines(self, onnx_files: dict, io: dict) -> None:
        """One cached (or built) engine and context per stage: ``onnx_files[stage]`` the checked graph,
        ``io[stage]`` its (input names, output names) in the order the stage is called with."""
        trt = self.trt
        with torch.cuda.device(self.device):
            self._stream = torch.cuda.Stream(self.device)
            self.runtime = trt.Runtime(self._logger)
            engines = {}
            for stage, onnx_file in onnx_files.items():
                key = self.engine_key(stage, onnx_file)
                engines[stage], _ = self.cache.load_or_build(
                    key, build=lambda log_file, f=onnx_file, k=key: self._build(f, k, log_file),
                    deserialize=self._deserialize)
            contexts, self._activation = create_contexts(trt, list(engines.values()), self.device)
            self._stages = {}
            for (stage, engine), context in zip(engines.items(), contexts):
                st = _Stage(trt, engine, context)
                inputs, outputs = io[stage]
                if set(st.inputs) != set(inputs) or set(st.outputs) != set(outputs):
                    raise RuntimeError(f"the {stage} engine has I/O {st.inputs} → {st.outputs}, expected "
                                       f"{inputs} → {outputs}")
                st.inputs, st.outputs = list(inputs), list(outputs)   # the stage method's order
                st.bindings = [Binding(name, st.shapes[name], torch.float32) for name in st.inputs]
                self._stages[stage] = st
        log.info("trt: %s engines ready on %s (%s%s)", len(self._stages), self.gpu_name, self.precision,
                 ", tf32" if self.tf32 else "")

    def engine_key(self, stage: str, onnx_file) -> EngineKey:
        """The cache key of ``stage``'s engine built from ``onnx_file`` with this backend's settings."""
        return EngineKey(stage=stage, padded_hw=self.padded_hw, precision=self.precision,
                         onnx_sha256=file_sha256(onnx_file), trt_version=self.trt.__version__, gpu_name=self.gpu_name,
                         optimization_level=int(self.spec.optimization_level),
                         workspace_mib=self.spec.workspace_mib, tf32=self.tf32)

    # ---- build and load --------------------------------------------------------------------
    def _deserialize(self, data: bytes):
        engine = self.runtime.deserialize_cuda_engine(data)     # messages go to self._logger, not stdout
        if engine is None:
            raise RuntimeError("deserialize_cuda_engine returned None")
        return engine

    def _build(self, onnx_file, key: EngineKey, log_file) -> bytes:
        """Parse and build with our logger and progress monitor (both off stdout), without a stdout guard:
        that would send other threads' frame data to stderr for the minutes a build takes."""
        trt = self.trt
        logger = _make_logger(trt, log_file)
        log_file.write(f"# {key.filename()}\n# onnx: {onnx_file}\n")
        builder = trt.Builder(logger)
        network = builder.create_network(self.network_flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_file)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {onnx_file}: {errors}")
        config = builder.create_builder_config()
        if key.workspace_mib:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(key.workspace_mib) << 20)
        config.builder_optimization_level = int(key.optimization_level)
        _set_tf32(trt, config, key.tf32)
        progress = _make_progress(trt, f"{key.stage} {key.padded_hw[1]}x{key.padded_hw[0]} {key.precision}")
        if progress is not None:
            config.progress_monitor = progress
        timing_path = self.cache.timing_cache_path(key.trt_version, key.gpu_name)
        timing = None
        if self.spec.timing_cache:
            timing = self._timing_cache(config, timing_path)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT failed to build {key.filename()}")
        if timing is not None:
            atomic_write(timing_path, memoryview(config.get_timing_cache().serialize()))
        return bytes(memoryview(serialized))

    @staticmethod
    def _timing_cache(config, timing_path):
        """The shared timing cache (empty when missing or unreadable: it only speeds up builds)."""
        blob = timing_path.read_bytes() if timing_path.is_file() else b""
        try:
            timing = config.create_timing_cache(blob)
            config.set_timing_cache(timing, ignore_mismatch=False)
        except Exception as e:  # noqa: BLE001 - a damaged timing cache must not stop the build
            log.warning("timing cache %s is unusable (%s); starting an empty one", timing_path, e)
            timing = config.create_timing_cache(b"")
            config.set_timing_cache(timing, ignore_mismatch=False)
        return timing

    # ---- running ---------------------------------------------------------------------------
    def _run(self, stage: str, *tensors: torch.Tensor):
        st = self._stages[stage]
        with self._lock, torch.cuda.device(self.device):
            caller = torch.cuda.current_stream(self.device)
            inputs = [t.detach().to(self.device, torch.float32).contiguous() for t in tensors]
            check_inputs(stage, st.bindings, inputs, self.device)     # a pointer carries no shape: check first
            outs = tuple(torch.empty(st.shapes[name], dtype=torch.float32, device=self.device)
                         for name in st.outputs)
            for name, t in zip(st.inputs, inputs):
                st.context.set_tensor_address(name, t.data_ptr())
            for name, t in zip(st.outputs, outs):
                st.context.set_tensor_address(name, t.data_ptr())
            self._stream.wait_stream(caller)              # inputs are ready
            if not st.context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"TensorRT execution of {stage} failed")
            for t in (*inputs, *outs):                      # memory stays allocated until the engine is done
                t.record_stream(self._stream)
            caller.wait_stream(self._stream)              # the caller sees finished outputs
        return outs[0] if len(outs) == 1 else outs

    def close(self) -> None:  # noqa: D102
        with self._lock:                  # not while another thread is enqueueing
            if self._stages:
                self._stream.synchronize()
            self._stages = {}
            self._activation = None       # after the contexts that point into it
            self.runtime = None
        torch.cuda.empty_cache()


def build_engines(spec: "TRT", weights, padded_hw: tuple[int, int]) -> list:
    """Build (or find in the cache) the six engines of ``spec`` (checked) for one padded size; returns their paths."""
    backend = TrtBackend(spec, weights, padded_hw)
    paths = export_graphs(weights, backend.padded_hw, precisions=(backend.precision,), cache_dir=spec.onnx_dir)
    out = [backend.cache.path(backend.engine_key(s, paths[(s, backend.precision)])) for s in STAGES]
    backend.close()
    return out
