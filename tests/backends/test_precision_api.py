"""``precision``, ``tf32`` and ``key_batch``: how they are spelled, resolved and refused.

Resolution rules (``backends/spec.py``): None follows ``fp16``; ``'auto'`` is fp16 on CUDA, bf16 on
a CPU with native bf16 (``cpuinfo.native_bf16``, overridable with ``VSCOLORMNET_CPU_BF16``), fp32
elsewhere; ONNX Runtime and TensorRT run fp32 or fp16 graphs only. Every refusal is one line naming
the parameter (``Colorize: ...``) or the flag (``--precision ...``), before anything is loaded.
"""
from __future__ import annotations

import pytest
import vapoursynth as vs

import vscolormnet as colormnet
from vscolormnet.__main__ import main
from vscolormnet.backends import ORT, TRT, Auto, BackendError, Torch, from_name
from vscolormnet.util.cpuinfo import native_bf16
from vscolormnet.vs.synthetic import colour_reference


@pytest.fixture
def cpu_bf16(monkeypatch):
    """Pretend the CPU has (1) or lacks (0) native bf16."""
    def set_to(flag: bool):
        monkeypatch.setenv("VSCOLORMNET_CPU_BF16", "1" if flag else "0")
    return set_to


def test_resolution_rules(cpu_bf16):
    assert Torch().resolved_precision() == "fp32"
    assert Torch(device="cuda", fp16=True).resolved_precision() == "fp16"
    assert Torch(device="cuda", precision="auto").resolved_precision() == "fp16"
    assert Torch(precision="bf16").resolved_precision() == "bf16"
    cpu_bf16(False)
    assert not native_bf16()
    assert Torch(precision="auto").resolved_precision() == "fp32"
    cpu_bf16(True)
    assert native_bf16()
    assert Torch(precision="auto").resolved_precision() == "bf16"
    assert ORT(precision="auto").resolved_precision() == "fp32"     # no bf16 graphs: fp32 on the CPU
    assert TRT(precision="auto").resolved_precision() == "fp16"


def test_cache_keys_separate_precisions_and_tf32():
    keys = {Torch(precision=p).cache_key() for p in ("fp32", "bf16")}
    keys |= {Torch(precision="fp32", tf32=True).cache_key()}
    assert len(keys) == 3
    assert Torch().cache_key() == Torch(precision="fp32").cache_key()   # None and 'fp32' are one backend


@pytest.mark.parametrize("spec,match", [
    (Torch(precision="fp8"), r"precision must be one of 'auto', 'fp32', 'fp16', 'bf16' or None, got 'fp8'"),
    (Torch(precision="fp16"), r"precision='fp16' needs device='cuda'"),
    (Torch(device="cpu", fp16=True), r"fp16=True needs device='cuda'"),
    (ORT(precision="bf16"), r"precision='bf16' is not available for backend 'ort' on 'cpu' \(it runs fp32, fp16\)"),
    (TRT(fp16=True, precision="fp32"), r"give fp16=True or precision='fp32', not both"),
    (Torch(tf32="yes"), r"tf32 must be True or False, got 'yes'"),
    (Auto(precision="half"), r"precision must be one of"),
])
def test_bad_values_are_one_line_backend_errors(spec, match):
    with pytest.raises(BackendError, match=match) as info:
        spec.check()
    assert "\n" not in str(info.value)


def test_names_take_precision_and_tf32_beside_the_backend_name():
    spec = from_name("torch", precision="bf16", tf32=True)
    assert (spec.precision, spec.tf32) == ("bf16", True)
    with pytest.raises(BackendError, match=r"give precision inside the backend object"):
        from_name(Torch(), precision="bf16")


def test_auto_passes_precision_to_its_candidates(cpu_bf16):
    cpu_bf16(True)
    usable, _ = Auto(device="cpu", precision="auto").candidates()
    assert [(s.name, s.resolved_precision()) for s in usable] == [("torch", "bf16")]
    usable, _ = Auto(device="cpu", fp16=True).candidates()       # fp16 is dropped on the CPU
    assert [(s.name, s.resolved_precision()) for s in usable] == [("torch", "fp32")]


@pytest.fixture(scope="module")
def ref_png(tmp_path_factory):
    return colour_reference(tmp_path_factory.mktemp("ref") / "ref.png")


@pytest.mark.parametrize("kw,match", [
    (dict(precision="bf17"), r"precision must be one of"),
    (dict(precision="fp16"), r"precision='fp16' needs device='cuda'"),
    (dict(backend="ort", precision="bf16"), r"precision='bf16' is not available for backend 'ort'"),
    (dict(tf32=1), r"tf32 must be True or False, got 1"),
    (dict(key_batch=0), r"key_batch must be an integer from 1 to \d+ \(or None for the device default\), got 0"),
    (dict(key_batch=2.5), r"key_batch must be an integer from 1 to \d+ \(or None for the device default\), got 2.5"),
    (dict(key_batch=True), r"key_batch must be an integer from 1 to \d+ \(or None for the device default\), got True"),
])
def test_colorize_refuses_bad_values_at_call_time(ref_png, parity_checkpoint, kw, match):
    clip = vs.core.std.BlankClip(width=64, height=48, format=vs.GRAY8, length=2)
    with pytest.raises(vs.Error, match=r"^Colorize: " + match) as info:
        colormnet.Colorize(clip, str(ref_png), weights=parity_checkpoint, **kw)
    assert "\n" not in str(info.value)


def test_commands_name_the_flags(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    rc = main(["colorize-frames", str(frames), "--ref", "r.png", "-o", str(tmp_path / "out"),
               "--backend", "ort", "--precision", "bf16"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "--precision bf16 is not available for --backend ort" in err, err


@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretend one CUDA device of the given compute capability is visible (nothing runs on it)."""
    import torch

    def set_to(capability: tuple[int, int]):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    return set_to


def test_bf16_on_cuda_needs_ampere(fake_gpu):
    """Below compute capability 8.0 torch runs bf16 emulated (slower than fp16): refused in one line;
    'auto' stays fp16 on such a card."""
    from vscolormnet.commands.common import backend_flag_message
    fake_gpu((7, 5))
    with pytest.raises(BackendError) as info:
        Torch(device="cuda", precision="bf16").check()
    message = str(info.value)
    assert message == ("precision='bf16' needs an NVIDIA GPU with compute capability 8.0 or newer (Ampere+); "
                       "this GPU is 7.5: use 'fp16'")
    assert backend_flag_message(message).startswith("--precision bf16 needs an NVIDIA GPU with compute capability")
    auto = Torch(device="cuda", precision="auto")
    auto.check()
    assert auto.resolved_precision() == "fp16"
    Torch(device="cuda", precision="fp16").check()
    fake_gpu((8, 0))
    Torch(device="cuda", precision="bf16").check()
    fake_gpu((9, 0))
    Torch(device="cuda", precision="bf16").check()
