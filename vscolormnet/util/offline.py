"""Hub downloads are off by default, and we remember whether that was our default or the user's choice.

Why: the libraries we use (timm, huggingface_hub) fetch weights on their own when asked for a
name; nothing may be fetched at run time behind the user's back, so the entry points set
``HF_HUB_OFFLINE=1`` unless it is already set. ``download`` is the one command that goes online
on purpose: it lifts our default, but a user who set the variable themselves is obeyed.
"""
from __future__ import annotations

import os

HF_OFFLINE_VAR = "HF_HUB_OFFLINE"
_TRUE = {"1", "on", "yes", "true"}
_defaulted = False


def default_offline() -> None:
    """Set ``HF_HUB_OFFLINE=1`` unless the user set it (then theirs stands); remember which it was."""
    global _defaulted
    if HF_OFFLINE_VAR not in os.environ:
        os.environ[HF_OFFLINE_VAR] = "1"
        _defaulted = True


def offline_by_user() -> bool:
    """True if hub downloads are off by the user's own ``HF_HUB_OFFLINE`` (not by ``default_offline``)."""
    value = os.environ.get(HF_OFFLINE_VAR, "").strip().lower()
    return value in _TRUE and not (_defaulted and value == "1")
