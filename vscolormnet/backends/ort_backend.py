"""ONNX Runtime backend: one ``InferenceSession`` per stage graph, CPU or CUDA.

The graphs come from ``vscolormnet.backends.graphs.cache`` (exported and checked on first use, cached
per checkpoint, size and precision, verified against their checksum manifests); a cached graph
that ONNX Runtime cannot load is rebuilt once, with a warning. On CPU, torch tensors are handed to ONNX Runtime as
zero-copy NumPy views and the outputs come back the same way. On CUDA (``onnxruntime-gpu``
installed), inputs and outputs are bound to torch CUDA tensors with IO binding, so nothing goes
through host memory. The sessions run on a stream the backend owns (``user_compute_stream``):
torch's current stream is usually the legacy default stream, handle 0, which ONNX Runtime reads
as "no user stream" and then runs on a stream of its own that does not wait for torch's kernels.
Each run waits for the caller's current stream, and the caller's stream waits for the run, as in
``trt_backend``; so the run does not end with a host wait for the GPU (ONNX Runtime's default,
onnxruntime #12216): ``disable_synchronize_execution_providers``. TF32 is off unless asked for
(ONNX Runtime's CUDA default is on). Each session's CUDA arena grows by what is asked for, not to
the next power of two (six sessions, six arenas). Session creation is not wrapped in a stdout
guard: with ``log_severity_level`` set, ONNX Runtime logs through its logger, which writes to stderr.
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..model.stages import INPUTS, OUTPUTS, STAGES, validate_padded_hw
from ..util.files import stdout_to_stderr
from .availability import ort_cuda_mismatch
from .base import Backend
from .graphs import manifest
from .graphs.cache import export_graphs
from .graphs.check import ort_optimization_level

if TYPE_CHECKING:
    from .spec import ORT

log = logging.getLogger("vscolormnet")


def cuda_provider_options(device_index: int, stream_handle: int, tf32: bool) -> dict[str, str]:
    """CUDA execution provider options: run on ``stream_handle`` (a ``cudaStream_t`` as an integer), TF32 as asked,
    the arena grown by what is asked for (``kSameAsRequested``; the default rounds up to a power of two).

    Handle 0 is refused: ONNX Runtime reads it as "no user stream" (onnxruntime #26609) and would
    run unordered with torch. ``has_user_compute_stream`` is derived from the handle by newer
    ONNX Runtime versions and read as given by older ones.
    """
    if int(stream_handle) == 0:
        raise ValueError("ONNX Runtime needs a non-default CUDA stream (handle 0 means 'no user stream')")
    return {"device_id": str(int(device_index)), "user_compute_stream": str(int(stream_handle)),
            "has_user_compute_stream": "1", "use_tf32": "1" if tf32 else "0",
            "arena_extend_strategy": "kSameAsRequested"}


# RunOptions key (onnxruntime/core/session/run_options_config_keys.h): "1" = no cudaStreamSynchronize
# at the end of each run. Safe here: the callers' streams wait for the backend's stream (``_run_cuda``).
NO_SYNC_KEY = "disable_synchronize_execution_providers"


def cuda_run_options():
    """``RunOptions`` for the CUDA runs: no host wait for the GPU at the end of ``run_with_iobinding``."""
    import onnxruntime as ort
    run_options = ort.RunOptions()
    run_options.add_run_config_entry(NO_SYNC_KEY, "1")
    return run_options


_PRELOADED = []


def preload_cuda_libraries() -> None:
    """``onnxruntime.preload_dlls()`` once per process where it exists (ONNX Runtime ≥ 1.21), so the CUDA
    provider finds the CUDA/cuDNN libraries of the pip ``nvidia-*`` wheels torch uses; it prints, so to stderr."""
    import onnxruntime as ort
    if _PRELOADED or not hasattr(ort, "preload_dlls"):
        return
    _PRELOADED.append(True)
    try:
        with stdout_to_stderr():
            ort.preload_dlls()
    except Exception as e:  # noqa: BLE001 - only a help; session creation reports what is really missing
        log.warning("onnxruntime.preload_dlls() failed (%s: %s); relying on the default library search",
                    type(e).__name__, e)


def _session(path, so, providers, rebuild):
    """An ``InferenceSession`` on ``path``; a verified file that still does not load is rebuilt once.

    No stdout guard (it would send other threads' frame data to stderr for the whole creation):
    ``so.log_severity_level`` is set, so ONNX Runtime logs through its logger, to stderr."""
    import onnxruntime as ort
    try:
        return ort.InferenceSession(str(path), so, providers=providers)
    except Exception as e:  # noqa: BLE001 - ORT raises its own Fail/InvalidProtobuf types
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        manifest.discard(path, f"does not load in ONNX Runtime ({reason})")
    path = rebuild()
    return ort.InferenceSession(str(path), so, providers=providers)


class _Stage:
    """One session with its input/output names and output shapes."""

    def __init__(self, session, inputs, outputs):
        self.session = session
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.output_shapes = tuple(tuple(o.shape) for o in session.get_outputs())


class OrtBackend(Backend):
    """Runs the six stage graphs in ONNX Runtime for one padded size; float32 torch tensors in and out.

    spec:       the ``ORT`` dataclass, already checked (``spec.check()``): device, precision, tf32,
                graph_optimization, num_threads, spin_wait, onnx_dir are read from it, never copied.
    weights:    checkpoint path (its sha256 keys the ONNX cache).
    padded_hw:  ``(Hp, Wp)``, multiples of 112.
    net:        the loaded ``ColorMNet``, used only if a graph has to be exported.
    Thread-safe: on the CPU ``InferenceSession.run`` is called from several threads at once; on CUDA
    runs take a lock (they share the backend's one stream and its ordering with the callers' streams).
    """

    name = "ort"

    def __init__(self, spec: "ORT", weights, padded_hw: tuple[int, int], net=None):
        self._configure(spec)
        self.padded_hw = validate_padded_hw(padded_hw)
        precision = self.precision
        paths = export_graphs(weights, self.padded_hw, precisions=(precision,), cache_dir=spec.onnx_dir,
                              net=net)

        def rebuild(stage):   # local, so the backend does not keep the network alive
            return export_graphs(weights, self.padded_hw, precisions=(precision,), stages=(stage,),
                                 cache_dir=spec.onnx_dir, net=net)[(stage, precision)]

        self._stages = {}
        for stage in STAGES:
            # The 225-window sum: ORT's memory pattern plans every window slice as live at once
            # (2× the memory of planning without it: 1.4 GB vs 0.7 GB at 560×336), for no speed gain.
            self._options.enable_mem_pattern = stage != "short_term_attention"
            self._open_stage(stage, paths[(stage, precision)], INPUTS[stage], OUTPUTS[stage],
                             lambda s=stage: rebuild(s))
        self._log_ready()

    def _configure(self, spec: "ORT") -> None:
        """Device, precision, the CUDA stream and run options, session options and providers from ``spec``
        (shared with ``ddcolor_backend``, which runs one graph instead of six)."""
        import onnxruntime as ort
        self.spec = spec
        dev = torch.device("cuda", spec.device_id) if spec.device == "cuda" else torch.device("cpu")
        self.device = dev
        self.fp16 = spec.resolved_precision() == "fp16"
        self.tf32 = bool(spec.tf32) and dev.type == "cuda"
        self._lock = threading.Lock()
        self._stream = None
        self._run_options = None                              # CUDA only: no sync at the end of a run
        so = ort.SessionOptions()
        so.graph_optimization_level = ort_optimization_level(spec.graph_optimization)
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        so.log_severity_level = 3            # errors only, through ORT's logger (stderr), never stdout
        if dev.type == "cpu":
            so.intra_op_num_threads = int(spec.num_threads or torch.get_num_threads())
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spec.spin_wait else "0")
            providers = ["CPUExecutionProvider"]
        else:
            preload_cuda_libraries()
            with torch.cuda.device(dev):
                self._stream = torch.cuda.Stream(dev)        # non-default: see the module docstring
            providers = [("CUDAExecutionProvider",
                          cuda_provider_options(dev.index, self._stream.cuda_stream, self.tf32)),
                         "CPUExecutionProvider"]
            self._run_options = cuda_run_options()
        self._options, self._providers = so, providers
        self._stages = {}

    def _open_stage(self, stage: str, path, inputs, outputs, rebuild) -> None:
        """A session for ``stage``'s graph at ``path`` (rebuilt once by ``rebuild()`` if it does not load)."""
        session = _session(path, self._options, self._providers, rebuild)
        if self.device.type == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
            hint = ort_cuda_mismatch() or "check that the CUDA and cuDNN libraries torch uses can be loaded"
            raise ValueError(f"onnxruntime could not create CUDAExecutionProvider for {stage} "
                             f"(providers: {session.get_providers()}): {hint}")
        self._stages[stage] = _Stage(session, inputs, outputs)

    def _log_ready(self) -> None:
        provider = self._providers[0] if isinstance(self._providers[0], str) else self._providers[0][0]
        threads = self._options.intra_op_num_threads if self.device.type == "cpu" else "-"
        log.info("ort: %s sessions ready (%s, %s, %s threads)", len(self._stages), provider, self.precision, threads)

    # ---- running ---------------------------------------------------------------------------
    def _run(self, stage: str, *tensors: torch.Tensor):
        st = self._stages[stage]
        if self.device.type == "cpu":
            feeds = {name: t.detach().to(torch.float32).contiguous().numpy() for name, t in zip(st.inputs, tensors)}
            outs = tuple(torch.from_numpy(o) for o in st.session.run(list(st.outputs), feeds))
        else:
            outs = self._run_cuda(st, tensors)
        return outs[0] if len(outs) == 1 else outs

    def _run_cuda(self, st: _Stage, tensors):
        """IO binding on the backend's stream, ordered after the caller's current stream and before its next work."""
        index = self.device.index
        with self._lock, torch.cuda.device(self.device):
            caller = torch.cuda.current_stream(self.device)
            inputs = [t.detach().to(self.device, torch.float32).contiguous() for t in tensors]
            outs = tuple(torch.empty(shape, dtype=torch.float32, device=self.device) for shape in st.output_shapes)
            binding = st.session.io_binding()
            for name, t in zip(st.inputs, inputs):
                binding.bind_input(name, "cuda", index, np.float32, tuple(t.shape), t.data_ptr())
            for name, t in zip(st.outputs, outs):
                binding.bind_output(name, "cuda", index, np.float32, tuple(t.shape), t.data_ptr())
            self._stream.wait_stream(caller)               # the inputs are written
            st.session.run_with_iobinding(binding, self._run_options)   # returns without waiting for the GPU
            for t in (*inputs, *outs):                       # torch must not reuse them before the run is done
                t.record_stream(self._stream)
            caller.wait_stream(self._stream)               # the caller sees finished outputs
        return outs

    def close(self) -> None:  # noqa: D102
        with self._lock:                                    # not while another thread is running
            if self._stream is not None:
                self._stream.synchronize()
            self._stages = {}
