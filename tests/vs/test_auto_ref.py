"""``Colorize(clip, auto_ref=...)``: nothing is read or loaded at call time; the first request plans the shots and
each shot's reference is coloured once, when first needed, even under concurrent out-of-order requests; every
frame has colour; the output and the references equal ``refs auto``'s folder used as ``ref``. Bad input is a
one-line ``Colorize:`` error."""
from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import vapoursynth as vs
from auto_ref_media import THREE_SHOTS, S, make_clip
from ddcolor_fixtures import ddcolor_checkpoint_path, ddcolor_colorizers  # noqa: F401

import vscolormnet as colormnet
from vscolormnet.media.images import read_rgb
from vscolormnet.runtime import shared
from vscolormnet.vs.synthetic import clip_in_format

core = vs.core


def _expect(match, *args, **kwargs):
    before = shared.stats()
    with pytest.raises(vs.Error, match=r"^Colorize: " + match) as info:
        colormnet.Colorize(*args, **kwargs)
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    assert all(shared.stats()[k] <= before[k] for k in before), "a rejected call must not load anything"


def test_ref_or_auto_ref_errors(tmp_path, parity_checkpoint):
    ck, tiny = str(parity_checkpoint), str(ddcolor_checkpoint_path("tiny"))
    clip = clip_in_format(vs.YUV420P8)
    _expect(r"ref: give colour reference\(s\) .* or auto_ref='ddcolor-large'", clip, weights=ck)
    _expect("give ref or auto_ref, not both", clip, "x.png", auto_ref="ddcolor-tiny", weights=ck)
    _expect("ref_frames cannot be used with auto_ref", clip, auto_ref="ddcolor-tiny", ref_frames=[0], weights=ck)
    _expect("auto_ref must be one of ddcolor-large, ddcolor-tiny", clip, auto_ref="ddcolor-huge", weights=ck)
    _expect("auto_ref must be a DDColor model name", clip, auto_ref=3, weights=ck)
    for size in (100, True, "512"):
        _expect("auto_ref_size must be a positive multiple of 32", clip, auto_ref="ddcolor-tiny",
                auto_ref_weights=tiny, auto_ref_size=size, weights=ck)
    _expect(r"auto_ref_weights .*nope\.pth not found; run `python -m vscolormnet download ddcolor-tiny`", clip,
            auto_ref="ddcolor-tiny", auto_ref_weights=str(tmp_path / "nope.pth"), weights=ck)
    _expect("auto_ref_weights must be a checkpoint path or None", clip, auto_ref="ddcolor-tiny", auto_ref_weights=1,
            weights=ck)
    _expect("cuts must be frame numbers within", clip, auto_ref="ddcolor-tiny", auto_ref_weights=tiny, cuts=[99],
            weights=ck)


def test_nothing_is_read_or_loaded_at_call_time(parity_checkpoint):
    read = []

    def count(n, f):
        read.append(n)
        return f
    clip = core.std.ModifyFrame(clip_in_format(vs.YUV420P8, n=20), clip_in_format(vs.YUV420P8, n=20), count)
    before = shared.stats()
    out = colormnet.Colorize(clip, auto_ref="ddcolor-tiny", auto_ref_weights=str(ddcolor_checkpoint_path("tiny")),
                             auto_ref_size=S, weights=str(parity_checkpoint), size="native")
    assert out.num_frames == 20 and set(read) <= {0}           # frame 0's properties only: no scan
    assert shared.stats()["backends"] == before["backends"]    # no DDColor (nor ColorMNet) backend yet
    del out


def _planes(f: vs.VideoFrame) -> np.ndarray:
    return np.stack([np.asarray(f[p]) for p in range(f.format.num_planes)])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to make the test clip")
def test_auto_ref_equals_refs_auto_folder_in_any_order(tmp_path, parity_checkpoint, ddcolor_colorizers,  # noqa: F811
                                                       monkeypatch):
    from vscolormnet.media.vsformat import open_video
    from vscolormnet.refs.auto import auto_references
    from vscolormnet.vs import auto_refs
    ddcolor_colorizers("ddcolor-tiny", S)                      # the tiny network stays loaded
    network = shared.acquire_network(parity_checkpoint)
    path = make_clip(tmp_path / "three.mkv", THREE_SHOTS)
    tiny = ddcolor_checkpoint_path("tiny")
    res = auto_references(path, tmp_path / "refs", model="ddcolor-tiny", weights=tiny, input_size=S, progress=False)
    clip = open_video(path)

    # the shared pieces give refs auto's frames and pixels
    found = auto_refs.AutoReferences(clip, cuts=None, model="ddcolor-tiny", weights=tiny, input_size=S,
                                     backend_options={})
    assert found.picks().frames == [r["frame"] for r in res.references] and found.picks().cuts == res.cuts
    for i, r in enumerate(res.references):
        assert np.array_equal(found.image(i), read_rgb(tmp_path / "refs" / r["file"])), r["file"]

    coloured = []
    real = auto_refs.colour_frame
    monkeypatch.setattr(auto_refs, "colour_frame", lambda *a, **k: coloured.append(1) or real(*a, **k))
    kw = dict(weights=str(parity_checkpoint), size="native")
    auto = colormnet.Colorize(clip, auto_ref="ddcolor-tiny", auto_ref_weights=str(tiny), auto_ref_size=S, **kw)
    order = list(range(clip.num_frames))
    random.Random(3).shuffle(order)
    futures = {n: auto.get_frame_async(n) for n in order}     # concurrent, out of order
    got = {n: _planes(fut.result()) for n, fut in futures.items()}
    assert len(coloured) == 3, "each shot's reference is coloured once"
    folder = [_planes(f) for f in colormnet.Colorize(clip, str(tmp_path / "refs"), **kw).frames()]
    for n, want in enumerate(folder):
        assert np.array_equal(got[n], want), f"frame {n}"
        assert got[n][1].std() > 1 and got[n][2].std() > 1, f"frame {n} has flat chroma"
    assert np.array_equal(got[0][0], _planes(clip.get_frame(0))[0]), "the luma is the input's"
    found.image(0)                                             # cached: no further forward
    assert len(coloured) == 3
    network.release()
