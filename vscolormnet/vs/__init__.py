"""The VapourSynth filter: Colorize, its renderer, reference loading, shot detection."""
