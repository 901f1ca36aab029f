"""scripts/*.sh without installing anything: fake interpreters, a stub venv, a fresh HOME. Fast, offline."""
from __future__ import annotations

import configparser
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

DEBIAN_VENV_ERROR = """\
The virtual environment was not created successfully because ensurepip is not
available.  On Debian/Ubuntu systems, you need to install the python3-venv
package using the following command.

    apt install python3.12-venv

You may need to use sudo with that command.  After installing the python3-venv
package, recreate your virtual environment.

Failing command: /tmp/x/bin/python3.12
"""


def _fake_python(path: Path, version: str = "3.12", venv_ok: bool = True) -> Path:
    """A shell script that answers setup.sh's version probe and `-m venv DEST` like a Python would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = tuple(map(int, version.split("."))) >= (3, 12)
    if venv_ok:
        venv = 'mkdir -p "$3/bin" && printf "#!/bin/sh\\n" > "$3/bin/python" && chmod +x "$3/bin/python"; exit 0'
    else:  # like Debian's python without python3.X-venv: a half-made folder and an error on stdout
        venv = f'mkdir -p "$3/bin"; cat <<"EOF"\n{DEBIAN_VENV_ERROR}EOF\nexit 1'
    path.write_text(f"""#!/bin/sh
if [ "$1" = "-c" ]; then {'echo ' + version + '; exit 0' if ok else 'exit 1'}; fi
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
{venv}
fi
exit 2
""")
    path.chmod(0o755)
    return path


def _env(tmp_path: Path, **extra) -> dict[str, str]:
    """A clean environment: empty HOME, no pyenv variables, a PATH without any real interpreter search aid."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYENV", "VSCOLORMNET_", "XDG_", "VIRTUAL_ENV"))}
    tmp = tmp_path / "tmpdir"
    tmp.mkdir(exist_ok=True)
    env.update(HOME=str(home), PATH="/usr/bin:/bin", LC_ALL="C", TMPDIR=str(tmp))
    env.update(extra)
    return env


def _find_python(env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS / "setup.sh"), "--find-python"], check=False, env=env,
                          capture_output=True, text=True, timeout=60)


def test_setup_explains_an_interpreter_that_cannot_create_a_venv(tmp_path):
    fake = _fake_python(tmp_path / "bin" / "python3.12", venv_ok=False)
    r = _find_python(_env(tmp_path, VSCOLORMNET_PYTHON_CANDIDATES=str(fake)))
    assert r.returncode != 0
    assert r.stdout == ""
    assert f"{fake} (Python 3.12) cannot create a venv (ensurepip is not available)" in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "apt-get install python3.12-venv" in last and "pyenv" in last and "VSCOLORMNET_PYTHON" in last
    assert not list((tmp_path / "tmpdir").iterdir()), "the probe venv was not cleaned up"


def test_setup_tries_the_next_interpreter(tmp_path):
    bad = _fake_python(tmp_path / "a" / "python3.12", venv_ok=False)
    old = _fake_python(tmp_path / "b" / "python3", version="3.11")
    good = _fake_python(tmp_path / "c" / "python3.13", version="3.13")
    r = _find_python(_env(tmp_path, VSCOLORMNET_PYTHON_CANDIDATES=f"{old} {bad} {good}"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{good}\n"
    assert "cannot create a venv" in r.stderr and str(old) not in r.stderr


def test_setup_reports_no_python_at_all(tmp_path):
    old = _fake_python(tmp_path / "b" / "python3", version="3.11")
    r = _find_python(_env(tmp_path, VSCOLORMNET_PYTHON_CANDIDATES=str(old)))
    assert r.returncode != 0 and r.stdout == ""
    assert "no Python >= 3.12 found" in r.stderr and "VSCOLORMNET_PYTHON" in r.stderr


def test_setup_finds_pyenv_whatever_home_is(tmp_path):
    """pyenv's root comes from the pyenv executable too: an empty HOME and no PYENV_ROOT still find it."""
    root = tmp_path / "pyenv"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "pyenv").write_text('#!/bin/sh\n[ "$1" = root ] && echo "$HOME/.pyenv"\n')
    (root / "bin" / "pyenv").chmod(0o755)
    _fake_python(root / "versions" / "3.11.9" / "bin" / "python3", version="3.11")
    want = _fake_python(root / "versions" / "3.12.9" / "bin" / "python3")
    r = _find_python(_env(tmp_path, PATH=f"{root / 'bin'}:/usr/bin:/bin"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{want}\n"
    # $VSCOLORMNET_PYTHON comes first
    mine = _fake_python(tmp_path / "mine" / "python", version="3.13")
    r = _find_python(_env(tmp_path, PATH=f"{root / 'bin'}:/usr/bin:/bin", VSCOLORMNET_PYTHON=str(mine)))
    assert r.stdout == f"{mine}\n", r.stderr


def _stub_checkout(tmp_path: Path, python_body: str) -> Path:
    """A copy of scripts/ with a no-op setup.sh and a stub .venv/bin/python that logs its arguments."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("test.sh", "demo.sh"):
        shutil.copy2(SCRIPTS / name, repo / "scripts" / name)
    (repo / "scripts" / "setup.sh").write_text("#!/bin/sh\necho '[setup] stub' >&2\n")
    (repo / ".venv" / "bin").mkdir(parents=True)
    py = repo / ".venv" / "bin" / "python"
    py.write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >> "{tmp_path}/calls"\n{python_body}\n')
    for p in (py, repo / "scripts" / "setup.sh"):
        p.chmod(0o755)
    return repo


def _calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls").read_text().splitlines()


def test_test_sh_tiers_and_wall_time(tmp_path):
    repo = _stub_checkout(tmp_path, "exit 3")
    env = _env(tmp_path, PATH=os.environ["PATH"])
    r = subprocess.run([str(repo / "scripts" / "test.sh")], check=False, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 3 and r.stdout == ""
    xdist = "-n auto --dist loadgroup --no-loadscope-reorder"
    assert _calls(tmp_path) == [f"-m pytest -q {xdist} -m not large"]
    assert "pytest ran" in r.stderr.splitlines()[-1] and "(exit 3)" in r.stderr
    (tmp_path / "calls").unlink()
    subprocess.run([str(repo / "scripts" / "test.sh"), "--large"], check=False, env=env, capture_output=True,
                   text=True, timeout=60)
    assert _calls(tmp_path) == [f"-m pytest -q {xdist} -m not large -m "], \
        "--large: the last -m selects everything"
    (tmp_path / "calls").unlink()
    r = subprocess.run([str(repo / "scripts" / "test.sh"), "-x", "--fast", "tests/media/test_color.py"], check=False,
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    fast = "not slow and not vspipe and not onnx and not gpu and not large"
    assert _calls(tmp_path) == [f"-m pytest -q {xdist} -m not large -x -m {fast} tests/media/test_color.py"]
    (tmp_path / "calls").unlink()
    subprocess.run([str(repo / "scripts" / "test.sh"), "-n", "0", "tests/media/test_color.py"], check=False, env=env,
                   capture_output=True, text=True, timeout=60)
    assert _calls(tmp_path) == ["-m pytest -q -m not large -n 0 tests/media/test_color.py"], "-n given: no -n auto"


def test_fast_tier_markers_are_registered():
    ini = configparser.ConfigParser()
    ini.read(ROOT / "pytest.ini")
    markers = {line.split(":")[0].strip() for line in ini["pytest"]["markers"].strip().splitlines()}
    assert {"slow", "vspipe", "onnx", "gpu", "large"} <= markers
    assert "--strict-markers" in ini["pytest"]["addopts"]
    text = (SCRIPTS / "test.sh").read_text()
    assert 'FAST_EXPR="not slow and not vspipe and not onnx and not gpu and not large"' in text
    assert 'ARGS=(-m "not large")' in text
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("exec ./scripts/test.sh")  # CI: everything


def test_demo_offline_fallback_on_a_fresh_home(tmp_path):
    """No weights, no network, nothing under HOME: the fallback checkpoint goes into a folder demo.sh makes,
    and nothing reaches stdout."""
    body = """case "$*" in
  *"vscolormnet verify"*|*"vscolormnet download"*) exit 1 ;;
  *"vscolormnet.weights.seeded "*) [ -d "$(dirname "$3")" ] || exit 9; : > "$3" ;;
esac
echo "stub python wrote to stdout"; exit 0"""
    repo = _stub_checkout(tmp_path, body)
    env = _env(tmp_path, PATH=os.environ["PATH"])
    r = subprocess.run([str(repo / "scripts" / "demo.sh")], check=False, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    ckpt = tmp_path / "home" / ".cache" / "vscolormnet-tests" / "colormnet_random_seed0.pth"
    assert ckpt.exists()
    calls = _calls(tmp_path)
    assert calls[-1].startswith("-m vscolormnet colorize ") and f"--weights {ckpt}" in calls[-1]
    assert "RANDOM checkpoint" in r.stderr


def test_random_checkpoint_build_makes_folders_and_writes_atomically(tmp_path, monkeypatch):
    import torch

    from vscolormnet.weights import seeded as random_checkpoint
    monkeypatch.setattr(random_checkpoint, "make_state_dict", lambda seed=0: {"w": torch.arange(4.0)})
    out = tmp_path / "new" / "nested" / "ck.pth"
    digest = random_checkpoint.build(out, seed=1)
    assert digest == random_checkpoint.content_sha256({"w": torch.arange(4.0)})
    assert torch.equal(torch.load(out, weights_only=True)["w"], torch.arange(4.0))
    assert sorted(p.name for p in out.parent.iterdir()) == ["ck.pth"]

    def boom(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt
    monkeypatch.setattr(random_checkpoint.torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        random_checkpoint.build(tmp_path / "other" / "ck.pth", seed=1)
    assert list((tmp_path / "other").iterdir()) == []


# ---- scripts/gpu_check.sh: its skip without CUDA, and its table code on the CPU (--device cpu) ----
def _gpu_check(tmp_path: Path, *args: str, python: str = sys.executable, wheels: Path | None = None):
    """Run gpu_check.sh with ``python`` (this one), CUDA hidden, no wheel folder and a private TMPDIR."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHON=python, CUDA_VISIBLE_DEVICES="", TMPDIR=str(tmp),
               GPU_WHEELS=str(wheels or tmp_path / "no-wheels"))
    return subprocess.run(["bash", str(SCRIPTS / "gpu_check.sh"), *args], check=False, env=env,
                          capture_output=True, text=True, timeout=1800)


@pytest.mark.slow          # a fresh interpreter imports torch
def test_gpu_check_skips_without_cuda(tmp_path):
    r = _gpu_check(tmp_path, "--json", str(tmp_path / "never.json"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: skipped: CUDA is not available ("), r.stdout
    assert not (tmp_path / "never.json").exists()
    assert not list((tmp_path / "tmpdir").glob("gpu_check*")), "the temporary wheel target was not removed"


def test_gpu_check_skips_quietly_without_pytorch(tmp_path):
    """A bare interpreter (no torch, no timm, no vapoursynth): one skip line, no wheel complaints."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    r = subprocess.run(["bash", str(SCRIPTS / "gpu_check.sh")], check=False, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, PYTHON=str(bare / "bin" / "python"),
                                             GPU_WHEELS=str(tmp_path / "no-wheels"), TMPDIR=str(tmp_path)))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("gpu_check: skipped: CUDA is not available (") and r.stdout.count("\n") == 1, r.stdout
    assert "missing" not in r.stderr, r.stderr


MARKS = {"CUDA-only", "not installed"}


def _rehearsal(tmp_path: Path, python: str, wheels: Path, checkpoint: Path, onnx_dir: Path | None = None):
    """gpu_check.sh --device cpu with ``python``: the exit, stdout and the JSON rows. ``onnx_dir``: reuse
    that graph cache (the six CPU exports take minutes); None: a fresh one (the export is checked too)."""
    from ddcolor_fixtures import ddcolor_checkpoint_path
    report = tmp_path / "gpu_check.json"
    args = ["--device", "cpu", "--weights", str(checkpoint), "--json", str(report)]
    if onnx_dir is not None:
        args += ["--onnx-dir", str(onnx_dir)]
    if importlib.util.find_spec("vscolormnet.model.ddcolor") is not None:
        args += ["--ddcolor-weights", str(ddcolor_checkpoint_path("tiny").parent)]
    r = _gpu_check(tmp_path, *args, python=python, wheels=wheels)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    return r, json.loads(report.read_text())


def _check_rehearsal_table(r: subprocess.CompletedProcess, data: dict, tmp_path: Path) -> dict:
    """The full table, every row a PASS or a marked row that cannot run here; returns the rows by check/case."""
    lines = r.stdout.splitlines()
    assert lines[0].startswith("gpu_check: CPU rehearsal") and lines[-1].startswith("gpu_check: ok ("), r.stdout
    assert all(line.startswith("|") for line in lines[1:-1]) and len(lines) - 4 == len(data["rows"])
    verdicts = [row["verdict"] for row in data["rows"]]
    assert set(verdicts) <= {"PASS"} | MARKS, verdicts                   # no info, no FAIL, no ERROR
    assert data["passed"] == verdicts.count("PASS") >= 8 and not data["failed"]
    rows = {(row["check"], row["case"]): row for row in data["rows"]}
    for row in data["rows"]:
        assert row["check"] in r.stdout and row["verdict"] in r.stdout and row["data"]["s"] >= 0
    parity = {case: row for (check, case), row in rows.items() if check == "parity torch-cpu fp32"}
    assert set(parity) == {p.name for p in (ROOT / "tests" / "data" / "parity").iterdir()}, "every parity case"
    assert all(row["verdict"] == "PASS" and row["data"]["max"] <= 1e-3 for row in parity.values())
    bf16 = [row for (check, _), row in rows.items() if check == "bf16 vs fp32 torch-cpu"]
    assert len(bf16) == 1 and bf16[0]["verdict"] == "PASS" and 0 < bf16[0]["data"]["mean"] <= 6e-3, bf16
    for check in ("fp16 vs fp32 torch-cpu", "host syncs per frame (pipeline, steady state)", "check wall time"):
        assert rows[check, "-"]["verdict"] == "CUDA-only", check
    bench = [row for (check, _), row in rows.items() if check.startswith("bench torch-cpu") and "fp32" in check]
    assert len(bench) == 2 and all(row["verdict"] == "PASS" and row["data"]["fps"] >= 0.1 for row in bench)
    assert all(row["data"]["target_fps"] == 0.1 and row["data"]["key_batch"] == 1 for row in bench)
    ort = [row for (check, _), row in rows.items() if check.startswith(("parity ort-cpu", "bench ort-cpu"))]
    assert len(ort) == 2 and all(row["verdict"] == "PASS" for row in ort), "ORT's CPU provider: parity and bench"
    assert ort[1]["data"]["key_batch"] == 1, "ORT's own key-batch default"
    assert rows["tensorrt", "-"]["verdict"] == "not installed" and rows["ort-cuda", "-"]["verdict"] in MARKS
    assert not list((tmp_path / "tmpdir").glob("gpu_check*")), "temporary folders left behind"
    return rows


@pytest.mark.slow
@pytest.mark.large         # ~2 minutes: run before a GPU session (scripts/test.sh --large -k rehearsal)
def test_gpu_check_cpu_rehearsal_prints_the_full_table(tmp_path, parity_checkpoint, onnx_graphs):
    """The GPU run's rows, small, on the CPU: every parity case, bf16, order, bench, memory, ORT; CUDA rows marked.
    The ORT rows use the session's exported graphs (the same checkpoint and 112×112: the export is tested elsewhere)."""
    r, data = _rehearsal(tmp_path, sys.executable, tmp_path / "no-wheels", parity_checkpoint, onnx_graphs.cache_dir)
    rows = _check_rehearsal_table(r, data, tmp_path)
    assert rows["order independence cpu fp32", "Colorize 4 frames YUV444PS"]["data"] == {
        "repeat": 0.0, "shuffled": 0.0, "threads": 0.0, "s": rows["order independence cpu fp32",
                                                                   "Colorize 4 frames YUV444PS"]["data"]["s"]}
    memory = [row for (check, _), row in rows.items() if check.startswith("memory torch-cpu")]
    assert len(memory) == 1 and memory[0]["verdict"] == "PASS" and 0 < memory[0]["data"]["peak_mib"] <= 2048
    if importlib.util.find_spec("vscolormnet.model.ddcolor") is not None:
        assert rows["ddcolor parity torch-cpu fp32", "tiny_256"]["verdict"] == "PASS"


IMAGE_VENV = ROOT / ".gpu-image-venv" / "bin" / "python"


@pytest.mark.slow
@pytest.mark.large
@pytest.mark.skipif(not IMAGE_VENV.exists(), reason="no .gpu-image-venv (scripts/gpu_image_venv.sh builds it)")
def test_gpu_check_rehearsal_on_the_image_like_interpreter(tmp_path, parity_checkpoint):
    """The same on torch 2.11 and the image's packages, with what gpu_wheels/ carries (if it is there)."""
    r, data = _rehearsal(tmp_path, str(IMAGE_VENV), ROOT / "gpu_wheels", parity_checkpoint)
    assert "torch 2.11.0" in r.stdout.splitlines()[0]
    rows = _check_rehearsal_table(r, data, tmp_path)
    assert rows["ddcolor parity", "-"]["verdict"] == "not installed", "the image has no opencv"


def _gpu_check_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPTS / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_marked_rows_are_never_passes_and_a_failing_section_is_one_error_row():
    """CUDA-only / not installed rows count apart from PASS; a section that raises outside its rows is one
    ERROR row and the next sections still run; an unknown verdict (e.g. the old 'info') is refused."""
    gc = _gpu_check_module()
    import gpu_table
    table = gpu_table.Table()
    table.run("parity", "case", lambda: ("ok", "PASS", {"max": 0.0}))
    table.add("tensorrt", "-", "tensorrt not installed", "not installed")
    table.add("host syncs", "-", "CUDA-only", "CUDA-only")
    assert table.counts() == {"PASS": 1, "not installed": 1, "CUDA-only": 1} and not table.failed()
    with pytest.raises(ValueError, match="unknown verdict"):
        table.add("bench", "-", "1 fps", "info")

    def broken():
        raise ImportError("No module named 'torchvision'")
    table.section("parity torch-cuda", broken)
    table.section("bench torch-cuda", lambda: table.add("bench torch-cuda 384", "-", "1 fps", "FAIL"))
    assert [r["check"] for r in table.rows[-2:]] == ["parity torch-cuda", "bench torch-cuda 384"]
    assert table.rows[-2]["verdict"] == "ERROR" and "ImportError: No module named" in table.rows[-2]["result"]
    assert table.failed() and table.format().count("\n") == len(table.rows) + 1
    plan = gc.plan_for("cuda")
    assert plan.fps_target("torch", "512", "fp16", True)[0] == 100 and plan.fps_target("trt", "512", "fp16", True)[0] == 200


def test_gpu_check_checkpoint_failure_is_an_error_row(tmp_path, monkeypatch):
    gc = _gpu_check_module()
    import gpu_table

    import vscolormnet.weights.seeded as rc

    def no_timm(out, seed=0):
        raise ModuleNotFoundError("No module named 'torchvision'")
    monkeypatch.setattr(rc, "build", no_timm)
    table = gpu_table.Table()
    assert gc.checkpoint(table, None, tmp_path) is None
    assert [(r["check"], r["verdict"]) for r in table.rows] == [("seeded checkpoint", "ERROR")]
    assert "torchvision" in table.rows[0]["result"]
    assert gc.checkpoint(table, str(tmp_path / "given.pth"), tmp_path) == tmp_path / "given.pth"


def test_gpu_check_names_a_missing_torchvision_in_one_line(monkeypatch):
    gc = _gpu_check_module()
    assert gc.torchvision_problem() is None
    monkeypatch.setitem(sys.modules, "torchvision", None)          # import torchvision → ImportError
    why = gc.torchvision_problem()
    assert why.startswith("torchvision is not importable by ") and "\n" not in why
    assert "matches torch" in why and "cannot be carried" in why
