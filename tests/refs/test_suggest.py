"""``ColorMNet_Confidence`` and ``refs suggest`` on a clip of real photographs with one cut that the
reference folder does not announce: confidence drops there, the suggestion lands there, and a
reference added there raises that part's confidence."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from vscolormnet.__main__ import main

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to make the test clip")]
W, H = 64, 48
HOLD = 4                                                          # frames per photograph
PHOTOS = (("astronaut", HOLD), ("coffee", HOLD), ("chelsea", HOLD))
ANNOUNCED_CUT, HIDDEN_CUT, END = HOLD, 2 * HOLD, 3 * HOLD          # the refs folder names only the first cut


def _photo(name: str) -> np.ndarray:
    import skimage.data
    return np.asarray(Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((W, H), Image.BICUBIC))


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    d = tmp_path_factory.mktemp("film")
    n = 0
    for name, hold in PHOTOS:
        gray = Image.fromarray(_photo(name)).convert("L").convert("RGB")
        for _ in range(hold):
            gray.save(d / f"f{n:03d}.png")
            n += 1
    clip = d / "film.mkv"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-framerate", "24", "-i", str(d / "f%03d.png"),
                    "-c:v", "ffv1", "-pix_fmt", "yuv444p", str(clip)], check=True)
    refs = d / "refs"
    refs.mkdir()
    (refs / "refs.json").write_text(json.dumps({"cuts": [ANNOUNCED_CUT], "num_frames": n}))
    Image.fromarray(_photo("astronaut")).save(refs / "ref_000000.png")
    Image.fromarray(_photo("coffee")).save(refs / f"ref_{ANNOUNCED_CUT:06d}.png")
    return clip, refs


def _suggest(film, capsys, ckpt, *extra):
    clip, refs = film
    capsys.readouterr()
    assert main(["refs", "suggest", str(clip), "--ref", str(refs), "--weights", str(ckpt), "--size", "native",
                 "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_confidence_drops_at_the_unannounced_cut_and_suggest_finds_it(film, capsys, parity_checkpoint, tmp_path):
    clip, refs = film
    plot = tmp_path / "confidence.png"
    out_dir = tmp_path / "next"
    out_dir.mkdir()
    got = _suggest(film, capsys, parity_checkpoint, "-o", str(out_dir), "--plot", str(plot), "-n", "3")
    assert got and set(got[0]) == {"frame", "timecode", "shot", "confidence"}
    assert HIDDEN_CUT <= got[0]["frame"] < END, f"first suggestion must be in the unannounced part: {got}"
    assert [g["confidence"] for g in got] == sorted(g["confidence"] for g in got), "lowest first"
    assert (out_dir / f"ref_{got[0]['frame']:06d}.png").is_file()
    assert plot.stat().st_size > 1000

    from vscolormnet.refs.suggest import suggest
    before = suggest(clip, refs, weights=str(parity_checkpoint), size="native", progress=False).confidence
    assert before[HIDDEN_CUT] < before[HIDDEN_CUT - 2] and before[HIDDEN_CUT] < 0.9 * before[ANNOUNCED_CUT - 2]
    # Colour the hidden part's first frame: its confidence rises.
    Image.fromarray(_photo("chelsea")).save(refs / f"ref_{HIDDEN_CUT:06d}.png")
    after = suggest(clip, refs, weights=str(parity_checkpoint), size="native", progress=False).confidence
    assert after[HIDDEN_CUT + 1:END].mean() > before[HIDDEN_CUT + 1:END].mean()
    assert np.isfinite(after).all() and after[HIDDEN_CUT] == 1.0, "a reference frame is a perfect match"


def test_suggest_errors_name_the_flag(film, capsys, tmp_path, parity_checkpoint):
    clip, refs = film
    for args, msg in [(["-n", "0"], "-n must be ≥ 1"), (["--plot", str(tmp_path / "p.jpg")], "--plot must name a .png"),
                      (["-o", str(tmp_path / "nope")], "-o .*nope does not exist")]:
        capsys.readouterr()
        assert main(["refs", "suggest", str(clip), "--ref", str(refs), "--weights", str(parity_checkpoint),
                     *args]) == 2
        import re
        assert re.search(msg, capsys.readouterr().err)
