"""``Colorize(clip, ref, ...)``: the VapourSynth filter.

Data flows one way: VS request → ``ClipSession`` (order-independent state) → ``Propagator``
step (backend stages + memory) → chroma at the inference size → resized to the clip size →
combined with the clip's own lightness (out-of-gamut chroma is reduced at constant hue, not
clipped in RGB, so L is kept) → the clip's format. For YUV and GRAY input the
output Y plane is the input's, bit for bit; only chroma is produced.
"""
from __future__ import annotations

import logging
import os
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import vapoursynth as vs

from . import color
from .config import MemoryConfig
from .core import Propagator, Reference
from .session import ClipSession
from .weights import CheckpointError, resolve_weights

log = logging.getLogger("vscolormnet")
core = vs.core
_ENGINES: "weakref.WeakSet[_Engine]" = weakref.WeakSet()   # live engines, for diagnostics and tests

SIZE_PRESETS = {"384": 384, "512": 512, "640": 640}
DEFAULT_SIZE = "512"
PROP = "ColorMNet_"


def _err(msg: str) -> vs.Error:
    return vs.Error(f"Colorize: {msg}")


@dataclass(frozen=True)
class Geometry:
    """Clip size, inference size (unpadded) and padded network size."""

    width: int
    height: int
    inf_width: int
    inf_height: int

    @property
    def padded_hw(self) -> tuple[int, int]:
        return color.padded_size(self.inf_height, self.inf_width)


def inference_geometry(width: int, height: int, size) -> Geometry:
    """Scale so the longest side equals the preset (never upscaling), keeping the aspect ratio."""
    key = str(size).lower()
    if key == "native":
        return Geometry(width, height, width, height)
    if key not in SIZE_PRESETS:
        raise _err(f"size must be one of {', '.join(SIZE_PRESETS)} or 'native', got {size!r}")
    target = SIZE_PRESETS[key]
    longest = max(width, height)
    if longest <= target:
        return Geometry(width, height, width, height)
    scale = target / longest
    iw, ih = max(2, round(width * scale)), max(2, round(height * scale))
    return Geometry(width, height, iw, ih)


def _first_props(clip: vs.VideoNode) -> dict:
    return dict(clip.get_frame(0).props)


def matrix_for(clip: vs.VideoNode, props: dict) -> str:
    """The clip's ``_Matrix`` as a resize name; unspecified → BT.601 (170m) for SD, BT.709 otherwise."""
    names = {1: "709", 5: "470bg", 6: "170m", 7: "240m", 9: "2020ncl", 10: "2020cl"}
    m = int(props.get("_Matrix", 2))
    if m in names:
        return names[m]
    return "170m" if clip.width <= 1024 and clip.height <= 576 else "709"


def _range_for(clip: vs.VideoNode, props: dict) -> str:
    """``_Range`` as a resize name: YUV defaults to limited, GRAY and RGB to full."""
    r = props.get("_Range", props.get("_ColorRange"))
    if r is None:
        return "limited" if clip.format.color_family == vs.YUV else "full"
    return "full" if int(r) == int(vs.RANGE_FULL) else "limited"


def _to_rgbs(clip: vs.VideoNode, matrix: str, rng: str) -> vs.VideoNode:
    """Any GRAY/YUV/RGB clip → RGBS (full range, [0, 1])."""
    family = clip.format.color_family
    if family == vs.GRAY:
        g = core.resize.Point(clip, format=vs.GRAYS, range_in_s=rng, range_s="full")
        return core.std.ShufflePlanes(g, [0, 0, 0], vs.RGB)
    if family == vs.YUV:
        return core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s=matrix, range_in_s=rng)
    return core.resize.Point(clip, format=vs.RGBS)


def _frame_to_tensor(frame: vs.VideoFrame) -> torch.Tensor:
    """RGBS frame → ``3×H×W`` float32 tensor (a copy)."""
    return torch.from_numpy(np.stack([np.asarray(frame[p]) for p in range(3)]).astype(np.float32))


def _lab(rgb: torch.Tensor) -> torch.Tensor:
    """``3×H×W`` RGB in [0, 1] → Lab, computed in float64 (as skimage), returned as float32."""
    return color.rgb_to_lab(rgb.double().clamp(0, 1)).float()


# ---- references -----------------------------------------------------------------------
def _load_ref_images(ref, geometry: Geometry) -> list[np.ndarray]:
    """Reference images as ``H×W×3`` uint8/float RGB arrays at the inference size."""
    if isinstance(ref, vs.VideoNode):
        if ref.format is None or ref.format.color_family not in (vs.RGB, vs.YUV):
            fmt = "variable" if ref.format is None else ref.format.name
            raise _err(f"ref must be a colour clip (RGB or YUV) or image paths, got {fmt}")
        props = _first_props(ref)
        rgb = _to_rgbs(ref, matrix_for(ref, props), _range_for(ref, props))
        if (ref.width, ref.height) != (geometry.inf_width, geometry.inf_height):
            rgb = core.resize.Bicubic(rgb, geometry.inf_width, geometry.inf_height)
        images = [_frame_to_tensor(f).permute(1, 2, 0).numpy() for f in rgb.frames()]
        for i, img in enumerate(images):
            if np.ptp(img - img.mean(axis=2, keepdims=True)) < 1e-3:
                raise _err(f"ref frame {i} is grayscale; a reference must be in colour")
        return images
    items = [ref] if isinstance(ref, (str, os.PathLike, np.ndarray)) else \
        list(ref) if isinstance(ref, (list, tuple)) else None
    if not items or not all(isinstance(p, (str, os.PathLike, np.ndarray)) for p in items):
        raise _err(f"ref must be a colour clip, an image path, a list of image paths or a reference "
                   f"folder, got {type(ref).__name__}")
    from PIL import Image
    images = []
    for p in items:
        if isinstance(p, np.ndarray):
            rgb, name = p, "array"
        else:
            name = str(p)
            if not Path(p).is_file():
                raise _err(f"ref image {p} does not exist")
            try:
                with Image.open(p) as im:
                    rgb = np.asarray(im.convert("RGB"))
            except OSError as e:
                raise _err(f"ref image {p} cannot be read: {e}") from None
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise _err(f"ref image {name} must be H×W×3 uint8 RGB")
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
            raise _err(f"ref image {name} is grayscale; a reference must be in colour")
        images.append(color.resize_rgb_like_pil(rgb, (geometry.inf_width, geometry.inf_height)))
    return images


def _image_tensor(img: np.ndarray) -> torch.Tensor:
    if img.dtype == np.uint8:
        return color.uint8_to_unit(img)
    return torch.from_numpy(np.array(img, dtype=np.float64)).permute(2, 0, 1)


# ---- the filter -----------------------------------------------------------------------
def Colorize(clip: vs.VideoNode, ref, ref_frames=None, size=DEFAULT_SIZE, weights=None,
             backend: str = "torch", device: str = "cpu", device_id: int = 0, fp16: bool = False,
             scene_reset: bool = False, mem_every: int = 5, max_mid_term_frames: int = 10,
             min_mid_term_frames: int = 5, num_prototypes: int = 128,
             max_long_term_elements: int = 10000, top_k: int = 30, enable_long_term: bool = True,
             snapshot_interval: int = 10, max_snapshots: int = 16) -> vs.VideoNode:
    """Colourise ``clip`` from colour reference(s) with ColorMNet.

    clip:               GRAY, YUV or RGB, constant format and size, integer or float. GRAY
                        returns YUV 4:4:4 of the same sample type; otherwise the input format.
                        The Y plane (GRAY/YUV) is copied bit for bit; only chroma is produced.
    ref:                colour reference(s): a RGB/YUV clip (one frame per reference, any size),
                        an image path, a list of paths, or a folder made by
                        ``python -m vscolormnet refs extract`` (its coloured ``ref_<frame>.png``).
    ref_frames:         None: references are exemplars, not frames of the clip (all kept in
                        permanent memory). [n, ...]: reference i is the colour version of clip
                        frame n_i; that frame's output takes its chroma exactly.
    size:               inference size: '384' | '512' | '640' (longest side, aspect kept,
                        never upscaled) or 'native'. Padded to multiples of 112.
    weights:            checkpoint path (default: the one `python -m vscolormnet download` fetched).
    backend, device, device_id, fp16:  'torch' | 'ort' | 'trt' | 'auto'; 'cpu' | 'cuda'.
    scene_reset:        clear working/long-term memory and the hidden state at frames whose
                        ``_SceneChangePrev`` is set (references stay). Always on with a
                        reference folder, whose index lists the cuts.
    mem_every … top_k, enable_long_term:  memory parameters, official test.py defaults.
    snapshot_interval, max_snapshots:  seek cost / memory trade-off: a backward seek recomputes
                        at most ``snapshot_interval`` frames (the interval doubles whenever more
                        than ``max_snapshots`` snapshots would be kept).
    """
    # -- validation, in signature order, before touching any device
    if not isinstance(clip, vs.VideoNode):
        raise _err(f"clip must be a vapoursynth.VideoNode, got {type(clip).__name__}")
    if clip.format is None or clip.width == 0 or clip.height == 0:
        raise _err("clip must have a constant format and size (got a variable one)")
    family = clip.format.color_family
    if family not in (vs.GRAY, vs.YUV, vs.RGB):
        raise _err(f"clip must be GRAY, YUV or RGB, got {clip.format.name}")
    if isinstance(ref, (str, os.PathLike)) and Path(ref).is_dir():
        from .refs import load_reference_folder
        try:
            ref_folder = load_reference_folder(ref)
        except ValueError as e:
            raise _err(f"ref folder: {e}") from None
        if ref_frames is not None:
            raise _err("ref_frames must be None when ref is a reference folder (its file names give the frames)")
        ref = [img for _, img in ref_folder.references]
        ref_frames = [n for n, _ in ref_folder.references]
        scene_reset = True
        cut_frames = frozenset(ref_folder.cuts)
    else:
        cut_frames = frozenset()
    geometry = inference_geometry(clip.width, clip.height, size)
    ref_images = _load_ref_images(ref, geometry)
    if not ref_images:
        raise _err("ref holds no reference")
    if ref_frames is not None:
        if not isinstance(ref_frames, (list, tuple)) or not all(isinstance(n, int) and not isinstance(n, bool)
                                                                for n in ref_frames):
            raise _err(f"ref_frames must be None or a list of frame numbers, got {ref_frames!r}")
        if len(ref_frames) != len(ref_images):
            raise _err(f"ref_frames must have one frame number per reference ({len(ref_images)}), "
                       f"got {len(ref_frames)}")
        bad = [n for n in ref_frames if not 0 <= n < clip.num_frames]
        if bad:
            raise _err(f"ref_frames must be within 0…{clip.num_frames - 1}, got {bad[0]}")
        if len(set(ref_frames)) != len(ref_frames):
            raise _err(f"ref_frames must not repeat a frame, got {list(ref_frames)}")
    config = MemoryConfig(mem_every=mem_every, max_mid_term_frames=max_mid_term_frames,
                          min_mid_term_frames=min_mid_term_frames, num_prototypes=num_prototypes,
                          max_long_term_elements=max_long_term_elements, top_k=top_k,
                          enable_long_term=enable_long_term)
    try:
        config.validate()
    except ValueError as e:
        raise _err(str(e)) from None
    if backend not in ("torch", "ort", "trt", "auto"):
        raise _err(f"backend must be 'torch', 'ort', 'trt' or 'auto', got {backend!r}")
    if device not in ("cpu", "cuda", "auto"):
        raise _err(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    if device == "auto" and backend != "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and backend == "torch" and not torch.cuda.is_available():
        raise _err("device='cuda' but CUDA is not available to PyTorch; use device='cpu'")
    if not isinstance(snapshot_interval, int) or snapshot_interval < 1:
        raise _err(f"snapshot_interval must be a positive integer, got {snapshot_interval!r}")
    if not isinstance(max_snapshots, int) or max_snapshots < 1:
        raise _err(f"max_snapshots must be a positive integer, got {max_snapshots!r}")
    try:
        weights_path = resolve_weights(weights)
    except CheckpointError as e:
        raise _err(f"weights: {e}") from None

    # -- formats: full-size RGB for the output's lightness, inference-size RGB for the network
    props = _first_props(clip)
    matrix, rng = matrix_for(clip, props), _range_for(clip, props)
    rgb_full = _to_rgbs(clip, matrix, rng)
    rgb_small = rgb_full
    if (geometry.inf_width, geometry.inf_height) != (clip.width, clip.height):
        rgb_small = core.resize.Bicubic(rgb_full, geometry.inf_width, geometry.inf_height)

    engine = _Engine(rgb_small, geometry, ref_images, ref_frames, config, weights_path, backend,
                     device, device_id, fp16, scene_reset, cut_frames, snapshot_interval, max_snapshots)
    vs.register_on_destroy(engine.close)
    _ENGINES.add(engine)

    def colorize_frame(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        return engine.render(n, f)

    out_rgb = core.std.ModifyFrame(rgb_full, rgb_full, colorize_frame)
    return _to_clip_format(clip, out_rgb, matrix, rng)


def _to_clip_format(clip: vs.VideoNode, out_rgb: vs.VideoNode, matrix: str, rng: str) -> vs.VideoNode:
    """RGBS → the input's format; Y copied from the input for GRAY/YUV."""
    fmt = clip.format
    if fmt.color_family == vs.RGB:
        return core.resize.Point(out_rgb, format=fmt.id, dither_type="none") if fmt.id != vs.RGBS else out_rgb
    if fmt.color_family == vs.YUV:
        yuv = core.resize.Bicubic(out_rgb, format=fmt.id, matrix_s=matrix, range_s=rng, dither_type="none")
        return core.std.CopyFrameProps(core.std.ShufflePlanes([clip, yuv], [0, 1, 2], vs.YUV), yuv)
    yuv_fmt = core.query_video_format(vs.YUV, fmt.sample_type, fmt.bits_per_sample, 0, 0)
    yuv = core.resize.Bicubic(out_rgb, format=yuv_fmt.id, matrix_s=matrix, range_s=rng, dither_type="none")
    out = core.std.CopyFrameProps(core.std.ShufflePlanes([clip, yuv], [0, 1, 2], vs.YUV), yuv)
    return core.std.SetFrameProps(out, _Matrix=_MATRIX_IDS[matrix],
                                  _Range=int(vs.RANGE_FULL if rng == "full" else vs.RANGE_LIMITED))


_MATRIX_IDS = {"709": 1, "470bg": 5, "170m": 6, "240m": 7, "2020ncl": 9, "2020cl": 10}


class _Engine:
    """Lazily builds the backend and session on the first request; renders output frames."""

    created = 0   # engines made so far in this process; ``serial`` tells them apart

    def __init__(self, rgb_small, geometry, ref_images, ref_frames, config, weights_path, backend,
                 device, device_id, fp16, scene_reset, cut_frames, snapshot_interval, max_snapshots):
        self.rgb_small = rgb_small
        self.geometry = geometry
        self.ref_images = ref_images
        self.ref_frames = ref_frames
        self.config = config
        self.weights_path = weights_path
        self.backend_args = dict(name=backend, device=device, device_id=device_id, fp16=fp16)
        self.scene_reset = scene_reset
        self.cut_frames = cut_frames
        self.snapshot_interval = snapshot_interval
        self.max_snapshots = max_snapshots
        self.session: ClipSession | None = None
        self.device = torch.device("cpu")
        _Engine.created += 1
        self.serial = _Engine.created

    def _network_input(self, n: int) -> tuple[torch.Tensor, bool]:
        frame = self.rgb_small.get_frame(n)
        cut = self.scene_reset and (n in self.cut_frames or bool(frame.props.get("_SceneChangePrev", 0)))
        L = _lab(_frame_to_tensor(frame).to(self.device))[0]
        return color.pad(color.normalise_l(L)).expand(3, -1, -1).unsqueeze(0).contiguous(), cut

    def _start(self) -> ClipSession:
        from .backends import create_backend
        be = create_backend(weights=self.weights_path, padded_hw=self.geometry.padded_hw, **self.backend_args)
        self.device = be.device
        refs = []
        for i, img in enumerate(self.ref_images):
            lab = _lab(_image_tensor(img).to(self.device))
            frame = None if self.ref_frames is None else self.ref_frames[i]
            if frame is None:
                image = color.pad(color.normalise_l(lab[0])).expand(3, -1, -1).unsqueeze(0).contiguous()
            else:
                image = self._network_input(frame)[0]   # the key comes from the clip frame itself
            refs.append(Reference(image, color.pad(color.normalise_ab(lab[1:])).unsqueeze(0).contiguous(), frame))
        num_frames = self.rgb_small.num_frames
        prop = Propagator(be, self.config, refs, self.config.long_term_usage_for(num_frames))
        log.info("Colorize: %s, inference %dx%d (padded %dx%d), %d reference(s)", be.describe(),
                 self.geometry.inf_width, self.geometry.inf_height, self.geometry.padded_hw[1],
                 self.geometry.padded_hw[0], len(refs))
        return ClipSession(prop, num_frames, self._network_input, self.snapshot_interval, self.max_snapshots)

    def render(self, n: int, full: vs.VideoFrame) -> vs.VideoFrame:
        if self.session is None:
            self.session = self._start()
        res = self.session.result(n)
        g = self.geometry
        ab = color.unpad(res.ab[0], g.inf_height, g.inf_width)
        if (g.inf_width, g.inf_height) != (g.width, g.height):
            ab = F.interpolate(ab[None], size=(g.height, g.width), mode="bilinear", align_corners=False)[0]
        L = _lab(_frame_to_tensor(full).to(self.device))[0]
        lab = torch.cat([L[None], color.denormalise_ab(ab)], 0)
        rgb = color.lab_to_rgb_keep_lightness(lab).float().cpu().numpy()
        out = full.copy()
        for p in range(3):
            np.asarray(out[p])[...] = rgb[p]
        out.props[PROP + "MemoryReset"] = int(res.memory_reset)
        out.props[PROP + "ReferenceFrame"] = int(res.is_reference_frame)
        out.props[PROP + "MemoryFrame"] = int(res.is_memory_frame)
        out.props[PROP + "WorkingMemoryFrames"] = res.work_frames
        out.props[PROP + "LongTermElements"] = res.long_elements
        out.props[PROP + "InferenceWidth"] = g.inf_width
        out.props[PROP + "InferenceHeight"] = g.inf_height
        return out

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
