"""Colorize(): formats, parity through the filter, order independence, seeks, threads, errors."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import vapoursynth as vs
from PIL import Image
from project_paths import PARITY_CASES
from settle import settled_stats
from skimage import color as skcolor

import vscolormnet as colormnet
from vscolormnet.vs.synthetic import clip_in_format, colour_reference, planes, rgbs_clip

core = vs.core
pytestmark = pytest.mark.slow      # the real network through VapourSynth, several formats


@pytest.fixture()
def ref_png(tmp_path):
    return colour_reference(tmp_path / "ref.png")


@pytest.mark.parametrize("fmt", [vs.YUV420P8, vs.YUV420P10, vs.GRAY8, vs.RGB24, vs.YUV444PS, vs.GRAYS])
def test_formats_and_kept_luma(fmt, ref_png, parity_checkpoint):
    clip = clip_in_format(fmt)
    out = colormnet.Colorize(clip, ref_png, size="native", weights=str(parity_checkpoint))
    f_in = core.get_video_format(fmt)
    expected_family = vs.YUV if f_in.color_family == vs.GRAY else f_in.color_family
    assert out.format.color_family == expected_family
    assert out.format.sample_type == f_in.sample_type and out.format.bits_per_sample == f_in.bits_per_sample
    if f_in.color_family != vs.GRAY:
        assert out.format.id == fmt
    assert (out.width, out.height, out.num_frames, out.fps) == (clip.width, clip.height, clip.num_frames, clip.fps)
    for n in (0, 3):
        fi, fo = clip.get_frame(n), out.get_frame(n)
        if f_in.color_family in (vs.YUV, vs.GRAY):
            assert np.array_equal(planes(fi)[0], planes(fo)[0]), "Y must be bit-identical"
            chroma = np.stack(planes(fo)[1:]).astype(np.float64)
            neutral = 0.0 if f_in.sample_type == vs.FLOAT else 1 << (f_in.bits_per_sample - 1)
            assert np.abs(chroma - neutral).max() > 0, "chroma must have been produced"
        else:
            lab_in = skcolor.rgb2lab(np.stack(planes(fi), -1))
            lab_out = skcolor.rgb2lab(np.stack(planes(fo), -1))
            assert np.abs(lab_in[..., 0] - lab_out[..., 0]).max() < 1.0   # 8-bit quantisation only
        assert fo.props["ColorMNet_InferenceWidth"] == 96


def _case_clip(case):
    d = PARITY_CASES / case
    cfg = json.loads((d / "config.json").read_text())
    paths = sorted((d / "input" / cfg["video"]).glob("*.png"))
    imgs = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    return cfg, imgs, rgbs_clip([i[..., 0].astype(np.float32) / 255 for i in imgs]), d / cfg["ref"]


@pytest.mark.parametrize("case", ["odd_size", "not_first"])
def test_parity_through_colorize(case, parity_checkpoint):
    """Both reference modes: ref_frames=[0] is the official default, no ref_frames the exemplar mode."""
    cfg, imgs, clip, ref = _case_clip(case)
    kwargs = {} if cfg["first_frame_not_exemplar"] else {"ref_frames": [0]}
    out = colormnet.Colorize(clip, str(ref), size="native", weights=str(parity_checkpoint), **kwargs)
    expected = np.load(PARITY_CASES / case / "outputs.npz")["ab_pred"]
    for n, img in enumerate(imgs):
        rgb = np.stack(planes(out.get_frame(n)), -1).astype(np.float64)
        L = skcolor.rgb2lab(img)[..., 0]
        want = skcolor.lab2rgb(np.concatenate([L[..., None], 110 * expected[n].transpose(1, 2, 0)], -1))
        # In gamut, ab' within 1e-3 moves sRGB by well under 2e-3. Out of gamut the filter lowers
        # chroma at constant hue to keep L (skimage would clip RGB): ab_out = s·ab_case, s ≤ 1.
        inside = np.all((want > 0.01) & (want < 0.99), -1)
        assert np.abs(rgb - want)[inside].max(initial=0) < 2e-3, f"{case} frame {n}"
        lab = skcolor.rgb2lab(rgb)
        assert np.abs(lab[..., 0] - L).max() < 1e-3, "L is kept"
        got, exp = lab[..., 1:], 110 * expected[n].transpose(1, 2, 0)
        chromatic = (exp * exp).sum(-1) > 1.0       # the scale is ill-defined near neutral
        scale = (got * exp).sum(-1) / np.maximum((exp * exp).sum(-1), 1e-9)
        assert scale[chromatic].max() <= 1.002
        assert np.abs(got - scale[..., None] * exp).max() < 0.2, "hue must match the official ab"


def _colorize(clip, ref, ckpt, **kw):
    return colormnet.Colorize(clip, ref, size="native", weights=str(ckpt), **kw)


def test_order_independence_seeks_and_threads(ref_png, parity_checkpoint):
    """One real-network run of the order logic (tested in depth on a synthetic backend in test_session.py)."""
    clip = clip_in_format(vs.YUV420P8, n=8)
    ordered = [planes(f) for f in _colorize(clip, ref_png, parity_checkpoint, snapshot_interval=3).frames()]

    # Random order, on a fresh instance.
    out = _colorize(clip, ref_png, parity_checkpoint, snapshot_interval=3)
    order = list(range(8))
    random.Random(1).shuffle(order)
    for n in order:
        got = planes(out.get_frame(n))
        assert all(np.array_equal(a, b) for a, b in zip(got, ordered[n])), f"frame {n} differs (random order)"

    # Many threads, all requests in flight at once.
    core.num_threads = 8
    try:
        out = _colorize(clip, ref_png, parity_checkpoint, snapshot_interval=3)
        futures = [out.get_frame_async(n) for n in reversed(range(8))]
        for n, fut in zip(reversed(range(8)), futures):
            assert all(np.array_equal(a, b) for a, b in zip(planes(fut.result()), ordered[n])), f"frame {n} (threads)"
    finally:
        core.num_threads = 2


def test_key_batch_order_independence_and_threads(ref_png, parity_checkpoint):
    """key_batch=3 (fixed blocks 0-2, 3-5, 6-7; a block's input frames asked of VapourSynth together and the
    next block's ahead): shuffled requests and eight threads give the in-order output, bit for bit."""
    clip = clip_in_format(vs.YUV420P8, n=8)
    ordered = [planes(f) for f in _colorize(clip, ref_png, parity_checkpoint, snapshot_interval=3,
                                            key_batch=3).frames()]
    out = _colorize(clip, ref_png, parity_checkpoint, snapshot_interval=3, key_batch=3)
    for n in (5, 1, 7, 0, 4):
        got = planes(out.get_frame(n))
        assert all(np.array_equal(a, b) for a, b in zip(got, ordered[n])), f"frame {n} differs (random order)"
    core.num_threads = 8
    try:
        out = _colorize(clip, ref_png, parity_checkpoint, snapshot_interval=3, key_batch=3)
        futures = [out.get_frame_async(n) for n in reversed(range(8))]
        for n, fut in zip(reversed(range(8)), futures):
            assert all(np.array_equal(a, b) for a, b in zip(planes(fut.result()), ordered[n])), f"frame {n} (threads)"
    finally:
        core.num_threads = 2


def test_scene_reset_clears_memory(ref_png, parity_checkpoint):
    clip = clip_in_format(vs.YUV420P8, n=9)
    clip = core.std.SetFrameProps(clip[:5], _SceneChangePrev=0) + core.std.SetFrameProps(clip[5:], _SceneChangePrev=1)
    clip = core.std.SetFrameProps(clip, _Matrix=1)
    out = _colorize(clip, ref_png, parity_checkpoint, scene_reset=True)
    props = [out.get_frame(n).props for n in range(9)]
    assert [p["ColorMNet_MemoryReset"] for p in props] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    # After the reset only the reference and the reset frame are in memory.
    assert props[5]["ColorMNet_WorkingMemoryFrames"] == 2
    off = _colorize(clip, ref_png, parity_checkpoint, scene_reset=False)
    assert off.get_frame(5).props["ColorMNet_MemoryReset"] == 0


def test_ref_frames_output_takes_reference_chroma(tmp_path, parity_checkpoint):
    clip = clip_in_format(vs.RGBS, n=6)
    ref_a = colour_reference(tmp_path / "a.png", seed=1)
    ref_b = colour_reference(tmp_path / "b.png", seed=2)
    out = _colorize(clip, [ref_a, ref_b], parity_checkpoint, ref_frames=[0, 4])
    for n, ref in ((0, ref_a), (4, ref_b)):
        f = out.get_frame(n)
        assert f.props["ColorMNet_ReferenceFrame"] == 1
        got = skcolor.rgb2lab(np.stack(planes(f), -1).astype(np.float64))[..., 1:]
        want = skcolor.rgb2lab(np.asarray(Image.open(ref)))[..., 1:]
        # chroma equals the reference's; only the frame's own L differs (gamut clipping aside)
        assert np.median(np.abs(got - want)) < 2.0
    assert out.get_frame(2).props["ColorMNet_ReferenceFrame"] == 0


@pytest.mark.onnx
@pytest.mark.slow
def test_ort_backend_matches_torch_in_the_filter(ref_png, parity_checkpoint, onnx_graphs, monkeypatch):
    """The same Colorize graph on ONNX Runtime (CPU, fp32) agrees with PyTorch (96×64 pads to the 112×112
    of the session's exported graphs, so their cache serves it)."""
    monkeypatch.setenv("VSCOLORMNET_ONNX_DIR", str(onnx_graphs.cache_dir))
    clip = clip_in_format(vs.RGBS, n=3)
    a = _colorize(clip, ref_png, parity_checkpoint)
    b = _colorize(clip, ref_png, parity_checkpoint, backend="ort")
    for n in range(3):
        diff = np.abs(np.stack(planes(a.get_frame(n))) - np.stack(planes(b.get_frame(n))))
        # ab' agrees to ~1e-5; at a few pixels on the gamut boundary the chroma bisection can
        # take the other branch, which moves sRGB by up to ~1e-2 there.
        assert np.quantile(diff, 0.999) < 1e-3 and diff.max() < 2e-2 and diff.mean() < 1e-4, \
            f"frame {n}: {diff.max()}, {diff.mean()}"


def test_cuts_reset_memory_and_any_shot_is_reachable(ref_png, parity_checkpoint, tmp_path):
    """A shot plan through Colorize: resets at the cuts, same output whatever shot is asked first."""
    clip = clip_in_format(vs.YUV420P8, n=8)
    cuts = tmp_path / "cuts.txt"
    cuts.write_text("3\n6\n")
    a = _colorize(clip, ref_png, parity_checkpoint, cuts=str(cuts))
    in_order = [planes(f) for f in a.frames()]
    assert [a.get_frame(n).props["ColorMNet_MemoryReset"] for n in range(8)] == [0, 0, 0, 1, 0, 0, 1, 0]
    b = _colorize(clip, ref_png, parity_checkpoint, cuts=[3, 6])
    for n in (7, 4, 0, 6, 3):
        assert all(np.array_equal(x, y) for x, y in zip(planes(b.get_frame(n)), in_order[n])), f"frame {n}"


def test_idle_shots_drop_their_key_blocks_without_changing_output(ref_png, parity_checkpoint, monkeypatch):
    """Requests hopping across three shots with key_batch=2 and the idle window at 0: every request drops
    the key blocks of the shot not among the two latest; recomputed blocks give the same bits."""
    from vscolormnet.runtime import keyahead
    from vscolormnet.vs import renderer
    clip = clip_in_format(vs.YUV420P8, n=6)
    ordered = [planes(f) for f in _colorize(clip, ref_png, parity_checkpoint, cuts=[2, 4], key_batch=2).frames()]
    monkeypatch.setattr(renderer, "IDLE_REQUESTS", 0)
    dropped = []
    clear = keyahead.KeyAhead.clear

    def counting_clear(self):
        dropped.append(self.start)
        clear(self)
    monkeypatch.setattr(keyahead.KeyAhead, "clear", counting_clear)
    out = _colorize(clip, ref_png, parity_checkpoint, cuts=[2, 4], key_batch=2)
    for n in (0, 2, 4, 1, 3, 5):
        got = planes(out.get_frame(n))
        assert all(np.array_equal(a, b) for a, b in zip(got, ordered[n])), f"frame {n} differs"
    assert {0, 2, 4} <= set(dropped), dropped


@pytest.mark.onnx
def test_prebuild_makes_the_backend_ready_at_call_time(onnx_graphs, ref_png, tmp_path):
    """prebuild=True: the backend (here ORT's graphs at 112×112 from the session's cache) is ready when Colorize
    returns, the first frame shares it, the node gives it back; a backend that cannot get ready fails the call."""
    import gc

    from vscolormnet.runtime import shared
    clip = clip_in_format(vs.YUV420P8)                   # 96×64: native size pads to 112×112
    weights = str(onnx_graphs.weights)
    spec = colormnet.ORT(onnx_dir=str(onnx_graphs.cache_dir), num_threads=1)
    before = settled_stats()        # an earlier test's node may still be finishing frames it asked for ahead
    out = colormnet.Colorize(clip, ref_png, size="native", weights=weights, backend=spec, prebuild=True)
    ready = shared.stats()
    assert ready["backends"] == before["backends"] + 1 and ready["backend_leases"] == before["backend_leases"] + 1
    out.get_frame(0)
    assert shared.stats()["backends"] == ready["backends"], "the renderer shares the prebuilt backend"
    del out
    gc.collect()
    assert shared.stats() == before
    from dataclasses import dataclass

    @dataclass(frozen=True, kw_only=True)
    class FailingORT(colormnet.ORT):            # a backend whose start fails (a full disk, a lost device ...)
        def create(self, network, weights, padded_hw):
            raise OSError("No space left on device\n(details)")
    with pytest.raises(vs.Error) as e:
        colormnet.Colorize(clip, ref_png, size="native", weights=weights, prebuild=True, backend=FailingORT())
    assert str(e.value) == "Colorize: prebuild: the ort backend at 112x112 could not be made ready: " \
                           "No space left on device"
    assert shared.stats() == before, "nothing held after the failure"
    with pytest.raises(vs.Error, match="prebuild"):
        colormnet.Colorize(clip, ref_png, size="native", weights=weights, prebuild="yes")
