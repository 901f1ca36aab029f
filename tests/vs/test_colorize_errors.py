"""Every bad input to ``Colorize`` is a one-line ``vs.Error`` starting ``Colorize:`` that names the
parameter, raised at call time (before weights are loaded or any frame is rendered)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs
from PIL import Image

import vscolormnet as colormnet
from vscolormnet.runtime import shared
from vscolormnet.runtime.geometry import inference_geometry
from vscolormnet.vs.synthetic import clip_in_format, colour_reference

core = vs.core


@pytest.fixture(scope="module")
def ref_png(tmp_path_factory):
    return colour_reference(tmp_path_factory.mktemp("ref") / "ref.png")


def _expect(match, *args, **kwargs):
    before = shared.stats()
    with pytest.raises(vs.Error, match=r"^Colorize: " + match) as info:
        colormnet.Colorize(*args, **kwargs)
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    after = shared.stats()      # earlier tests' nodes may be going away meanwhile: nothing may be added
    assert all(after[k] <= before[k] for k in before), f"a rejected call must not load or keep anything: {after}"


def test_clip_errors(ref_png, parity_checkpoint):
    ck = str(parity_checkpoint)
    clip = clip_in_format(vs.YUV420P8)
    _expect("clip must be a vapoursynth.VideoNode, got str", "clip.mkv", ref_png, weights=ck)
    variable = core.std.Splice([clip, core.resize.Point(clip, 64, 48)], mismatch=True)
    _expect("clip must have a constant format and size, got a variable size", variable, ref_png, weights=ck)
    varfmt = core.std.Splice([clip, core.resize.Point(clip, format=vs.YUV444P8)], mismatch=True)
    _expect("clip must have a constant format and size, got a variable format", varfmt, ref_png, weights=ck)
    gray32 = core.std.BlankClip(format=core.query_video_format(vs.GRAY, vs.INTEGER, 32, 0, 0).id, width=32, height=32)
    _expect("clip must be 8–16-bit integer or 16/32-bit float, got Gray32", gray32, ref_png, weights=ck)
    for bad in ("bogus", b"??"):
        tagged = core.std.SetFrameProps(clip, _Matrix=bad)
        _expect("clip: frame property _Matrix must be an integer", tagged, ref_png, weights=ck)
    _expect("clip: frame property _Range must be an integer",
            core.std.SetFrameProps(clip, _Range="sometimes"), ref_png, weights=ck)


def test_string_props_that_name_a_standard_value_are_accepted(ref_png, parity_checkpoint):
    clip = core.std.SetFrameProps(clip_in_format(vs.YUV420P8, n=1), _Matrix="709", _Range="limited")
    out = colormnet.Colorize(clip, ref_png, weights=str(parity_checkpoint), size="native")
    assert out.format.id == vs.YUV420P8


def test_ref_errors(tmp_path, ref_png, parity_checkpoint):
    ck = str(parity_checkpoint)
    clip = clip_in_format(vs.YUV420P8)
    _expect("ref must be a colour clip .* got Gray8", clip, clip_in_format(vs.GRAY8, n=1), weights=ck)
    gray_png = tmp_path / "gray.png"
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(gray_png)
    _expect(r"ref image .*gray\.png is grayscale", clip, str(gray_png), weights=ck)
    _expect(r"ref image .*missing\.png does not exist", clip, str(tmp_path / "missing.png"), weights=ck)
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    _expect(r"ref image .*junk\.png cannot be read as an image", clip, str(tmp_path / "junk.png"), weights=ck)
    _expect("ref must be a colour clip, an image path", clip, 42, weights=ck)
    _expect("ref is an empty list", clip, [], weights=ck)
    _expect("ref list items must be image paths or H×W×3 uint8 arrays; item 1 is int", clip, [ref_png, 3],
            weights=ck)
    _expect(r"ref array 0 must be a non-empty H×W×3 uint8 RGB array, got shape \(0, 0, 3\)", clip,
            [np.zeros((0, 0, 3), np.uint8)], weights=ck)
    _expect(r"ref array 0 must be a non-empty H×W×3 uint8 RGB array", clip, [np.zeros((8, 8), np.float32)],
            weights=ck)


def test_decompression_bomb_reference(tmp_path, parity_checkpoint):
    """A tiny PNG that claims 40000×40000 pixels is refused before decoding."""
    import struct
    import zlib
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png)
    _expect(r"ref image .*bomb\.png (is too large to decode safely|is 40000x40000: more than)", clip_in_format(vs.GRAY8), str(bomb),
            weights=str(parity_checkpoint))


def test_ref_frames_errors(ref_png, parity_checkpoint):
    ck = str(parity_checkpoint)
    clip = clip_in_format(vs.YUV420P8)
    _expect(r"ref_frames must have one frame number per reference \(1\), got 2", clip, ref_png,
            ref_frames=[0, 1], weights=ck)
    _expect(r"ref_frames must be within 0…3, got 9", clip, ref_png, ref_frames=[9], weights=ck)
    _expect("ref_frames must be None or a non-empty list of frame numbers", clip, ref_png, ref_frames="0",
            weights=ck)
    _expect("ref_frames must be None or a non-empty list of frame numbers", clip, ref_png, ref_frames=[True],
            weights=ck)
    out = colormnet.Colorize(clip, ref_png, ref_frames=[np.int64(0)], weights=ck, size="native")
    assert out.num_frames == clip.num_frames, "numpy integers are integers"


def test_reference_folder_for_another_clip(tmp_path, ref_png, parity_checkpoint, caplog):
    """A folder's index records the clip it came from: another frame count or picture shape is refused
    naming both; allow_ref_mismatch=True uses it (a uniform rescale is always fine)."""
    import json
    import shutil
    ck = str(parity_checkpoint)
    clip = clip_in_format(vs.YUV420P8)                      # 4 frames, 96x64

    def folder(name, **index):
        d = tmp_path / name
        d.mkdir()
        (d / "refs.json").write_text(json.dumps({"cuts": [], **index}))
        shutil.copy(ref_png, d / "ref_000001.png")
        return str(d)
    other = folder("other", num_frames=100, width=96, height=64)
    _expect(r"ref .*other was extracted from a clip of 100 frames, the clip has 4; was it made from another "
            r"video or another edit\? \(allow_ref_mismatch=True uses it anyway\)", clip, other, weights=ck)
    cropped = folder("cropped", num_frames=4, width=96, height=96)
    _expect(r"ref .*cropped was extracted from a 96x96 clip, the clip is 96x64", clip, cropped, weights=ck)
    late_cut = folder("late_cut", num_frames=4, cuts=[2, 9])
    _expect(r"ref .*refs\.json: cuts must be frame numbers within 0…3, got 9", clip, late_cut, weights=ck)
    colormnet.Colorize(clip, other, weights=ck, allow_ref_mismatch=True)
    colormnet.Colorize(clip, folder("upscaled", num_frames=4, width=48, height=32), weights=ck)
    _expect("allow_ref_mismatch must be True or False, got 'yes'", clip, other, weights=ck, allow_ref_mismatch="yes")
    late = folder("late", num_frames=100)
    shutil.copy(ref_png, Path(late) / "ref_000050.png")
    _expect(r"ref folder .* has references for frames beyond the clip's 4 frames \(first: frame 50\)",
            clip, late, weights=ck, allow_ref_mismatch=True)
    _expect("ref_frames must be None when ref is a reference folder", clip, other, ref_frames=[0], weights=ck)
    negative = folder("negative", num_frames=4, cuts=[-1])
    _expect(r"ref folder: .*refs\.json: cuts must be frame numbers ≥ 0, got -1", clip, negative, weights=ck)


def test_a_gray_reference_is_reported_once(tmp_path, ref_png, parity_checkpoint, caplog):
    import json
    import logging
    import shutil

    from vscolormnet.media.ref_folder import load_reference_folder
    d = tmp_path / "refs"
    d.mkdir()
    (d / "refs.json").write_text(json.dumps({"cuts": [], "num_frames": 4}))
    shutil.copy(ref_png, d / "ref_000001.png")
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(d / "ref_000002.png")
    with caplog.at_level(logging.WARNING, logger="vscolormnet"):
        load_reference_folder(d)                               # the command's own check
        colormnet.Colorize(clip_in_format(vs.YUV420P8), str(d), weights=str(parity_checkpoint))
    notes = [r for r in caplog.records if "still gray and are ignored" in r.getMessage()]
    assert len(notes) == 1, [r.getMessage() for r in notes]


def test_parameter_errors(tmp_path, ref_png, parity_checkpoint):
    ck = str(parity_checkpoint)
    clip = clip_in_format(vs.YUV420P8)
    _expect(r"cuts must be frame numbers within 0…3, got 7", clip, ref_png, cuts=[7], weights=ck)
    _expect("cuts must be None, a list of frame numbers or a cuts.txt path", clip, ref_png, cuts=2, weights=ck)
    _expect(r"cuts file .*nothere\.txt does not exist", clip, ref_png, cuts=str(tmp_path / "nothere.txt"),
            weights=ck)
    _expect("ref_scope must be None, 'clip' or 'shot', got 'film'", clip, ref_png, ref_scope="film", weights=ck)
    _expect("size must be one of '384', '512', '640', 'native', got '720p'", clip, ref_png, size="720p", weights=ck)
    _expect("size must be one of .* got True", clip, ref_png, size=True, weights=ck)
    _expect("weights must be a checkpoint path or None, got int", clip, ref_png, weights=5)
    _expect(r"weights: weights file .*nope\.pth not found; run `python -m vscolormnet download`", clip,
            ref_png, weights=str(tmp_path / "nope.pth"))
    _expect(rf"weights: {tmp_path} is a folder, not a checkpoint file \(e\.g\. .*DINOv2FeatureV6", clip, ref_png,
            weights=str(tmp_path))
    _expect("backend must be one of 'torch', 'ort', 'trt', 'auto' or a backend object", clip, ref_png,
            backend="tpu", weights=ck)
    _expect("device must be 'cpu' or 'cuda' for backend 'torch', got 'tpu'", clip, ref_png, device="tpu",
            weights=ck)
    _expect("give device inside the backend object", clip, ref_png, backend=colormnet.Torch(), device="cpu",
            weights=ck)
    _expect("fp16 must be True or False, got 'yes'", clip, ref_png, fp16="yes", weights=ck)
    _expect("scene_reset must be True or False, got 'no'", clip, ref_png, scene_reset="no", weights=ck)
    _expect("enable_long_term must be True or False, got 'no'", clip, ref_png, enable_long_term="no", weights=ck)
    _expect("mem_every must be a positive integer, got 0", clip, ref_png, mem_every=0, weights=ck)
    _expect("top_k must be a positive integer, got 2.5", clip, ref_png, top_k=2.5, weights=ck)
    _expect(r"min_mid_term_frames must be smaller than max_mid_term_frames \(10\)", clip, ref_png,
            min_mid_term_frames=10, weights=ck)
    _expect("memory must be a vscolormnet.MemoryConfig or None, got dict", clip, ref_png, memory={"top_k": 3},
            weights=ck)
    _expect("give memory parameters either as memory=MemoryConfig", clip, ref_png,
            memory=colormnet.MemoryConfig(), top_k=3, weights=ck)
    _expect("snapshot_interval must be a positive integer", clip, ref_png, snapshot_interval=0, weights=ck)
    _expect("max_snapshots must be a positive integer", clip, ref_png, max_snapshots="16", weights=ck)
    with pytest.raises(TypeError):
        colormnet.Colorize(clip, ref_png, None, "native")       # everything after ref is keyword-only


def test_key_batch_errors(ref_png, parity_checkpoint):
    ck = str(parity_checkpoint)
    clip = clip_in_format(vs.YUV420P8)
    for bad in (0, -4, 2.5, True, "8", 65, 10000):
        _expect(rf"key_batch must be an integer from 1 to 64 \(or None for the device default\), got {bad!r}$",
                clip, ref_png, key_batch=bad, weights=ck)
    out = colormnet.Colorize(clip, ref_png, key_batch=np.int64(2), weights=ck, size="native")
    assert out.num_frames == clip.num_frames, "numpy integers are integers"


def test_missing_backends_fail_at_call_time(ref_png, parity_checkpoint):
    """Without TensorRT / CUDA the error comes from Colorize itself, not from the first frame."""
    import importlib.util

    import torch
    clip = clip_in_format(vs.YUV420P8)
    ck = str(parity_checkpoint)
    if importlib.util.find_spec("tensorrt") is None:
        _expect("backend 'trt' needs TensorRT", clip, ref_png, backend="trt", weights=ck)
    if not torch.cuda.is_available():
        _expect("device='cuda': CUDA is not available", clip, ref_png, device="cuda", weights=ck)
        _expect("backend 'ort' with device='cuda'", clip, ref_png, backend="ort", device="cuda", weights=ck)
        _expect("backend 'trt'", clip, ref_png, backend=colormnet.TRT(), weights=ck)


def test_nan_checkpoint_is_refused_at_call_time(tmp_path, ref_png):
    import torch

    from vscolormnet.weights.seeded import make_state_dict
    sd = make_state_dict(seed=0)
    key = next(k for k in sd if k.endswith("weight") and sd[k].dtype.is_floating_point)
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = float("nan")
    path = tmp_path / "nan.pth"
    torch.save(sd, path)
    _expect(r"weights: .*(NaN|non-finite)", clip_in_format(vs.YUV420P8), ref_png, weights=str(path))


def test_inference_geometry_presets():
    g = inference_geometry(1920, 1080, "512")
    assert (g.inf_width, g.inf_height, g.padded_hw) == (512, 288, (336, 560))
    assert inference_geometry(1920, 1080, 384).inf_width == 384
    assert inference_geometry(1440, 1080, "512").padded_hw == (448, 560), "4:3 keeps its aspect"
    small = inference_geometry(320, 240, "640")
    assert (small.inf_width, small.inf_height) == (320, 240), "never upscaled"
    assert inference_geometry(1440, 1080, "native").inf_width == 1440


@pytest.mark.parametrize("props, why", [
    ({"_Matrix": 100}, r"frame property _Matrix must be a matrix code VapourSynth knows \(0, 1, 2, .*\), got 100"),
    ({"_Matrix": -5}, r"frame property _Matrix must be a matrix code VapourSynth knows .*, got -5"),
    ({"_Range": 7}, r"frame property _Range must be 1 \(full\) or 0 \(limited\), got 7"),
    ({"_Matrix": 0}, r"frame property _Matrix is 0 \(RGB\) on a YUV clip"),
])
def test_invalid_colour_props_are_refused_at_call_time_and_at_render_time(ref_png, parity_checkpoint, props, why):
    """Frame 0's props at call time; a later frame's when it is rendered: always ``Colorize: ...``, never
    the resize library's own error."""
    ck = str(parity_checkpoint)
    clip = clip_in_format(vs.YUV420P8)
    _expect(r"clip: frame 0: " + why, core.std.SetFrameProps(clip, **props), ref_png, weights=ck)
    later = core.std.Splice([clip[:2], core.std.SetFrameProps(clip[2:], **props)])
    out = colormnet.Colorize(later, ref_png, weights=ck, size="native")
    out.get_frame(1)
    with pytest.raises(vs.Error) as info:
        out.get_frame(2)
    from vscolormnet.util.cli import error_summary
    assert re.match(r"^Colorize: frame 2: " + why, error_summary(info.value)), str(info.value)[-300:]


def test_gray_clip_taken_from_yuv_keeps_its_matrix_prop(ref_png, parity_checkpoint):
    """A GRAY clip cut out of YUV carries _Matrix=1; the RGB intermediate must not (resize refuses that)."""
    gray = core.std.ShufflePlanes(core.std.SetFrameProps(clip_in_format(vs.YUV420P8), _Matrix=1), 0, vs.GRAY)
    out = colormnet.Colorize(gray, ref_png, weights=str(parity_checkpoint), size="native")
    frame = out.get_frame(0)
    assert out.format.id == vs.YUV444P8 and frame.props["_Matrix"] == 1
    np.testing.assert_array_equal(np.asarray(frame[0]), np.asarray(gray.get_frame(0)[0]))
