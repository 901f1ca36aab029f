"""Packaging metadata (pyproject.toml) against the lock (requirements.txt) and the package's imports.

Fast, offline, no build: the metadata is read with tomllib, the imports with ast.
"""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
BASE = [Requirement(r) for r in PROJECT["dependencies"]]
EXTRAS = {name: [Requirement(r) for r in reqs] for name, reqs in PROJECT["optional-dependencies"].items()}
ORT_FLAVOURS = {"onnxruntime", "onnxruntime-gpu"}  # one module folder: never both

# import name -> distributions that provide it
PROVIDERS = {
    "torch": {"torch"}, "timm": {"timm"}, "numpy": {"numpy"}, "PIL": {"pillow"}, "platformdirs": {"platformdirs"},
    "scipy": {"scipy"}, "skimage": {"scikit-image"}, "vapoursynth": {"vapoursynth"},
    "onnx": {"onnx"}, "onnxruntime": ORT_FLAVOURS, "tensorrt": {"tensorrt-cu13", "tensorrt-cu12", "tensorrt"},
    "matplotlib": {"matplotlib"}, "cv2": {"opencv-python-headless"}, "safetensors": {"safetensors"},
    "huggingface_hub": {"huggingface-hub"},
}
# imported only behind a check with its own install hint: optional metrics of `eval`, and Ray for
# `colorize --workers` (film/options.py pins the exact Ray version every cluster node must share)
OPTIONAL_IMPORTS = {"lpips", "pytorch_fid", "ray"}
# run-time needs that are VapourSynth plugins (core.bs, core.scd), never imported
PLUGINS = {"vapoursynth-bestsource", "vapoursynth-scenechange"}


def _lock() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"lock line {line!r} is not an exact pin"
        pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


LOCK = _lock()


def _names(reqs) -> set[str]:
    return {canonicalize_name(r.name) for r in reqs}


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party modules imported anywhere in the package -> files importing them."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "vscolormnet").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for m in mods:
                top = m.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("vscolormnet", "__future__"):
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_version_is_defined_once():
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "vscolormnet.__version__"}
    assert not (ROOT / "setup.cfg").exists()           # setup.py is a shim (test_setup_py_is_a_shim_over_pyproject)
    tree = ast.parse((ROOT / "vscolormnet" / "__init__.py").read_text())
    values = [n.value.value for n in tree.body if isinstance(n, ast.Assign)
              and any(isinstance(t, ast.Name) and t.id == "__version__" for t in n.targets)]
    assert len(values) == 1 and isinstance(values[0], str)
    Version(values[0])  # a valid version, read statically (setuptools does the same, without importing)
    others = [str(p.relative_to(ROOT)) for p in (ROOT / "vscolormnet").rglob("*.py")
              if p.name != "__init__.py" or p.parent.name != "vscolormnet"
              if re.search(r"^__version__\s*=", p.read_text(), re.MULTILINE)]
    assert not others, f"__version__ also assigned in {others}"


def test_python_requirement():
    from packaging.specifiers import SpecifierSet
    spec = SpecifierSet(PROJECT["requires-python"])
    assert "3.12" in spec and "3.11" not in spec


@pytest.mark.parametrize("req", BASE, ids=str)
def test_runtime_requirement_is_a_range_that_admits_the_lock(req):
    ops = {s.operator for s in req.specifier}
    assert ops and not ops & {"==", "===", "~="}, f"{req}: use a compatible range (>=), not a pin"
    assert ops & {">=", ">"}, f"{req}: needs a lower bound"
    name = canonicalize_name(req.name)
    assert name in LOCK, f"{req.name} is a run-time dependency but is not pinned in requirements.txt"
    assert req.specifier.contains(LOCK[name], prereleases=True), f"{req} does not admit the locked {LOCK[name]}"


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_extras_are_ranges_that_admit_the_lock(extra):
    for req in EXTRAS[extra]:
        assert not {s.operator for s in req.specifier} & {"==", "==="}, f"[{extra}] {req}: use a range"
        name = canonicalize_name(req.name)
        if name in LOCK:
            assert req.specifier.contains(LOCK[name], prereleases=True), f"[{extra}] {req} vs lock {LOCK[name]}"


def test_lock_covers_base_and_the_cpu_extras():
    missing = (_names(BASE) | _names(EXTRAS["ort"]) | _names(EXTRAS["test"]) | _names(EXTRAS["plot"])) - set(LOCK)
    assert not missing, f"not pinned in requirements.txt: {sorted(missing)}"


def test_one_onnxruntime_flavour_per_install_target():
    assert not ORT_FLAVOURS <= _names(BASE), "base requires both onnxruntime flavours"
    assert not _names(BASE) & ORT_FLAVOURS, "onnxruntime in the base requirements would fight the [cuda] extra"
    for extra, reqs in EXTRAS.items():
        assert not ORT_FLAVOURS <= _names(BASE) | _names(reqs), f"[{extra}] requires both onnxruntime flavours"
    assert not ORT_FLAVOURS <= set(LOCK), "the lock pins both onnxruntime flavours"
    assert "onnxruntime" in _names(EXTRAS["ort"]) and "onnxruntime-gpu" in _names(EXTRAS["cuda"])
    assert "onnxruntime-gpu" in _names(EXTRAS["trt"]), "[trt] is one install line: it brings its ONNX Runtime"


# `pip install ".[a,b]"`, `vscolormnet[a]` and the like, wherever an install line is written down
_EXTRAS_USE = re.compile(r"(?:\.|vscolormnet)\[([A-Za-z0-9_,\s-]+)\]")


def _documented_combinations() -> dict[str, set[frozenset]]:
    """Extras named together in README.md, requirements.txt and every message of the package -> where."""
    found: dict[str, set[frozenset]] = {}
    files = [ROOT / "README.md", ROOT / "requirements.txt", *sorted((ROOT / "vscolormnet").rglob("*.py")),
             *sorted((ROOT / "scripts").glob("*")), *sorted((ROOT / "export").glob("*.py"))]
    for path in files:
        if not path.is_file():
            continue
        for m in _EXTRAS_USE.finditer(path.read_text(errors="replace")):
            names = frozenset(n.strip() for n in m.group(1).split(",") if n.strip())
            if names <= set(EXTRAS):             # not an index expression such as `x[0]`
                found.setdefault(str(path.relative_to(ROOT)), set()).add(names)
    return found


def test_no_documented_combination_installs_both_onnxruntime_flavours():
    found = _documented_combinations()
    assert any(frozenset({"trt"}) in combos for combos in found.values()), "the scan finds install lines"
    for where, combos in found.items():
        for names in combos:
            pulled = set().union(*(_names(EXTRAS[n]) for n in names)) | _names(BASE)
            assert not ORT_FLAVOURS <= pulled, f"{where}: [{','.join(sorted(names))}] installs both ORT flavours"


def test_install_messages_match_the_extras():
    """The commands availability.py prints are the extras of pyproject.toml, for torch's CUDA major."""
    from vscolormnet.backends import availability as av
    assert {k: set(v) for k, v in av.EXTRAS.items()} == {k: {str(r) for r in EXTRAS[k]} for k in av.EXTRAS}
    major = av.DEFAULT_CUDA_MAJOR
    gpu = {str(r) for r in EXTRAS["cuda"] if canonicalize_name(r.name) == "onnxruntime-gpu"}
    assert gpu == {av.ORT_GPU[major]} and av.TENSORRT[major] in av.EXTRAS["trt"]
    assert {str(r) for r in EXTRAS["ort"] if r.name == "onnxruntime"} == {av.ORT_CPU}


def test_gpu_extras_match_the_locked_torch_cuda():
    """[cuda] and [trt] use the CUDA major of the locked torch (PyPI's torch 2.14.1 is CUDA 13.0)."""
    import importlib.metadata

    import torch

    from vscolormnet.backends import availability as av
    if Version(importlib.metadata.version("torch")) != LOCK["torch"] or torch.version.cuda is None:
        pytest.skip("needs the locked torch from PyPI (a CUDA build)")
    major = int(torch.version.cuda.split(".")[0])
    assert av.DEFAULT_CUDA_MAJOR == major == av.torch_cuda_major()
    assert f"tensorrt-cu{major}" in _names(EXTRAS["trt"])
    for extra in ("cuda", "trt"):
        (ort_gpu,) = [r for r in EXTRAS[extra] if canonicalize_name(r.name) == "onnxruntime-gpu"]
        assert str(ort_gpu.specifier) == str(Requirement(av.ORT_GPU[major]).specifier), extra


def test_every_runtime_import_is_declared():
    declared = _names(BASE) | {n for reqs in EXTRAS.values() for n in _names(reqs)}
    problems = []
    for mod, files in sorted(_third_party_imports().items()):
        if mod in OPTIONAL_IMPORTS:
            continue
        if mod not in PROVIDERS:
            problems.append(f"{mod} (imported by {sorted(files)}): add it to PROVIDERS and pyproject.toml")
        elif not PROVIDERS[mod] & declared:
            problems.append(f"{mod} (imported by {sorted(files)}) is not in pyproject.toml")
    assert not problems, "\n".join(problems)


def test_base_requirements_are_imported_at_run_time():
    """install_requires holds only what the package imports (plus the VapourSynth plugins it calls)."""
    imported = {d for mod in _third_party_imports() for d in PROVIDERS.get(mod, ())}
    extra_only = {"onnx", "onnxruntime", "onnxruntime-gpu", "matplotlib"}
    unused = _names(BASE) - imported - PLUGINS
    assert not unused, f"base requirements not imported by the package: {sorted(unused)}"
    assert not _names(BASE) & extra_only, "optional back ends and tools belong in extras"


def test_setup_py_is_a_shim_over_pyproject():
    """``setup.py`` exists for tools that call it; every piece of metadata stays in pyproject.toml."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert [ast.unparse(c) for c in calls] == ["setup()"], "setup() with no arguments: pyproject is the source"


@pytest.mark.slow
def test_pip_builds_a_wheel_with_every_module(tmp_path):
    """``pip wheel .`` (what ``pip install .`` and ``python -m build`` run) packs every module of every room."""
    import shutil
    import subprocess
    import zipfile
    src = tmp_path / "src"                     # setuptools builds in the tree: never in the checkout itself
    src.mkdir()                                # what a source tree needs to build (not the venvs, tests, data)
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "vscolormnet", src / "vscolormnet", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                           "-w", str(tmp_path), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel, = tmp_path.glob("vscolormnet-*.whl")
    packed = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py")}
    wanted = {str(p.relative_to(ROOT)) for p in (ROOT / "vscolormnet").rglob("*.py") if "__pycache__" not in str(p)}
    assert wanted <= packed, sorted(wanted - packed)
    assert not [n for n in zipfile.ZipFile(wheel).namelist() if n.endswith((".pth", ".onnx", ".engine"))]
