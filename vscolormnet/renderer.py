"""The per-clip renderer behind one ``Colorize`` node: sessions in, VapourSynth frames out.

Data for one output frame flows one way: the VS request → the session of n's shot →
``ClipSession.result(n)`` (the order-independent recurrent state, which asks
``network_input`` for the frames it needs) →
ab' at the padded inference size → cropped, resized to the clip size → composed with the
frame's own L (``color.compose_keep_lightness``) → an RGBS frame with the ``ColorMNet_*`` props.

The renderer holds leases on the shared network and backend (``shared.py``) and gives them
back when it is garbage-collected, i.e. when its node is freed (``weakref.finalize``): the
filter closure is the only strong reference to it.

Every shot of the shot plan has its own session (its own lock, state and snapshots), so
VapourSynth threads asking for frames of different shots compute concurrently on the one
shared network. At most ``live_shots`` sessions are kept (least recently used dropped): the
memory of a film-length clip stays bounded by that, times ``max_snapshots`` states each.
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

from . import color, shared, vsformat
from .backends.spec import BackendSpec
from .config import MemoryConfig
from .core import NonFiniteError, Propagator, Reference
from .geometry import Geometry
from .references import ReferenceSet
from .session import ClipSession
from .shots import ShotPlan

log = logging.getLogger("vscolormnet")
PROP = "ColorMNet_"


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
                 live_shots: int = 8):
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
        self.propagator: Propagator | None = None
        self.sessions: OrderedDict[int, ClipSession] = OrderedDict()    # shot index → session (LRU)
        self.device = torch.device("cpu")
        self._lock = threading.Lock()
        self._leases = [network]
        self._finalizer = weakref.finalize(self, _release_all, self._leases)

    # ---- inputs ----------------------------------------------------------------------------
    def network_input(self, n: int) -> tuple[torch.Tensor, bool]:
        """Frame n as the network's ``1×3×Hp×Wp`` input, and whether a scene cut starts there."""
        frame = self.rgb_small.get_frame(n)
        cut = n in self.plan.cuts or (self.scene_reset and bool(frame.props.get("_SceneChangePrev", 0)))
        L = color.lab_from_unit_rgb(vsformat.frame_to_tensor(frame).to(self.device))[0]
        return color.network_image(L), cut

    def _references(self) -> list[Reference]:
        out = []
        for i, img in enumerate(self.refs.images):
            if img.dtype == np.uint8:
                rgb = color.uint8_to_unit(img)
            else:
                rgb = torch.from_numpy(img.astype(np.float64)).permute(2, 0, 1)
            lab = color.lab_from_unit_rgb(rgb.to(self.device))
            frame = None if self.refs.frames is None else self.refs.frames[i]
            # A reference of a clip frame takes its key from that frame's own L (official default mode).
            image = color.network_image(lab[0]) if frame is None else self.network_input(frame)[0]
            out.append(Reference(image, color.network_ab(lab[1:]), frame))
        return out

    # ---- lifecycle -------------------------------------------------------------------------
    def _start(self) -> Propagator:
        lease = shared.acquire_backend(self.spec, self.weights, self.geometry.padded_hw)
        self._leases.append(lease)
        backend = lease.value
        self.device = backend.device
        refs = self._references()
        num_frames = self.rgb_small.num_frames
        prop = Propagator(backend, self.memory, refs, self.memory.long_term_usage_for(num_frames),
                          plan=self.plan, ref_scope=self.ref_scope)
        g = self.geometry
        log.info("Colorize: %s, inference %dx%d (padded %dx%d), %d reference(s), %d shot(s), ref_scope=%s",
                 backend.describe(), g.inf_width, g.inf_height, g.padded_hw[1], g.padded_hw[0], len(refs),
                 len(self.plan), self.ref_scope)
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
                    self.propagator, self.rgb_small.num_frames, self.network_input, self.snapshot_interval,
                    self.max_snapshots, start=start, stop=stop)
                while len(self.sessions) > self.live_shots:
                    self.sessions.popitem(last=False)
            self.sessions.move_to_end(shot)
            return session

    def close(self) -> None:
        """Drop the sessions and give the shared network/backend back (also done when the node is freed)."""
        with self._lock:
            self.sessions.clear()
            self.propagator = None
        self._finalizer()

    # ---- rendering -------------------------------------------------------------------------
    def render(self, n: int, full: vs.VideoFrame) -> vs.VideoFrame:
        """Output frame n: ``full`` is the clip's frame n as RGBS at the clip size."""
        try:
            res = self.session_for(n).result(n)
            ab = self._ab_at_clip_size(res.ab)
            L = color.lab_from_unit_rgb(vsformat.frame_to_tensor(full).to(self.device))[0]
            out = vsformat.tensor_to_frame(color.compose_keep_lightness(L, ab), full)
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
        props[PROP + "Confidence"] = float(res.confidence)
        return out

    def _ab_at_clip_size(self, ab_padded: torch.Tensor) -> torch.Tensor:
        """``1×2×Hp×Wp`` ab' → ``2×H×W`` at the clip size (cropped, then bilinear)."""
        g = self.geometry
        ab = color.unpad(ab_padded[0], g.inf_height, g.inf_width)
        if g.resized:
            ab = F.interpolate(ab[None], size=(g.height, g.width), mode="bilinear", align_corners=False)[0]
        return ab
