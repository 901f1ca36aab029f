"""refs extract on a clip of still shots (scikit-image photographs), and the colour-in-place round trip."""
from __future__ import annotations

import csv
import json
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vscolormnet.__main__ import main
from vscolormnet.media.ref_folder import is_colour, load_reference_folder, read_rgb
from vscolormnet.vs import scenes

SIZE = (320, 240)  # W, H
SHOTS = (("astronaut", 7), ("coffee", 6), ("chelsea", 8), ("rocket", 7))
CUTS = [7, 13, 21]
STARTS = [0, 7, 13, 21]

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to make the test clip")


def _photo(name: str) -> np.ndarray:
    import skimage.data
    img = getattr(skimage.data, name)()
    return np.asarray(Image.fromarray(img).convert("RGB").resize(SIZE, Image.Resampling.BICUBIC))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 28-frame 320×240 H.264 clip: four photographs held 7, 6, 8 and 7 frames."""
    d = tmp_path_factory.mktemp("clip")
    n = 0
    for name, hold in SHOTS:
        img = Image.fromarray(_photo(name))
        for _ in range(hold):
            img.save(d / f"f{n:03d}.png")
            n += 1
    out = d / "shots.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-framerate", "24", "-i", str(d / "f%03d.png"),
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def extracted(clip, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("refs") / "refs"
    assert main(["refs", "extract", str(clip), "-o", str(out)]) == 0
    return out


def test_extract_finds_exactly_the_cuts(extracted):
    index = json.loads((extracted / "refs.json").read_text())
    assert index["cuts"] == CUTS
    assert index["num_frames"] == 28 and (index["width"], index["height"]) == SIZE
    assert (extracted / "cuts.txt").read_text().split() == [str(c) for c in CUTS]
    shots = index["shots"]
    assert [s["start"] for s in shots] == STARTS
    assert [s["length"] for s in shots] == [h for _, h in SHOTS]
    with open(extracted / "refs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["shot_start"]) for r in rows] == STARTS
    assert [int(r["shot_length"]) for r in rows] == [h for _, h in SHOTS]
    for s, r in zip(shots, rows):
        assert s["start"] <= s["ref_frame"] <= s["end"]
        assert r["file"] == s["file"] == f"ref_{s['ref_frame']:06d}.png"
        assert int(r["frame"]) == s["ref_frame"]
        assert r["timecode"] == scenes.timecode(s["ref_frame"] / 24)
        rgb = read_rgb(extracted / s["file"])
        assert rgb.shape == (SIZE[1], SIZE[0], 3)  # full size
        assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()  # gray
        assert not is_colour(rgb)
    assert sorted(p.name for p in extracted.glob("ref_*.png")) == [s["file"] for s in shots]


def test_colour_in_place_round_trip(extracted, tmp_path, caplog):
    folder = tmp_path / "refs"
    shutil.copytree(extracted, folder)
    shots = json.loads((folder / "refs.json").read_text())["shots"]
    coloured = {}
    for i in (1, 3):  # colour the coffee and the rocket shots
        photo = _photo(SHOTS[i][0])
        Image.fromarray(photo).save(folder / shots[i]["file"])
        coloured[shots[i]["ref_frame"]] = photo
    with caplog.at_level(logging.WARNING, logger="vscolormnet"):
        rf = load_reference_folder(folder)
    assert [f for f, _ in rf.references] == sorted(coloured)
    for frame, arr in rf.references:
        assert arr.dtype == np.uint8 and arr.shape == (SIZE[1], SIZE[0], 3)
        assert np.array_equal(arr, coloured[frame])
    assert rf.gray_skipped == [shots[0]["ref_frame"], shots[2]["ref_frame"]]
    assert rf.cuts == CUTS
    assert (rf.num_frames, rf.width, rf.height) == (28, *SIZE)
    assert "2 of 4 references" in caplog.text and "still gray" in caplog.text


def test_status_and_json_output(extracted, capsys):
    assert main(["refs", "status", str(extracted), "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["coloured"] == [] and len(data["gray"]) == 4 and data["cuts"] == CUTS
    assert "0 coloured, 4 gray" in err


def test_extract_refuses_to_mix_with_an_existing_folder(clip, extracted, tmp_path, capsys):
    folder = tmp_path / "refs"
    shutil.copytree(extracted, folder)
    assert main(["refs", "extract", str(clip), "-o", str(folder)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    (folder / "ref_000099.png").write_bytes((folder / "cuts.txt").read_bytes())  # a stale extra file
    assert main(["refs", "extract", str(clip), "-o", str(folder), "--overwrite", "--pick", "first",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["ref_frame"] for s in out["shots"]] == STARTS
    assert sorted(p.name for p in folder.glob("ref_*")) == [f"ref_{s:06d}.png" for s in STARTS]


def test_threshold_and_min_shot_length(clip, tmp_path):
    from vscolormnet.refs.extract import extract_references
    res = extract_references(clip, tmp_path / "a", min_shot_length=8, progress=False)
    # 7: shot 0 would be 7 frames, dropped; 13 kept; 21: kept (8 after 13), but the last shot
    # (21-27) would be 7 frames, so it is merged into the one before
    assert res.cuts == [13] and res.raw_cuts == CUTS
    assert [s["length"] for s in res.shots] == [13, 15]
    res = extract_references(clip, tmp_path / "b", threshold=254, progress=False)
    assert res.cuts == [] and len(res.shots) == 1
    with pytest.raises(ValueError, match="--threshold must be within 1..254"):
        extract_references(clip, tmp_path / "c", threshold=0)
    with pytest.raises(ValueError, match="INPUT_VIDEO .* cannot be read as a video"):
        bad = tmp_path / "bad.mp4"
        bad.write_bytes(b"not a video")
        extract_references(bad, tmp_path / "d")


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_reference_folder(tmp_path / "missing")
    folder = tmp_path / "f"
    folder.mkdir()
    Image.fromarray(_photo("coffee")).save(folder / "ref_000003.png")
    with pytest.raises(ValueError, match="no refs.json index"):
        load_reference_folder(folder)
    (folder / "refs.json").write_text(json.dumps({"cuts": [5], "num_frames": 10}))
    gray = np.repeat(np.asarray(Image.fromarray(_photo("coffee")).convert("L"))[..., None], 3, axis=2)
    Image.fromarray(_photo("coffee")).save(folder / "ref_000003.png")
    Image.fromarray(gray).save(folder / "ref_000007.jpg", quality=70)  # JPEG noise stays gray
    rf = load_reference_folder(folder)
    assert [f for f, _ in rf.references] == [3] and rf.gray_skipped == [7] and rf.cuts == [5]
    Image.fromarray(gray).save(folder / "ref_000003.png")
    with pytest.raises(ValueError, match="no coloured reference"):
        load_reference_folder(folder)
    Image.fromarray(_photo("coffee")).save(folder / "ref_000012.png")
    with pytest.raises(ValueError, match="frame 12 is beyond"):
        load_reference_folder(folder)


def test_is_colour_tolerates_noise_but_sees_a_small_coloured_area():
    gray = np.full((100, 100, 3), 128, np.uint8)
    noisy = gray.copy()
    noisy[::2, ::2, 0] += 3
    assert not is_colour(noisy)
    part = gray.copy()
    part[:5, :5] = (200, 40, 40)  # 0.25 % of the pixels
    assert is_colour(part)


def test_min_shot_length_and_pick_rules():
    assert scenes.enforce_min_shot_length([3, 10, 11, 30], 33, 5) == [10]  # 3 too early; 11 too close; 30: tail
    assert scenes.enforce_min_shot_length([0, 5, 40], 40, 1) == [5]
    shots = scenes.shots_from_cuts([5, 9], 12)
    assert [(s.start, s.length, s.end) for s in shots] == [(0, 5, 4), (5, 4, 8), (9, 3, 11)]
    sharp = np.array([1, 1, 1, 1, 1, 9, 3, 9, 2, 1, 1, 1], float)
    assert scenes.pick_frame(shots[1], sharp) == 5  # 5 and 7 tie at the best, equally near the middle (6)
    assert scenes.pick_frame(shots[0], sharp) == 2  # all equal: the middle
    assert scenes.pick_frame(shots[2], sharp, "middle") == 10
    assert scenes.pick_frame(shots[2], sharp, "first") == 9
    assert scenes.timecode(3725.5) == "01:02:05.500"


@pytest.mark.slow
def test_colorize_uses_a_coloured_reference_folder(extracted, clip, tmp_path, parity_checkpoint):
    """Colour one PNG in place: Colorize(ref=DIR) takes it as the reference of its frame and
    resets memory at the indexed cuts."""
    import vapoursynth as vs

    import vscolormnet as colormnet
    core = vs.core
    folder = tmp_path / "refs"
    shutil.copytree(extracted, folder)
    shot = json.loads((folder / "refs.json").read_text())["shots"][1]      # the coffee shot
    photo = _photo(SHOTS[1][0])
    Image.fromarray(photo).save(folder / shot["file"])
    src = core.bs.VideoSource(str(clip), cachemode=0)
    out = colormnet.Colorize(src, str(folder), weights=str(parity_checkpoint), size="native")
    frame = out.get_frame(shot["ref_frame"])
    assert frame.props["ColorMNet_ReferenceFrame"] == 1
    assert frame.props["ColorMNet_MemoryReset"] == int(shot["ref_frame"] == CUTS[0])
    assert out.get_frame(CUTS[0]).props["ColorMNet_MemoryReset"] == 1       # the shot's first frame
    # The reference frame's chroma is the coloured PNG's (same matrix, 4:2:0), up to the frame's own L.
    blank = core.std.BlankClip(format=vs.RGB24, width=SIZE[0], height=SIZE[1], length=1)

    def put(n, f):
        fo = f.copy()
        for p in range(3):
            np.asarray(fo[p])[...] = photo[..., p]
        return fo
    want = core.resize.Bicubic(core.std.ModifyFrame(blank, blank, put), format=vs.YUV420P8,
                               matrix_s="170m", range_s="limited").get_frame(0)
    for p in (1, 2):
        diff = np.abs(np.asarray(frame[p]).astype(int) - np.asarray(want[p]).astype(int))
        assert np.median(diff) <= 2, f"plane {p}"
