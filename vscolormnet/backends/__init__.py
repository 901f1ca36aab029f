"""Backends serve the four stateless network stages; everything else is shared host code."""
from .base import Backend, StageTimes
from .select import create_backend

__all__ = ["Backend", "StageTimes", "create_backend"]
