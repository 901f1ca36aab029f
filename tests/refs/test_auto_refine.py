"""``refs auto --refine 2`` on a clip whose second cut is missing from ``--cuts`` (test_suggest's recipe: three
photographs, 4 frames each, 64×48): a reference is added inside the unannounced shot and no more than a few in
all; the index holds the confidence before and after; ``refs suggest --plot`` marks automatic references; a
re-run reuses the added one. The rule itself (``refine.choose``) is checked on confidence curves."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from auto_ref_media import S, make_clip, tiny
from ddcolor_fixtures import ddcolor_checkpoints, ddcolor_colorizers  # noqa: F401

from vscolormnet.__main__ import main
from vscolormnet.refs.refine import choose, served, shot_levels

HOLD = 4
ANNOUNCED_CUT, HIDDEN_CUT, END = HOLD, 2 * HOLD, 3 * HOLD


def test_the_rule_takes_only_clearly_low_frames_per_shot_and_apart():
    conf = np.array([1, .97, .96, .95, .96, .95, .94, .95, .96, .95, .70, .72, .71, .93, .95, 1, .96, .95, .5, .94])
    cuts, refs = [15], [0, 15]
    levels = shot_levels(conf, cuts, refs)
    assert levels.tolist() == [.97, .96]                      # best within 2 frames of each reference
    # shot 0: only the dip at 10..12 is below 80 % of 0.97; one of it (min gap 3), the lowest; shot 1: frame 18
    assert choose(conf, cuts, refs, per_shot=2, min_gap=3) == [18, 10]
    assert choose(conf, cuts, refs, per_shot=1, min_gap=3) == [18, 10]
    flat = np.array([1, .9, .88, .87, .86, .85, .84, .83])      # a steady drift of a few per cent: nothing
    assert choose(flat, [], [0], per_shot=2, min_gap=1) == []
    # a shot whose reference is one side of an unannounced cut keeps the level of its good side
    hidden = np.array([1, 1, 1, 1, .7, .7, .7, .7])
    assert shot_levels(hidden, [], [3]).tolist() == [1.0] and choose(hidden, [], [3], 2, 2) == [4, 6]
    assert served(6, [], [3, 6], 8) == [5, 7] and served(6, [4], [0, 6], 8) == [4, 5, 7]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to make the test clip")
def test_refine_adds_a_reference_inside_the_unannounced_shot(tmp_path, parity_checkpoint, ddcolor_colorizers,  # noqa: F811
                                                             capsys):
    ddcolor_colorizers("ddcolor-tiny", S)
    from vscolormnet.runtime import shared
    network = shared.acquire_network(parity_checkpoint)      # one ColorMNet load for the six propagations
    try:
        _refine(tmp_path, parity_checkpoint, capsys)
    finally:
        network.release()


def _refine(tmp_path, parity_checkpoint, capsys):
    clip = make_clip(tmp_path / "hidden.mkv", (("astronaut", HOLD), ("coffee", HOLD), ("chelsea", HOLD)))
    (tmp_path / "cuts.txt").write_text(f"{ANNOUNCED_CUT}\n")
    folder = tmp_path / "refs"
    args = ["refs", "auto", str(clip), "-o", str(folder), *tiny(), "--cuts", str(tmp_path / "cuts.txt"),
            "--refine", "2", "--colormnet-weights", str(parity_checkpoint), "--size", "native"]
    assert main(args) == 0
    index = json.loads((folder / "refs.json").read_text())
    assert index["cuts"] == [ANNOUNCED_CUT] and index["auto"]["refine"] == 2
    shot_refs = [r for r in index["references"] if r["added_by"] == "shot"]
    added = [r for r in index["references"] if r["added_by"] == "refine"]
    assert len(shot_refs) == 2 and 1 <= len(added) <= 3, index["references"]
    part_of_pick = shot_refs[1]["frame"] >= HIDDEN_CUT            # the part of shot 1 that got its reference
    unreferenced = range(ANNOUNCED_CUT, HIDDEN_CUT) if part_of_pick else range(HIDDEN_CUT, END)
    assert any(r["frame"] in unreferenced for r in added), (shot_refs, added)
    for r in added:
        assert r["origin"] == "auto" and (folder / r["file"]).is_file()
        assert 0 < r["frame_confidence"] < 1 and r["confidence_after"] > r["confidence_before"]
    assert sorted(p.name for p in folder.glob("ref_*")) == sorted(r["file"] for r in index["references"])

    # refs suggest --plot on the folder: automatic references drawn as such
    from vscolormnet.refs.auto import reference_origins
    frames = [r["frame"] for r in index["references"]]
    assert reference_origins(folder, frames) == dict.fromkeys(frames, "auto")
    assert main(["refs", "suggest", str(clip), "--ref", str(folder), "--weights", str(parity_checkpoint), "--size",
                 "native", "--plot", str(tmp_path / "plot.png")]) == 0
    assert (tmp_path / "plot.png").stat().st_size > 1000

    # a re-run with the same settings decides the same and reuses every reference (no DDColor forward)
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.glob("ref_*")}
    capsys.readouterr()
    assert main(args) == 0
    assert "0 coloured" in capsys.readouterr().err
    again = json.loads((folder / "refs.json").read_text())
    assert [r["frame"] for r in again["references"]] == [r["frame"] for r in index["references"]]
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("ref_*")} == mtimes
    assert not (folder / ".refs-auto-previous").exists()
