"""``python -m vscolormnet colorize-frames``: every bad input is one line naming the flag, found before
the network loads; outputs never overwrite inputs and are written atomically."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vscolormnet.__main__ import main
from vscolormnet.vs.synthetic import colour_reference, gray_frames

W, H = 64, 48


@pytest.fixture
def work(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, g in enumerate(gray_frames(3, W, H)):
        Image.fromarray((g * 255).round().astype(np.uint8)).save(frames / f"{i:05d}.png")
    colour_reference(tmp_path / "ref.png", W, H)
    Image.fromarray(np.full((H, W), 120, np.uint8)).save(tmp_path / "gray.png")
    (tmp_path / "junk.pth").write_bytes(b"this is not a checkpoint")
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    """Fails the test if the network would be loaded (every case here must stop before that)."""
    def refuse(*a, **k):
        raise AssertionError("the network was loaded before the bad input was found")
    monkeypatch.setattr("vscolormnet.runtime.frames.create_backend", refuse)


def run(work, *extra, frames="frames", ref="ref.png", weights="junk.pth", out="out"):
    return main(["colorize-frames", str(work / frames), "--ref", str(work / ref), "--weights", str(work / weights),
                 "-o", str(work / out), *extra])


def one_line_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("colorize-frames: error: ")]
    assert len(lines) == 1, err
    return lines[0][len("colorize-frames: error: "):]


def _other_size(work):
    Image.fromarray(np.zeros((H + 2, W), np.uint8)).save(work / "frames" / "00003.png")


def _unreadable(work):
    (work / "frames" / "00001.png").write_bytes(b"\x89PNG but not really")


def _png_named_npz(work):      # PIL reads by content: a reference may have any name
    (work / "ab.npz").write_bytes((work / "ref.png").read_bytes())


def _ref_in_out(work):
    (work / "out").mkdir()
    (work / "out" / "00001.png").write_bytes((work / "ref.png").read_bytes())


def _empty(work):
    (work / "empty").mkdir()


CASES = [
    ("missing frames folder", dict(frames="nope"), None, "frames folder {work}/nope does not exist"),
    ("no images", dict(frames="empty"), _empty, "frames folder {work}/empty holds no image files"),
    ("frame of another size", {}, _other_size, "frame {work}/frames/00003.png is 64x50, expected 64x48"),
    ("unreadable frame", {}, _unreadable, "frame {work}/frames/00001.png cannot be read as an image"),
    ("gray ref", dict(ref="gray.png"), None, "--ref image {work}/gray.png is grayscale; a reference must be in colour"),
    ("missing ref", dict(ref="nope.png"), None, "--ref image {work}/nope.png does not exist"),
    ("missing weights", dict(weights="nope.pth"), None, "--weights: weights file {work}/nope.pth not found"),
    ("-o is the frames folder", dict(out="frames"), None, "-o {work}/frames is FRAMES_DIR"),
    ("-o spells the frames folder", dict(out="frames/../frames"), None, "is FRAMES_DIR"),
    ("-o is a file", dict(out="ref.png"), None, "-o {work}/ref.png exists and is not a folder"),
    ("-o would overwrite the ref", dict(ref="out/00001.png"), _ref_in_out,
     "-o {work}/out/00001.png is the same file as --ref image"),
    ("--mem-every 0", dict(extra=("--mem-every", "0")), None, "--mem-every must be a positive integer, got 0"),
    ("--num-prototypes", dict(extra=("--num-prototypes", "20000")), None,
     "--num-prototypes must be smaller than --max-long-term-elements (10000)"),
    ("--save-ab missing folder", dict(extra=("--save-ab", "{work}/nope/ab.npz")), None,
     "--save-ab {work}/nope/ab.npz: folder {work}/nope does not exist"),
    ("--save-ab not npz", dict(extra=("--save-ab", "{work}/ab.txt")), None, "--save-ab must name a .npz file"),
    ("--save-ab is the ref", dict(ref="ab.npz", extra=("--save-ab", "{work}/ab.npz")), _png_named_npz,
     "--save-ab {work}/ab.npz is the same file as --ref image"),
    ("--fp16 on cpu", dict(extra=("--fp16",)), None, "--fp16 needs --device cuda"),
]


@pytest.mark.parametrize("name,kw,prepare,message", CASES, ids=[c[0] for c in CASES])
def test_bad_inputs_are_one_line_before_the_network_loads(work, no_network, capsys, name, kw, prepare, message):
    if prepare is not None:
        prepare(work)
    kw = dict(kw)
    extra = [e.format(work=work) for e in kw.pop("extra", ())]
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    rc = run(work, *extra, **kw)
    assert rc == 2
    assert message.format(work=work) in one_line_error(capsys.readouterr().err)
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before, "nothing may be written"


def test_corrupt_weights_are_one_line(work, capsys):
    assert run(work) == 2
    msg = one_line_error(capsys.readouterr().err)
    assert msg.startswith(f"checkpoint {work}/junk.pth cannot be read")
    assert not (work / "out").exists()


@pytest.mark.slow
def test_outputs_are_atomic_and_an_interrupt_leaves_no_torn_file(work, parity_checkpoint, monkeypatch, capsys):
    import vscolormnet.runtime.frames as frames
    real, written = frames._png_bytes, []

    def interrupt_at_second(rgb):
        if written:
            raise KeyboardInterrupt
        written.append(1)
        return real(rgb)
    monkeypatch.setattr(frames, "_png_bytes", interrupt_at_second)
    rc = run(work, "--save-ab", str(work / "ab.npz"), weights=parity_checkpoint)
    assert rc == 130 and "colorize-frames: interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in (work / "out").iterdir()) == ["00000.png"], "no temporary file, no torn PNG"
    assert not (work / "ab.npz").exists()

    monkeypatch.setattr(frames, "_png_bytes", real)
    assert run(work, "--save-ab", str(work / "ab.npz"), weights=parity_checkpoint) == 0
    assert sorted(p.name for p in (work / "out").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []
    assert np.load(work / "ab.npz")["ab_pred"].shape == (3, 2, H, W)


def _more_frames(work, n):
    for i, g in enumerate(gray_frames(n, W, H)):
        Image.fromarray((g * 255).round().astype(np.uint8)).save(work / "frames" / f"{i:05d}.png")


def _pipeline_threads():
    import threading
    return [t.name for t in threading.enumerate() if t.name.startswith("vscolormnet-frames")]


def _complete_pngs(folder):
    """Names in ``folder``; every one must be a PNG that decodes completely (no torn file, no temporary)."""
    names = sorted(p.name for p in folder.iterdir())
    for name in names:
        assert not name.startswith("."), f"temporary file {name} left behind"
        with Image.open(folder / name) as im:
            im.load()
    return names


@pytest.mark.slow
def test_a_failing_writer_stops_the_network_and_leaves_no_torn_file(work, parity_checkpoint, monkeypatch, capsys):
    import vscolormnet.runtime.frames as frames
    _more_frames(work, 8)

    def disk_full(rgb):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(frames, "_png_bytes", disk_full)
    rc = run(work, "--save-ab", str(work / "ab.npz"), weights=parity_checkpoint)
    err = capsys.readouterr().err
    assert rc == 1 and "colorize-frames: error: [Errno 28] No space left on device" in err, err
    # The writer failed on frame 0: the network may run at most the frames the bounded queue holds, not all 8.
    done = max(int(m) for m in __import__("re").findall(r"colorize-frames: (\d+)/8 frames", err))
    assert done <= 2 + frames.WRITE_BEHIND, err
    assert _complete_pngs(work / "out") == []
    assert not (work / "ab.npz").exists()
    assert _pipeline_threads() == [], "the reader and writer threads are joined"


@pytest.mark.slow
def test_an_interrupt_in_the_network_joins_the_threads(work, parity_checkpoint, monkeypatch, capsys):
    import vscolormnet.runtime.frames as frames
    _more_frames(work, 6)
    real, steps = frames.Propagator.step, []

    def interrupt_at_fourth(self, *a, **k):
        steps.append(1)
        if len(steps) == 4:
            raise KeyboardInterrupt
        return real(self, *a, **k)
    monkeypatch.setattr(frames.Propagator, "step", interrupt_at_fourth)
    assert run(work, "--save-ab", str(work / "ab.npz"), weights=parity_checkpoint) == 130
    assert "colorize-frames: interrupted" in capsys.readouterr().err
    assert set(_complete_pngs(work / "out")) <= {"00000.png", "00001.png", "00002.png"}
    assert not (work / "ab.npz").exists()
    assert _pipeline_threads() == []


@pytest.mark.slow
def test_a_frame_that_fails_to_decode_mid_run_is_one_line(work, parity_checkpoint, capsys):
    whole = (work / "frames" / "00002.png").read_bytes()
    (work / "frames" / "00002.png").write_bytes(whole[:len(whole) // 2])     # header fine, data truncated
    assert run(work, weights=parity_checkpoint) == 2
    msg = one_line_error(capsys.readouterr().err)
    assert msg.startswith(f"frame {work}/frames/00002.png cannot be read as an image"), msg
    assert set(_complete_pngs(work / "out")) == {"00000.png", "00001.png"}, "frames before the failure all land"
    assert _pipeline_threads() == []
