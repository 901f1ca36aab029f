"""``python -m vscolormnet eval`` end to end, and one clear line for every kind of bad input.

Bad input: one ``eval: error:`` line naming the flag (``--pred``, ``--gt``, ``--plot``), exit code 2,
nothing on stdout, no traceback; what needs no decoding is refused before any metric runs. A plot
that cannot be written after the evaluation: one line, exit 1.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from vscolormnet import metrics as M
from vscolormnet.__main__ import main


def _write_clip(folder, frames, ext=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}{ext}")


def _frames(seed, n=6, shift=0, size=(24, 32)):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    return [np.clip(base.astype(int) + shift + i, 0, 255).astype(np.uint8) for i in range(n)]


@pytest.fixture()
def clip(tmp_path):
    """``(pred, gt)``: two folders of 3 matching frames."""
    _write_clip(tmp_path / "gt", _frames(4, 3))
    _write_clip(tmp_path / "pred", _frames(4, 3, shift=5))
    return tmp_path / "pred", tmp_path / "gt"


def _fails(capsys, argv, *needles, upfront: bool = True, rc: int = 2) -> str:
    """Run, expect exit ``rc`` and exactly one error line holding every needle (and nothing else if ``upfront``)."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == rc, err
    assert out == "" and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and lines[0].startswith("eval: error: "), err
    if upfront:  # refused before evaluating: no progress line, no table
        assert err.strip() == lines[0], err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _eval(pred, gt, *extra):
    return ["eval", "--pred", str(pred), "--gt", str(gt), "--no-optional", *extra]


# ------------------------------------------------------------------ the good path
def test_eval_folders_json_table_and_plot(tmp_path, capsys):
    gt = _frames(1)
    pred = [np.clip(f.astype(int) + 16, 0, 255).astype(np.uint8) for f in gt]
    _write_clip(tmp_path / "gt", gt)
    _write_clip(tmp_path / "pred", pred)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    plot = out_dir / "plot.PNG"
    rc = main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--json", "--plot", str(plot)])
    out, err = capsys.readouterr()
    assert rc == 0
    data = json.loads(out)  # stdout is the JSON and nothing else
    exp_psnr = [M.psnr(p, g) for p, g in zip(pred, gt)]
    assert data["overall"]["psnr"] == pytest.approx(np.mean(exp_psnr))
    assert data["overall"]["frames"] == 6 and data["overall"]["clips"] == 1
    assert data["overall"]["ssim"] == pytest.approx(np.mean([M.ssim(p, g) for p, g in zip(pred, gt)]))
    assert data["overall"]["cdc"] == pytest.approx(M.cdc(pred))
    assert data["overall"]["cdc_gt"] == pytest.approx(M.cdc(gt))
    assert data["overall"]["colourfulness"] == pytest.approx(np.mean([M.colourfulness(p) for p in pred]))
    clip = data["clips"][0]
    assert clip["per_frame"]["frame"] == [f"{i:05d}.png" for i in range(6)]
    assert clip["per_frame"]["psnr"] == pytest.approx(exp_psnr)
    assert clip["per_frame"]["js_next"][-1] is None and len(clip["per_frame"]["js_next"]) == 6
    assert set(data["skipped"]) == {"lpips", "fid"}  # not installed here
    assert "LPIPS skipped" in err and "FID skipped" in err and "overall" in err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(plot) as im:
        assert im.width > 300 and im.height > 300
    assert [p.name for p in out_dir.iterdir()] == ["plot.PNG"]  # written atomically: no temporary file left
    # without --json, stdout stays empty
    assert main(_eval(tmp_path / "pred", tmp_path / "gt")) == 0
    assert capsys.readouterr().out == ""


def test_plot_failure_keeps_the_old_file_and_leaves_no_temporary(clip, tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure
    plot = tmp_path / "p.png"
    plot.write_bytes(b"old")

    def broken(self, f, **kw):
        f.write(b"half a png")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Figure, "savefig", broken)
    _fails(capsys, _eval(*clip, "--plot", str(plot)), "--plot", str(plot), "No space left", upfront=False,
           rc=1)  # a failure after the work, not a bad input
    assert main(_eval(*clip, "--plot", str(plot), "--json")) == 1
    assert json.loads(capsys.readouterr().out)["overall"]["frames"] == 3  # the numbers are not lost
    assert plot.read_bytes() == b"old"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------ --plot, checked before evaluating
@pytest.fixture()
def no_evaluate(monkeypatch):
    """Make evaluating an error, to show a check came first."""
    def boom(*a, **k):
        raise AssertionError("evaluate() ran before the argument check")
    monkeypatch.setattr(M, "evaluate", boom)


@pytest.mark.parametrize("name", ["plot.jpg", "plot", "plot.png.txt"])
def test_plot_suffix(clip, tmp_path, capsys, no_evaluate, name):
    _fails(capsys, _eval(*clip, "--plot", str(tmp_path / name)), "--plot", "must name a .png file", name)


def test_plot_folder_missing_or_not_a_folder(clip, tmp_path, capsys, no_evaluate):
    target = tmp_path / "nope" / "p.png"
    _fails(capsys, _eval(*clip, "--plot", str(target)), "--plot", str(tmp_path / "nope"), "does not exist")
    assert not (tmp_path / "nope").exists()
    (tmp_path / "file").write_text("x")
    _fails(capsys, _eval(*clip, "--plot", str(tmp_path / "file" / "p.png")), "--plot", "is not a folder")
    (tmp_path / "d.png").mkdir()
    _fails(capsys, _eval(*clip, "--plot", str(tmp_path / "d.png")), "--plot", "is a folder")


def test_plot_folder_not_writable(clip, tmp_path, capsys, no_evaluate, monkeypatch):
    from vscolormnet.metrics import report
    monkeypatch.setattr(report, "is_writable_dir", lambda p: False)
    _fails(capsys, _eval(*clip, "--plot", str(tmp_path / "p.png")), "--plot", "is not writable")


# ------------------------------------------------------------------ --pred / --gt
def test_missing_paths(clip, tmp_path, capsys):
    pred, gt = clip
    _fails(capsys, _eval(tmp_path / "nope", gt), "--pred", str(tmp_path / "nope"), "does not exist",
           "a folder of images")
    _fails(capsys, _eval(pred, tmp_path / "nope"), "--gt", "does not exist")


def test_empty_folders(clip, tmp_path, capsys):
    pred, gt = clip
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    _fails(capsys, _eval(pred, tmp_path / "empty"), "--gt", "holds neither images", ".png")
    _fails(capsys, _eval(tmp_path / "empty", gt), "--pred", "holds no images", "--gt")


def test_file_against_folder(clip, tmp_path, capsys):
    _, gt = clip
    (tmp_path / "v.mkv").write_bytes(b"x")
    _fails(capsys, _eval(tmp_path / "v.mkv", gt), "--pred", "is a file", "--gt", "is a folder")


def test_frame_counts_differ(clip, tmp_path, capsys):
    pred, gt = clip
    (pred / "00002.png").unlink()
    _fails(capsys, _eval(pred, gt), "--pred", "has 2 frames", "--gt", "has 3", "no prediction for 00002.png")
    _write_clip(tmp_path / "more", _frames(4, 5))
    _fails(capsys, _eval(tmp_path / "more", gt), "has 5 frames", "no ground truth for 00003.png, 00004.png")


def test_clip_folders_do_not_match(tmp_path, capsys):
    for side in ("gt", "pred"):
        _write_clip(tmp_path / side / "a", _frames(1, 3))
    _write_clip(tmp_path / "gt" / "b", _frames(2, 3))
    _fails(capsys, _eval(tmp_path / "pred", tmp_path / "gt"), "--pred", "no sub-folder for 1 of the 2 clips", "b")
    _write_clip(tmp_path / "flat", _frames(1, 3))
    _fails(capsys, _eval(tmp_path / "flat", tmp_path / "gt"), "--pred", "holds images", "clip sub-folders")


def test_unreadable_images(clip, capsys):
    pred, gt = clip
    (pred / "00000.png").write_bytes(b"not a png")  # the first frame: caught before any metric runs
    _fails(capsys, _eval(pred, gt), "--pred frame", "00000.png", "cannot be read as an image")
    _write_clip(pred, _frames(4, 3))
    data = (gt / "00002.png").read_bytes()
    (gt / "00002.png").write_bytes(data[: len(data) // 2])  # truncated, later in the clip
    _fails(capsys, _eval(pred, gt), "--gt frame", "00002.png", upfront=False)


def test_frame_sizes_differ_or_too_small(clip, tmp_path, capsys):
    _, gt = clip
    _write_clip(tmp_path / "big", [np.zeros((30, 40, 3), np.uint8)] * 3)
    _fails(capsys, _eval(tmp_path / "big", gt), "--pred is 40×30, --gt is 32×24")
    _write_clip(tmp_path / "tiny_p", [np.zeros((5, 5, 3), np.uint8)] * 3)
    _write_clip(tmp_path / "tiny_g", [np.zeros((5, 5, 3), np.uint8)] * 3)
    _fails(capsys, _eval(tmp_path / "tiny_p", tmp_path / "tiny_g"), "too small", "7×7")


def test_missing_required_flag_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--pred", "x"])
    assert e.value.code == 2 and "--gt" in capsys.readouterr().err


def test_videos_that_cannot_be_read(clip, tmp_path, capsys):
    pytest.importorskip("vapoursynth")
    for name in ("p.mkv", "g.mkv"):
        (tmp_path / name).write_bytes(b"this is not a video")
    _fails(capsys, _eval(tmp_path / "p.mkv", tmp_path / "g.mkv"), "--pred", "p.mkv")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_videos_of_different_length(tmp_path, capsys):
    for name, n in (("gt", 4), ("pred", 3)):
        _write_clip(tmp_path / name, _frames(5, n))
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-framerate", "24", "-i",
                        str(tmp_path / name / "%05d.png"), "-c:v", "ffv1", "-pix_fmt", "bgr0",
                        str(tmp_path / f"{name}.mkv")], check=True)
    _fails(capsys, _eval(tmp_path / "pred.mkv", tmp_path / "gt.mkv"), "--pred", "has 3 frames", "--gt",
           "has 4 frames")
