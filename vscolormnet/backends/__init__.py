"""Backends serve the six stateless network stages; memory, colour and state are shared host code.

``spec.py`` holds the public dataclasses (``Torch``, ``ORT``, ``TRT``, ``Auto``); ``base.py`` the
runtime interface; one module per runtime. ``Colorize`` shares loaded backends across nodes
through ``vscolormnet.runtime.shared``; ``create_backend`` builds a private one (commands, tests).
"""
from __future__ import annotations

import logging
from dataclasses import fields, replace

from .base import Backend, StageTimes
from .spec import ORT, TRT, Auto, BackendError, BackendSpec, Torch, from_name

log = logging.getLogger("vscolormnet")
__all__ = ["Backend", "StageTimes", "Torch", "ORT", "TRT", "Auto", "BackendError", "BackendSpec",
           "from_name", "resolve_spec", "create_backend"]


def resolve_spec(backend="torch", *, device=None, device_id=None, fp16=None, precision=None, tf32=None,
                 **options) -> BackendSpec:
    """``backend`` (a name or a spec) plus device/precision and backend-specific ``options``, checked.

    ``options`` are fields of the named backend's dataclass (e.g. ``num_threads`` for ``'ort'``);
    an unknown field is a ``BackendError`` naming it.
    """
    spec = from_name(backend, device=device, device_id=device_id, fp16=fp16, precision=precision, tf32=tf32)
    if options:
        known = {f.name for f in fields(spec)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise BackendError(f"backend {spec.name!r} has no option {', '.join(unknown)} "
                               f"(it has: {', '.join(sorted(known))})")
        spec = replace(spec, **options)
    spec.check()
    return spec


def create_backend(backend="torch", *, weights=None, padded_hw=None, device=None, device_id=None, fp16=None,
                   precision=None, tf32=None, **options) -> Backend:
    """A private runtime backend (not shared); ``Auto`` takes the first candidate that starts.

    weights: checkpoint path (None = the downloaded default); padded_hw: ``(Hp, Wp)`` for graph backends.
    """
    from ..weights.checkpoint import load_model, resolve_weights
    spec = resolve_spec(backend, device=device, device_id=device_id, fp16=fp16, precision=precision, tf32=tf32,
                        **options)
    path = resolve_weights(weights)
    specs, skipped = spec.candidates() if isinstance(spec, Auto) else ([spec], [])
    net, errors = None, [f"{c}: {why}" for c, why in skipped]
    for candidate in specs:
        if candidate.needs_size and padded_hw is None:
            if not isinstance(spec, Auto):
                raise BackendError(f"backend {candidate.name!r} runs static graphs and needs padded_hw=(Hp, Wp)")
            errors.append(f"{candidate.name}: no padded size given")
            continue
        try:
            net = net if net is not None else load_model(path)
            backend = candidate.create(net, path, tuple(padded_hw) if candidate.needs_size else None)
        except Exception as e:  # noqa: BLE001 - Auto tries the next candidate; others re-raise
            if not isinstance(spec, Auto):
                raise
            errors.append(f"{candidate.name}-{getattr(candidate, 'device', 'cuda')}: failed to start: "
                          f"{type(e).__name__}: {e}")
            continue
        if isinstance(spec, Auto):
            log.info("backend auto: using %s; skipped %s", backend.describe(), "; ".join(errors) or "nothing")
        return backend
    raise BackendError("backend auto: no backend could be started: " + "; ".join(errors))
