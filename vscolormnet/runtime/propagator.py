"""The per-frame step: the one place that decides what a frame is (``FrameRole``) and acts on it.

Every per-frame decision is made here and nowhere else: whether frame t starts a new shot
(``starts_shot``: a known cut of the plan, or, with ``scene_reset``, the frame's own scene-change
mark), whether it has a reference, whether it is a memory frame, whether it deep-updates the
hidden state (``frame_role``). Sessions and renderers only pass frames and marks in.

``Propagator`` owns one clip's recurrent state (``PropagationState``) and runs frames strictly
in order. It reproduces the official ``InferenceCore.step`` (a reference is the colour
version of a frame) and ``step_AnyExemplar`` (references are separate exemplars), generalised
to several references and to scene resets:

- every reference is encoded once (``bank``; with ``lazy_references`` when a state first needs
  it, so a process rendering a few shots of a film encodes only their references) and held in a
  *permanent* memory slot of every state whose scope includes it: all references (``ref_scope='clip'``), or, with a shot plan
  and ``ref_scope='shot'``, the references inside the frame's shot plus those without a
  frame (a shot with none of its own reads all of them);
- a frame that has a reference (``ref_frames``) outputs the reference's ab exactly, resets
  the hidden state and deep-updates it, and becomes the short-term attention target;
- the first frame of a segment (clip start or scene reset) without a reference is read from
  memory only (no short-term attention, no hidden update) and stored without deep update.

Tensors are on the backend's device. The only host read is the per-step finite check, which
``step(defer_check=True)`` leaves to the caller, so a CUDA step never waits for the GPU.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..backends.base import Backend, StageTimes
from ..model.stages import HIDDEN_DIM, NUM_OBJECTS
from .config import MemoryConfig
from .finite import FiniteCheck, NonFiniteError, PendingCheck  # noqa: F401  (re-exported)
from .memory import MemoryManager
from .shots import ShotPlan

REF_SCOPES = ("clip", "shot")
_REFERENCE_SECONDS = [0.0]          # this process's reference encoding, all propagators (run reports)
_REFERENCE_LOCK = threading.Lock()


def reference_encoding_seconds() -> float:
    """Seconds this process has spent encoding references (a film worker reports it per shot)."""
    with _REFERENCE_LOCK:
        return _REFERENCE_SECONDS[0]


@dataclass
class Reference:
    """A colour reference at the inference size.

    image: ``1×3×Hp×Wp`` normalised L' ×3 that the reference key is computed from (the
    reference's own L for exemplars, the clip frame's L for ``ref_frames``).
    ab: ``1×2×Hp×Wp`` normalised ab'. frame: clip frame it is the colour version of, or None.
    ``load``: instead of ``image``/``ab``, a function returning both, called whenever the reference is
    encoded (a film worker then reads only the reference frames of the shots it renders; what it
    returns is not kept, see ``Propagator.bank``).
    """

    image: torch.Tensor | None
    ab: torch.Tensor | None
    frame: int | None = None
    load: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None


class EncodedReference(NamedTuple):
    """A reference as memory holds it: key ``1×64×h×w``, shrinkage ``1×1×h×w``, selection ``1×64×h×w``,
    value ``1×2×512×h×w``, and its ab' ``1×2×Hp×Wp`` (what its own clip frame outputs)."""

    key: torch.Tensor
    shrinkage: torch.Tensor
    selection: torch.Tensor
    value: torch.Tensor
    ab: torch.Tensor


@dataclass
class PropagationState:
    """Everything that carries from one frame to the next. ``clone()`` makes a snapshot."""

    memory: MemoryManager
    hidden: torch.Tensor | None = None
    last_key: torch.Tensor | None = None
    last_value: torch.Tensor | None = None
    last_mem_frame: int = 0
    next_frame: int = 0
    segment_start: bool = True
    scope: tuple[int, ...] = ()       # indices of the references in permanent memory

    def clone(self) -> "PropagationState":
        """Snapshot; tensors replaced later are shared, tensors mutated in place are copied."""
        return PropagationState(self.memory.clone(), self.hidden, self.last_key, self.last_value,
                                self.last_mem_frame, self.next_frame, self.segment_start, self.scope)

    def nbytes(self) -> int:
        """Approximate bytes held (memory stores dominate)."""
        extra = sum(t.numel() * t.element_size() for t in (self.hidden, self.last_key, self.last_value)
                    if t is not None)
        return self.memory.nbytes() + extra


@dataclass(frozen=True)
class FrameRole:
    """What frame t is, decided before anything is computed (``Propagator.frame_role``).

    shot_start:     t > 0 starts a new shot: memory reset (non-permanent memory cleared, the
                    shot's references in permanent memory), hidden state zeroed.
    reference:      index of the reference that is the colour version of frame t, or None.
    segment_start:  the first frame of a shot (or the clip) without a reference: read from
                    memory only (no short-term attention, no hidden update).
    memory_frame:   its key and value are added to memory (every ``mem_every`` frames, references,
                    segment starts; never the clip's last frame).
    deep_update:    the value encoder also updates the hidden state (memory frames but segment starts).
    normal_update:  the decoder updates the hidden state (frames that are not memory frames).
    short_term:     short-term attention to the last memory frame is added to the readout.
    """

    shot_start: bool
    reference: int | None
    segment_start: bool
    memory_frame: bool
    deep_update: bool
    normal_update: bool
    short_term: bool


@dataclass
class StepResult:
    """One frame's output: ``ab 1×2×Hp×Wp`` and diagnostics."""

    ab: torch.Tensor
    is_memory_frame: bool
    is_reference_frame: bool
    memory_reset: bool
    work_frames: int
    long_elements: int
    confidence: torch.Tensor | float = 1.0     # memory-match confidence (0-d tensor); 1.0 on reference frames
    check: PendingCheck | None = None          # finite flags not read yet (``step(defer_check=True)``)


class Propagator:
    """Runs the per-frame algorithm on a backend for one clip."""

    def __init__(self, backend: Backend, config: MemoryConfig, references: list[Reference],
                 count_long_term_usage: bool, times: StageTimes | None = None,
                 plan: ShotPlan | None = None, ref_scope: str = "clip", scene_reset: bool = False,
                 lazy_references: bool = False, reference_cache: int = 16):
        """plan: the known cuts (None: none); scene_reset: a frame's own scene-change mark also starts a shot.
        lazy_references: encode a reference when a state first reads it, not all of them here (a broken
        reference is then found by the first frame that reads it). reference_cache: encoded references
        (and shot-start states) kept; see ``bank``."""
        if not references:
            raise ValueError("at least one reference is needed")
        if ref_scope not in REF_SCOPES:
            raise ValueError(f"ref_scope must be one of {', '.join(REF_SCOPES)}, got {ref_scope!r}")
        self.backend = backend
        self.config = config
        self.count_long_term_usage = count_long_term_usage
        self.times = times or StageTimes()
        if backend.device.type == "cuda" and self.times.device is None:
            self.times.device = backend.device       # timing syncs the backend's GPU, not the current one
        self.ref_at_frame = {r.frame: i for i, r in enumerate(references) if r.frame is not None}
        self.references = references
        self.plan = plan
        self.known_cuts = frozenset(plan.cuts) if plan is not None else frozenset()
        self.ref_scope = ref_scope
        self.scene_reset = bool(scene_reset)
        self.reference_cache = max(1, int(reference_cache))
        self._bank: OrderedDict[int, EncodedReference] = OrderedDict()      # reference index → encoded (LRU)
        self._bank_lock = threading.Lock()
        if not lazy_references:
            for i in range(len(references)):
                self.bank(i)
        self._initial: OrderedDict[tuple[int, ...], PropagationState] = OrderedDict()   # scope → state (LRU)
        self._initial_lock = threading.Lock()

    # ---- set-up --------------------------------------------------------------------------
    def bank(self, i: int) -> EncodedReference:
        """Reference ``i`` encoded (on first use; again, bit-identically, if it has left the cache).

        At most ``reference_cache`` are kept (least recently used dropped): a film with a reference
        per shot would otherwise hold every reference for the node's life (~7 MiB each at the 512
        preset). A reference made by a loader (``Reference.load``) is loaded again when re-encoded;
        its inputs are not kept.
        """
        with self._bank_lock:
            entry = self._bank.get(i)
            if entry is None:
                entry = self._bank[i] = self._encode_reference(i)
                while len(self._bank) > self.reference_cache:
                    self._bank.popitem(last=False)
            else:
                self._bank.move_to_end(i)
            return entry

    def reference_ab(self, i: int) -> torch.Tensor:
        """Reference ``i``'s ``1×2×Hp×Wp`` ab' (what a frame that has this reference outputs)."""
        return self.bank(i).ab

    def _encode_reference(self, i: int) -> EncodedReference:
        ref = self.references[i]
        t = time.perf_counter()
        image, ab = ref.load() if ref.load is not None else (ref.image, ref.ab)
        check = FiniteCheck()
        with self.backend.math_mode():
            with self.times.measure("encode_key"):
                key, shrinkage, selection, f16, _, _ = self.backend.encode_key(image)
            check.add("encode_key", key, shrinkage, selection, f16)
            with self.times.measure("encode_value"):
                value = self.backend.encode_value(image, f16, ab)
            check.add("encode_value", value)
            check.raise_if_bad(f"reference {i}")
        with _REFERENCE_LOCK:
            _REFERENCE_SECONDS[0] += time.perf_counter() - t
        return EncodedReference(key, shrinkage, selection, value, ab)

    def account(self, acc) -> None:
        """Charge the references (inputs and encoded bank) and the initial states to ``acc``
        (``account.DeviceAccount``)."""
        with self._bank_lock:
            acc.add("references (encoded)", list(self._bank.values()))
        acc.add("references (inputs)", [(r.image, r.ab) for r in self.references])
        with self._initial_lock:
            acc.add("initial states", list(self._initial.values()))

    def scope_at(self, t: int) -> tuple[int, ...]:
        """The references frame ``t`` reads (see the module docstring)."""
        everything = tuple(range(len(self.references)))
        if self.ref_scope == "clip" or self.plan is None:
            return everything
        start, stop = self.plan.bounds(self.plan.shot_of(t))
        own = [i for i, r in enumerate(self.references) if r.frame is not None and start <= r.frame < stop]
        if not own:
            return everything
        return tuple(sorted(own + [i for i, r in enumerate(self.references) if r.frame is None]))

    def _initial_state(self, scope: tuple[int, ...]) -> PropagationState:
        """The state at a shot start reading ``scope`` (cached like ``bank``: the last ``reference_cache``,
        and always the one reading every reference: it holds them all already, and rebuilding it would
        encode them all again)."""
        with self._initial_lock:
            state = self._initial.get(scope)
            if state is not None:
                self._initial.move_to_end(scope)
                return state
        memory = MemoryManager(self.config, self.count_long_term_usage)
        for i in scope:
            ref = self.bank(i)
            memory.add_permanent(ref.key, ref.shrinkage, ref.value, ref.selection)
        last = self.bank(scope[-1])
        state = PropagationState(memory=memory, last_key=last.key, last_value=last.value, scope=scope)
        with self._initial_lock:
            state = self._initial.setdefault(scope, state)      # another thread's equal state wins
            self._initial.move_to_end(scope)
            everything = tuple(range(len(self.references)))
            while len(self._initial) > self.reference_cache:
                oldest = next(k for k in self._initial if k != everything)
                del self._initial[oldest]
            return state

    def new_state(self, start: int = 0) -> PropagationState:
        """The state before frame ``start`` (0, or a frame where a new scene starts)."""
        state = self._initial_state(self.scope_at(start)).clone()
        state.next_frame = state.last_mem_frame = start
        return state

    def _zero_hidden(self, key: torch.Tensor) -> torch.Tensor:
        return torch.zeros(1, NUM_OBJECTS, HIDDEN_DIM, *key.shape[-2:], device=key.device,
                           dtype=torch.float32)

    # ---- the decisions ---------------------------------------------------------------------
    def starts_shot(self, t: int, scene_change: bool) -> bool:
        """Frame ``t`` starts a new shot: a known cut, or (``scene_reset``) the frame marks a scene change."""
        return t > 0 and (t in self.known_cuts or (self.scene_reset and bool(scene_change)))

    def frame_role(self, state: PropagationState, scene_change: bool, end: bool) -> FrameRole:
        """What frame ``state.next_frame`` is (see ``FrameRole``); ``end``: it is the clip's last frame."""
        t = state.next_frame
        shot_start = self.starts_shot(t, scene_change)
        reference = self.ref_at_frame.get(t)
        segment_start = (state.segment_start or shot_start) and reference is None
        memory_frame = (reference is not None or segment_start
                        or t - state.last_mem_frame >= self.config.mem_every) and not end
        return FrameRole(shot_start=shot_start, reference=reference, segment_start=segment_start,
                         memory_frame=memory_frame, deep_update=memory_frame and not segment_start,
                         normal_update=not memory_frame and not end and not segment_start,
                         short_term=reference is None and not segment_start)

    # ---- the step ------------------------------------------------------------------------
    def step(self, state: PropagationState, image: torch.Tensor, end: bool, scene_change: bool = False,
             keys: tuple | None = None, defer_check: bool = False) -> StepResult:
        """Process frame ``state.next_frame`` (``image 1×3×Hp×Wp``); ``end`` marks the clip's last frame,
        ``scene_change`` the frame's own scene-change mark (``starts_shot`` decides what it means).

        keys: the frame's six ``encode_key`` outputs when computed ahead (``keyahead``); None: computed here.
        defer_check: return the finite flags unread in ``StepResult.check`` instead of checking them
        now (a host sync on CUDA); the caller must read them before using the result or the state.
        The whole step runs under ``backend.math_mode()``: the memory readout between the stages is
        device math too, and must not depend on what another thread's stage call holds (TF32).
        """
        with self.backend.math_mode():
            return self._step(state, image, self.frame_role(state, scene_change, end), keys, defer_check)

    def _step(self, state: PropagationState, image: torch.Tensor, role: FrameRole,
              keys: tuple | None, defer_check: bool) -> StepResult:
        t = state.next_frame
        be, tm = self.backend, self.times
        if role.shot_start:
            scope = self.scope_at(t)
            if scope == state.scope:
                state.memory.clear_non_permanent()
            else:
                state.memory = self._initial_state(scope).memory.clone()
                state.scope = scope
            state.segment_start = True
            last = self.bank(scope[-1])
            state.last_key, state.last_value = last.key, last.value
        ref_index = role.reference
        is_reference_frame = ref_index is not None

        check = FiniteCheck()
        if keys is None:
            with tm.measure("encode_key"):
                keys = be.encode_key(image)
        key, shrinkage, selection, f16, f8, f4 = keys
        check.add("encode_key", key, shrinkage, selection, f16, f8, f4)
        if state.hidden is None or is_reference_frame or role.segment_start:
            state.hidden = self._zero_hidden(key)

        confidence = 1.0
        if is_reference_frame:
            ab = self.reference_ab(ref_index)
        else:
            with tm.measure("memory_readout"):
                readout = state.memory.read(key, selection)
                confidence = state.memory.last_confidence
            check.add("memory_readout", readout)
            if role.short_term:
                with tm.measure("short_term_attention"):
                    attention = be.short_term_attention(key, state.last_key, state.last_value)
                check.add("short_term_attention", attention)
                readout = readout + attention
            with tm.measure("decoder"):
                if role.normal_update:
                    ab, state.hidden = be.decode_update(f16, f8, f4, readout, state.hidden)
                    check.add("decode_update", ab, state.hidden)
                else:
                    ab = be.decode(f16, f8, f4, readout, state.hidden)
                    check.add("decode", ab)

        if role.memory_frame:
            with tm.measure("encode_value"):
                if role.deep_update:
                    value, state.hidden = be.encode_value_deep(image, f16, ab, state.hidden)
                    check.add("encode_value_deep", value, state.hidden)
                else:
                    value = be.encode_value(image, f16, ab)
                    check.add("encode_value", value)
            if is_reference_frame:
                # Its (key, value) already sit in the permanent slot, computed identically.
                value = self.bank(ref_index).value
            else:
                with tm.measure("memory_readout"):
                    state.memory.add(key, shrinkage, value, selection)
            state.last_mem_frame = t
            state.last_key, state.last_value = key, value

        pending = check.pending(f"frame {t}")
        if not defer_check:
            pending.raise_if_bad()
            pending = None
        state.segment_start = False
        state.next_frame = t + 1
        mem = state.memory
        return StepResult(ab=ab, is_memory_frame=role.memory_frame, is_reference_frame=is_reference_frame,
                          memory_reset=role.shot_start, work_frames=mem.work.size // (mem.hw or 1),
                          long_elements=mem.long.size, confidence=confidence, check=pending)
