"""ONNX Runtime backend: one ``InferenceSession`` per stage graph, CPU or CUDA.

The graphs come from ``vscolormnet.graphs.cache`` (exported and checked on first use, cached
per checkpoint, size and precision, verified against their checksum manifests); a cached graph
that ONNX Runtime cannot load is rebuilt once, with a warning. On CPU, torch tensors are handed to ONNX Runtime as
zero-copy NumPy views and the outputs come back the same way. On CUDA (``onnxruntime-gpu``
installed), inputs and outputs are bound to torch CUDA tensors with IO binding on torch's
current stream, so nothing goes through host memory.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from ..fileutil import stdout_to_stderr
from ..graphs import manifest
from ..graphs.cache import export_graphs
from ..graphs.check import OPTIMIZATION_LEVELS, ort_optimization_level
from ..stages import INPUTS, OUTPUTS, STAGES, validate_padded_hw
from .base import Backend

log = logging.getLogger("vscolormnet")


@dataclass(frozen=True, kw_only=True)
class OrtOptions:
    """ONNX Runtime settings (none of them changes the exported graphs).

    graph_optimization:  ONNX Runtime graph optimisation level: ``disable``, ``basic``,
                         ``extended`` or ``all`` (default; on CPU it adds NCHWc layouts).
    num_threads:         intra-op threads; None = ``torch.get_num_threads()``. CPU only.
    spin_wait:           let idle ORT threads spin between runs (lower latency, but they
                         compete with the host code that runs between stages). CPU only.
    onnx_dir:            ONNX cache folder; None = ``$VSCOLORMNET_ONNX_DIR`` or the user cache.
    """

    graph_optimization: str = "all"
    num_threads: int | None = None
    spin_wait: bool = False
    onnx_dir: str | os.PathLike | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        if self.graph_optimization not in OPTIMIZATION_LEVELS:
            raise ValueError(f"graph_optimization must be one of {', '.join(OPTIMIZATION_LEVELS)}, "
                             f"got {self.graph_optimization!r}")
        if self.num_threads is not None and (not isinstance(self.num_threads, int) or self.num_threads < 1):
            raise ValueError(f"num_threads must be a positive integer or None, got {self.num_threads!r}")


def cuda_provider_available() -> bool:
    """True if the installed onnxruntime offers ``CUDAExecutionProvider`` (``onnxruntime-gpu``)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _session(path, so, providers, rebuild):
    """An ``InferenceSession`` on ``path``; a verified file that still does not load is rebuilt once."""
    import onnxruntime as ort
    try:
        with stdout_to_stderr():
            return ort.InferenceSession(str(path), so, providers=providers)
    except Exception as e:  # noqa: BLE001 - ORT raises its own Fail/InvalidProtobuf types
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        manifest.discard(path, f"does not load in ONNX Runtime ({reason})")
    path = rebuild()
    with stdout_to_stderr():
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

    weights:    checkpoint path (its sha256 keys the ONNX cache).
    padded_hw:  ``(Hp, Wp)``, multiples of 112.
    device:     ``cpu`` or ``cuda`` (needs ``onnxruntime-gpu``); device_id picks the GPU.
    fp16:       use the mixed-precision graphs (``graphs.fp16``); inputs/outputs stay float32.
    options:    ``OrtOptions``.
    net:        the loaded ``ColorMNet``, used only if a graph has to be exported.
    Thread-safe: ``InferenceSession.run`` may be called from several threads at once.
    """

    name = "ort"

    def __init__(self, weights, padded_hw: tuple[int, int], *, device: str | torch.device = "cpu",
                 device_id: int = 0, fp16: bool = False, options: OrtOptions = OrtOptions(), net=None):
        import onnxruntime as ort
        options.validate()
        dev = torch.device(device)
        if dev.type == "cuda":
            if not cuda_provider_available():
                raise ValueError("backend 'ort' on cuda needs onnxruntime-gpu (CUDAExecutionProvider is not "
                                 "available in the installed onnxruntime); use device='cpu'")
            if not torch.cuda.is_available():
                raise ValueError("device='cuda' was asked for but CUDA is not available; use device='cpu'")
            dev = torch.device("cuda", dev.index if dev.index is not None else device_id)
        elif dev.type != "cpu":
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.device = dev
        self.fp16 = bool(fp16)
        self.padded_hw = validate_padded_hw(padded_hw)
        self.options = options
        precision = "fp16" if self.fp16 else "fp32"
        paths = export_graphs(weights, self.padded_hw, precisions=(precision,), cache_dir=options.onnx_dir,
                              net=net)

        def rebuild(stage):   # local, so the backend does not keep the network alive
            return export_graphs(weights, self.padded_hw, precisions=(precision,), stages=(stage,),
                                 cache_dir=options.onnx_dir, net=net)[(stage, precision)]

        so = ort.SessionOptions()
        so.graph_optimization_level = ort_optimization_level(options.graph_optimization)
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        if dev.type == "cpu":
            so.intra_op_num_threads = int(options.num_threads or torch.get_num_threads())
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spin_wait else "0")
            providers = ["CPUExecutionProvider"]
        else:
            stream = torch.cuda.current_stream(dev).cuda_stream
            providers = [("CUDAExecutionProvider", {"device_id": dev.index, "user_compute_stream": str(stream)}),
                         "CPUExecutionProvider"]
        self._stages = {}
        for stage in STAGES:
            # The 225-window sum: ORT's memory pattern plans every window slice as live at once
            # (2× the memory of planning without it: 1.4 GB vs 0.7 GB at 560×336), for no speed gain.
            so.enable_mem_pattern = stage != "short_term_attention"
            session = _session(paths[(stage, precision)], so, providers, lambda s=stage: rebuild(s))
            if dev.type == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
                raise ValueError(f"onnxruntime could not create CUDAExecutionProvider for {stage} "
                                 f"(providers: {session.get_providers()}); check CUDA/cuDNN libraries")
            self._stages[stage] = _Stage(session, INPUTS[stage], OUTPUTS[stage])
        log.info("ort: %s sessions ready (%s, %s, %s threads)", len(self._stages), providers[0] if
                 isinstance(providers[0], str) else providers[0][0], precision,
                 so.intra_op_num_threads if dev.type == "cpu" else "-")

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
        binding = st.session.io_binding()
        index = self.device.index
        inputs = [t.detach().to(self.device, torch.float32).contiguous() for t in tensors]
        for name, t in zip(st.inputs, inputs):
            binding.bind_input(name, "cuda", index, np.float32, tuple(t.shape), t.data_ptr())
        outs = tuple(torch.empty(shape, dtype=torch.float32, device=self.device) for shape in st.output_shapes)
        for name, t in zip(st.outputs, outs):
            binding.bind_output(name, "cuda", index, np.float32, tuple(t.shape), t.data_ptr())
        st.session.run_with_iobinding(binding)
        return outs

    def close(self) -> None:  # noqa: D102
        self._stages = {}
