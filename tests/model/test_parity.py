"""Parity with the unmodified official code (seeded checkpoint, fp32, CPU) on the shipped cases."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from project_paths import CASES, PARITY_CASES

from vscolormnet.runtime.frames import colorize_frames
from vscolormnet.weights.parity import PSNR_MIN, load_case, parity_problems, psnr, rgb_from_ab


def check_against_case(case: str, ab_pred, counters, rgb=None) -> None:
    problems = parity_problems(load_case(PARITY_CASES / case), ab_pred, counters, rgb)
    assert not problems, "\n".join(problems)


# The fast tier keeps the short cases; not_first (12 frames: memory consolidation, ~14 s) is slow tier.
@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c == "not_first" else c
                                  for c in CASES if c != "blackswan_short"])
def test_parity_in_process(case, parity_checkpoint):
    c = load_case(PARITY_CASES / case)
    res = colorize_frames(c.frames_dir, c.ref, parity_checkpoint, None, first_frame_is_ref=c.first_frame_is_ref,
                          progress=False)
    check_against_case(case, res.ab_pred, {
        "work_mem_size": res.work_mem_size, "long_mem_size": res.long_mem_size,
        "n_consolidations": res.n_consolidations, "n_obsolete_removals": res.n_obsolete_removals})
    # The RGB that we would write, from our own ab, also meets the PSNR bound.
    assert psnr(rgb_from_ab(c.frames_dir, res.ab_pred), rgb_from_ab(c.frames_dir, c.expected()["ab_pred"])) >= PSNR_MIN


@pytest.mark.slow
def test_parity_through_the_command(tmp_path, parity_checkpoint, capfd):
    """``colorize-frames`` end to end (in this process; the programs' own start is test_cli's): PNGs,
    --save-ab npz, nothing on fd 1."""
    from vscolormnet.__main__ import main
    case = "blackswan_short"
    c = load_case(PARITY_CASES / case)
    frames_dir, ref = c.frames_dir, c.ref
    out, npz = tmp_path / "out", tmp_path / "ab.npz"
    argv = ["colorize-frames", str(frames_dir), "--ref", str(ref), "--weights", str(parity_checkpoint), "-o", str(out),
            "--save-ab", str(npz)]
    if c.first_frame_is_ref:
        argv.append("--first-frame-is-ref")
    capfd.readouterr()
    rc = main(argv)
    captured = capfd.readouterr()
    assert rc == 0, captured.err
    assert captured.out == "", "nothing but requested data may go to stdout"
    saved = np.load(npz)
    assert saved["work_mem_size"].dtype == np.int64 and saved["ab_pred"].dtype == np.float32
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == sorted(p.name for p in frames_dir.glob("*.png"))
    rgb = np.stack([np.asarray(Image.open(out / n)) for n in names])
    check_against_case(case, saved["ab_pred"], {"work_mem_size": saved["work_mem_size"],
                                                "long_mem_size": saved["long_mem_size"]}, rgb=rgb)
