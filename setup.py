"""A thin shim for tools and habits that call ``setup.py``: all metadata lives in pyproject.toml.

``pip install .``, ``pip install ".[cuda]"`` and ``python -m build`` read pyproject.toml through
setuptools; this file adds nothing to it (tests/test_packaging.py checks that it stays that way).
"""
from setuptools import setup

setup()
