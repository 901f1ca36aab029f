"""The bench command through ClipSession: flags, errors, JSON fields, tiny real runs (CPU; CUDA where present)."""
from __future__ import annotations

import json
import math

import pytest
import torch
from graph_fixtures import no_expensive_work

SOURCE = ["--size", "native", "--source", "100x56"]      # pads to 112×112, the smallest size


def _bench(args, capfd):
    from vscolormnet.__main__ import main
    try:
        rc = main(["bench", *args])
    except SystemExit as e:            # argparse's own errors (a value that is not an int, a bad choice)
        rc = e.code
    out, err = capfd.readouterr()
    return rc, out, err


def test_bench_flag_errors_are_one_line_before_any_work(parity_checkpoint, monkeypatch, capfd):
    no_expensive_work(monkeypatch)
    cases = [(["--key-batch", "0"], "--key-batch"), (["--key-batch", "-3"], "--key-batch"),
             (["--key-batch", "65"], "--key-batch must be an integer from 1 to 64, got 65"),
             (["--key-batch", "two"], "argument --key-batch"), (["--frames", "4", "--key-batch", "4"], "--frames"),
             (["--precision", "fp8"], "argument --precision")]
    if not torch.cuda.is_available():
        cases.append((["--precision", "fp16"], "--backend torch: --precision fp16"))
    for args, named in cases:
        rc, out, err = _bench(["--weights", str(parity_checkpoint), *SOURCE, *args], capfd)
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 2 and out == "", (args, err)
        assert len(lines) == 1 and f"bench: error: {named}" in lines[0], (args, err)


def test_run_bench_rejects_a_bad_key_batch_before_loading(monkeypatch):
    from vscolormnet.runtime.benchmark import run_bench
    no_expensive_work(monkeypatch)
    for bad in (0, -1, 1.5, True, 65, 10000):
        with pytest.raises(ValueError, match=rf"--key-batch must be an integer from 1 to 64, got {bad!r}$"):
            run_bench(size_wh=(100, 56), frames=3, key_batch=bad, weights="unused.pth")


@pytest.mark.slow
@pytest.mark.parametrize("key_batch, frames", [(None, None), (2, 4)])
def test_bench_tiny_real_run_json(key_batch, frames, parity_checkpoint, capfd):
    """A real run on the CPU: only JSON on stdout, the new fields, and the key batch really used.
    fp32 only: bf16 is checked without frames below (its numerics: test_torch_precision.py)."""
    from vscolormnet.runtime.keyahead import default_key_batch
    from vscolormnet.util.cpuinfo import describe
    precision = "fp32"
    kb = default_key_batch("cpu") if key_batch is None else key_batch
    frames = frames or kb + 1
    args = ["--weights", str(parity_checkpoint), *SOURCE, "--frames", str(frames), "--threads", "1",
            "--precision", precision, "--json"] + (["--key-batch", str(key_batch)] if key_batch else [])
    rc, out, err = _bench(args, capfd)
    assert rc == 0, err
    r = json.loads(out)
    assert r["precision"] == precision and r["key_batch"] == kb and r["warmup_frames"] == kb
    assert r["timed_frames"] == frames - kb and r["fps"] > 0 and r["peak_rss_mib"] > 0
    assert r["cpu"] == describe() and r["device"] == "cpu" and r["padded_wh"] == [112, 112]
    assert r["peak_vram_mib"] is None and r["host_syncs_per_frame"] is None and r["gpu"] is None
    # One batched encode_key call per timed key batch (frames kb…frames-1 are one block here).
    assert r["calls"]["encode_key"] == math.ceil((frames - kb) / kb)
    assert r["calls"]["decoder"] == frames - kb
    assert f"key batch {kb}" in err and f"({precision}" in err


def test_bench_bf16_reaches_the_torch_backend_and_the_json(parity_checkpoint, monkeypatch, capfd):
    """``--precision bf16`` through the command: the real torch backend is created in bf16 and the JSON
    and report say so. The frame loop is stubbed: without AVX512-BF16, bf16 is emulated (a 2-frame
    run costs about a minute here), and bf16 numerics are tested in test_torch_precision.py."""
    from vscolormnet.runtime import benchmark
    seen = []

    def no_frames(be, *args, **kwargs):
        seen.append((type(be).__name__, be.precision, be.device.type))
        return {"elapsed": 1.0, "first_s": 0.5, "syncs": 0, "device_used": None}
    monkeypatch.setattr(benchmark, "_run_pass", no_frames)
    args = ["--weights", str(parity_checkpoint), *SOURCE, "--frames", "2", "--key-batch", "1", "--threads", "1",
            "--precision", "bf16", "--json"]
    rc, out, err = _bench(args, capfd)
    assert rc == 0, err
    assert seen == [("TorchBackend", "bf16", "cpu")]
    r = json.loads(out)
    assert r["precision"] == "bf16" and r["fp16"] is False and r["tf32"] is False
    assert r["device"] == "cpu" and r["padded_wh"] == [112, 112] and r["key_batch"] == 1
    assert "(bf16" in err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_bench_on_cuda_counts_host_syncs_and_vram(parity_checkpoint):
    from vscolormnet.runtime.benchmark import run_bench
    for kb in (1, 2):
        r = run_bench(size_wh=(100, 56), frames=kb + 2, device="cuda", key_batch=kb, weights=parity_checkpoint)
        assert r["key_batch"] == kb and r["device"].startswith("cuda")
        assert r["host_syncs_per_frame"] >= 1, "the output's read-back at least"
        assert r["peak_vram_mib"] > 0 and r["gpu"]["peak_torch_allocated_mib"] == r["peak_vram_mib"]
