"""The ColorMNet network as plain torch.nn modules (see network.ColorMNet)."""
from .network import ColorMNet

__all__ = ["ColorMNet"]
