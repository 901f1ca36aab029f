"""What each runtime needs on this machine, and the exact command that installs what is missing.

Cheap checks only (no weights, no sessions, no ``import tensorrt``): ``spec.py`` calls them from
``check()`` so that a missing package or device is a one-line error when ``Colorize`` is called,
and ``Auto`` lists them as the reasons it skipped a candidate.

One install target per machine, one extra each (``pyproject.toml``; ``tests/test_packaging.py``
keeps ``EXTRAS`` equal to it): CPU ``[ort]``, NVIDIA with ONNX Runtime CUDA ``[cuda]``, NVIDIA
with TensorRT ``[trt]``. ``onnxruntime`` and ``onnxruntime-gpu`` install the same ``onnxruntime``
folder, so no target installs both. The GPU wheels must use torch's CUDA major: PyPI's torch 2.14
is built with CUDA 13, as are ``onnxruntime-gpu`` ≥ 1.27 and ``tensorrt-cu13``;
``onnxruntime-gpu`` 1.19–1.26 and ``tensorrt-cu12`` are CUDA 12.
"""
from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version

import torch

EXTRAS = {   # the install targets, exactly as in pyproject.toml
    "ort": ("onnx>=1.16", "onnxruntime>=1.18"),
    "cuda": ("onnx>=1.16", "onnxruntime-gpu>=1.27"),
    "trt": ("onnx>=1.16", "onnxruntime-gpu>=1.27", "tensorrt-cu13>=10.13"),
}
DEFAULT_CUDA_MAJOR = 13                       # torch 2.14.1 from PyPI (the lock): CUDA 13.0
ORT_GPU = {12: "onnxruntime-gpu>=1.19,<1.27", 13: "onnxruntime-gpu>=1.27"}   # by torch's CUDA major
TENSORRT = {12: "tensorrt-cu12>=10.0", 13: "tensorrt-cu13>=10.13"}
ORT_CPU = "onnxruntime>=1.18"
ONNX = "onnx>=1.16"
ORT_FLAVOURS = ("onnxruntime", "onnxruntime-gpu")     # one `onnxruntime` module folder: never both
TRT_DISTS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11")
MIN_TRT_MAJOR = 10                              # TensorRT 10: strongly typed networks, execute_async_v3


def pip_install(*requirements: str) -> str:
    """``pip install "a>=1" "b>=2"``, quoted for a POSIX shell."""
    return "pip install " + " ".join(f'"{r}"' for r in requirements)


def installed(names) -> dict[str, str]:
    """``{distribution: version}`` for those of ``names`` that are installed (importlib.metadata)."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def torch_cuda_major() -> int:
    """The CUDA major of the installed torch, or ``DEFAULT_CUDA_MAJOR`` for a CPU-only or unknown build."""
    try:
        major = int(str(torch.version.cuda).split(".")[0])
    except ValueError:
        return DEFAULT_CUDA_MAJOR
    return major if major in ORT_GPU else DEFAULT_CUDA_MAJOR


def ort_gpu_requirement() -> str:
    """The ``onnxruntime-gpu`` requirement that matches torch's CUDA major."""
    return ORT_GPU[torch_cuda_major()]


def tensorrt_requirement() -> str:
    """The TensorRT package requirement that matches torch's CUDA major."""
    return TENSORRT[torch_cuda_major()]


def cuda_problem(device_id: int) -> str | None:
    """Why PyTorch cannot use CUDA device ``device_id`` here, or None if it can."""
    if not torch.cuda.is_available():
        return "CUDA is not available to PyTorch (no NVIDIA GPU or driver, or a CPU-only torch)"
    count = torch.cuda.device_count()
    if device_id >= count:
        return f"device_id={device_id} but only {count} CUDA device(s) are visible"
    return None


def _ort_wanted(device: str) -> str:
    """The ONNX Runtime flavour to install: the GPU build for CUDA or on a machine with CUDA, else the CPU one."""
    return ort_gpu_requirement() if device == "cuda" or torch.cuda.is_available() else ORT_CPU


def _both_flavours(flavours: dict[str, str], device: str) -> str | None:
    if len(flavours) < 2:
        return None
    return (f"onnxruntime {flavours['onnxruntime']} and onnxruntime-gpu {flavours['onnxruntime-gpu']} are both "
            f"installed and overwrite each other's files: pip uninstall -y onnxruntime onnxruntime-gpu && "
            f"{pip_install(_ort_wanted(device))}")


def _missing(backend: str, reqs: list[str], what: list[str]) -> str:
    return f"backend {backend!r} needs {' and '.join(what)} (not installed): {pip_install(*reqs)}"


def ort_problem(device: str = "cpu") -> str | None:
    """Why backend 'ort' cannot start here (missing or conflicting packages), or None."""
    if why := _both_flavours(installed(ORT_FLAVOURS), device):
        return why
    reqs, what = [], []
    if importlib.util.find_spec("onnxruntime") is None:
        reqs.append(_ort_wanted(device))
        what.append("ONNX Runtime")
    if importlib.util.find_spec("onnx") is None:
        reqs.insert(0, ONNX)
        what.insert(0, "onnx (to export the graphs)")
    return _missing("ort", reqs, what) if reqs else None


def ort_cuda_problem() -> str | None:
    """Why the installed ONNX Runtime cannot run on CUDA here, or None (call after ``ort_problem``)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return f"onnxruntime-gpu is not installed: {pip_install(ort_gpu_requirement())}"
    import onnxruntime as ort
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return None
    flavours = installed(ORT_FLAVOURS)
    which = (f"onnxruntime {flavours['onnxruntime']} is the CPU build" if "onnxruntime" in flavours
             else f"onnxruntime {ort.__version__} has no CUDAExecutionProvider")
    remove = " ".join(flavours) or "onnxruntime"
    return f"{which} (no CUDAExecutionProvider): pip uninstall -y {remove} && {pip_install(ort_gpu_requirement())}"


def ort_cuda_mismatch() -> str | None:
    """Why ONNX Runtime's CUDA libraries may not load next to torch's (different CUDA majors), or None."""
    try:
        from onnxruntime.capi.build_and_package_info import cuda_version
    except ImportError:
        return None
    torch_major = str(torch.version.cuda or "").split(".")[0]
    ort_major = str(cuda_version or "").split(".")[0]
    if not torch_major or not ort_major or torch_major == ort_major:
        return None
    return (f"onnxruntime-gpu {installed(['onnxruntime-gpu']).get('onnxruntime-gpu', '?')} is built for CUDA "
            f"{ort_major} but torch uses CUDA {torch_major}: {pip_install(ort_gpu_requirement())}")


def trt_version_problem(trt_version: str, dist: str = "tensorrt") -> str | None:
    """Why TensorRT ``trt_version`` is too old for this package, or None."""
    try:
        major = int(str(trt_version).split(".")[0])
    except ValueError:
        return None
    if major >= MIN_TRT_MAJOR:
        return None
    req = tensorrt_requirement()
    fix = (f"pip install -U \"{req}\"" if dist == req.split(">")[0]
           else f"pip uninstall -y {dist} && {pip_install(req)}")
    return f"backend 'trt' needs TensorRT >= {MIN_TRT_MAJOR}, but TensorRT {trt_version} ({dist}) is installed: {fix}"


def trt_problem() -> str | None:
    """Why backend 'trt' cannot start here (TensorRT missing or too old, export packages missing), or None."""
    if why := _both_flavours(installed(ORT_FLAVOURS), "cuda"):
        return why
    reqs, what = [], []
    if importlib.util.find_spec("tensorrt") is None:
        reqs.append(tensorrt_requirement())
        what.append(f"TensorRT >= {MIN_TRT_MAJOR}")
    else:
        for dist, v in installed(TRT_DISTS).items():
            if why := trt_version_problem(v, dist):
                return why
    if importlib.util.find_spec("onnxruntime") is None:
        reqs.insert(0, ort_gpu_requirement())
        what.insert(0, "ONNX Runtime (to check the graphs)")
    if importlib.util.find_spec("onnx") is None:
        reqs.insert(0, ONNX)
        what.insert(0, "onnx (to export the graphs)")
    if not reqs:
        return None
    return f"{_missing('trt', reqs, what)}; or use backend='ort' or 'torch'"
