"""The per-clip renderer behind one ``Colorize`` node: sessions in, VapourSynth frames out.

Data for one output frame flows one way: the VS request → the session of n's shot →
``ClipSession.result(n)`` (the order-independent recurrent state, which reads the frames it needs
from its ``ClipFrameSource``) → ab' at the padded inference size → cropped, resized to the clip size
→ composed with the frame's own L (``_compose``; on GPUs gamut-mapped at the inference size) → an
RGBS frame with the ``ColorMNet_*`` props.

The renderer holds leases on the shared network and backend (``shared.py``) and gives them
back when it is garbage-collected, i.e. when its node is freed (``weakref.finalize``): the
filter closure is the only strong reference to it.

Every shot of the shot plan has its own session (its own lock, state and snapshots), so
VapourSynth threads asking for frames of different shots compute concurrently on the one
shared network. At most ``live_shots`` sessions are kept (least recently used dropped): the
memory of a film-length clip stays bounded by that, times ``max_snapshots`` states each.

Waits are kept off the frame's path where the order allows: the sessions compute ``encode_key``
ahead in blocks of ``key_batch`` frames (``keyahead``); the network's input frames are asked of
VapourSynth a block ahead (``get_frame_async``) and converted on the backend's device. On CUDA
the host still waits for: each frame's copy-out (composed on the device, one non-blocking copy
into a pinned buffer, which also brings the frame's finite flags and confidence); the previous
step's finite flags, one step late (``ClipSession._step``); every unread flag before a restart
(a seek); and, for a run-ahead block, a synchronous ``get_frame`` of its frames that
VapourSynth has not delivered yet.
"""
from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
import vapoursynth as vs

from ..backends.spec import BackendSpec
from ..media import color, vsformat
from ..runtime import shared
from ..runtime.account import DeviceAccount
from ..runtime.config import MemoryConfig
from ..runtime.geometry import Geometry
from ..runtime.keyahead import default_key_batch
from ..runtime.propagator import NonFiniteError, Propagator, Reference
from ..runtime.session import ClipSession
from ..runtime.shots import ShotPlan
from .references import ReferenceSet
from .source import ClipFrameSource

log = logging.getLogger("vscolormnet")
PROP = "ColorMNet_"
IDLE_REQUESTS = 32     # requests after which a session (not one of the two latest) drops its caches


def drop_idle_caches(sessions: OrderedDict, last_use: dict, now: int, idle: int | None = None) -> None:
    """Bound the caches held across the live sessions (``sessions``: LRU order, latest last;
    ``last_use``: shot → request count of its last use; ``now``: the current count).

    A session other than the two latest, not asked for in ``idle`` requests, drops its run-ahead
    key blocks and its cached results (``ClipSession.drop_caches``: up to 32 results of ~1.5 MB at
    the 512 preset): pure caches (a frame's block is fixed, and a result is recomputed from a snapshot
    bit-identically), and the idle window keeps sessions served in turn (threads at a shot boundary)
    from recomputing theirs. A session busy in another thread is left alone (its lock is not waited for)."""
    idle = IDLE_REQUESTS if idle is None else idle
    for shot in list(sessions)[:-2]:
        session = sessions[shot]
        if now - last_use.get(shot, now) < idle or not session.holds_caches():
            continue
        if session.lock.acquire(blocking=False):
            try:
                session.drop_caches()
            finally:
                session.lock.release()


def _release_all(leases: list) -> None:
    """Finalizer: give back every lease (never references the renderer itself)."""
    while leases:
        leases.pop().release()


class ClipRenderer:
    """Builds the backend and session on the first request; renders output frames (thread-safe).

    rgb_small:  RGBS clip at the inference size (the network's input frames).
    geometry:   clip and inference sizes.
    refs:       resolved references (``references.load_references``).
    network:    a lease on the shared network, taken by ``Colorize`` at call time.
    """

    def __init__(self, *, rgb_small: vs.VideoNode, geometry: Geometry, refs: ReferenceSet, memory: MemoryConfig,
                 spec: BackendSpec, weights, network: shared.Lease, scene_reset: bool,
                 snapshot_interval: int, max_snapshots: int, plan: ShotPlan, ref_scope: str,
                 key_batch: int | None = None, live_shots: int = 8):
        self.rgb_small = rgb_small
        self.geometry = geometry
        self.refs = refs
        self.memory = memory
        self.spec = spec
        self.weights = weights
        self.scene_reset = scene_reset
        self.snapshot_interval = snapshot_interval
        self.max_snapshots = max_snapshots
        self.plan = plan
        self.ref_scope = ref_scope
        self.live_shots = live_shots
        self.key_batch = key_batch          # None: the backend device's default (keyahead.default_key_batch)
        self.propagator: Propagator | None = None
        self.sessions: OrderedDict[int, ClipSession] = OrderedDict()    # shot index → session (LRU)
        self.device = torch.device("cpu")
        self._lock = threading.Lock()
        self.source: ClipFrameSource | None = None        # made with the backend (it needs its device)
        self._uses = 0                      # session_for calls (requests), for drop_idle_caches
        self._last_use: dict[int, int] = {}                             # shot → self._uses at its last request
        self._leases = [network]
        self._finalizer = weakref.finalize(self, _release_all, self._leases)

    def _references(self) -> list[Reference]:
        """The references, each converted (and its clip frame read) only when the propagator first encodes it."""
        frames = self.refs.frames or [None] * len(self.refs.images)
        return [Reference(None, None, frame, load=self._reference_loader(img, frame))
                for img, frame in zip(self.refs.images, frames)]

    def _reference_loader(self, img, frame: int | None):
        """``img``: the reference (``ReferenceSet.images``), or a function returning it (``auto_ref``: coloured
        when the propagator first encodes it)."""
        def load() -> tuple[torch.Tensor, torch.Tensor]:
            pixels = img() if callable(img) else img
            if pixels.dtype == np.uint8:
                lab = color.lab_float32(pixels, self.device)      # the uint8 pixels cross to the device
            else:
                rgb = torch.from_numpy(pixels.astype(np.float64)).permute(2, 0, 1)
                lab = color.lab_from_unit_rgb(rgb.to(self.device))
            # A reference of a clip frame takes its key from that frame's own L (official default mode).
            image = color.network_image(lab[0]) if frame is None else self.source.frames([frame])[0][0]
            return image, color.network_ab(lab[1:])
        return load

    # ---- lifecycle -------------------------------------------------------------------------
    def _start(self) -> Propagator:
        lease = shared.acquire_backend(self.spec, self.weights, self.geometry.padded_hw)
        self._leases.append(lease)
        backend = lease.value
        self.device = backend.device
        if self.key_batch is None:
            self.key_batch = default_key_batch(self.device, backend.name)
        self.source = ClipFrameSource(self.rgb_small, self.device, self.plan, self.key_batch)
        refs = self._references()
        num_frames = self.rgb_small.num_frames
        prop = Propagator(backend, self.memory, refs, self.memory.long_term_usage_for(num_frames),
                          plan=self.plan, ref_scope=self.ref_scope, scene_reset=self.scene_reset,
                          lazy_references=True)
        g = self.geometry
        log.info("Colorize: %s, inference %dx%d (padded %dx%d), %d reference(s), %d shot(s), ref_scope=%s, "
                 "key_batch=%d", backend.describe(), g.inf_width, g.inf_height, g.padded_hw[1], g.padded_hw[0],
                 len(refs), len(self.plan), self.ref_scope, self.key_batch)
        return prop

    def session_for(self, n: int) -> ClipSession:
        """The session of frame n's shot (created on first use; least recently used ones dropped)."""
        shot = self.plan.shot_of(n)
        with self._lock:
            if self.propagator is None:
                self.propagator = self._start()
            session = self.sessions.get(shot)
            if session is None:
                start, stop = self.plan.bounds(shot)
                session = self.sessions[shot] = ClipSession(
                    self.propagator, self.source, self.snapshot_interval, self.max_snapshots,
                    start=start, stop=stop, key_batch=self.key_batch)
                while len(self.sessions) > self.live_shots:
                    self._last_use.pop(self.sessions.popitem(last=False)[0], None)
            self.sessions.move_to_end(shot)
            self._uses += 1
            self._last_use[shot] = self._uses
            if len(self.sessions) > 2:
                drop_idle_caches(self.sessions, self._last_use, self._uses)
            return session

    def memory_account(self) -> dict:
        """Device bytes held now, by owner (``runtime.account``): references, initial states, and per
        live shot session its state, snapshots, cached results and key blocks."""
        acc = DeviceAccount()
        with self._lock:
            prop, sessions = self.propagator, list(self.sessions.items())
        if prop is not None:
            prop.account(acc)
        for shot, session in sessions:
            session.account(acc, f"shot {shot}")
        return acc.as_dict()

    def close(self) -> None:
        """Drop the sessions and give the shared network/backend back (also done when the node is freed)."""
        with self._lock:
            self.sessions.clear()
            self._last_use.clear()
            self.propagator = None
        if self.source is not None:
            self.source.clear()
        self._finalizer()

    # ---- rendering -------------------------------------------------------------------------
    def render(self, n: int, full: vs.VideoFrame) -> vs.VideoFrame:
        """Output frame n: ``full`` is the clip's frame n as RGBS at the clip size."""
        try:
            res = self.session_for(n).result(n, defer_check=True)
            L = color.lab_from_unit_rgb(vsformat.frame_to_tensor(full, self.device))[0]
            rgb, confidence = self._copy_out(self._compose(L, res.ab), res.confidence)
            if res.check is not None:
                res.check.raise_if_bad()            # its flags are on the host since the copy-out
            out = vsformat.tensor_to_frame(rgb, full)
        except vs.Error:
            raise
        except (NonFiniteError, ValueError, RuntimeError, OSError, MemoryError) as e:
            raise vs.Error(f"Colorize: frame {n}: {e}") from None
        g = self.geometry
        props = out.props
        props[PROP + "MemoryReset"] = int(res.memory_reset)
        props[PROP + "ReferenceFrame"] = int(res.is_reference_frame)
        props[PROP + "MemoryFrame"] = int(res.is_memory_frame)
        props[PROP + "WorkingMemoryFrames"] = res.work_frames
        props[PROP + "LongTermElements"] = res.long_elements
        props[PROP + "InferenceWidth"] = g.inf_width
        props[PROP + "InferenceHeight"] = g.inf_height
        props[PROP + "Confidence"] = confidence
        return out

    def _copy_out(self, rgb: torch.Tensor, confidence) -> tuple[torch.Tensor, float]:
        """``3×H×W`` RGB (a host tensor) and the confidence. CUDA: packed on the device, one
        non-blocking copy into a pinned buffer allocated for this call, then a wait for that copy.
        The buffer lives as long as the returned tensor (and any numpy view of it); freed, it goes
        back to PyTorch's caching host allocator, so pinned memory is bounded by the copy-outs in
        flight, not by the number of threads that ever rendered."""
        if rgb.device.type != "cuda":
            return rgb, float(confidence)
        size = rgb.numel()
        packed = torch.empty(size + 1, device=rgb.device, dtype=torch.float32)
        packed[:size].view_as(rgb).copy_(rgb)
        if isinstance(confidence, torch.Tensor):
            packed[size:].copy_(confidence.reshape(1))
        else:
            packed[size:].fill_(float(confidence))
        host = torch.empty(size + 1, dtype=torch.float32, pin_memory=True)
        host.copy_(packed, non_blocking=True)           # enqueued on the current stream, after `packed`
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(rgb.device))
        done.synchronize()                              # the host reads `host` only after the copy
        return host[:size].view(rgb.shape), float(host[size])

    def _compose(self, L: torch.Tensor, ab_padded: torch.Tensor) -> torch.Tensor:
        """The clip's L (``H×W``) + the network's ``1×2×Hp×Wp`` ab' → ``3×H×W`` RGB, every pixel's L kept.

        On a GPU the gamut mapping (a bisection, branch-free: ~600 elementwise passes over every
        pixel) runs on the network's pixels when the clip is larger (inference sizes never upscale):
        on L averaged down to the inference size; the mapped chroma is resized (bilinear) and composed
        with a final clip (1080p from 512×288: 236 M elements written instead of 1,317 M). On the CPU
        only the out-of-gamut pixels are bisected, so the exact mapping at the clip size costs the
        same (measured) and is kept; at the native size both are exact.
        """
        g = self.geometry
        ab = color.unpad(ab_padded[0], g.inf_height, g.inf_width)
        if g.resized and L.device.type != "cpu":        # never upscaled: the network size is smaller
            L_small = F.interpolate(L[None, None], size=(g.inf_height, g.inf_width), mode="area")[0, 0]
            return color.compose_clipped(L, self._to_clip_size(color.chroma_in_gamut(L_small, ab)))
        return color.compose_keep_lightness(L, self._to_clip_size(ab))

    def _to_clip_size(self, ab: torch.Tensor) -> torch.Tensor:
        """``2×h×w`` at the inference size → ``2×H×W`` at the clip size (bilinear)."""
        g = self.geometry
        if g.resized:
            ab = F.interpolate(ab[None], size=(g.height, g.width), mode="bilinear", align_corners=False)[0]
        return ab
