"""Pixels in and out: colour conversion, image files, VapourSynth formats, ffmpeg, reference folders."""
