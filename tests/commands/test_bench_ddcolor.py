"""bench --model ddcolor-…: one-line refusals before any loading, and real runs of the seeded tiny network (CPU)."""
from __future__ import annotations

import json

import pytest

from vscolormnet.model.ddcolor import SIZE_MULTIPLE


def _bench(args, capfd):
    from vscolormnet.__main__ import main
    try:
        rc = main(["bench", *args])
    except SystemExit as e:            # argparse's own errors
        rc = e.code
    out, err = capfd.readouterr()
    return rc, out, err


def test_ddcolor_bench_flag_errors_are_one_line_before_loading(ddcolor_checkpoints, monkeypatch, tmp_path, capfd):
    from vscolormnet.weights import ddcolor_checkpoint
    monkeypatch.setattr(ddcolor_checkpoint, "load_ddcolor", lambda *a, **k: pytest.fail("loaded the network"))
    monkeypatch.setenv("VSCOLORMNET_WEIGHTS_DIR", str(tmp_path / "empty"))
    tiny = ["--weights", str(ddcolor_checkpoints("tiny"))]
    cases = [
        (["--model", "ddcolor-huge", *tiny], "--model must be colormnet (default) or one of ddcolor-large, "
                                             "ddcolor-tiny, ddcolor-artistic, ddcolor-paper, ddcolor_modelscope"),
        (["--model", "ddcolor-tiny", "--input-size", "100", *tiny], "--input-size must be a positive multiple of 32"),
        (["--model", "ddcolor-tiny", "--input-size", "0", *tiny], "--input-size must be a positive multiple of 32"),
        (["--model", "ddcolor-tiny", "--input-size", "big", *tiny], "argument --input-size"),
        (["--model", "ddcolor-tiny", "--frames", "1", *tiny], "--frames must be at least 2"),
        (["--model", "ddcolor-tiny", "--threads", "0", *tiny], "--threads"),
        (["--model", "ddcolor-tiny", "--key-batch", "2", *tiny], "--key-batch applies to the ColorMNet bench"),
        (["--model", "ddcolor-tiny", "--size", "720p", *tiny], "--size applies to the ColorMNet bench"),
        (["--model", "ddcolor-tiny", "--top-k", "10", *tiny], "--top-k applies to the ColorMNet bench"),
        (["--model", "ddcolor-tiny"], "the ddcolor-tiny weights are not downloaded"),
        (["--model", "ddcolor-tiny", "--weights", str(tmp_path)], "--weights"),
        (["--input-size", "256", *tiny], "--input-size applies to --model ddcolor-large/ddcolor-tiny"),
    ]
    for args, named in cases:
        rc, out, err = _bench(args, capfd)
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 2 and out == "", (args, err)
        assert len(lines) == 1 and f"bench: error: {named}" in lines[0], (args, err)
    monkeypatch.undo()
    rc, _, err = _bench(["--model", "ddcolor-large", *tiny, "--frames", "2"], capfd)        # the other size
    assert rc == 2 and "holds ddcolor-tiny weights" in err and "--model ddcolor-tiny" in err


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=pytest.mark.slow)])  # bf16: emulated on AVX2
def test_ddcolor_bench_tiny_real_run_json(precision, ddcolor_checkpoints, capfd):
    """Forwards of the seeded tiny network at the smallest S: only JSON on stdout, the ColorMNet bench's keys."""
    size = SIZE_MULTIPLE
    rc, out, err = _bench(["--model", "ddcolor_paper_tiny", "--input-size", str(size), "--weights",
                           str(ddcolor_checkpoints("tiny")), "--frames", "3", "--threads", "1", "--precision",
                           precision, "--json"], capfd)
    assert rc == 0, err
    r = json.loads(out)
    assert r["fps"] > 0 and r["s_per_frame"] > 0 and abs(r["fps"] * r["s_per_frame"] - 1) < 0.01
    assert (r["model"], r["input_size"], r["size_wh"]) == ("ddcolor-tiny", size, [size, size])
    assert (r["frames"], r["timed_frames"], r["warmup_frames"], r["threads"]) == (3, 2, 1, 1)
    assert (r["precision"], r["backend"], r["device"]) == (precision, "torch", "cpu")
    assert r["s_per_forward"]["min"] <= r["s_per_frame"] <= r["s_per_forward"]["max"]
    assert {"load_s", "first_frame_s", "peak_rss_mib", "cpu", "machine", "describe"} <= set(r)
    assert "fps (forwards/s)" in err


def test_colormnet_is_the_default_and_can_be_named(parity_checkpoint, monkeypatch, capfd):
    """--model colormnet (or none) is the ColorMNet bench: its own checks, its own flags."""
    from graph_fixtures import no_expensive_work
    no_expensive_work(monkeypatch)
    for model in ([], ["--model", "colormnet"]):
        rc, out, err = _bench([*model, "--weights", str(parity_checkpoint), "--key-batch", "0"], capfd)
        assert rc == 2 and "bench: error: --key-batch must be an integer from 1 to 64" in err, err
