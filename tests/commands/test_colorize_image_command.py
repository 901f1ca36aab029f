"""``python -m vscolormnet colorize-image``: the tiny parity case end to end, 16-bit and RGBA inputs, and every bad
input as one line naming what to change (exit 2), found before the network loads."""
from __future__ import annotations

import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest
from ddcolor_fixtures import load_ddcolor_case, parity_problems
from project_paths import ROOT

from vscolormnet.__main__ import main
from vscolormnet.media.color import synthetic_rgb

PREFIX = "colorize-image: error: "


def run(*args) -> int:
    return main(["colorize-image", *map(str, args)])


def one_line_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(PREFIX)]
    assert len(lines) == 1, err
    return lines[0][len(PREFIX):]


@pytest.fixture
def no_network(monkeypatch):
    """Fails the test if a DDColor backend would be made (the bad input must be found before that)."""
    def refuse(*a, **k):
        raise AssertionError("the network was loaded before the bad input was found")
    monkeypatch.setattr("vscolormnet.runtime.image_colorizer.acquire_ddcolor_backend", refuse)


def test_tiny_case_end_to_end(ddcolor_checkpoints, ddcolor_colorizers, tmp_path, capsys):
    case = load_ddcolor_case("tiny_256")
    ddcolor_colorizers(case.model, 256)          # the session keeps the network: the command shares it
    out, npz = tmp_path / "out.png", tmp_path / "ab.npz"
    code = run(case.folder / "input.png", "-o", out, "--model", "ddcolor-tiny", "--weights",
               ddcolor_checkpoints("tiny"), "--input-size", 256, "--save-ab", npz)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out == "" and f"{out} (160x120) written" in captured.err
    rgb = cv2.imread(str(out))[..., ::-1]
    with np.load(npz) as z:
        assert sorted(z.files) == ["ab_full", "ab_net"]
        assert z["ab_net"].shape == (2, 256, 256) and z["ab_full"].shape == (2, 120, 160)
        assert z["ab_net"].dtype == z["ab_full"].dtype == np.float32
        assert not (problems := parity_problems(case, z["ab_net"], z["ab_full"], rgb)), problems
        ab_net = z["ab_net"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ab.npz", "out.png"]      # no temporary files left
    assert run(case.folder / "input.png", "-o", out, "--model", "ddcolor_paper_tiny", "--weights",
               ddcolor_checkpoints("tiny"), "--input-size", 256, "--save-ab", npz, "--ab-resize", "bilinear") == 0
    with np.load(npz) as z:
        assert np.array_equal(z["ab_net"], ab_net) and z["ab_full"].shape == (2, 120, 160)
        assert not np.array_equal(z["ab_full"], case.expected()["ab_full"])


def test_16_bit_and_rgba_inputs_are_read_as_the_official_script_reads_them(ddcolor_checkpoints, ddcolor_colorizers,
                                                                          tmp_path, caplog):
    """16 bits → OpenCV's high byte, alpha ignored (a warning when transparent): the same picture as 8-bit RGB."""
    ddcolor_colorizers("ddcolor-tiny", 64)
    rgb = synthetic_rgb(40, 52, seed=1)
    cv2.imwrite(str(tmp_path / "rgb8.png"), rgb[..., ::-1])
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb[..., ::-1].astype(np.uint16) * 256 + 77)
    rgba = np.concatenate([rgb[..., ::-1], np.full((40, 52, 1), 255, np.uint8)], -1)
    rgba[:5, :5, 3] = 0
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    common = ("--model", "ddcolor-tiny", "--weights", ddcolor_checkpoints("tiny"), "--input-size", 64)
    outs = {}
    with caplog.at_level(logging.INFO, logger="vscolormnet"):
        for name in ("rgb8", "rgb16", "rgba"):
            assert run(tmp_path / f"{name}.png", "-o", tmp_path / f"{name}-out.png", *common) == 0
            outs[name] = cv2.imread(str(tmp_path / f"{name}-out.png"))
    assert "rgba.png has transparent pixels" in caplog.text and "rgb16.png has uint16 samples" in caplog.text
    assert np.array_equal(outs["rgb16"], outs["rgb8"]) and np.array_equal(outs["rgba"], outs["rgb8"])


def _work(tmp_path, ddcolor_checkpoints):
    cv2.imwrite(str(tmp_path / "in.png"), synthetic_rgb(30, 40))
    cv2.imwrite(str(tmp_path / "dot.png"), np.zeros((1, 1), np.uint8))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    return tmp_path, ddcolor_checkpoints("tiny")


BAD = [  # (extra arguments, what the one line must say); INPUT in.png, -o out.png, --weights tiny unless replaced
    (["--model", "ddcolor-huge"], "--model must be one of ddcolor-large, ddcolor-tiny, ddcolor-artistic, "
                                  "ddcolor-paper, ddcolor_modelscope"),
    (["--input-size", "500"], "--input-size must be a positive multiple of 32"),
    (["--input-size", "0"], "--input-size must be a positive multiple of 32"),
    (["INPUT=dot.png"], "is 1x1 pixels; DDColor needs at least 2x2"),
    (["INPUT=missing.png"], "INPUT {w}/missing.png does not exist"),
    (["--weights={w}/none.pth"], "run `python -m vscolormnet download ddcolor-tiny`"),
    (["-o={w}/no/such/out.png"], "-o {w}/no/such/out.png: folder {w}/no/such does not exist"),
    (["-o={w}/in.png"], "-o {w}/in.png is the same file as INPUT"),
    (["-o={w}/out.txt"], "-o must name a .png or"),
    (["--save-ab", "{w}/ab.txt"], "--save-ab must name a .npz file"),
    (["--backend", "ort", "--precision", "bf16"], "--precision bf16 is not available for --backend ort"),
    (["--device", "cpu", "--fp16"], "--fp16 needs --device cuda"),
]


@pytest.mark.parametrize("extra, says", BAD, ids=[s[:24] for _, s in BAD])
def test_bad_input_is_one_line_before_the_network(extra, says, ddcolor_checkpoints, tmp_path, capsys, no_network):
    work, weights = _work(tmp_path, ddcolor_checkpoints)
    args = {"INPUT": work / "in.png", "-o": work / "out.png", "--weights": weights, "--model": "ddcolor-tiny"}
    rest = []
    for a in extra:
        if "=" in a:
            flag, value = a.split("=", 1)
            args[flag] = value.format(w=work) if "{w}" in value else work / value
        else:
            rest.append(a.format(w=work))
    argv = [args.pop("INPUT")] + [x for kv in args.items() for x in kv] + rest
    assert run(*argv) == 2
    assert says.format(w=work) in one_line_error(capsys.readouterr().err)
    assert not (work / "out.png").exists()


def test_weights_of_the_other_model_name_both(ddcolor_checkpoints, tmp_path, capsys):
    work, weights = _work(tmp_path, ddcolor_checkpoints)
    assert run(work / "in.png", "-o", work / "out.png", "--weights", weights) == 2      # default model: large
    line = one_line_error(capsys.readouterr().err)
    assert "holds ddcolor-tiny weights" in line and "the model is ddcolor-large" in line
    assert run(work / "in.png", "-o", work / "out.png", "--model", "ddcolor-tiny", "--weights",
               work / "junk.pth") == 2
    assert "cannot be read" in one_line_error(capsys.readouterr().err)


@pytest.mark.slow          # a fresh interpreter imports torch and loads the network
def test_as_a_program_stdout_stays_clean(ddcolor_checkpoints, tmp_path):
    work, weights = _work(tmp_path, ddcolor_checkpoints)
    proc = subprocess.run([sys.executable, "-m", "vscolormnet", "colorize-image", str(work / "in.png"), "-o",
                           str(work / "out.png"), "--model", "ddcolor-tiny", "--weights", str(weights),
                           "--input-size", "64"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and cv2.imread(str(work / "out.png")).shape == (30, 40, 3)
