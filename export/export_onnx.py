#!/usr/bin/env python3
"""Export ColorMNet's stage graphs to ONNX for one size, checked against PyTorch.

Thin wrapper over ``python -m vscolormnet export`` (``vscolormnet.backends.graphs.cache.export_graphs``):

    python export/export_onnx.py --size 512 [--source 1440x1080] --precision both [--weights CKPT] [--onnx-dir DIR]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vscolormnet.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
