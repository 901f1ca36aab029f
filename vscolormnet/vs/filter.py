"""``Colorize(clip, ref, ...)``: the VapourSynth filter: validation and wiring only.

Order, as in HolyWu's plugins: signature → docstring → validation (signature order, before any
device or weights work) → weights (shared network) → formats → the per-frame renderer → wiring.
For YUV and GRAY input the output Y plane is the input's, bit for bit; only chroma is produced.
"""
from __future__ import annotations

import numbers
import os
import weakref

import numpy as np
import vapoursynth as vs

from ..backends.spec import BackendError, from_name
from ..media import vsformat
from ..runtime import shared
from ..runtime.config import MemoryConfig
from ..runtime.geometry import DEFAULT_SIZE, check_size, inference_geometry
from ..runtime.keyahead import MAX_KEY_BATCH
from ..runtime.propagator import REF_SCOPES
from ..runtime.shots import PlanError, make_plan
from ..weights.checkpoint import CheckpointError, resolve_weights
from .auto_refs import AutoReferences, DeferredRenderer
from .references import ReferenceError, fit_to_inference, load_references
from .renderer import ClipRenderer

core = vs.core
MEMORY_FIELDS = ("mem_every", "max_mid_term_frames", "min_mid_term_frames", "num_prototypes",
                 "max_long_term_elements", "top_k", "enable_long_term")


def _err(msg: str) -> vs.Error:
    return vs.Error(f"Colorize: {msg}")


def _need_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise _err(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _need_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise _err(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _need_key_batch(value) -> int | None:
    """None (the device's default) or 1…``MAX_KEY_BATCH``: each block asks VapourSynth for its frames at once."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= int(value) <= MAX_KEY_BATCH:
        raise _err(f"key_batch must be an integer from 1 to {MAX_KEY_BATCH} (or None for the device default), "
                   f"got {value!r}")
    return int(value)


def _check_clip(clip) -> None:
    if not isinstance(clip, vs.VideoNode):
        raise _err(f"clip must be a vapoursynth.VideoNode, got {type(clip).__name__}")
    fmt = clip.format
    variable_format = fmt is None or fmt.id == vs.NONE
    if variable_format or clip.width == 0 or clip.height == 0:
        raise _err("clip must have a constant format and size, got a variable "
                   + ("format" if variable_format else "size"))
    if fmt.color_family not in (vs.GRAY, vs.YUV, vs.RGB):
        raise _err(f"clip must be GRAY, YUV or RGB, got {fmt.name}")
    if fmt.sample_type == vs.INTEGER and fmt.bits_per_sample > 16:
        raise _err(f"clip must be 8–16-bit integer or 16/32-bit float, got {fmt.name} "
                   f"({fmt.bits_per_sample}-bit integer)")
    if clip.num_frames < 1:
        raise _err("clip has no frames")


def check_auto_ref(ref, ref_frames, auto_ref, weights, input_size) -> dict | None:
    """``auto_ref``'s model, weights and S checked (None when ``ref`` is given); neither or both is an error."""
    if auto_ref is None:
        if ref is None:
            raise _err("ref: give colour reference(s) (a clip, image path(s) or a reference folder), or "
                       "auto_ref='ddcolor-large' to colour one frame per shot with DDColor")
        return None
    if ref is not None:
        raise _err("give ref or auto_ref, not both (a reference folder you retouched: ref=<folder>)")
    if ref_frames is not None:
        raise _err("ref_frames cannot be used with auto_ref (the picked frame of each shot is its reference)")
    from ..model.ddcolor import accepted_names, check_input_size, resolve_model
    from ..weights.ddcolor_checkpoint import resolve_ddcolor_weights
    if not isinstance(auto_ref, str):
        raise _err(f"auto_ref must be a DDColor model name ({', '.join(accepted_names())}), got {auto_ref!r}")
    try:
        model = resolve_model(auto_ref)
    except ValueError:
        raise _err(f"auto_ref must be one of {', '.join(accepted_names())}, got {auto_ref!r}") from None
    if isinstance(input_size, bool) or not isinstance(input_size, numbers.Integral):
        raise _err(f"auto_ref_size must be a positive multiple of 32, got {input_size!r}")
    try:
        size = check_input_size(int(input_size))
    except ValueError:
        raise _err(f"auto_ref_size must be a positive multiple of 32 (DDColor's encoder downsamples by 32), "
                   f"got {input_size!r}") from None
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise _err(f"auto_ref_weights must be a checkpoint path or None, got {type(weights).__name__}")
    try:
        path = resolve_ddcolor_weights(weights, auto_ref, param="auto_ref_weights")
    except CheckpointError as e:
        raise _err(str(e)) from None
    return dict(model=model, weights=path, input_size=size)


def memory_config(memory, overrides: dict) -> MemoryConfig:
    """``memory`` (a ``MemoryConfig`` or None) with the one-by-one parameters that were given, validated."""
    if memory is not None and not isinstance(memory, MemoryConfig):
        raise _err(f"memory must be a vscolormnet.MemoryConfig or None, got {type(memory).__name__}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if memory is not None and given:
        raise _err(f"give memory parameters either as memory=MemoryConfig(...) or one by one, not both "
                   f"(got memory and {', '.join(given)})")
    for name, value in given.items():
        if name == "enable_long_term":
            given[name] = _need_bool(value, name)
        elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
            given[name] = int(value)
        else:
            raise _err(f"{name} must be a positive integer, got {value!r}")
    config = memory if memory is not None else MemoryConfig(**given)
    try:
        config.validate()
    except ValueError as e:
        raise _err(str(e)) from None
    return config


def _prebuild(spec, weights_path, geometry, network: shared.Lease) -> shared.Lease:
    """The node's backend, made ready now (``prebuild=True``): a lease its renderer's equal request shares."""
    try:
        return shared.acquire_backend(spec, weights_path, geometry.padded_hw)
    except BaseException as e:  # noqa: BLE001 - any failure to get ready is this call's error, in one line
        network.release()           # the node will not be built: nothing else gives it back
        if not isinstance(e, Exception):
            raise                   # Ctrl-C stays Ctrl-C
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _err(f"prebuild: the {spec.name} backend at {geometry.padded_hw[1]}x{geometry.padded_hw[0]} "
                   f"could not be made ready: {first}") from None


def Colorize(clip: vs.VideoNode, ref=None, *, auto_ref=None, auto_ref_weights=None, auto_ref_size=512,
             ref_frames=None, cuts=None, ref_scope=None, allow_ref_mismatch=False,
             size=DEFAULT_SIZE,
             weights=None, backend="torch", device=None, device_id=None, fp16=None, precision=None, tf32=None,
             key_batch=None, scene_reset=False,
             memory: MemoryConfig | None = None,
             mem_every=None, max_mid_term_frames=None, min_mid_term_frames=None, num_prototypes=None,
             max_long_term_elements=None, top_k=None, enable_long_term=None,
             snapshot_interval=10, max_snapshots=16, prebuild=False) -> vs.VideoNode:
    """Colourise ``clip`` from colour reference(s) with ColorMNet.

    clip:               GRAY, YUV or RGB, constant format and size, 8–16-bit integer or float. GRAY
                        returns YUV 4:4:4 of the same sample type; otherwise the input format.
                        The Y plane (GRAY/YUV) is copied bit for bit; only chroma is produced.
    ref:                colour reference(s): a RGB/YUV clip (one frame per reference, any size),
                        an image path, a list of paths/``H×W×3`` uint8 arrays, or a folder made by
                        ``python -m vscolormnet refs extract`` (its coloured ``ref_<frame>.png``).
                        None: give ``auto_ref`` instead.
    auto_ref:           no colour image at hand: a DDColor model name ('ddcolor-large',
                        'ddcolor-tiny' or a hub name). Each shot's reference is the frame
                        ``refs extract`` picks, coloured by DDColor, exactly as ``refs auto``
                        writes it. The shots are ``cuts`` if given, else detected as ``refs
                        extract`` does; that pass over the clip runs at the first frame request
                        (not here), and a shot's reference is coloured when the shot is first
                        needed, once. Not with ``ref`` or ``ref_frames``.
    auto_ref_weights:   the DDColor checkpoint (default: the one ``download`` fetched).
    auto_ref_size:      the square size S DDColor runs at, a multiple of 32 (default 512).
    ref_frames:         None: references are exemplars, not frames of the clip (all kept in
                        permanent memory). [n, ...]: reference i is the colour version of clip
                        frame n_i; that frame's output takes its chroma exactly. An entry may be
                        None: that reference is an exemplar (global under ref_scope='shot').
    cuts:               the shot plan: first frames of shots after the first, as a list or a
                        ``cuts.txt`` path (a reference folder's index adds its cuts). Memory is
                        reset at every cut, and frame n is computed from the start of its shot.
    ref_scope:          'shot' (default with cuts): a shot with references of its own reads only
                        those (plus exemplars); 'clip': every frame reads every reference.
    allow_ref_mismatch: use a reference folder whose index says it was extracted from another clip
                        (another frame count or picture shape; a uniform rescale is always fine).
                        Default False: refused, naming both clips. Its cuts outside this clip are
                        then dropped; references beyond its end are still refused.
    size:               '384' | '512' (default) | '640' (longest side, aspect kept, never
                        upscaled) or 'native'. Padded to multiples of 112.
    weights:            checkpoint path (default: the one ``python -m vscolormnet download`` fetched).
    backend:            'torch' | 'ort' | 'trt' | 'auto', or a backend object
                        (``vscolormnet.Torch/ORT/TRT/Auto(...)`` with all their options).
    device, device_id, fp16:  for a backend given by name: 'cpu' | 'cuda' | 'auto', GPU index,
                        half precision. None = the backend's default (cpu, 0, False; auto: any).
    precision:          'fp32' (default, the parity reference) | 'fp16' (GPU) | 'bf16' | 'auto'
                        (fp16 on CUDA; bf16 on a CPU with native bf16, e.g. AMX; else fp32).
                        Reduced precision keeps the key projection and similarities in fp32.
    tf32:               allow TF32 for fp32 maths on NVIDIA GPUs (default False: exact fp32).
    key_batch:          encode_key of upcoming frames runs ahead in fixed, aligned blocks of
                        this many frames (a frame's result never depends on the request order);
                        None = the default (8 for torch on CUDA; 1 on CPU, where batching does
                        not pay, and for ONNX Runtime / TensorRT). 1 turns run-ahead off; at most 64.
    scene_reset:        clear working/long-term memory and the hidden state at frames whose
                        ``_SceneChangePrev`` is set (references stay). Always on with a
                        reference folder, whose index lists the cuts.
    memory:             a ``MemoryConfig``; or give its fields one by one (mem_every=5,
                        max_mid_term_frames=10, min_mid_term_frames=5, num_prototypes=128,
                        max_long_term_elements=10000, top_k=30, enable_long_term=True:
                        official test.py defaults), not both.
    snapshot_interval, max_snapshots:  seek cost / memory trade-off: a backward seek recomputes
                        at most ``snapshot_interval`` frames (the interval doubles whenever more
                        than ``max_snapshots`` snapshots would be kept).
    prebuild:           make the backend ready here, not at the first frame request: the ONNX
                        export or TensorRT engine build for this inference size (minutes the first
                        time; progress on stderr; cached after) and the device copy of the network.
                        Failures are then a ``Colorize:`` error of this call. Default False.
    """
    # -- validation, in signature order, before touching any device or loading weights
    _check_clip(clip)
    auto = check_auto_ref(ref, ref_frames, auto_ref, auto_ref_weights, auto_ref_size)
    try:
        plan = make_plan(cuts, clip.num_frames)
    except PlanError as e:
        raise _err(str(e)) from None
    if ref_scope not in (None, *REF_SCOPES):
        raise _err(f"ref_scope must be None, {' or '.join(repr(s) for s in REF_SCOPES)}, got {ref_scope!r}")
    try:
        size = check_size(size)
    except ValueError as e:
        raise _err(str(e)) from None
    geometry = inference_geometry(clip.width, clip.height, size)
    allow_ref_mismatch = _need_bool(allow_ref_mismatch, "allow_ref_mismatch")
    try:
        refs = None if auto else load_references(ref, ref_frames, clip, geometry, allow_mismatch=allow_ref_mismatch)
    except ReferenceError as e:
        raise _err(str(e)) from None
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise _err(f"weights must be a checkpoint path or None, got {type(weights).__name__}")
    try:
        weights_path = resolve_weights(weights)
    except CheckpointError as e:
        raise _err(f"weights: {e}") from None
    try:
        spec = from_name(backend, device=device, device_id=device_id, fp16=fp16, precision=precision, tf32=tf32)
        spec.check()
    except BackendError as e:
        raise _err(str(e)) from None
    key_batch = _need_key_batch(key_batch)
    scene_reset = _need_bool(scene_reset, "scene_reset")
    if refs is not None:
        plan = make_plan(plan.cuts, clip.num_frames, extra=refs.cuts)
    config = memory_config(memory, {k: v for k, v in locals().items() if k in MEMORY_FIELDS})
    snapshot_interval = _need_positive_int(snapshot_interval, "snapshot_interval")
    max_snapshots = _need_positive_int(max_snapshots, "max_snapshots")
    prebuild = _need_bool(prebuild, "prebuild")
    try:
        props = vsformat.first_props(clip)
        why = vsformat.colour_prop_problem(clip.format.color_family, props)
        if why:
            raise vsformat.FormatError(f"frame 0: {why}")
        matrix, rng = vsformat.matrix_for(clip, props), vsformat.range_for(clip, props)
    except vsformat.FormatError as e:
        raise _err(f"clip: {e}") from None
    except vs.Error as e:
        raise _err(f"clip: frame 0 cannot be read: {vsformat.error_summary(e)}") from None

    # -- weights: the process-wide shared network (loaded once, verified: keys, shapes, finite)
    try:
        network = shared.acquire_network(weights_path)
    except CheckpointError as e:
        raise _err(f"weights: {e}") from None

    prebuilt = _prebuild(spec, weights_path, geometry, network) if prebuild else None

    # -- formats: full-size RGB for the output's lightness, inference-size RGB for the network
    rgb_full = vsformat.to_rgbs(vsformat.checked_colour_props(clip, "Colorize"), matrix, rng)
    rgb_small = rgb_full
    if geometry.resized:
        rgb_small = core.resize.Bicubic(rgb_full, geometry.inf_width, geometry.inf_height)
    def build(refs, plan, network) -> ClipRenderer:
        return ClipRenderer(rgb_small=rgb_small, geometry=geometry, refs=refs, memory=config, spec=spec,
                            weights=weights_path, network=network, scene_reset=scene_reset,
                            snapshot_interval=snapshot_interval, max_snapshots=max_snapshots, plan=plan,
                            ref_scope=ref_scope or ("shot" if plan.cuts else "clip"), key_batch=key_batch)
    if auto:        # the plan and the references come from the clip, on the first frame request
        options = dict(backend=backend, device=device, device_id=device_id, fp16=fp16, precision=precision, tf32=tf32)
        found = AutoReferences(clip, cuts=list(plan.cuts) if cuts is not None else None, backend_options=options,
                               **auto)
        renderer = DeferredRenderer(found, build, lambda img: fit_to_inference(img, geometry), network)
    else:
        renderer = build(refs, plan, network)

    # -- wiring: the closure is the renderer's only owner, so freeing the node frees it
    def colorize_frame(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        return renderer.render(n, f)

    if prebuilt is not None:       # the renderer's own acquisition shares it; given back with the node
        weakref.finalize(colorize_frame, prebuilt.release)
    out_rgb = core.std.ModifyFrame(rgb_full, rgb_full, colorize_frame)
    return vsformat.to_clip_format(clip, out_rgb, matrix, rng)
