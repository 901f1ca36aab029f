"""A whole film across Ray workers: one segment file per shot, resumable, joined without re-encoding.

``run_film(input, refs_dir, output, workers=N, ...)`` renders every shot of a reference
folder's shot plan on Ray actors that each keep one network loaded, writes each shot as a
lossless segment with a manifest (so a rerun skips what is done and verified), and joins the
segments with ffmpeg's concat demuxer. Importing this package imports neither Ray nor
VapourSynth: ``add_film_arguments``/``film_kwargs`` are cheap, for the ``colorize`` command.
"""
from __future__ import annotations

from .options import RAY_PIN, add_film_arguments, film_kwargs

__all__ = ["RAY_PIN", "FilmError", "FilmResult", "add_film_arguments", "film_kwargs", "run_film"]


def __getattr__(name):
    if name in ("run_film", "FilmResult", "FilmError"):
        from . import driver
        return getattr(driver, name)
    raise AttributeError(f"module 'vscolormnet.film' has no attribute {name!r}")
