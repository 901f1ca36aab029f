"""scripts/*.sh without installing anything: fake interpreters, a stub venv, a fresh HOME. Fast, offline."""
from __future__ import annotations

import configparser
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
    assert _calls(tmp_path) == ["-m pytest -q -n auto"]
    assert "pytest ran" in r.stderr.splitlines()[-1] and "(exit 3)" in r.stderr
    (tmp_path / "calls").unlink()
    r = subprocess.run([str(repo / "scripts" / "test.sh"), "-x", "--fast", "tests/media/test_color.py"], check=False,
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    fast = "not slow and not vspipe and not onnx and not gpu"
    assert _calls(tmp_path) == [f"-m pytest -q -n auto -x -m {fast} tests/media/test_color.py"]
    (tmp_path / "calls").unlink()
    subprocess.run([str(repo / "scripts" / "test.sh"), "-n", "0", "tests/media/test_color.py"], check=False, env=env,
                   capture_output=True, text=True, timeout=60)
    assert _calls(tmp_path) == ["-m pytest -q -n 0 tests/media/test_color.py"], "-n given: passed through alone"


def test_fast_tier_markers_are_registered():
    ini = configparser.ConfigParser()
    ini.read(ROOT / "pytest.ini")
    markers = {line.split(":")[0].strip() for line in ini["pytest"]["markers"].strip().splitlines()}
    assert {"slow", "vspipe", "onnx", "gpu"} <= markers
    assert "--strict-markers" in ini["pytest"]["addopts"]
    assert 'FAST_EXPR="not slow and not vspipe and not onnx and not gpu"' in (SCRIPTS / "test.sh").read_text()
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
def _gpu_check(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run gpu_check.sh with this interpreter, CUDA hidden, no wheel folder and a private TMPDIR."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="", TMPDIR=str(tmp),
               GPU_WHEELS=str(tmp_path / "no-wheels"))
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


@pytest.mark.slow
def test_gpu_check_cpu_smoke_prints_one_table(tmp_path, parity_checkpoint):
    """The same rows as on a GPU, small and on the CPU: parity, Colorize order, bench, missing runtimes."""
    report = tmp_path / "gpu_check.json"
    r = _gpu_check(tmp_path, "--device", "cpu", "--weights", str(parity_checkpoint), "--json", str(report))
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[0].startswith("gpu_check: CPU smoke run") and lines[-1].startswith("gpu_check: ok (")
    assert all(line.startswith("|") for line in lines[1:-1]) and len(lines) >= 4
    data = json.loads(report.read_text())
    rows = {row["check"]: row for row in data["rows"]}
    assert len(lines) - 4 == len(rows) and not data["failed"]
    assert rows["parity torch-cpu fp32"]["case"] == "odd_size" and rows["parity torch-cpu fp32"]["verdict"] == "PASS"
    assert rows["parity torch-cpu fp32"]["data"]["max"] <= 1e-3
    order = rows["order independence cpu fp32"]
    assert order["verdict"] == "PASS" and order["data"] == {"repeat": 0.0, "shuffled": 0.0, "threads": 0.0}
    bench = [row for name, row in rows.items() if name.startswith("bench torch-cpu native fp32 key-batch 1")]
    assert len(bench) == 1 and bench[0]["data"]["fps"] > 0 and bench[0]["data"]["host_syncs_per_frame"] is None
    assert bench[0]["data"]["key_batch"] == 1 and bench[0]["data"]["timed_frames"] == 1
    for name in ("ort-cuda", "tensorrt"):
        if name in rows:
            assert rows[name]["verdict"] == "n/a" and "not installed" in rows[name]["result"]
    assert set(rows) & {"ort-cuda", "trt-cuda"} and set(rows) & {"tensorrt", "trt-cuda"}
    for row in data["rows"]:
        assert row["check"] in r.stdout and row["verdict"] in r.stdout
    assert not list((tmp_path / "tmpdir").glob("gpu_check*")), "temporary folders left behind"


def _gpu_check_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPTS / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_rows_check_the_budget_and_a_failing_section_is_one_error_row(monkeypatch):
    """Each optional row checks the time left before it starts (TensorRT builds engines per row); a section
    that raises outside its rows is one ERROR row and the next sections still run."""
    gc = _gpu_check_module()
    table = gc.Table(budget_s=100)
    left = iter([90.0, 5.0])                           # seconds of the budget left, one per row with need_s
    monkeypatch.setattr(table, "left_s", lambda: next(left))
    ran = []
    table.run("trt parity", "case", lambda: ran.append(1) or ("ok", "PASS", {}), need_s=60)   # 90 s left: runs
    table.run("trt bench", "case", lambda: ran.append(2) or ("ok", "info", {}), need_s=60)    # 5 s left: skipped
    table.run("torch parity", "case", lambda: ran.append(3) or ("ok", "PASS", {}))            # no need: runs
    assert ran == [1, 3]
    skipped = table.rows[1]
    assert skipped["verdict"] == "n/a" and skipped["result"].startswith("skipped: time budget (5 s")

    def broken():
        raise ImportError("No module named 'torchvision'")
    table.section("parity torch-cuda", broken)
    table.section("bench torch-cuda", lambda: table.add("bench torch-cuda 384", "-", "1 fps", "info"))
    assert [r["check"] for r in table.rows[-2:]] == ["parity torch-cuda", "bench torch-cuda 384"]
    assert table.rows[-2]["verdict"] == "ERROR" and "ImportError: No module named" in table.rows[-2]["result"]
    assert table.failed() and table.format().count("\n") == len(table.rows) + 1


def test_gpu_check_checkpoint_failure_is_an_error_row(tmp_path, monkeypatch):
    gc = _gpu_check_module()
    import vscolormnet.weights.seeded as rc

    def no_timm(out, seed=0):
        raise ModuleNotFoundError("No module named 'torchvision'")
    monkeypatch.setattr(rc, "build", no_timm)
    table = gc.Table(budget_s=100)
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
