"""``refs auto`` on a 3-shot clip of real photographs: one reference per shot at ``refs extract``'s frames, each
equal to ``colorize-image`` of that frame's gray PNG; re-runs keep what a person edited and reuse what they did
not; bad input is one line naming the flag."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from auto_ref_media import THREE_CUTS, THREE_SHOTS, S, make_clip, tiny
from ddcolor_fixtures import ddcolor_checkpoints, ddcolor_colorizers  # noqa: F401
from PIL import Image

from vscolormnet.__main__ import main
from vscolormnet.media.images import is_colour, read_rgb
from vscolormnet.util.files import file_sha256

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to make the test clips")
PREFIX = "refs: error: "


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("auto") / "three.mkv", THREE_SHOTS)


@pytest.fixture(scope="module")
def auto_dir(clip, ddcolor_colorizers, tmp_path_factory):  # noqa: F811
    ddcolor_colorizers("ddcolor-tiny", S)          # keeps the tiny network loaded for every run in this process
    out = tmp_path_factory.mktemp("auto") / "refs"
    assert main(["refs", "auto", str(clip), "-o", str(out), *tiny()]) == 0
    return out


def _index(folder) -> dict:
    return json.loads((folder / "refs.json").read_text())


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.glob("ref_*"))


@pytest.mark.slow
def test_one_reference_per_shot_at_extracts_frames_equal_to_colorize_image(clip, auto_dir, tmp_path, capsys):
    assert main(["refs", "extract", str(clip), "-o", str(tmp_path / "gray")]) == 0
    extracted, index = _index(tmp_path / "gray"), _index(auto_dir)
    assert index["cuts"] == extracted["cuts"] == THREE_CUTS
    assert [s["ref_frame"] for s in index["shots"]] == [s["ref_frame"] for s in extracted["shots"]]
    assert _files(auto_dir) == _files(tmp_path / "gray") == [s["file"] for s in index["shots"]]
    assert (auto_dir / "cuts.txt").read_text().split() == [str(c) for c in THREE_CUTS]
    auto = index["auto"]
    assert (auto["model"], auto["input_size"], auto["ab_resize"]) == ("ddcolor-tiny", S, "bilinear")
    for shot, ref in zip(index["shots"], index["references"]):
        assert ref["frame"] == shot["ref_frame"] and ref["file"] == shot["file"]
        assert (ref["origin"], ref["model"], ref["input_size"], ref["ab_resize"]) == ("auto", "ddcolor-tiny", S,
                                                                                     "bilinear")
        assert ref["sha256"] == file_sha256(auto_dir / ref["file"])
        # the real command on the gray PNG refs extract wrote for that frame
        out = tmp_path / f"ci_{ref['frame']}.png"
        assert main(["colorize-image", str(tmp_path / "gray" / shot["file"]), "-o", str(out), *tiny(),
                     "--ab-resize", "bilinear"]) == 0
        got = read_rgb(auto_dir / ref["file"])
        assert np.array_equal(got, read_rgb(out)), f"frame {ref['frame']} differs from colorize-image"
        assert is_colour(got)
    rows = (auto_dir / "refs.csv").read_text().splitlines()
    assert rows[0] == "file,frame,timecode,shot_start,shot_length,origin" and len(rows) == 4
    assert all(r.endswith(",auto") for r in rows[1:])
    # refs status reads the folder as any other: three coloured references, the cuts
    capsys.readouterr()
    assert main(["refs", "status", str(auto_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["coloured"] == [s["ref_frame"] for s in index["shots"]] and status["cuts"] == THREE_CUTS


@pytest.mark.slow
def test_rerun_keeps_a_persons_edit_and_reuses_the_rest(clip, auto_dir, tmp_path):
    folder = tmp_path / "refs"
    shutil.copytree(auto_dir, folder)
    refs = _index(folder)["references"]
    edited = folder / refs[1]["file"]
    rgb = read_rgb(edited)
    rgb[:8, :8] = (200, 30, 30)                                   # a retouch
    Image.fromarray(rgb).save(edited)
    edited_bytes = edited.read_bytes()
    before = {r["file"]: (folder / r["file"]).stat().st_mtime_ns for r in refs}
    # a person's own reference at another frame, and refs extract's gray placeholder for a frame of ours
    Image.fromarray(read_rgb(auto_dir / refs[0]["file"])).save(folder / "ref_000001.png")
    from vscolormnet.refs.auto import auto_references
    res = auto_references(clip, folder, model="ddcolor-tiny", weights=tiny()[3], input_size=S, progress=False)
    assert (res.coloured, res.reused, res.person) == (0, 2, 2)
    assert edited.read_bytes() == edited_bytes
    for r in (refs[0], refs[2]):                                  # unedited: not recomputed, not rewritten
        assert (folder / r["file"]).stat().st_mtime_ns == before[r["file"]]
    by_file = {r["file"]: r for r in _index(folder)["references"]}
    assert by_file[edited.name]["origin"] == "person" and by_file[edited.name]["sha256"] == file_sha256(edited)
    assert "model" not in by_file[edited.name]
    assert by_file["ref_000001.png"]["origin"] == "person"
    assert by_file[refs[0]["file"]]["origin"] == "auto"
    # another S: the unedited automatic ones are recomputed, the edited one and the person's stay
    gray = read_rgb(folder / refs[2]["file"]).mean(axis=2, keepdims=True).astype(np.uint8).repeat(3, axis=2)
    Image.fromarray(gray).save(folder / refs[2]["file"])         # still gray: a placeholder, replaced
    res = auto_references(clip, folder, model="ddcolor-tiny", weights=tiny()[3], input_size=32, progress=False)
    assert (res.coloured, res.reused, res.person) == (2, 0, 2)
    assert edited.read_bytes() == edited_bytes and (folder / "ref_000001.png").is_file()
    by_file = {r["file"]: r for r in _index(folder)["references"]}
    assert by_file[refs[0]["file"]]["input_size"] == 32 and by_file[refs[2]["file"]]["origin"] == "auto"
    assert is_colour(read_rgb(folder / refs[2]["file"]))
    assert not np.array_equal(read_rgb(folder / refs[0]["file"]), read_rgb(auto_dir / refs[0]["file"]))


def _error(capsys, args, progress: bool = False) -> str:
    """The error line (the only line, or with ``progress`` the last after the progress lines)."""
    capsys.readouterr()
    code = main(["refs", "auto", *map(str, args)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    if progress:
        err = [ln for ln in err if not ln.startswith(("refs: scanned", "vscolormnet: "))]
    assert len(err) == 1 and err[0].startswith(PREFIX), err      # one line, no traceback
    return err[0][len(PREFIX):]


def test_bad_input_is_one_line_naming_the_flag(clip, tmp_path, capsys, ddcolor_checkpoints):  # noqa: F811
    out = tmp_path / "refs"
    flags = tiny()
    weights = flags[3]
    cases = [
        (["--model", "ddcolor-huge", "--weights", weights], r"--model must be one of ddcolor-large, ddcolor-tiny"),
        ([*flags[:4], "--input-size", "100"], r"--input-size must be a positive multiple of 32"),
        (["--model", "ddcolor-tiny", "--weights", tmp_path / "nope.pth"],
         r"--weights .*nope\.pth not found; run `python -m vscolormnet download ddcolor-tiny`"),
        ([*flags, "--refine", "-1"], r"--refine must be a whole number ≥ 0"),
        ([*flags, "--refine", "1", "--colormnet-weights", tmp_path / "nope.pth"], r"--colormnet-weights: .*nope"),
    ]
    for extra, pattern in cases:
        assert re.search(pattern, _error(capsys, [clip, "-o", out, *extra])), pattern
    assert not out.exists(), "nothing is created before the arguments are good"
    (tmp_path / "file").write_text("x")
    assert re.search(r"-o .*file exists and is not a folder", _error(capsys, [clip, "-o", tmp_path / "file", *flags]))
    (tmp_path / "cuts.txt").write_text("5\n99\n")
    assert re.search(r"--cuts must be frame numbers within 0…15 \(INPUT has 16 frames\), got 99",
                     _error(capsys, [clip, "-o", out, "--cuts", tmp_path / "cuts.txt", *flags]))
    (tmp_path / "bad.mkv").write_text("not a video")
    assert re.search(r"INPUT .*bad\.mkv cannot be read as a video", _error(capsys, [tmp_path / "bad.mkv", "-o", out,
                                                                                  *flags]))
    other = tmp_path / "other"
    other.mkdir()
    (other / "refs.json").write_text(json.dumps({"cuts": [], "num_frames": 99}))
    assert re.search(r"-o .*other holds the references of a clip of 99 frames, INPUT has 16",
                     _error(capsys, [clip, "-o", other, *flags]))
    # weights of the other model: found when the network is loaded, still one line
    large = ["--model", "ddcolor-large", "--weights", weights, "--input-size", str(S)]
    assert re.search(r"holds ddcolor-tiny weights .* but the model is ddcolor-large",
                     _error(capsys, [clip, "-o", tmp_path / "large", *large], progress=True))
