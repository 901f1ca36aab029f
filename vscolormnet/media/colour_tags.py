"""The colour description of a stream: frame properties → ffmpeg's tags, so players show the right levels.

A y4m pipe carries only pixels (and, with ``XCOLORRANGE``, the range); without tags a full-range
scan is shown as limited range and a BT.709 film with BT.601 colours. Every encode path
(``colorize``, ``--codec-args``, ``--workers`` segments) tags its output with what the output
frames say: ``_Range`` (or the older ``_ColorRange``), ``_Matrix``, ``_Primaries``, ``_Transfer``
(H.273 codes, as VapourSynth and ``Colorize`` set them). Unspecified (2) or unknown codes add no tag.
"""
from __future__ import annotations

import vapoursynth as vs

# H.273 code → ffmpeg name (libavutil's color_range/colorspace/color_primaries/color_trc options).
COLORSPACE = {0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco",
              9: "bt2020nc", 10: "bt2020c", 12: "chroma-derived-nc", 13: "chroma-derived-c", 14: "ictcp"}
PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film", 9: "bt2020",
             10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "jedec-p22"}
TRANSFER = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear", 9: "log100",
            10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1", 14: "bt2020-10",
            15: "bt2020-12", 16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}


def _code(props, name: str) -> int | None:
    value = props.get(name)
    try:
        return int(value) if value is not None and not isinstance(value, (bytes, str)) else None
    except (TypeError, ValueError):
        return None


def frame_range(props) -> str | None:
    """``'full'``/``'limited'`` as the frame says (``vsformat.prop_range``), None when unknown or invalid."""
    from .vsformat import FormatError, prop_range
    try:
        return prop_range(props)
    except FormatError:
        return None


def ffmpeg_tags(props, family: int) -> list[str]:
    """ffmpeg output options describing frames with ``props`` of a ``family`` (``vs.YUV``...) clip."""
    tags = []
    rng = frame_range(props)
    if rng is None and family == vs.RGB:
        rng = "full"
    if rng is not None:
        tags += ["-color_range", "pc" if rng == "full" else "tv"]
    for option, name, table in (("-colorspace", "_Matrix", COLORSPACE), ("-color_primaries", "_Primaries", PRIMARIES),
                                ("-color_trc", "_Transfer", TRANSFER)):
        code = _code(props, name)
        if code in table and not (option == "-colorspace" and family == vs.YUV and code == 0):
            tags += [option, table[code]]
    return tags


def y4m_range(props) -> str:
    """The y4m header's ``XCOLORRANGE`` field for frames with ``props`` ('' when unknown), which ffmpeg's
    y4m reader takes as the input's range (so it never converts one range into the other)."""
    rng = frame_range(props)
    return "" if rng is None else f" XCOLORRANGE={'FULL' if rng == 'full' else 'LIMITED'}"


def script_tags(script: str, args: dict[str, str]) -> list[str]:
    """The tags of output 0 of a ``.vpy`` run with vspipe's ``-a key=value`` arguments (its frame 0 is
    rendered once to read them): what ``examples/render.sh`` gives ffmpeg after ``vspipe -c y4m``."""
    import runpy
    vs.clear_outputs()
    runpy.run_path(script, init_globals=dict(args), run_name="__vapoursynth__")
    out = vs.get_output(0)
    node = out.clip if hasattr(out, "clip") else out
    return ffmpeg_tags(node.get_frame(0).props, node.format.color_family)


def main(argv=None) -> int:
    """``python -m vscolormnet.media.colour_tags SCRIPT.vpy [key=value ...]``: the tags, on stdout."""
    import sys
    argv = sys.argv[1:] if argv is None else argv
    if not argv or any("=" not in a for a in argv[1:]):
        print("usage: python -m vscolormnet.media.colour_tags SCRIPT.vpy [key=value ...]", file=sys.stderr)
        return 2
    print(" ".join(script_tags(argv[0], dict(a.split("=", 1) for a in argv[1:]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
